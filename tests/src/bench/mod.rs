//! `make bench`: end-to-end figures of the release agent and controller on the local control plane — how fast
//! Kubernetes follows an adapter toggle and a port change (median, p90, p99, max over rounds), where each
//! toggle's time goes ([`stages`], from the traces both binaries send to a local Jaeger), what the agent and
//! the controller cost while idle (RSS, CPU, DittoFS INFO log lines, apiserver requests by component, verb and
//! resource from the audit log), and what the fast path costs at each period ([`periods`]). Rounds and idle
//! window come from `BENCH_ROUNDS` (default 50) and `BENCH_IDLE_SECS` (default 60); each change waits a
//! random 0–1 s first (`BENCH_SEED`), so the fast path's phase is sampled instead of fixed. [`scale`] is
//! `make bench-scale`.
pub mod exposure;
pub mod periods;
pub mod plot;
pub mod scale;
pub mod stages;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use dittofs_api::DittoServer;
use kube::Api;
use serde_json::json;

use self::exposure::Exposure;
use self::stages::{Clock, Moments};
use crate::{
    audit::{AuditLog, Counts, is_read},
    faults::Rng,
    jaeger::Jaeger,
    kube_env::{ControlPlane, ControlPlaneOptions},
    pod::{Pod, start_controller},
    scenario::{NS, SERVER, converge, create_server, set_up},
};

/// The random wait before a toggle is uniform in `0..PHASE_MS` ms: a whole number of fast-path periods (of
/// the default and of every period measured), so the toggle's phase within a period is uniform too.
const PHASE_MS: u64 = 1_000;

/// Port changes measured after the toggles (each after a random wait, like them).
const PORT_ROUNDS: usize = 20;

/// Where the per-stage plot is written (beside the report the Makefile writes).
const STAGES_PLOT: &str = "target/bench-stages.svg";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// (RSS KiB, CPU time in nanoseconds) of a process, from /proc: the CPU time is the sum of its threads'
/// `schedstat` run times, exact to the nanosecond. `stat`'s 10 ms clock ticks made an idle agent's
/// millicores over 30 s a count of three to six ticks.
fn usage(pid: u32) -> anyhow::Result<(u64, u64)> {
    let rss = status_kib(pid, "VmRSS")?;
    let mut cpu_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended between the listing and the read counts no more.
        let Ok(schedstat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
        cpu_ns += schedstat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok((rss, cpu_ns))
}

/// Which agent and controller binaries a report measured: their paths and sizes, and whether each is static
/// (no ELF interpreter, like the shipped images' musl builds) or linked against the host's libc.
pub fn measured_binaries() -> anyhow::Result<String> {
    let mut parts = Vec::new();
    for name in ["dittofs-agent", "dittofs-controller"] {
        let path = crate::process::workspace_bin(name)?;
        let size = std::fs::metadata(&path)?.len();
        let linking = if has_interpreter(&path)? { "dynamically linked" } else { "static" };
        parts.push(format!("`{}` ({:.1} MB, {linking})", path.display(), size as f64 / 1e6));
    }
    Ok(format!("Binaries measured: {}.", parts.join(", ")))
}

/// Whether the 64-bit little-endian ELF at `path` names an interpreter (a `PT_INTERP` program header, e.g.
/// `/lib64/ld-linux-x86-64.so.2`): dynamically linked executables do, static ones do not.
fn has_interpreter(path: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::Read as _;
    const PT_INTERP: u32 = 3;
    // The program headers follow the ELF header at the start of the file.
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    anyhow::ensure!(
        head.len() >= 64 && head[..4] == *b"\x7fELF" && head[4] == 2 && head[5] == 1,
        "{} is not a 64-bit LE ELF",
        path.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into()?) as usize;
    let (entry, count) = (u16_at(0x36), u16_at(0x38));
    let table = head.get(phoff..phoff + entry * count).context("program headers beyond the first 64 KiB")?;
    Ok(table.chunks(entry.max(4)).any(|h| u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PT_INTERP))
}

/// One KiB field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `RssAnon`, …).
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'));
    value.and_then(|v| v.split_whitespace().next()?.parse().ok()).with_context(|| format!("no {field} for {pid}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn line(label: &str, times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "| {label} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
        times.len(),
        times.first().copied().unwrap_or_default().as_secs_f64(),
        percentile(times, 0.5).as_secs_f64(),
        percentile(times, 0.9).as_secs_f64(),
        percentile(times, 0.99).as_secs_f64(),
        times.last().copied().unwrap_or_default().as_secs_f64()
    )
}

/// The component of an apiserver user, for the request counts (the harness and kube-controller-manager are
/// not counted).
fn component(user: &str) -> Option<&'static str> {
    let agent = format!("system:serviceaccount:{NS}:{}", dittofs_api::names::agent_service_account(SERVER));
    match user {
        u if u == agent => Some("agent"),
        u if u == format!("system:serviceaccount:{NS}:{CONTROLLER_SA}") => Some("controller"),
        _ => None,
    }
}

/// The ServiceAccount the bench's controller runs as, so the audit log tells its requests from the harness's.
const CONTROLLER_SA: &str = "dittofs-controller";

/// A ServiceAccount for the controller, bound to cluster-admin (the bench measures requests, not RBAC), and a
/// kubeconfig with its token.
async fn controller_identity(cp: &ControlPlane, dir: &std::path::Path) -> anyhow::Result<String> {
    use k8s_openapi::api::{core::v1::ServiceAccount, rbac::v1::ClusterRoleBinding};
    use kube::api::PostParams;
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": CONTROLLER_SA}}))?;
    Api::<ServiceAccount>::namespaced(cp.client(), NS).create(&PostParams::default(), &sa).await?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bench-dittofs-controller"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_SA, "namespace": NS}],
    }))?;
    Api::<ClusterRoleBinding>::all(cp.client()).create(&PostParams::default(), &binding).await?;
    let token = cp.service_account_token(NS, CONTROLLER_SA).await?;
    let path = dir.join("controller.kubeconfig");
    crate::pod::token_kubeconfig(cp, &token, NS, &path)?;
    Ok(path.display().to_string())
}

/// Requests per component, verb and resource: per toggle over the toggle phase, per minute over the idle
/// window.
fn requests_table(toggles: &Counts, toggle_count: u64, idle: &Counts, idle_secs: f64) -> String {
    let mut out = String::from(
        "\n## apiserver requests (audit log, metadata level)\n\nPer toggle: all requests of the toggle phase \
         (random waits and lease renewals included) over the number of toggles. Idle: over the idle window. A \
         watch counts once, when it starts.\n\n\
         | component | verb | resource | kind | per toggle | idle, per minute |\n|---|---|---|---|---|---|\n",
    );
    let keys: std::collections::BTreeSet<_> = toggles.keys().chain(idle.keys()).collect();
    for key in keys {
        let per_toggle = toggles.get(key).copied().unwrap_or(0) as f64 / toggle_count.max(1) as f64;
        let per_minute = idle.get(key).copied().unwrap_or(0) as f64 * 60.0 / idle_secs.max(1.0);
        let kind = if is_read(&key.1) { "read" } else { "write" };
        out += &format!("| {} | {} | {} | {kind} | {per_toggle:.2} | {per_minute:.1} |\n", key.0, key.1, key.2);
    }
    out
}

/// One toggle of SMB: sent after a random wait, timed until a client's watch sees `want`, its stages read
/// from the trace of the change.
struct Toggle<'a> {
    admin: &'a crate::dittofs_client::Api,
    exposure: &'a mut Exposure,
    jaeger: &'a Jaeger,
    clock: Clock,
}

impl Toggle<'_> {
    async fn run(&mut self, enabled: bool, want: &BTreeMap<String, i32>) -> anyhow::Result<(Duration, Moments)> {
        let since_us = crate::jaeger::now_us();
        self.admin.put("/api/v1/adapters/smb", &json!({"enabled": enabled})).await?.expect_status(200)?;
        let changed = Instant::now();
        let visible = self.exposure.matched(want).await?;
        let op = if enabled { "adapter.apply" } else { "adapter.delete" };
        let id = self.jaeger.wait_for_change(SERVER, "smb", op, since_us).await?;
        let trace = self.jaeger.trace(&id).await?;
        let change = trace.adapter_change(SERVER, "smb", op, since_us).map_err(anyhow::Error::msg)?;
        let moments = Moments::of(&trace, &change, self.clock.epoch_us(changed), self.clock.epoch_us(visible))
            .map_err(anyhow::Error::msg)?;
        Ok((visible.saturating_duration_since(changed), moments))
    }
}

pub async fn run() -> anyhow::Result<()> {
    let rounds = env_number("BENCH_ROUNDS", 50);
    let idle = Duration::from_secs(env_number("BENCH_IDLE_SECS", 60));
    eprintln!("bench: starting the control plane, controller and pod…");
    let dir = tempfile::Builder::new().prefix("dittofs-bench-").tempdir()?;
    let (audit, audit_args) = AuditLog::in_dir(dir.path())?;
    let cp =
        ControlPlane::start(ControlPlaneOptions { extra_apiserver_args: audit_args, ..Default::default() }).await?;
    set_up(&cp).await?;
    let client = cp.client();
    let kubeconfig = controller_identity(&cp, dir.path()).await?;
    // Both binaries export their spans (the agent gets the endpoint through the pod template).
    let jaeger = Jaeger::start(dir.path()).await?;
    let mut env = jaeger.exporter_env();
    env.push(("KUBECONFIG", kubeconfig));
    let (controller, _) = start_controller(&cp, NS, dir.path(), &env)?;
    create_server(&client).await?;
    let pod = Pod::start(&cp, NS, SERVER, dir.path()).await?;
    let admin = pod.fs.admin().await?;
    let nfs = i32::from(pod.fs.adapter_port("nfs").context("nfs port")?);
    let smb = i32::from(pod.fs.adapter_port("smb").context("smb port")?);
    let both: BTreeMap<String, i32> = [("nfs".into(), nfs), ("smb".into(), smb)].into();
    let nfs_only: BTreeMap<String, i32> = [("nfs".into(), nfs)].into();
    let first = converge(&client, &both).await?;
    let mut exposure = Exposure::watch(&client);
    exposure.matched(&both).await?;

    // A toggle right after the previous convergence always lands at the same phase of the agent's 1 s fast
    // path, so the figure would be that period whatever the rest costs: a random wait of up to one period
    // before each toggle samples every phase (uniformly, from a printed seed).
    let (mut rng, seed) = Rng::from_var("BENCH_SEED");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut off_stages, mut on_stages) = (Vec::new(), Vec::new());
    let toggles_mark = audit.mark();
    let mut toggle = Toggle { admin: &admin, exposure: &mut exposure, jaeger: &jaeger, clock: Clock::now() };
    for round in 1..=rounds {
        eprintln!("bench: toggle round {round}/{rounds}");
        tokio::time::sleep(Duration::from_millis(rng.below(PHASE_MS))).await;
        let (took, moments) = toggle.run(false, &nfs_only).await?;
        off.push(took);
        off_stages.push(moments);
        tokio::time::sleep(Duration::from_millis(rng.below(PHASE_MS))).await;
        let (took, moments) = toggle.run(true, &both).await?;
        on.push(took);
        on_stages.push(moments);
    }

    let toggles = audit.count_since(toggles_mark, component)?;

    // Port changes: `/health/ready` shows none, the agent sees the old listener close (agent::listeners).
    let mut moves = Vec::new();
    for round in 1..=PORT_ROUNDS {
        eprintln!("bench: port change {round}/{PORT_ROUNDS}");
        tokio::time::sleep(Duration::from_millis(rng.below(PHASE_MS))).await;
        let port = i32::from(crate::process::free_port()?);
        admin.put("/api/v1/adapters/nfs", &json!({"port": port})).await?.expect_status(200)?;
        let changed = Instant::now();
        let want: BTreeMap<String, i32> = [("nfs".into(), port), ("smb".into(), smb)].into();
        moves.push(exposure.matched(&want).await?.saturating_duration_since(changed));
    }
    eprintln!("bench: idle window of {idle:?}…");
    // Let the agent's post-toggle follow-up polls settle before the quiet window starts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let servers: Api<DittoServer> = Api::namespaced(client.clone(), NS);
    let rv_before = servers.get(SERVER).await?.metadata.resource_version;
    let info_before = pod.fs.info_requests_logged();
    let (agent_rss0, agent_cpu0) = usage(pod.agent.pid())?;
    let (ctl_rss0, ctl_cpu0) = usage(controller.pid())?;
    let started = Instant::now();
    let idle_mark = audit.mark();
    tokio::time::sleep(idle).await;
    let secs = started.elapsed().as_secs_f64();
    let idle_requests = audit.count_since(idle_mark, component)?;
    let (agent_rss, agent_cpu) = usage(pod.agent.pid())?;
    let (ctl_rss, ctl_cpu) = usage(controller.pid())?;
    let info_lines = pod.fs.info_requests_logged() - info_before;
    let rv_after = servers.get(SERVER).await?.metadata.resource_version;
    let millicores = |cpu_ns: u64| periods::millicores(cpu_ns, secs);
    let per_minute = info_lines as f64 * 60.0 / secs;
    let flavor = if pod.fs.flavor.is_real() { "real dfs" } else { "dittofs-emulator" };
    let period_window = Duration::from_secs(env_number("BENCH_PERIOD_SECS", 30));
    let costs = periods::measure(&servers, &pod, period_window).await?;
    let median_off = {
        off.sort();
        percentile(&off, 0.5)
    };

    println!("{}\n", measured_binaries()?);
    println!("## Adapter toggle → Kubernetes (Service, NetworkPolicy and container port all match)\n");
    let period = dittofs_api::constants::DEFAULT_FAST_PATH_INTERVAL;
    println!(
        "DittoFS: {flavor}. Fast path every {period:?} (the agent's default). Each toggle after a random wait of \
         0–{PHASE_MS} ms (seed {seed}, `BENCH_SEED` repeats it), a whole number of periods, so it lands at a \
         uniformly random phase of the fast path: half a period ({:?}) of each figure is that wait on average, \
         the rest is work. Seen: when a client's watch of the Services, NetworkPolicies and StatefulSet first \
         shows all three matching.\n",
        period / 2
    );
    println!("| step | n | min | median | p90 | p99 | max |\n|---|---|---|---|---|---|---|");
    println!("| first sync after the pod starts | 1 | | {:.2} s | | | |", first.as_secs_f64());
    println!("{}", line("SMB disabled → Service, policy, port removed", &mut off));
    println!("{}", line("SMB enabled → Service, policy, port created", &mut on));
    println!("{}", line("NFS moved to another port → Service, policy, port follow", &mut moves));
    println!("\n## Where the time goes, per stage\n");
    println!(
        "From the trace of each toggle in Jaeger (agent poll → status apply → reconcile → writes; the reconcile \
         records how long its watch event waited) and the bench's clocks (the toggle's answer, a watch of the \
         three objects). Every process reads the same clock; a stage can read negative when a watch delivers \
         a write before its writer has read the answer."
    );
    println!("{}", stages::table("SMB disabled", &off_stages));
    println!("{}", stages::table("SMB enabled", &on_stages));
    let groups = [stages::bars("SMB disabled", &off_stages), stages::bars("SMB enabled", &on_stages)];
    std::fs::create_dir_all("target")?;
    std::fs::write(STAGES_PLOT, plot::stage_bars("Adapter toggle → Kubernetes, per stage", "ms", &groups))?;
    println!("\nPlot: `{STAGES_PLOT}` (median bars, p99 ticks).");
    println!("\n## Idle cost over {secs:.0} s\n");
    println!("| | agent | controller |\n|---|---|---|");
    println!(
        "| RSS (start → end of window) | {:.1} → {:.1} MiB | {:.1} → {:.1} MiB |",
        agent_rss0 as f64 / 1024.0,
        agent_rss as f64 / 1024.0,
        ctl_rss0 as f64 / 1024.0,
        ctl_rss as f64 / 1024.0
    );
    let (agent_anon, ctl_anon) = (status_kib(pod.agent.pid(), "RssAnon")?, status_kib(controller.pid(), "RssAnon")?);
    println!(
        "| of it anonymous (heap, stacks) + code pages (binary, libraries) | {:.1} + {:.1} MiB | {:.1} + {:.1} MiB |",
        agent_anon as f64 / 1024.0,
        agent_rss.saturating_sub(agent_anon) as f64 / 1024.0,
        ctl_anon as f64 / 1024.0,
        ctl_rss.saturating_sub(ctl_anon) as f64 / 1024.0
    );
    println!(
        "| CPU | {:.2} millicores | {:.2} millicores |",
        millicores(agent_cpu - agent_cpu0),
        millicores(ctl_cpu - ctl_cpu0)
    );
    println!("| DittoFS INFO request lines | {per_minute:.1} per minute | none (never dials DittoFS) |");
    println!(
        "| DittoServer writes | {} | |",
        if rv_before == rv_after { "0 (resourceVersion unchanged)" } else { "resourceVersion changed" }
    );
    println!("{}", requests_table(&toggles, 2 * rounds, &idle_requests, secs));
    println!("{}", periods::table(&costs, flavor, period_window));
    println!("\n## Ratios\n");
    println!(
        "- Go operator by design (polls every 30 s, pollingInterval default): a toggle is seen after 15 s on median;"
    );
    println!(
        "  here the median removal takes {:.2} s → {:.0}× faster.",
        median_off.as_secs_f64(),
        15.0 / median_off.as_secs_f64().max(0.001)
    );
    println!(
        "- A 1 s full poll of GET /api/v1/adapters would log 60 INFO lines a minute in DittoFS; the agent's fast path logs {per_minute:.1} → {:.0}× fewer.",
        60.0 / per_minute.max(0.1)
    );
    drop(pod);
    drop(controller);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_binary_has_an_interpreter_and_a_file_that_is_no_elf_is_an_error() {
        let me = std::env::current_exe().unwrap();
        assert!(super::has_interpreter(&me).unwrap(), "cargo's test binaries are dynamically linked");
        let dir = tempfile::tempdir().unwrap();
        let not_elf = dir.path().join("script");
        std::fs::write(&not_elf, "#!/bin/sh\n").unwrap();
        assert!(super::has_interpreter(&not_elf).is_err());
    }

    #[test]
    fn status_fields_are_read_in_kib_and_a_missing_one_is_an_error() {
        let pid = std::process::id();
        assert!(super::status_kib(pid, "VmRSS").unwrap() > 0);
        assert!(super::status_kib(pid, "VmHWM").unwrap() >= super::status_kib(pid, "RssAnon").unwrap());
        assert!(super::status_kib(pid, "Vm").is_err(), "a prefix of a field is not the field");
    }
}
