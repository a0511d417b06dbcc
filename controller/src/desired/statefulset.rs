//! The StatefulSet `<cr>`: DittoFS plus the agent container, volumes, probes, hardened security contexts.
//!
//! What rolls the pod: only what DittoFS or the agent reads at start-up (image, config hash, env,
//! mounts, resources, ports in this body). `pollingInterval` and `adapterServices` are read by the
//! agent and the controller from the `DittoServer` itself and never reach the template, and the config
//! hash covers the rendered config plus the Secret data DittoFS consumes, not the generation.
//! Container ports named `adapter-*` are never in this body: another field manager owns them, and
//! server-side apply leaves fields a body omits alone when someone else owns them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, TCPSocketAction, Volume, VolumeMount,
    VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use dittofs_api::crd::SecretKeyRef;
use dittofs_api::labels::{CONFIG_HASH_ANNOTATION, selector_labels, server_labels};
use dittofs_api::{DittoServer, agent_env, names};

use super::child_meta;
use super::config::{
    CONFIG_DIR, CONFIG_PATH, METRICS_TOKEN_DIR, TLS_CLIENT_CA_DIR, TLS_DIR, cert_secret, client_ca_secret, metrics,
    uses_postgres,
};
use super::secrets::{admin_password_ref, admin_username, jwt_ref, user_admin_ref};

/// Where the agent container finds its ServiceAccount token (the in-cluster client's default path).
pub const SA_TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Name of the agent's admin container port.
pub const AGENT_ADMIN_PORT_NAME: &str = "agent-admin";
/// UID/GID of the non-root user the pods run as (distroless `nonroot`, as the Go operator's fsGroup).
pub const NONROOT_ID: i64 = 65532;
/// Lifetime asked for the agent's projected token (the kubelet refreshes it at 80%).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

const AGENT_TOKEN_VOLUME: &str = "agent-token";
const CONFIG_VOLUME: &str = "config";
const TLS_VOLUME: &str = "tls-cert";
const TLS_CLIENT_CA_VOLUME: &str = "tls-client-ca";
const METRICS_TOKEN_VOLUME: &str = "metrics-token";

/// The keys of the PostgreSQL Secret DittoFS reads, as env var suffix and whether required (Go-compatible fixed keys).
pub const POSTGRES_KEYS: [(&str, bool); 6] =
    [("host", true), ("database", true), ("user", true), ("password", true), ("port", false), ("sslmode", false)];

/// The agent image: `spec.agent.image` if set, else the controller's `--agent-image`.
pub fn agent_image<'a>(ds: &'a DittoServer, default_image: &'a str) -> &'a str {
    ds.spec.agent.as_ref().and_then(|a| a.image.as_deref()).unwrap_or(default_image)
}

/// `dittofs.io/config-hash`: SHA-256 over the rendered config and the Secret data DittoFS consumes
/// (name-sorted, length-prefixed so no two inputs collide). Not the generation: editing a field the
/// pod does not read must not roll it.
pub fn config_hash(config: &str, secret_data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(config.as_bytes());
    for (name, value) in secret_data {
        part(name.as_bytes());
        part(value);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The StatefulSet. `live` is the current object, if any: its volume claim templates are kept when
/// they differ from the spec, since Kubernetes refuses to change them (the Go operator failed forever).
pub fn statefulset(
    ds: &DittoServer,
    default_agent_image: &str,
    config_hash: &str,
    live: Option<&StatefulSet>,
) -> StatefulSet {
    let cr = ds.name_any();
    let desired_claims = volume_claim_templates(ds);
    let claims = match live_claims(live) {
        Some(live) if !same_claims(&live, &desired_claims) => live,
        _ => desired_claims,
    };
    StatefulSet {
        metadata: child_meta(ds, names::statefulset(&cr), server_labels(&cr)),
        spec: Some(StatefulSetSpec {
            replicas: Some(ds.spec.replicas),
            service_name: Some(names::headless_service(&cr)),
            selector: LabelSelector { match_labels: Some(selector_labels(&cr)), match_expressions: None },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(server_labels(&cr)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned())])),
                    ..Default::default()
                }),
                spec: Some(pod_spec(ds, agent_image(ds, default_agent_image))),
            },
            volume_claim_templates: Some(claims),
            ..Default::default()
        }),
        status: None,
    }
}

/// The claim templates the spec asks for: metadata, content (optional), controlplane.
pub fn volume_claim_templates(ds: &DittoServer) -> Vec<PersistentVolumeClaim> {
    let storage = &ds.spec.storage;
    let claim = |name: &str, size: &str| PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.into()))])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    };
    let mut claims = vec![claim(names::METADATA_VOLUME, &storage.metadata_size)];
    if let Some(content) = &storage.content_size {
        claims.push(claim(names::CONTENT_VOLUME, content));
    }
    claims.push(claim(names::CONTROL_PLANE_VOLUME, &storage.control_plane_size));
    claims
}

/// The live claim templates (without the status the apiserver adds), if the StatefulSet exists.
fn live_claims(live: Option<&StatefulSet>) -> Option<Vec<PersistentVolumeClaim>> {
    let claims = live?.spec.as_ref()?.volume_claim_templates.clone()?;
    Some(
        claims
            .into_iter()
            .map(|mut c| {
                c.status = None;
                c
            })
            .collect(),
    )
}

/// Same names, sizes and class (the fields the spec controls; defaults the apiserver adds are ignored).
pub fn same_claims(a: &[PersistentVolumeClaim], b: &[PersistentVolumeClaim]) -> bool {
    let key = |c: &PersistentVolumeClaim| {
        let spec = c.spec.as_ref();
        (
            c.metadata.name.clone(),
            spec.and_then(|s| s.storage_class_name.clone()),
            spec.and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone()),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

fn pod_spec(ds: &DittoServer, agent_image: &str) -> PodSpec {
    let cr = ds.name_any();
    PodSpec {
        service_account_name: Some(names::agent_service_account(&cr)),
        // The token is projected into the agent container only (see `agent_token_volume`).
        automount_service_account_token: Some(false),
        security_context: Some(
            ds.spec
                .pod_security_context
                .clone()
                .unwrap_or_else(|| PodSecurityContext { fs_group: Some(NONROOT_ID), ..Default::default() }),
        ),
        termination_grace_period_seconds: Some(ds.spec.termination_grace_period_seconds()),
        containers: vec![server_container(ds), agent_container(ds, agent_image)],
        volumes: Some(volumes(ds)),
        ..Default::default()
    }
}

fn secret_env(name: &str, r: &SecretKeyRef, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
    }
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..Default::default()
        }),
    }
}

fn server_env(ds: &DittoServer) -> Vec<EnvVar> {
    let mut env = vec![
        secret_env("DITTOFS_CONTROLPLANE_SECRET", &jwt_ref(ds), false),
        // The managed bootstrap Secret is the controller's own: optional, so a pod never blocks on it.
        secret_env("DITTOFS_ADMIN_INITIAL_PASSWORD", &admin_password_ref(ds), user_admin_ref(ds).is_none()),
    ];
    if let Some(pg) = ds.spec.database.postgres_secret_ref.as_ref().filter(|_| uses_postgres(&ds.spec)) {
        for (key, required) in POSTGRES_KEYS {
            let r = SecretKeyRef { name: pg.name.clone(), key: key.into() };
            let var = format!("DITTOFS_DATABASE_POSTGRES_{}", key.to_uppercase());
            env.push(secret_env(&var, &r, !required));
        }
    }
    env
}

fn http_probe(path: &str, port: i32, https: bool, timing: (i32, i32, i32, i32)) -> Probe {
    let (initial, period, timeout, failures) = timing;
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some(if https { "HTTPS" } else { "HTTP" }.into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn server_probe(ds: &DittoServer, path: &str, timing: (i32, i32, i32, i32)) -> Probe {
    let port = ds.spec.control_plane.port;
    let mut probe = http_probe(path, port, ds.spec.api_uses_tls(), timing);
    // Under mutual TLS the kubelet cannot present a client certificate: probe the TCP port instead.
    if client_ca_secret(&ds.spec).is_some() {
        probe.http_get = None;
        probe.tcp_socket = Some(TCPSocketAction { port: IntOrString::Int(port), host: None });
    }
    probe
}

/// The user's container security context with hardened defaults back-filled per field (as in Go).
fn server_security_context(ds: &DittoServer) -> SecurityContext {
    let mut sc = ds.spec.security_context.clone().unwrap_or_default();
    sc.allow_privilege_escalation.get_or_insert(false);
    sc.run_as_non_root.get_or_insert(true);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    if caps.drop.as_ref().is_none_or(Vec::is_empty) {
        caps.drop = Some(vec!["ALL".into()]);
    }
    sc.seccomp_profile.get_or_insert_with(runtime_default_seccomp);
    sc
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

fn server_container(ds: &DittoServer) -> Container {
    let spec = &ds.spec;
    let mut ports = vec![ContainerPort {
        name: Some(names::API_PORT_NAME.into()),
        container_port: spec.control_plane.port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    if let Some(m) = metrics(spec) {
        ports.push(ContainerPort {
            name: Some(names::METRICS_PORT_NAME.into()),
            container_port: m.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    let mut mounts = vec![
        mount(names::CONTROL_PLANE_VOLUME, "/data/controlplane", false),
        mount(names::METADATA_VOLUME, "/data/store/metadata", false),
        mount(CONFIG_VOLUME, CONFIG_DIR, true),
    ];
    if spec.storage.content_size.is_some() {
        mounts.push(mount(names::CONTENT_VOLUME, "/data/store/block", false));
    }
    if cert_secret(spec).is_some() {
        mounts.push(mount(TLS_VOLUME, TLS_DIR, true));
    }
    if client_ca_secret(spec).is_some() {
        mounts.push(mount(TLS_CLIENT_CA_VOLUME, TLS_CLIENT_CA_DIR, true));
    }
    if metrics(spec).is_some_and(|m| m.bearer_token_secret.is_some()) {
        mounts.push(mount(METRICS_TOKEN_VOLUME, METRICS_TOKEN_DIR, true));
    }
    Container {
        name: names::SERVER_CONTAINER.into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["/app/dfs".into()]),
        args: Some(["start", "--foreground", "--config", CONFIG_PATH].map(String::from).to_vec()),
        env: Some(server_env(ds)),
        ports: Some(ports),
        resources: spec.resources.clone(),
        security_context: Some(server_security_context(ds)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction { command: Some(["sh", "-c", "sleep 5"].map(String::from).to_vec()) }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        liveness_probe: Some(server_probe(ds, "/health", (15, 10, 5, 3))),
        readiness_probe: Some(server_probe(ds, "/health/ready", (10, 5, 5, 3))),
        startup_probe: Some(server_probe(ds, "/health", (0, 5, 5, 30))),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn agent_container(ds: &DittoServer, image: &str) -> Container {
    let cr = ds.name_any();
    let agent = ds.spec.agent.as_ref();
    let scheme = if ds.spec.api_uses_tls() { "https" } else { "http" };
    let admin = admin_password_ref(ds);
    let env = vec![
        field_env(agent_env::POD_NAME, "metadata.name"),
        field_env(agent_env::POD_NAMESPACE, "metadata.namespace"),
        plain_env(agent_env::DITTOSERVER_NAME, cr),
        plain_env(agent_env::DITTOFS_URL, format!("{scheme}://127.0.0.1:{}", ds.spec.control_plane.port)),
        secret_env(agent_env::ADMIN_PASSWORD, &admin, user_admin_ref(ds).is_none()),
        plain_env(agent_env::ADMIN_USERNAME, admin_username(ds)),
        plain_env(agent_env::ADMIN_SECRET_NAME, admin.name.clone()),
        plain_env(agent_env::ADMIN_SECRET_KEY, admin.key.clone()),
        plain_env(agent_env::ADMIN_ADDR, format!("0.0.0.0:{}", agent_env::DEFAULT_ADMIN_PORT)),
        plain_env(agent_env::LOG_FORMAT, "json"),
    ];
    let admin_port = i32::from(agent_env::DEFAULT_ADMIN_PORT);
    let quantity = |q: &str| Quantity(q.into());
    let default_resources = ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".to_owned(), quantity("5m")), ("memory".to_owned(), quantity("16Mi"))])),
        limits: Some(BTreeMap::from([("memory".to_owned(), quantity("64Mi"))])),
        ..Default::default()
    };
    Container {
        name: names::AGENT_CONTAINER.into(),
        image: Some(image.into()),
        image_pull_policy: agent.and_then(|a| a.image_pull_policy).map(|p| p.as_str().to_owned()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(AGENT_ADMIN_PORT_NAME.into()),
            container_port: admin_port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(agent.and_then(|a| a.resources.clone()).unwrap_or(default_resources)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT_ID),
            run_as_group: Some(NONROOT_ID),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        liveness_probe: Some(http_probe("/livez", admin_port, false, (5, 10, 3, 3))),
        readiness_probe: Some(http_probe("/readyz", admin_port, false, (2, 5, 3, 3))),
        volume_mounts: Some(vec![VolumeMount {
            name: AGENT_TOKEN_VOLUME.into(),
            mount_path: SA_TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn secret_volume(name: &str, secret: &str, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource { secret_name: Some(secret.into()), items, ..Default::default() }),
        ..Default::default()
    }
}

fn volumes(ds: &DittoServer) -> Vec<Volume> {
    let cr = ds.name_any();
    let spec = &ds.spec;
    let mut volumes = vec![
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource { name: names::config_map(&cr), ..Default::default() }),
            ..Default::default()
        },
        agent_token_volume(),
    ];
    if let Some(cert) = cert_secret(spec) {
        volumes.push(secret_volume(TLS_VOLUME, cert, None));
    }
    if let Some(ca) = client_ca_secret(spec) {
        volumes.push(secret_volume(TLS_CLIENT_CA_VOLUME, ca, None));
    }
    if let Some(token) = metrics(spec).and_then(|m| m.bearer_token_secret.as_ref()) {
        let item = KeyToPath { key: token.key.clone(), path: "token".into(), mode: None };
        volumes.push(secret_volume(METRICS_TOKEN_VOLUME, &token.name, Some(vec![item])));
    }
    volumes
}

/// The ServiceAccount token, the cluster CA and the namespace, as the kubelet would automount them,
/// but as a volume only the agent container mounts: DittoFS never sees a Kubernetes credential.
fn agent_token_volume() -> Volume {
    let item = |key: &str| KeyToPath { key: key.into(), path: key.into(), mode: None };
    Volume {
        name: AGENT_TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![item("ca.crt")]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                api_version: None,
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: None,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
