//! `make demo`: a local real Kubernetes control plane and DittoFS, shown working (see `dittofs_tests::demo`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dittofs_tests::demo::run().await
}
