//! `dittofs-emulator start --foreground --config FILE`: the DittoFS control-plane stand-in (see `emulator`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dittofs_emulator::{self as emulator, config::Config};

#[derive(Parser)]
#[command(version, about = "API-faithful stand-in for the DittoFS v0.29.0 control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (same shape as `dfs start`).
    Start {
        /// Run in the foreground; the emulator never daemonizes, so this is required.
        #[arg(short, long)]
        foreground: bool,
        /// Config file (the same YAML keys as DittoFS).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write the process id here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Start { foreground, config, pid_file } = Cli::parse().command;
    anyhow::ensure!(foreground, "dittofs-emulator does not daemonize: pass --foreground");
    let config = Config::load(config.as_deref(), &std::env::vars().collect())?;
    if let Some(pid_file) = pid_file {
        std::fs::write(pid_file, std::process::id().to_string())?;
    }
    emulator::run(config).await
}
