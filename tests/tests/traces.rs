//! Traces end to end against a real backend: the controller and the agent binaries export OTLP to a real
//! Jaeger, the agent with the settings the controller handed it through the StatefulSet it rendered. After
//! SMB is switched off and on through the DittoFS API, Jaeger's query API holds, for each change, one
//! trace with the agent's poll of the server, its status apply, the controller's reconcile as the poll's
//! child and linked to it, and the delete or apply of the SMB Service with the adapter and the server as
//! attributes.

use std::collections::BTreeMap;

use dittofs_api::agent_env;
use dittofs_tests::jaeger::{Jaeger, now_us};
use dittofs_tests::kube_env::ControlPlane;
use dittofs_tests::pod::{Pod, start_controller};
use dittofs_tests::scenario::{NS, SERVER, converge, create_server, set_up};
use serde_json::json;

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries, Jaeger and DittoFS; run `make test`"]
async fn one_trace_holds_the_poll_the_status_apply_the_reconcile_and_the_service_write() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    let dir = tempfile::Builder::new().prefix("dittofs-traces-").tempdir()?;
    let jaeger = Jaeger::start(dir.path()).await?;
    set_up(cp).await?;
    let (mut controller, _) = start_controller(cp, NS, dir.path(), &jaeger.exporter_env())?;
    let client = cp.client();
    create_server(&client).await?;
    let mut pod = Pod::start(cp, NS, SERVER, dir.path()).await?;
    // The agent exports because the controller passed its own OTLP endpoint into the pod template.
    let endpoint = pod.agent_env.iter().find(|(k, _)| k == agent_env::OTEL_EXPORTER_OTLP_ENDPOINT);
    assert_eq!(endpoint.map(|(_, v)| v.as_str()), Some(jaeger.otlp.as_str()), "{:?}", pod.agent_env);

    let nfs = i32::from(pod.fs.adapter_port("nfs").expect("nfs port"));
    let smb = i32::from(pod.fs.adapter_port("smb").expect("smb port"));
    let both: BTreeMap<String, i32> = [("nfs".into(), nfs), ("smb".into(), smb)].into();
    converge(&client, &both).await?;
    let admin = pod.fs.admin().await?;

    let result = async {
        let off = now_us();
        admin.put("/api/v1/adapters/smb", &json!({"enabled": false})).await?.expect_status(200)?;
        converge(&client, &[("nfs".into(), nfs)].into()).await?;
        let closed = jaeger.wait_for_change(SERVER, "smb", "adapter.delete", off).await?;

        let on = now_us();
        admin.put("/api/v1/adapters/smb", &json!({"enabled": true})).await?.expect_status(200)?;
        converge(&client, &both).await?;
        let opened = jaeger.wait_for_change(SERVER, "smb", "adapter.apply", on).await?;
        assert_ne!(closed, opened, "each change has its own trace");
        eprintln!("SMB off: {}\nSMB on:  {}", jaeger.trace_url(&closed), jaeger.trace_url(&opened));
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!(
            "agent:\n{}\ncontroller:\n{}\njaeger:\n{}",
            pod.agent.log_tail(30),
            controller.log_tail(30),
            jaeger.log_tail(20)
        );
    }
    pod.agent.stop();
    controller.stop();
    result
}
