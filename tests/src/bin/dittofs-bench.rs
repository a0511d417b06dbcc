//! `make bench`: end-to-end speed and footprint figures (see `dittofs_tests::bench`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dittofs_tests::bench::run().await
}
