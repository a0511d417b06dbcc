//! What the agent's fast path costs at each period, so the default (`DEFAULT_FAST_PATH_INTERVAL`) is chosen
//! from figures: for each period the bench sets `spec.adapterDiscovery.fastPathInterval` (the agent follows
//! it without a restart) and, with nothing toggling, measures the agent's and DittoFS's CPU, the agent's RSS
//! and DittoFS's INFO log lines over a window (`BENCH_PERIOD_SECS`, default 30).

use std::time::{Duration, Instant};

use dittofs_api::DittoServer;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{status_kib, usage};
use crate::{pod::Pod, scenario::SERVER};

/// The periods measured, slowest first.
pub const PERIODS: [&str; 4] = ["1s", "500ms", "250ms", "100ms"];

/// The idle cost at one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub period: &'static str,
    /// The fast path's share of a toggle's wait on average: half a period.
    pub mean_wait_ms: f64,
    pub agent_millicores: f64,
    pub agent_rss_mib: f64,
    /// The anonymous part of it (heap, stacks); the rest is the binary's and libraries' code pages, shared
    /// with every process mapping the same file.
    pub agent_anon_mib: f64,
    /// The DittoFS process (the emulator unless `DITTOFS_BIN` is set).
    pub dittofs_millicores: f64,
    pub info_lines_per_minute: f64,
}

/// Millicores used by `cpu_ns` nanoseconds of CPU time over `secs`.
pub(super) fn millicores(cpu_ns: u64, secs: f64) -> f64 {
    cpu_ns as f64 / 1e6 / secs
}

/// Measures each of [`PERIODS`] for `window`, then unsets the period again (the agent's default).
pub async fn measure(servers: &Api<DittoServer>, pod: &Pod, window: Duration) -> anyhow::Result<Vec<Cost>> {
    let dittofs_pid = pod.fs.pid().ok_or_else(|| anyhow::anyhow!("DittoFS is not running"))?;
    let mut costs = Vec::new();
    for period in PERIODS {
        eprintln!("bench: fast path every {period} for {window:?}…");
        set_period(servers, Some(period)).await?;
        // The agent sees the change through its watch within moments; a second lets the old period's last
        // sample go by.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let info_before = pod.fs.info_requests_logged();
        let (_, agent_cpu0) = usage(pod.agent.pid())?;
        let (_, fs_cpu0) = usage(dittofs_pid)?;
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let secs = started.elapsed().as_secs_f64();
        let (agent_rss, agent_cpu) = usage(pod.agent.pid())?;
        let agent_anon = status_kib(pod.agent.pid(), "RssAnon")?;
        let (_, fs_cpu) = usage(dittofs_pid)?;
        let lines = pod.fs.info_requests_logged() - info_before;
        costs.push(Cost {
            period,
            mean_wait_ms: dittofs_api::duration::parse_go_duration(period)?.as_secs_f64() * 500.0,
            agent_millicores: millicores(agent_cpu - agent_cpu0, secs),
            agent_rss_mib: agent_rss as f64 / 1024.0,
            agent_anon_mib: agent_anon as f64 / 1024.0,
            dittofs_millicores: millicores(fs_cpu - fs_cpu0, secs),
            info_lines_per_minute: lines as f64 * 60.0 / secs,
        });
    }
    set_period(servers, None).await?;
    Ok(costs)
}

async fn set_period(servers: &Api<DittoServer>, period: Option<&str>) -> anyhow::Result<()> {
    let body = json!({"spec": {"adapterDiscovery": {"fastPathInterval": period}}});
    servers.patch(SERVER, &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

/// The markdown table of `costs`.
pub fn table(costs: &[Cost], dittofs: &str, window: Duration) -> String {
    let mut out = format!(
        "\n## The fast path's cost by period\n\nIdle (no toggle), {:.0} s per period, DittoFS: {dittofs}. CPU in \
         millicores (1/1000 of a core): the run time of its threads over the window \
         (`/proc/<pid>/task/*/schedstat`); the mean wait is what the period adds to a toggle's latency on average. The agent's RSS is split into its anonymous memory and the code pages of \
         its binary and libraries.\n\n| period | mean wait | agent CPU | agent RSS (anonymous + code) | DittoFS CPU | \
         DittoFS INFO lines/min |\n|---|---|---|---|---|---|\n",
        window.as_secs_f64()
    );
    for c in costs {
        out += &format!(
            "| {} | {:.0} ms | {:.2} | {:.1} MiB ({:.1} + {:.1}) | {:.2} | {:.1} |\n",
            c.period,
            c.mean_wait_ms,
            c.agent_millicores,
            c.agent_rss_mib,
            c.agent_anon_mib,
            c.agent_rss_mib - c.agent_anon_mib,
            c.dittofs_millicores,
            c.info_lines_per_minute
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_becomes_millicores() {
        // One CPU-second over ten seconds is a tenth of a core.
        assert_eq!(super::millicores(1_000_000_000, 10.0), 100.0);
        assert_eq!(super::millicores(30_000_000, 60.0), 0.5);
    }
}
