//! LDAP and Kerberos: on the real apiserver, the `ldap` and `kerberos` blocks the controller renders, the
//! Secrets it mounts (DittoFS container only), a change rolling the pod once and a removal removing what was
//! added; against the real DittoFS (`real_only_…`, with `DITTOFS_BIN`), DittoFS started from the rendered
//! config binds to a real slapd with the password from the env, and loads the keytab from the mounted path.
//! The emulator does not implement LDAP or Kerberos: without `DITTOFS_BIN` `make test` filters the
//! `real_only_…` tests out (counted as such), and run anyway they fail saying so — never a pass unchecked.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_api::{DittoServer, DittoServerSpec, conditions};
use dittofs_controller::desired::config::render;
use dittofs_controller::desired::identity::LDAP_BIND_PASSWORD_ENV;
use dittofs_tests::controller_world::started;
use dittofs_tests::dittofs::{DittoFs, Flavor, Options};
use dittofs_tests::kerberos;
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};
use dittofs_tests::ldap::{BASE_DN, Slapd, USER_DN, USER_PASSWORD};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(30);

async fn secret(ns: &TempNamespace<'_>, name: &str, data: &[(&str, &[u8])]) -> anyhow::Result<()> {
    let data: BTreeMap<String, ByteString> =
        data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec()))).collect();
    let body = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data),
        ..Default::default()
    };
    ns.api::<Secret>().create(&PostParams::default(), &body).await?;
    Ok(())
}

fn identity() -> Value {
    json!({
        "ldap": {"enabled": true, "url": "ldaps://dc.example.com:636", "baseDN": "DC=example,DC=com",
            "bindDN": "CN=svc,DC=example,DC=com", "bindPasswordSecretRef": {"name": "ldap-bind", "key": "password"},
            "userAttr": "sAMAccountName", "idmap": "rid"},
        "kerberos": {"enabled": true, "servicePrincipal": kerberos::SERVICE_PRINCIPAL,
            "keytabSecretRef": {"name": "kt", "key": "keytab"}, "krb5ConfSecretRef": {"name": "krb", "key": "krb5.conf"}}
    })
}

fn server_container(sts: &StatefulSet, name: &str) -> Container {
    let pod = sts.spec.clone().unwrap().template.spec.unwrap();
    pod.containers.into_iter().find(|c| c.name == name).unwrap()
}

fn mounts(c: &Container) -> Vec<String> {
    c.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()).collect()
}

fn env_names(c: &Container) -> Vec<String> {
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

/// Waits until the controller has applied a StatefulSet whose DittoFS container satisfies `check`.
async fn wait_sts(
    ns: &TempNamespace<'_>,
    what: &str,
    check: impl Fn(&Container) -> bool,
) -> anyhow::Result<StatefulSet> {
    let api: Api<StatefulSet> = ns.api();
    wait_until(what, WAIT, async || {
        let sts = api.get(CR).await?;
        anyhow::ensure!(check(&server_container(&sts, "dittofs")), "not yet");
        Ok(sts)
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn ldap_and_kerberos_are_rendered_mounted_into_dittofs_only_and_roll_the_pod_once() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-identity", async |ns| {
            secret(ns, "ldap-bind", &[("password", b"bind-pw")]).await?;
            secret(ns, "kt", &[("keytab", &kerberos::keytab(kerberos::SERVICE_PRINCIPAL, 2))]).await?;
            secret(ns, "krb", &[("krb5.conf", kerberos::krb5_conf().as_bytes())]).await?;
            let spec = json!({"storage": {"metadataSize": "1Gi"}, "identity": identity()});
            let (running, servers) = started(ns, CR, spec).await?;
            let ds = servers.get(CR).await?;
            let supported = ds
                .status
                .clone()
                .unwrap()
                .conditions
                .into_iter()
                .find(|c| c.type_ == conditions::SPEC_SUPPORTED)
                .unwrap();
            assert_eq!(supported.status, "True", "{}", supported.message);

            // The ConfigMap holds exactly the rendered config, with both blocks.
            let cm = ns.api::<ConfigMap>().get("fs-config").await?;
            let text = cm.data.unwrap()["config.yaml"].clone();
            assert_eq!(text, render(&ds.spec));
            let config: Value = serde_saphyr::from_str(&text)?;
            assert_eq!(config["ldap"]["bind_dn"], "CN=svc,DC=example,DC=com");
            assert_eq!(config["ldap"]["idmap"], "rid");
            assert!(config["ldap"].get("bind_password").is_none(), "no password in the ConfigMap");
            assert_eq!(config["kerberos"]["keytab_path"], "/kerberos/dittofs.keytab");
            assert_eq!(config["kerberos"]["krb5_conf"], "/kerberos-krb5/krb5.conf");

            // Mounted and passed into the DittoFS container only.
            let sts = wait_sts(ns, "the Kerberos mounts", |c| mounts(c).contains(&"/kerberos".to_owned())).await?;
            let dfs = server_container(&sts, "dittofs");
            assert!(mounts(&dfs).contains(&"/kerberos-krb5".to_owned()));
            assert!(env_names(&dfs).contains(&LDAP_BIND_PASSWORD_ENV.to_owned()));
            let agent = server_container(&sts, "agent");
            assert!(!mounts(&agent).iter().any(|m| m.starts_with("/kerberos")), "{:?}", mounts(&agent));
            assert!(
                !env_names(&agent).iter().any(|e| e.starts_with("DITTOFS_LDAP") || e.starts_with("DITTOFS_KERBEROS"))
            );
            let volumes = sts.spec.clone().unwrap().template.spec.unwrap().volumes.unwrap();
            let keytab = volumes.iter().find(|v| v.name == "kerberos-keytab").unwrap().secret.clone().unwrap();
            assert_eq!(keytab.default_mode, Some(0o440));
            assert_eq!(keytab.items.unwrap()[0].path, "dittofs.keytab");

            // A change rolls the pod once: one new template, and the controller goes quiet.
            let generation = |s: &StatefulSet| s.metadata.generation.unwrap_or_default();
            let before = generation(&sts);
            let patch = json!({"spec": {"identity": {"kerberos": {"realm": "DITTOFS.TEST"}}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            let cms: Api<ConfigMap> = ns.api();
            wait_until("the realm in the config", WAIT, async || {
                let text = cms.get("fs-config").await?.data.unwrap()["config.yaml"].clone();
                anyhow::ensure!(text.contains("realm: DITTOFS.TEST"), "not yet");
                Ok(())
            })
            .await?;
            running.settle(Duration::from_secs(1)).await?;
            let sts = ns.api::<StatefulSet>().get(CR).await?;
            assert_eq!(generation(&sts), before + 1, "one template change");

            // Removing the block removes what it added (the LDAP one stays).
            let patch = json!({"spec": {"identity": {"kerberos": null}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            let sts =
                wait_sts(ns, "the Kerberos mounts gone", |c| !mounts(c).iter().any(|m| m.starts_with("/kerberos")))
                    .await?;
            let volumes = sts.spec.clone().unwrap().template.spec.unwrap().volumes.unwrap();
            assert!(!volumes.iter().any(|v| v.name.starts_with("kerberos")), "{volumes:?}");
            let text = cms.get("fs-config").await?.data.unwrap()["config.yaml"].clone();
            assert!(!text.contains("kerberos:") && text.contains("ldap:"), "{text}");
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn kerberos_and_ldap_without_what_dittofs_needs_are_refused_naming_the_field() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-identity-refused", async |ns| {
            install_crd(ns.client()).await?;
            let api: Api<DittoServer> = ns.api();
            let cases = [
                (json!({"kerberos": {"enabled": true, "keytabSecretRef": {"name": "kt", "key": "k"}}}), "kerberos.servicePrincipal"),
                (json!({"kerberos": {"enabled": true, "servicePrincipal": "nfs/h@R"}}), "kerberos.keytabSecretRef"),
                (json!({"kerberos": {"enabled": true, "servicePrincipal": "nfs/h@R", "keytabSecretRef": {"name": "kt", "key": "k"},
                    "machineAccount": {"enabled": true, "accountName": "X$"}}}), "machineAccount.secretRef"),
                (json!({"ldap": {"enabled": true, "url": "ldap://dc:389", "baseDN": "b", "bindDN": "d",
                    "bindPasswordSecretRef": {"name": "s", "key": "k"}}}), "ldap.startTLS"),
                (json!({"ldap": {"enabled": true, "url": "ldaps://dc", "baseDN": "b", "bindDN": "d"}}), "ldap.bindPasswordSecretRef"),
                (json!({"ldap": {"url": "http://dc", "baseDN": "b", "bindDN": "d"}}), "ldap:// or ldaps://"),
            ];
            for (i, (identity, named)) in cases.into_iter().enumerate() {
                let spec: DittoServerSpec = serde_json::from_value(json!({"storage": {"metadataSize": "1Gi"}, "identity": identity}))?;
                let refused = api.create(&PostParams::default(), &DittoServer::new(&format!("bad{i}"), spec)).await;
                let message = match refused {
                    Err(kube::Error::Api(s)) => s.message,
                    other => anyhow::bail!("case {i} was not refused: {other:?}"),
                };
                assert!(message.contains(named), "case {i}: {message}");
            }
            Ok(())
        })
        .await
}

/// Fails in the emulator's tier: LDAP and Kerberos exist only in the real DittoFS.
fn require_real() -> anyhow::Result<()> {
    anyhow::ensure!(
        Flavor::from_env()?.is_real(),
        "real-DittoFS only (the emulator does not implement LDAP or Kerberos): set DITTOFS_BIN, or `make test` filters it out"
    );
    Ok(())
}

fn ldap_spec(url: &str) -> DittoServerSpec {
    serde_json::from_value(
        json!({"storage": {"metadataSize": "1Gi"}, "identity": {"ldap": {"enabled": true, "url": url,
        "allowPlaintext": true, "baseDN": BASE_DN, "bindDN": USER_DN, "userAttr": "uid",
        "bindPasswordSecretRef": {"name": "ldap-bind", "key": "password"}}}}),
    )
    .expect("valid spec")
}

#[tokio::test]
#[ignore = "real-server tier: needs DittoFS (DITTOFS_BIN) and slapd; run `make test`"]
async fn real_only_dittofs_binds_to_slapd_from_the_rendered_ldap_block() -> anyhow::Result<()> {
    require_real()?;
    let slapd = Slapd::start().await?;
    let yaml = render(&ldap_spec(&slapd.url));
    for (password, binds) in [(USER_PASSWORD, true), ("not-alices-password", false)] {
        let env = [(LDAP_BIND_PASSWORD_ENV.to_owned(), password.to_owned())].into();
        let fs = DittoFs::start(Options { config_yaml: Some(yaml.clone()), env, ..Options::default() }).await?;
        let admin = fs.admin().await?;
        // DittoFS took the block from the rendered file (and the password from the env) into its store…
        let stored = admin.get("/api/v1/identity-providers/ldap/config").await?.expect_status(200)?.json()?;
        assert_eq!(stored["url"], slapd.url.as_str());
        assert_eq!(stored["bind_dn"], USER_DN);
        assert!(stored["bind_password"].as_str().is_some_and(|p| !p.is_empty()), "the env password reached DittoFS");
        // …and binds to slapd with it (the redacted password in the body means "the stored one").
        let tested = admin.post("/api/v1/identity-providers/ldap/test", &stored).await?.expect_status(200)?.json()?;
        assert_eq!(tested["ok"], binds, "{tested}\n{}", slapd.log_tail());
        eprintln!("bind with the {} password: {tested}", if binds { "right" } else { "wrong" });
    }
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs DittoFS (DITTOFS_BIN); run `make test`"]
async fn real_only_dittofs_loads_the_keytab_from_the_rendered_kerberos_block() -> anyhow::Result<()> {
    require_real()?;
    let spec: DittoServerSpec =
        serde_json::from_value(json!({"storage": {"metadataSize": "1Gi"}, "identity": identity()}))?;
    // The kubelet's part: the Secrets' files where the pod template mounts them.
    let mounts = tempfile::tempdir()?;
    let (keytab_dir, krb5_dir) = (mounts.path().join("kerberos"), mounts.path().join("kerberos-krb5"));
    std::fs::create_dir_all(&keytab_dir)?;
    std::fs::create_dir_all(&krb5_dir)?;
    std::fs::write(keytab_dir.join("dittofs.keytab"), kerberos::keytab(kerberos::SERVICE_PRINCIPAL, 2))?;
    std::fs::write(krb5_dir.join("krb5.conf"), kerberos::krb5_conf())?;
    let yaml = render(&spec)
        .replace("/kerberos-krb5/", &format!("{}/", krb5_dir.display()))
        .replace("/kerberos/", &format!("{}/", keytab_dir.display()));
    let env = [(LDAP_BIND_PASSWORD_ENV.to_owned(), "unused".to_owned())].into();
    let fs = DittoFs::start(Options { config_yaml: Some(yaml), env, ..Options::default() }).await?;
    let admin = fs.admin().await?;
    let stored = admin.get("/api/v1/identity-providers/kerberos/config").await?.expect_status(200)?.json()?;
    assert_eq!(stored["enabled"], true, "{stored}");
    assert_eq!(stored["service_principal"], kerberos::SERVICE_PRINCIPAL);
    let tested = admin.post("/api/v1/identity-providers/kerberos/test", &stored).await?.expect_status(200)?.json()?;
    assert_eq!(tested["ok"], true, "{tested}");
    eprintln!("kerberos: {tested}");
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn a_missing_ldap_secret_or_key_holds_the_statefulset_and_says_which() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-identity-missing", async |ns| {
            install_crd(ns.client()).await?;
            let running = dittofs_tests::controller_world::start_controller(ns.client(), ns.name());
            let identity = json!({"ldap": {"enabled": true, "url": "ldaps://dc:636", "baseDN": "b", "bindDN": "d",
                "bindPasswordSecretRef": {"name": "ldap-bind", "key": "password"}}});
            create_server(ns, &server(CR, json!({"storage": {"metadataSize": "1Gi"}, "identity": identity}))?).await?;
            let servers: Api<DittoServer> = ns.api();
            let statefulsets: Api<StatefulSet> = ns.api();
            let config_ready = async |want: &str| -> anyhow::Result<String> {
                let ds = wait_for_condition(&servers, CR, conditions::CONFIG_READY, "False", WAIT).await?;
                let c =
                    ds.status.unwrap().conditions.into_iter().find(|c| c.type_ == conditions::CONFIG_READY).unwrap();
                anyhow::ensure!(c.reason == conditions::reasons::SECRET_MISSING, "{c:?}");
                anyhow::ensure!(c.message.contains(want), "{}", c.message);
                Ok(c.message)
            };
            wait_until("ConfigReady naming the missing Secret", WAIT, async || {
                config_ready("Secret ldap-bind does not exist").await
            })
            .await?;
            // Another reconcile (a change of the server) changes nothing: no StatefulSet, one Warning.
            let touch = |n: u32| json!({"metadata": {"annotations": {"touch": n.to_string()}}});
            let before = running.controller.metrics().total_reconciles();
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch(0))).await?;
            running.wait_reconciles("another reconcile", None, before).await?;
            assert!(statefulsets.get_opt(CR).await?.is_none(), "no pod template naming a Secret that does not exist");
            let warned = wait_reason(ns.client(), ns.name(), CR, "SecretMissing").await?;
            assert_eq!(warned.len(), 1, "{warned:?}");
            assert!(warned[0].series.is_none(), "not repeated");

            // The Secret without the key: named; then with it: the StatefulSet comes (the controller looks again
            // on a change of the server; Secrets are not watched).
            secret(ns, "ldap-bind", &[("pw", b"x")]).await?;
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch(1))).await?;
            wait_until("ConfigReady naming the missing key", WAIT, async || {
                config_ready("Secret ldap-bind has no key password").await
            })
            .await?;
            let secrets: Api<Secret> = ns.api();
            let data = json!({"data": {"password": "cHc="}});
            secrets.patch("ldap-bind", &PatchParams::default(), &Patch::Merge(&data)).await?;
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch(2))).await?;
            wait_for_condition(&servers, CR, conditions::CONFIG_READY, "True", WAIT).await?;
            wait_sts(ns, "the StatefulSet with the bind password", |c| {
                env_names(c).contains(&LDAP_BIND_PASSWORD_ENV.to_owned())
            })
            .await?;
            running.stop().await
        })
        .await
}
