//! The agent against a DittoFS serving TLS (the emulator, or the real server with `DITTOFS_BIN`: the TLS
//! block goes through DittoFS's own `controlplane.tls` config) and a real apiserver: a CA-signed certificate
//! for `<cr>-api.<ns>.svc` is trusted on loopback; a certificate of another CA, an expired one and one for
//! another name are each refused with their own reason in the status entry while the adapters already
//! reported stay; mutual TLS works with the cert Secret's own certificate and is refused without one; the
//! agent re-reads its own files after a failure (a rotated Secret), and DittoFS its certificate.

use std::time::Duration;

use dittofs_api::crd::AgentStatus;
use dittofs_tests::{
    agent_world::{Rig, SERVER, adapter},
    dittofs::Options,
    kube_env::{ControlPlane, wait_until},
    tls::{Ca, HarnessTls, Validity, api_service_name, is_tls_failure},
};
use serde_json::json;

fn tls_options(ca: &Ca, ns: &str, mutual: bool) -> anyhow::Result<Options> {
    let tls = HarnessTls::new(ca, &api_service_name(SERVER, ns), mutual)?;
    Ok(Options { tls: Some(tls), ..Options::default() })
}

/// Type, port and flags of each reported adapter: what the controller exposes.
fn exposed(entry: &AgentStatus) -> Vec<(String, i32, bool, bool)> {
    entry.adapters.iter().map(|a| (a.r#type.clone(), a.port, a.enabled, a.running)).collect()
}

/// The reachability reason of an entry, and whether it says reachable.
fn reach(entry: &AgentStatus) -> (bool, String) {
    let r = entry.reachability.as_ref();
    (r.is_some_and(|r| r.reachable), r.map(|r| r.reason.clone()).unwrap_or_default())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn a_ca_signed_certificate_for_the_api_service_is_trusted_on_loopback() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-tls", async |ns| {
            let ca = Ca::new("dittofs-test-ca")?;
            let (rig, entry) = Rig::in_sync(ns, tls_options(&ca, ns.name(), false)?, "30s").await?;
            assert!(rig.fs.url().starts_with("https://127.0.0.1:"), "{}", rig.fs.url());
            assert_eq!(reach(&entry), (true, "Reachable".to_owned()));
            assert!(entry.auth.as_ref().is_some_and(|a| a.authenticated), "{entry:?}");
            assert_eq!(entry.adapters.len(), 2, "{entry:?}");

            // The fast path works over TLS too: a toggle reaches the status.
            rig.put_adapter("smb", json!({ "enabled": false })).await?;
            rig.wait_adapter("smb reported disabled over TLS", Duration::from_secs(10), "smb", |smb| {
                anyhow::ensure!(!smb.enabled && !smb.running, "smb still on");
                Ok(())
            })
            .await?;
            rig.assert_agent_running();

            // DittoFS re-reads its certificate when the files change, without a restart: a new
            // connection gets the new one (here an expired one, which the harness refuses too).
            rig.fs.replace_certificate(&ca.issue(&[&api_service_name(SERVER, ns.name())], Validity::Expired)?)?;
            wait_until("a new handshake to get the replaced certificate", Duration::from_secs(10), async || match rig
                .fs
                .api()
                .get("/health")
                .await
            {
                Err(e) if is_tls_failure(&e) => Ok(()),
                other => anyhow::bail!("{other:?}"),
            })
            .await?;
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn the_agent_rereads_its_tls_files_after_a_failure_as_a_rotated_secret_updates_them() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-tls-files", async |ns| {
            let ca = Ca::new("dittofs-test-ca")?;
            let mut rig = Rig::new(ns, tls_options(&ca, ns.name(), false)?, "30s").await?;
            let config = rig.config();
            let ca_file = config.tls.as_ref().expect("TLS").ca_file.clone();

            // The optional volume without ca.crt: reported, not a crash.
            std::fs::remove_file(&ca_file)?;
            rig.start_agent(config);
            let wait_reason = |reason: &'static str| {
                let rig = &rig;
                async move {
                    rig.wait_entry(&format!("reason {reason}"), Duration::from_secs(20), |e| {
                        anyhow::ensure!(reach(e) == (false, reason.to_owned()), "{:?}", reach(e));
                        Ok(())
                    })
                    .await
                }
            };
            wait_reason("TLSFilesUnusable").await?;
            // The kubelet writes a ca.crt of another CA: read at the next request, and refused.
            std::fs::write(&ca_file, Ca::new("another-ca")?.pem)?;
            wait_reason("TLSUntrusted").await?;
            // The right CA lands in the same file: trusted without a restart of the agent.
            std::fs::write(&ca_file, &ca.pem)?;
            rig.wait_in_sync(Duration::from_secs(20)).await?;
            rig.assert_agent_running();
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn certificates_the_agent_cannot_verify_are_refused_by_reason_and_keep_the_adapters() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-tls-refused", async |ns| {
            let ca = Ca::new("dittofs-test-ca")?;
            let name = api_service_name(SERVER, ns.name());
            let (mut rig, entry) = Rig::in_sync(ns, tls_options(&ca, ns.name(), false)?, "30s").await?;
            let before = exposed(&entry);
            let good = rig.fs.tls().expect("TLS").server.cert.clone();

            let other_name = api_service_name("other", ns.name());
            let cases = [
                (
                    "another CA's certificate",
                    Ca::new("another-ca")?.issue(&[&name], Validity::Current)?,
                    "TLSUntrusted",
                ),
                ("an expired certificate", ca.issue(&[&name], Validity::Expired)?, "TLSExpired"),
                ("a certificate for another name", ca.issue(&[&other_name], Validity::Current)?, "TLSNameMismatch"),
            ];
            for (what, cert, reason) in cases {
                // A restart closes the agent's pooled connection, so its next request makes a handshake.
                rig.fs.stop().await?;
                rig.fs.replace_certificate(&cert)?;
                rig.fs.start_again().await?;
                let (entry, _) = rig
                    .wait_entry(&format!("{what} refused with {reason}"), Duration::from_secs(20), |e| {
                        anyhow::ensure!(reach(e) == (false, reason.to_owned()), "{:?}", reach(e));
                        Ok(e.clone())
                    })
                    .await?;
                assert_eq!(exposed(&entry), before, "{what}: the reported adapters are kept");
                let message = entry.reachability.and_then(|r| r.message).unwrap_or_default();
                assert!(message.starts_with("TLS: "), "{what}: {message}");
                rig.assert_agent_running();

                // Back to the good certificate: trusted again, nothing to re-provision.
                rig.fs.stop().await?;
                rig.fs.replace_certificate(&good)?;
                rig.fs.start_again().await?;
                let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
                assert_eq!(exposed(&entry), before);
            }
            Ok(())
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and DittoFS; run `make test`"]
async fn mutual_tls_works_with_the_cert_secrets_certificate_and_is_refused_without_one() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("agent-mtls", async |ns| {
            let ca = Ca::new("dittofs-test-ca")?;
            let mut rig = Rig::new(ns, tls_options(&ca, ns.name(), true)?, "30s").await?;

            // No client certificate: DittoFS refuses the handshake, and the agent says why.
            let mut without = rig.config();
            without.tls.as_mut().expect("TLS").client_identity = None;
            rig.start_agent(without);
            rig.wait_entry("a refusal for want of a client certificate", Duration::from_secs(20), |e| {
                anyhow::ensure!(reach(e) == (false, "TLSClientCertRejected".to_owned()), "{:?}", reach(e));
                anyhow::ensure!(e.adapters.is_empty(), "nothing is claimed before DittoFS was heard");
                Ok(())
            })
            .await?;
            rig.stop_agent().await?;

            // The cert Secret's own certificate (server and client auth, from the client CA): in sync.
            rig.start_agent(rig.config());
            let entry = rig.wait_in_sync(Duration::from_secs(20)).await?;
            assert!(adapter(&entry, "nfs").is_some_and(|nfs| nfs.running), "{entry:?}");
            assert_eq!(reach(&entry), (true, "Reachable".to_owned()));
            Ok(())
        })
        .await
}
