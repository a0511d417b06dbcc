//! `dittofs-controller`: parses the flags and runs the controller (see the library).

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dittofs_controller::run(dittofs_controller::Cli::parse()).await?;
    Ok(())
}
