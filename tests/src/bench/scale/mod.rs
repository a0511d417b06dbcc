//! `make bench-scale`: what the controller costs with N DittoServers. For each N of `BENCH_SCALE_N`
//! (default `100,1000`), in fresh control planes one after the other: the cold start (N servers exist,
//! then the controller starts) until all have converged; N servers created at once with the controller
//! running, until all have converged; then at rest, the controller's RSS and CPU and the apiserver requests
//! by component over `BENCH_SCALE_IDLE_SECS` (default 60); and SMB toggled `BENCH_SCALE_TOGGLES` times
//! (default 10) on one real pod while the others rest. Agents: two servers run a real pod, the rest a
//! simulated agent ([`driver`]). Each wait is bounded by `BENCH_SCALE_TIMEOUT_SECS` (default 600).

mod converge;
mod driver;
mod fleet;
mod report;
mod tracker;

use std::{
    collections::BTreeSet,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;

use self::{
    fleet::{Fleet, create_all, real_servers, server_names},
    report::{Cold, Figures, Measured},
    tracker::Tracker,
};
use super::{PHASE_MS, controller_identity, env_number, periods::millicores, status_kib, usage};
use crate::{
    audit::AuditLog,
    faults::Rng,
    kube_env::{ControlPlane, ControlPlaneOptions, wait_until},
    pod::{Pod, Proc, start_controller},
    scenario::{NS, set_up},
};

/// Requests in flight of the bench's bulk work: creating the servers, the simulated agents' writes.
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
struct Settings {
    idle: Duration,
    settle: Duration,
    timeout: Duration,
    toggles: u64,
    /// `BENCH_SCALE_COLD_ONLY=1`: the cold start alone, for a quick look at what it costs.
    cold_only: bool,
}

/// The sizes of `BENCH_SCALE_N`: a comma list of positive numbers.
fn sizes(list: &str) -> anyhow::Result<Vec<usize>> {
    let parse = |s: &str| s.trim().parse::<usize>().ok().filter(|n| *n > 0);
    list.split(',')
        .map(|s| parse(s).with_context(|| format!("BENCH_SCALE_N: {s:?} is not a positive number")))
        .collect()
}

pub async fn run() -> anyhow::Result<()> {
    let sizes = sizes(&std::env::var("BENCH_SCALE_N").unwrap_or_else(|_| "100,1000".to_owned()))?;
    let settings = Settings {
        idle: Duration::from_secs(env_number("BENCH_SCALE_IDLE_SECS", 60)),
        // The reconciles that follow convergence (status, Events) finish before the quiet window starts.
        settle: Duration::from_secs(env_number("BENCH_SCALE_SETTLE_SECS", 15)),
        timeout: Duration::from_secs(env_number("BENCH_SCALE_TIMEOUT_SECS", 600)),
        toggles: env_number("BENCH_SCALE_TOGGLES", 10),
        cold_only: env_number("BENCH_SCALE_COLD_ONLY", 0) == 1,
    };
    let (mut rng, seed) = Rng::from_var("BENCH_SEED");
    let json_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-scale.json");
    println!("# What the controller costs with N DittoServers\n");
    println!(
        "{} Every N in fresh \
         control planes, the controller as a ServiceAccount bound to cluster-admin. Two servers run a real \
         pod (DittoFS emulator + agent); every other one has a simulated agent: the agent crate's own status \
         writer (same server-side apply body and field manager `dittofs-agent-<pod>`, same heartbeat at the \
         same poll pace), authenticated as the server's agent ServiceAccount, reporting NFS on 12049 and SMB \
         on 12445, started once the controller has created that ServiceAccount, its Role and RoleBinding. A \
         server has converged when a watch shows its adapter Services `<cr>-adapter-nfs` and \
         `<cr>-adapter-smb` with the reported ports (and no other) and `AdaptersReady=True` at its current \
         generation (`Ready` needs a running replica; there is no kubelet here). Toggles wait \
         0–{PHASE_MS} ms first (seed {seed}, `BENCH_SEED`).",
        super::measured_binaries()?
    );
    let mut all: Vec<Figures> = Vec::new();
    for n in sizes {
        eprintln!("bench-scale: N={n}: cold start…");
        let cold = cold_start(n, &settings).await.with_context(|| format!("N={n}: cold start"))?;
        eprintln!("bench-scale: N={n}: cold start → converged in {:.1} s", cold.took.as_secs_f64());
        if settings.cold_only {
            print!("{}", cold.section(n));
            continue;
        }
        eprintln!("bench-scale: N={n}: now created at once…");
        let measured = warm(n, cold, &settings, &mut rng).await.with_context(|| format!("N={n}"))?;
        print!("{}", measured.section());
        all.push(measured.figures());
        // After every N, so a long run that fails later keeps what it measured.
        report::write_json(&json_path, &all)?;
        std::fs::write(json_path.with_extension("svg"), report::plot(&all))?;
    }
    println!("{}", report::summary(&all));
    println!("\nPlot: `target/bench-scale.svg`.");
    eprintln!("bench-scale: figures in {} and the plot beside them", json_path.display());
    Ok(())
}

/// The controller's log tail under an error, since a phase that does not converge is usually explained there.
fn with_log(e: anyhow::Error, controller: &Proc) -> anyhow::Error {
    anyhow::anyhow!("{e:#}\n{}", controller.log_tail(30))
}

/// A control plane with the CRD, namespace, admin Secret and the controller's ServiceAccount; returns it
/// with the controller's kubeconfig.
async fn control_plane(dir: &Path, apiserver_args: Vec<String>) -> anyhow::Result<(Arc<ControlPlane>, String)> {
    let options = ControlPlaneOptions { extra_apiserver_args: apiserver_args, ..Default::default() };
    let cp = Arc::new(ControlPlane::start(options).await?);
    set_up(&cp).await?;
    let kubeconfig = controller_identity(&cp, dir).await?;
    Ok((cp, kubeconfig))
}

/// N servers exist and their agents wait for their ServiceAccounts; the controller starts: the time until
/// every server has converged, and what each process spent on it.
async fn cold_start(n: usize, settings: &Settings) -> anyhow::Result<Cold> {
    let dir = tempfile::Builder::new().prefix("dittofs-bench-scale-").tempdir()?;
    let (cp, kubeconfig) = control_plane(dir.path(), Vec::new()).await?;
    let names = server_names(n);
    let mut fleet = Fleet::start(&cp, dir.path(), &names, &real_servers(&names), settings.timeout);
    create_all(&cp.client(), &names).await?;
    eprintln!("bench-scale: N={n}: {n} servers created; starting the controller");
    let started = Instant::now();
    let (controller, _) = start_controller(&cp, NS, dir.path(), &[("KUBECONFIG", kubeconfig)])?;
    let mut pids: Vec<(&'static str, u32)> = cp.pids();
    pids.push(("dittofs-controller", controller.pid()));
    pids.push(("bench (load driver, watches)", std::process::id()));
    let before: Vec<u64> = pids.iter().map(|(_, pid)| usage(*pid).map_or(0, |u| u.1)).collect();
    let label = format!("N={n} cold start");
    let took = fleet.wait_all(&label, started).await.map_err(|e| with_log(e, &controller))?;
    let cpu = pids
        .iter()
        .zip(before)
        .map(|((name, pid), t0)| Ok(((*name).to_owned(), (usage(*pid)?.1.saturating_sub(t0)) as f64 / 1e9)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rss_kib = (usage(controller.pid())?.0, status_kib(controller.pid(), "VmHWM")?);
    drop(fleet);
    drop(controller);
    Ok(Cold { took, cpu, rss_kib })
}

/// The controller runs (and leads); N servers are created at once; then the idle window and the toggles.
async fn warm(n: usize, cold: Cold, settings: &Settings, rng: &mut Rng) -> anyhow::Result<Measured> {
    let dir = tempfile::Builder::new().prefix("dittofs-bench-scale-").tempdir()?;
    let (audit, args) = AuditLog::in_dir(dir.path())?;
    let (cp, kubeconfig) = control_plane(dir.path(), args).await?;
    let (controller, admin_port) = start_controller(&cp, NS, dir.path(), &[("KUBECONFIG", kubeconfig)])?;
    wait_leading(admin_port).await.map_err(|e| with_log(e, &controller))?;
    let names = server_names(n);
    let real = real_servers(&names);
    let mut fleet = Fleet::start(&cp, dir.path(), &names, &real, settings.timeout);
    let real_set: BTreeSet<String> = real.iter().cloned().collect();
    let converging = audit.mark();
    let started = Instant::now();
    create_all(&cp.client(), &names).await?;
    let label = format!("N={n} created at once");
    let created = fleet.wait_all(&label, started).await.map_err(|e| with_log(e, &controller))?;
    let converge_requests = audit.count_since(converging, |user| report::component_of(user, &real_set))?;
    let pods = fleet.take_pods();
    let toggled = pods.first().context("no real pod started")?;

    eprintln!("bench-scale: N={n}: settling {:?}, then at rest for {:?}…", settings.settle, settings.idle);
    tokio::time::sleep(settings.settle).await;
    let (rss0, cpu0) = usage(controller.pid())?;
    let mark = audit.mark();
    let window = Instant::now();
    tokio::time::sleep(settings.idle).await;
    let idle_secs = window.elapsed().as_secs_f64();
    let (rss1, cpu1) = usage(controller.pid())?;
    let requests = audit.count_since(mark, |user| report::component_of(user, &real_set))?;

    let (off, on) = toggles(&fleet.tracker, toggled, settings, rng).await.map_err(|e| with_log(e, &controller))?;
    let driver = fleet.driver.stats();
    drop(pods);
    drop(fleet);
    drop(controller);
    Ok(Measured {
        n,
        real: real.len(),
        cold,
        created,
        converge_requests,
        idle_secs,
        rss_kib: (rss0, rss1),
        cpu_mcores: millicores(cpu1.saturating_sub(cpu0), idle_secs),
        requests,
        off,
        on,
        driver,
    })
}

/// Waits until the controller holds its Lease (its `/readyz` passes), so creation is not timed against
/// its start.
async fn wait_leading(admin_port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    wait_until("the controller to lead (/readyz)", Duration::from_secs(60), async || {
        let status = http.get(&url).send().await?.status();
        anyhow::ensure!(status.is_success(), "/readyz answers {status}");
        Ok(())
    })
    .await
}

/// SMB disabled then enabled through the DittoFS API of one real pod, each after a random wait: the times
/// until the watch sees its SMB Service gone, and back (the server converged again).
async fn toggles(
    tracker: &Tracker,
    (server, pod): &(String, Pod),
    settings: &Settings,
    rng: &mut Rng,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let admin = pod.fs.admin().await?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=settings.toggles {
        eprintln!("bench-scale: toggle {round}/{} on {server}", settings.toggles);
        for enabled in [false, true] {
            tokio::time::sleep(Duration::from_millis(rng.below(PHASE_MS))).await;
            admin.put("/api/v1/adapters/smb", &json!({"enabled": enabled})).await?.expect_status(200)?;
            let changed = Instant::now();
            let seen = if enabled {
                let what = format!("the SMB Service of {server} back");
                tracker.wait_for(&what, settings.timeout, |s| s.converged_since(server)).await?
            } else {
                let what = format!("the SMB Service of {server} gone");
                tracker.wait_for(&what, settings.timeout, |s| s.without_service_since(server, "smb")).await?
            };
            let took = seen.saturating_duration_since(changed);
            if enabled { on.push(took) } else { off.push(took) }
        }
    }
    Ok((off, on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_a_comma_list_of_positive_numbers() {
        assert_eq!(sizes("100,1000").unwrap(), [100, 1000]);
        assert_eq!(sizes(" 5 ").unwrap(), [5]);
        assert!(sizes("100,x").unwrap_err().to_string().contains("\"x\""));
        assert!(sizes("0").is_err());
        assert!(sizes("").is_err());
    }
}
