//! `make bench-scale`: what the controller costs with N DittoServers (see `dittofs_tests::bench::scale`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dittofs_tests::bench::scale::run().await
}
