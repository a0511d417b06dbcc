//! The `dittofs-agent` binary: arguments ([`cli`]: `--help`, `--version` only) → environment → telemetry →
//! [`dittofs_agent::run`] until SIGTERM.

mod cli;

use std::process::ExitCode;

use dittofs_telemetry::LogFormat;

fn main() -> ExitCode {
    if let Some(done) = cli::answer(std::env::args_os().skip(1)) {
        return done;
    }
    // One thread: the agent does one thing at a time and its footprint matters in every DittoFS pod.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dittofs-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let _telemetry =
            match dittofs_telemetry::init("dittofs-agent", LogFormat::from_env(dittofs_api::agent_env::LOG_FORMAT)) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("dittofs-agent: telemetry: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let result = async {
            let config = dittofs_agent::AgentConfig::from_env()?;
            let kube = dittofs_agent::kube_client::InCluster::from_lookup(|name| std::env::var(name).ok())?
                .client(&config.namespace)?;
            dittofs_agent::run(config, kube, dittofs_telemetry::shutdown_on_signal()).await
        };
        match result.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, kind = e.label(), "dittofs-agent failed");
                ExitCode::FAILURE
            }
        }
    })
}
