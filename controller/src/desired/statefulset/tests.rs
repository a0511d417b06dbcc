//! Unit tests of the StatefulSet builder: what rolls the pod, the agent's isolation, the hardened defaults.

use super::*;
use crate::config::AgentTelemetry;
use crate::desired::test_support::server;
use k8s_openapi::api::core::v1::{Container, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

/// The controller's defaults of a test: image `agent:1`, no log or OTLP settings of its own.
fn defaults() -> AgentDefaults {
    AgentDefaults { image: "agent:1".into(), telemetry: AgentTelemetry::default() }
}

fn build(extra: serde_json::Value) -> StatefulSet {
    statefulset_for(&server(extra), &defaults(), "hash", None)
}

fn pod(sts: &StatefulSet) -> PodSpec {
    sts.spec.clone().unwrap().template.spec.unwrap()
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn polling_interval_and_adapter_services_do_not_touch_the_template() {
    let base = build(json!({}));
    let edited = build(json!({
        "adapterDiscovery": {"pollingInterval": "5s"},
        "adapterServices": {"type": "NodePort", "annotations": {"x": "y"}, "syncContainerPorts": false}
    }));
    assert_eq!(base, edited);
    // Nor does the generation.
    let mut ds = server(json!({}));
    ds.metadata.generation = Some(99);
    assert_eq!(statefulset_for(&ds, &defaults(), "hash", None), base);
}

#[test]
fn config_hash_covers_config_and_secrets_only() {
    let secrets = BTreeMap::from([("jwt".to_owned(), b"k1".to_vec())]);
    let h = config_hash("a: 1\n", &secrets);
    assert_eq!(h.len(), 64);
    assert_eq!(h, config_hash("a: 1\n", &secrets.clone()));
    assert_ne!(h, config_hash("a: 2\n", &secrets));
    let rotated = BTreeMap::from([("jwt".to_owned(), b"k2".to_vec())]);
    assert_ne!(h, config_hash("a: 1\n", &rotated));
    // Length prefixes: moving bytes between parts changes the hash.
    assert_ne!(config_hash("ab", &BTreeMap::new()), config_hash("a", &BTreeMap::from([("b".to_owned(), vec![])])));
    let sts = build(json!({}));
    let annotations = sts.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION], "hash");
}

#[test]
fn the_server_container_matches_the_go_operator() {
    let sts = build(json!({}));
    let spec = sts.spec.clone().unwrap();
    assert_eq!(spec.service_name.as_deref(), Some("fs-headless"));
    assert_eq!(spec.replicas, Some(1));
    let pod = pod(&sts);
    assert_eq!(pod.termination_grace_period_seconds, Some(105));
    assert_eq!(pod.security_context.as_ref().unwrap().fs_group, Some(65532));
    let dfs = container(&pod, "dittofs");
    assert_eq!(dfs.command.as_ref().unwrap(), &["/app/dfs"]);
    assert_eq!(dfs.args.as_ref().unwrap(), &["start", "--foreground", "--config", "/config/config.yaml"]);
    let env: Vec<_> = dfs.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["DITTOFS_CONTROLPLANE_SECRET", "DITTOFS_ADMIN_INITIAL_PASSWORD"]);
    let jwt = dfs.env.as_ref().unwrap()[0].value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!((jwt.name.as_str(), jwt.key.as_str()), ("fs-jwt-secret", "jwt-secret"));
    let sc = dfs.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(), &["ALL"]);
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let ports: Vec<_> = dfs.ports.as_ref().unwrap().iter().map(|p| p.name.clone().unwrap()).collect();
    assert_eq!(ports, ["api"]);
    let live = dfs.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!((live.path.as_deref(), live.port.clone()), (Some("/health"), IntOrString::Int(8080)));
    let claims: Vec<_> =
        spec.volume_claim_templates.unwrap().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(claims, ["metadata", "controlplane"]);
}

#[test]
fn user_security_context_gets_defaults_back_filled() {
    let sts = build(json!({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "runAsUser": 1000}}));
    let pod = pod(&sts);
    let sc = container(&pod, "dittofs").security_context.clone().unwrap();
    assert_eq!(sc.run_as_user, Some(1000), "the user's explicit value stays");
    assert_eq!(sc.run_as_non_root, Some(true));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.add.unwrap(), ["NET_BIND_SERVICE"]);
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
}

#[test]
fn dittofs_runs_on_a_read_only_root_as_the_images_numeric_user_with_tmp_writable() {
    let pod = pod(&build(json!({})));
    let sc = container(&pod, "dittofs").security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!((sc.run_as_user, sc.run_as_group), (Some(65532), Some(65532)));
    let tmp = container(&pod, "dittofs").volume_mounts.iter().flatten().find(|m| m.mount_path == "/tmp").cloned();
    let tmp = tmp.expect("/tmp mounted");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == tmp.name).expect("its volume");
    assert!(volume.empty_dir.is_some() && tmp.read_only.is_none());
    // The user decides: a pod-wide user wins over the image's, and the root filesystem may be made writable.
    let theirs = pod_spec_of(
        json!({"podSecurityContext": {"runAsUser": 1000}, "securityContext": {"readOnlyRootFilesystem": false}}),
    );
    let sc = container(&theirs, "dittofs").security_context.clone().unwrap();
    assert_eq!((sc.run_as_user, sc.read_only_root_filesystem), (None, Some(false)));
}

#[test]
fn selinux_options_and_sysctls_the_profile_forbids_are_dropped() {
    let pod = pod_spec_of(json!({
        "securityContext": {"seLinuxOptions": {"type": "spc_t"}},
        "podSecurityContext": {"seLinuxOptions": {"user": "system_u", "type": "container_t"},
            "sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]}
    }));
    assert!(container(&pod, "dittofs").security_context.as_ref().unwrap().se_linux_options.is_none());
    let psc = pod.security_context.unwrap();
    assert!(psc.se_linux_options.is_none());
    let names: Vec<_> = psc.sysctls.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["net.ipv4.tcp_syncookies"]);
    let allowed =
        pod_spec_of(json!({"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}}}));
    assert!(container(&allowed, "dittofs").security_context.as_ref().unwrap().se_linux_options.is_some());
}

fn pod_spec_of(extra: serde_json::Value) -> PodSpec {
    pod(&build(extra))
}

#[test]
fn a_privileged_security_context_that_bypassed_the_schema_is_never_run() {
    let sts = build(json!({
        "securityContext": {
            "privileged": true,
            "allowPrivilegeEscalation": true,
            "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE", "NET_RAW"], "drop": ["NET_RAW"]},
            "procMount": "Unmasked",
            "appArmorProfile": {"type": "Unconfined"},
            "runAsUser": 0,
            "runAsNonRoot": false,
            "seccompProfile": {"type": "Unconfined"}
        },
        "podSecurityContext": {"runAsUser": 0, "runAsNonRoot": false, "seccompProfile": {"type": "Unconfined"}, "fsGroup": 2000}
    }));
    let pod = pod(&sts);
    let sc = container(&pod, "dittofs").security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().add.as_deref(), Some(&["NET_BIND_SERVICE".to_owned()][..]));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["NET_RAW".to_owned(), "ALL".to_owned()][..]),
        "theirs stays, ALL is added"
    );
    assert_eq!((sc.run_as_user, sc.run_as_non_root), (None, Some(true)), "never root");
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!((sc.proc_mount, sc.app_armor_profile), (None, None), "an unmasked /proc and no AppArmor: dropped");
    let psc = pod.security_context.unwrap();
    assert_eq!((psc.run_as_user, psc.run_as_non_root, psc.fs_group), (None, Some(true), Some(2000)));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
}

#[test]
fn only_the_agent_gets_the_service_account_token() {
    let pod = pod(&build(json!({})));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name.as_deref(), Some("fs-agent"));
    let token_mounts =
        |c: &Container| c.volume_mounts.iter().flatten().filter(|m| m.mount_path == SA_TOKEN_DIR).count();
    assert_eq!(token_mounts(container(&pod, "dittofs")), 0);
    assert_eq!(token_mounts(container(&pod, "agent")), 1);
    let projected = pod.volumes.unwrap().into_iter().find(|v| v.name == "agent-token").unwrap().projected.unwrap();
    assert_eq!(projected.sources.unwrap().len(), 3);
}

#[test]
fn the_agent_container() {
    let pod1 = pod(&build(json!({"controlPlane": {"port": 9000}})));
    let agent = container(&pod1, "agent");
    assert_eq!(agent.image.as_deref(), Some("agent:1"));
    let env: BTreeMap<_, _> = agent.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(env["DITTOFS_URL"].value.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(env["DITTOSERVER_NAME"].value.as_deref(), Some("fs"));
    let pod_name = env["POD_NAME"].value_from.clone().unwrap().field_ref.unwrap();
    assert_eq!(pod_name.field_path, "metadata.name");
    let file = env["DITTOFS_ADMIN_PASSWORD_FILE"].value.as_deref();
    assert_eq!(file, Some("/var/run/secrets/dittofs/admin/password"));
    assert_eq!(env["DITTOFS_ADMIN_SECRET_NAME"].value.as_deref(), Some("fs-admin-bootstrap-credentials"));
    let sc = agent.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    let limits = agent.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, "64Mi");
    assert_eq!(agent.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().port, IntOrString::Int(8082));

    let pod2 = pod(&build(json!({"agent": {"image": "mine:2", "imagePullPolicy": "Never"},
        "identity": {"admin": {"passwordSecretRef": {"name": "a", "key": "p"}}}})));
    let agent = container(&pod2, "agent");
    assert_eq!(agent.image.as_deref(), Some("mine:2"));
    assert_eq!(agent.image_pull_policy.as_deref(), Some("Never"));
    let secret = admin_password_volume(&pod2).secret.unwrap();
    assert_eq!((secret.secret_name.as_deref(), secret.optional), (Some("a"), None), "the user's Secret is required");
    let item = &secret.items.unwrap()[0];
    assert_eq!((item.key.as_str(), item.path.as_str()), ("p", "password"));
}

fn admin_password_volume(pod: &PodSpec) -> Volume {
    pod.volumes.iter().flatten().find(|v| v.name == "admin-password").cloned().expect("admin-password volume")
}

#[test]
fn the_admin_password_reaches_the_agent_only_as_a_read_only_file() {
    let spec = pod(&build(json!({})));
    // No env of any container carries it but DittoFS's own bootstrap variable (DittoFS reads no file).
    for c in &spec.containers {
        for var in c.env.iter().flatten() {
            let from_secret = var.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref());
            if from_secret.is_some_and(|r| r.name == "fs-admin-bootstrap-credentials") {
                assert_eq!((c.name.as_str(), var.name.as_str()), ("dittofs", "DITTOFS_ADMIN_INITIAL_PASSWORD"));
            }
            assert_ne!(var.name, "DITTOFS_ADMIN_PASSWORD", "container {}", c.name);
        }
    }
    let agent = container(&spec, "agent");
    assert!(agent.env.iter().flatten().all(|v| v.value_from.as_ref().is_none_or(|f| f.secret_key_ref.is_none())));

    // One key of the managed Secret (optional, as the env var was), group-readable through the fsGroup.
    let secret = admin_password_volume(&spec).secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("fs-admin-bootstrap-credentials"));
    let items = secret.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("password", "password"));
    assert_eq!((secret.default_mode, secret.optional), (Some(0o440), Some(true)));
    assert_eq!(spec.security_context.as_ref().unwrap().fs_group, Some(65532));

    // Mounted read-only into the agent only, where its env says the file is.
    let mounts = |c: &Container| -> Vec<VolumeMount> {
        c.volume_mounts.iter().flatten().filter(|m| m.name == "admin-password").cloned().collect()
    };
    assert!(mounts(container(&spec, "dittofs")).is_empty());
    let mount = &mounts(agent)[0];
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/var/run/secrets/dittofs/admin", Some(true)));
    let file = agent.env.iter().flatten().find(|v| v.name == "DITTOFS_ADMIN_PASSWORD_FILE").unwrap();
    assert_eq!(file.value.as_deref(), Some(&*format!("{}/{}", mount.mount_path, items[0].path)));

    // A pod security context without fsGroup leaves the file root:root: world-readable, or the agent
    // (nonroot) could not read it. With the user's own fsGroup, group-readable again.
    let no_group = pod(&build(json!({"podSecurityContext": {"runAsNonRoot": true}})));
    assert_eq!(admin_password_volume(&no_group).secret.unwrap().default_mode, Some(0o444));
    let group = pod(&build(json!({"podSecurityContext": {"fsGroup": 2000}})));
    assert_eq!(admin_password_volume(&group).secret.unwrap().default_mode, Some(0o440));
}

#[test]
fn tls_metrics_content_and_postgres() {
    let sts = build(json!({
        "controlPlane": {"certSecretName": "cert", "clientCASecretName": "ca"},
        "metrics": {"enabled": true, "bearerTokenSecret": {"name": "t", "key": "tok"}},
        "storage": {"metadataSize": "1Gi", "contentSize": "5Gi"},
        "database": {"postgresSecretRef": {"name": "pg", "key": "ignored"}}
    }));
    let pod = pod(&sts);
    let dfs = container(&pod, "dittofs");
    let mounts: Vec<_> = dfs.volume_mounts.iter().flatten().map(|m| m.mount_path.as_str()).collect();
    for path in ["/tls", "/tls-client-ca", "/metrics-token", "/data/store/block"] {
        assert!(mounts.contains(&path), "{path} in {mounts:?}");
    }
    // mTLS: TCP probes (the kubelet has no client certificate); the agent dials https.
    for probe in [&dfs.liveness_probe, &dfs.readiness_probe, &dfs.startup_probe] {
        let probe = probe.as_ref().unwrap();
        assert!(probe.tcp_socket.is_some() && probe.http_get.is_none(), "{probe:?}");
    }
    let agent = container(&pod, "agent");
    assert!(agent.env.as_ref().unwrap()[3].value.as_deref().unwrap().starts_with("https://"));
    let env: Vec<_> = dfs.env.as_ref().unwrap().iter().map(|e| e.name.clone()).collect();
    assert!(env.contains(&"DITTOFS_DATABASE_POSTGRES_HOST".to_owned()));
    let ports: Vec<_> = dfs.ports.as_ref().unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, [8080, 9090]);
}

/// The agent's env value of `name` in a pod.
fn env_of(pod: &PodSpec, name: &str) -> Option<String> {
    container(pod, "agent").env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
}

fn probe_schemes(pod: &PodSpec) -> Vec<Option<String>> {
    let dfs = container(pod, "dittofs");
    [&dfs.liveness_probe, &dfs.readiness_probe, &dfs.startup_probe]
        .map(|p| p.as_ref().unwrap().http_get.as_ref().and_then(|h| h.scheme.clone()))
        .to_vec()
}

#[test]
fn with_tls_terminated_in_front_dittofs_serves_http_and_is_probed_and_polled_so() {
    let pod = pod(&build(json!({"controlPlane": {"tls": true}})));
    assert_eq!(probe_schemes(&pod), vec![Some("HTTP".to_owned()); 3]);
    assert_eq!(env_of(&pod, "DITTOFS_URL").as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(env_of(&pod, "DITTOFS_TLS_CA_FILE"), None);
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "agent-tls"));
}

#[test]
fn with_native_tls_the_agent_alone_gets_the_ca_and_checks_the_api_service_name() {
    let pod = pod(&build(json!({"controlPlane": {"certSecretName": "cert"}})));
    assert_eq!(probe_schemes(&pod), vec![Some("HTTPS".to_owned()); 3]);
    assert_eq!(env_of(&pod, "DITTOFS_URL").as_deref(), Some("https://127.0.0.1:8080"));
    let ca = "/var/run/secrets/dittofs/tls/ca.crt";
    assert_eq!(env_of(&pod, "DITTOFS_TLS_CA_FILE").as_deref(), Some(ca));
    assert_eq!(env_of(&pod, "DITTOFS_TLS_SERVER_NAME").as_deref(), Some("fs-api.ns.svc"));
    assert_eq!(env_of(&pod, "DITTOFS_TLS_CLIENT_CERT_FILE"), None, "no client certificate without mutual TLS");

    let volume = pod.volumes.iter().flatten().find(|v| v.name == "agent-tls").expect("agent-tls volume");
    let secret = volume.secret.as_ref().unwrap();
    let keys: Vec<_> = secret.items.iter().flatten().map(|i| (i.key.as_str(), i.path.as_str())).collect();
    assert_eq!((secret.secret_name.as_deref(), keys), (Some("cert"), vec![("ca.crt", "ca.crt")]));
    assert_eq!((secret.optional, secret.default_mode), (Some(true), Some(0o440)));
    let mounted_by = |c: &Container| c.volume_mounts.iter().flatten().find(|m| m.name == "agent-tls").cloned();
    let mount = mounted_by(container(&pod, "agent")).expect("mounted into the agent");
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/var/run/secrets/dittofs/tls", Some(true)));
    assert!(mounted_by(container(&pod, "dittofs")).is_none(), "DittoFS has its own /tls");
}

#[test]
fn under_mutual_tls_the_agent_presents_the_cert_secrets_own_certificate() {
    let pod = pod(&build(json!({"controlPlane": {"certSecretName": "cert", "clientCASecretName": "ca"}})));
    let dir = "/var/run/secrets/dittofs/tls";
    assert_eq!(env_of(&pod, "DITTOFS_TLS_CLIENT_CERT_FILE"), Some(format!("{dir}/tls.crt")));
    assert_eq!(env_of(&pod, "DITTOFS_TLS_CLIENT_KEY_FILE"), Some(format!("{dir}/tls.key")));
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "agent-tls").unwrap();
    let keys: Vec<_> = volume.secret.as_ref().unwrap().items.iter().flatten().map(|i| i.key.clone()).collect();
    assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(probe_schemes(&pod), vec![None; 3], "TCP probes");
}

#[test]
fn live_claim_templates_are_kept_when_the_spec_changes_them() {
    let old = build(json!({}));
    let resized =
        statefulset_for(&server(json!({"storage": {"metadataSize": "50Gi"}})), &defaults(), "hash", Some(&old));
    assert_eq!(resized.spec.unwrap().volume_claim_templates, old.spec.clone().unwrap().volume_claim_templates);
    let same = statefulset_for(&server(json!({})), &defaults(), "hash", Some(&old));
    assert_eq!(same, old);

    // The content volume follows the claims in use: added later, it is not mounted without its claim (the
    // apiserver would refuse the StatefulSet for good); removed later, the kept claim stays mounted.
    let content_mounted = |sts: &StatefulSet| {
        let pod = pod(sts);
        container(&pod, "dittofs").volume_mounts.iter().flatten().any(|m| m.name == names::CONTENT_VOLUME)
    };
    let with_content = server(json!({"storage": {"metadataSize": "1Gi", "contentSize": "50Gi"}}));
    assert!(content_mounted(&statefulset_for(&with_content, &defaults(), "hash", None)));
    assert!(!content_mounted(&statefulset_for(&with_content, &defaults(), "hash", Some(&old))));
    let had_content = statefulset_for(&with_content, &defaults(), "hash", None);
    assert!(content_mounted(&statefulset_for(&server(json!({})), &defaults(), "hash", Some(&had_content))));
    assert!(!content_mounted(&old));
}

#[test]
fn the_agent_alone_gets_the_controllers_log_and_otel_settings_after_its_own_env() {
    let mut defaults = defaults();
    defaults.telemetry.log_filter = Some("debug".into());
    defaults.telemetry.otel.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://collector:4318".into());
    let ds = server(json!({"agent": {"logFormat": "plain"}}));
    let sts = statefulset_for(&ds, &defaults, "hash", None);
    let pod = pod(&sts);
    let names = |c: &Container| c.env.iter().flatten().map(|e| e.name.clone()).collect::<Vec<_>>();
    let agent = names(container(&pod, "agent"));
    assert_eq!(agent[..4], ["POD_NAME", "POD_NAMESPACE", "DITTOSERVER_NAME", "DITTOFS_URL"]);
    assert_eq!(agent[agent.len() - 3..], ["LOG_FORMAT", "RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT"]);
    assert_eq!(value_of(&sts, "LOG_FORMAT").as_deref(), Some("plain"), "spec.agent.logFormat wins");
    assert_eq!(value_of(&sts, "RUST_LOG").as_deref(), Some("debug"));
    assert!(names(container(&pod, "dittofs")).iter().all(|n| !n.starts_with("OTEL_") && n != "RUST_LOG"));
    assert_eq!(statefulset_for(&ds, &defaults.clone(), "hash", None), sts, "same inputs, same object");
    // Without the controller's settings: the env the agent always had.
    assert_eq!(value_of(&build(json!({})), "LOG_FORMAT").as_deref(), Some("json"));
    assert_eq!(value_of(&build(json!({})), "RUST_LOG"), None);
}

fn value_of(sts: &StatefulSet, name: &str) -> Option<String> {
    let pod = pod(sts);
    container(&pod, "agent").env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.clone())
}
