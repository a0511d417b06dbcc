//! The StatefulSet `<cr>`: DittoFS plus the agent container, volumes, probes, hardened security contexts.
//!
//! What rolls the pod: only what DittoFS or the agent reads at start-up (image, config hash, env,
//! mounts, resources, ports in this body). `pollingInterval` and `adapterServices` are read by the
//! agent and the controller from the `DittoServer` itself and never reach the template, and the config
//! hash covers the rendered config plus the Secret data DittoFS consumes, not the generation.
//! Container ports named `adapter-*` are never in this body: another field manager owns them, and
//! server-side apply leaves fields a body omits alone when someone else owns them.

mod containers;
pub(crate) use containers::restricted_context;
mod telemetry_env;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    ProjectedVolumeSource, SecretVolumeSource, ServiceAccountTokenProjection, Volume, VolumeProjection,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use dittofs_api::labels::{CONFIG_HASH_ANNOTATION, server_labels};
use dittofs_api::{DittoServer, names};

use super::config::{cert_secret, client_ca_secret, metrics};
use super::{child_meta, pod_selector, selector_labels};
use crate::config::AgentDefaults;

/// Where the agent container finds its ServiceAccount token: where the agent reads it.
pub const SA_TOKEN_DIR: &str = dittofs_api::agent_env::SERVICEACCOUNT_DIR_DEFAULT;
/// Name of the agent's admin container port.
pub const AGENT_ADMIN_PORT_NAME: &str = "agent-admin";
/// UID/GID of the non-root user the pods run as (distroless `nonroot`, as the Go operator's fsGroup).
pub const NONROOT_ID: i64 = 65532;
/// Lifetime asked for the agent's projected token (the kubelet refreshes it at 80%).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

const AGENT_TOKEN_VOLUME: &str = "agent-token";
const CONFIG_VOLUME: &str = "config";
/// DittoFS's os.TempDir(): the root filesystem is read-only.
const TMP_VOLUME: &str = "tmp";
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

/// The StatefulSet, its agent container from the controller's `agent` defaults under the server's
/// `spec.agent`. `live` is the current object, if any: its volume claim templates are kept when they
/// differ from the spec, since Kubernetes refuses to change them (the Go operator failed forever).
pub fn statefulset_for(
    ds: &DittoServer,
    agent: &AgentDefaults,
    config_hash: &str,
    live: Option<&StatefulSet>,
) -> StatefulSet {
    let cr = ds.name_any();
    let desired_claims = volume_claim_templates(ds);
    let claims = match live_claims(live) {
        Some(live) if !same_claims(&live, &desired_claims) => live,
        _ => desired_claims,
    };
    let mut pod = pod_spec(ds, agent);
    mount_content_as_claimed(&mut pod, &claims);
    StatefulSet {
        metadata: child_meta(ds, names::statefulset(&cr), server_labels(&cr)),
        spec: Some(StatefulSetSpec {
            replicas: Some(ds.spec.replicas),
            service_name: Some(names::headless_service(&cr)),
            selector: LabelSelector { match_labels: Some(selector_labels(ds)), match_expressions: None },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_selector(ds).pod_labels(&cr)),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash.to_owned())])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(claims),
            ..Default::default()
        }),
        status: None,
    }
}

/// The content volume is mounted exactly when the claim templates in use have it. They are the live ones
/// when the spec's storage changed after creation: a mount without its claim is refused by the apiserver
/// (`contentSize` added later: the StatefulSet could never be applied again), and a claim kept without its
/// mount would hide the data already on it (`contentSize` removed later).
fn mount_content_as_claimed(pod: &mut PodSpec, claims: &[PersistentVolumeClaim]) {
    let claimed = claims.iter().any(|c| c.metadata.name.as_deref() == Some(names::CONTENT_VOLUME));
    let Some(server) = pod.containers.iter_mut().find(|c| c.name == names::SERVER_CONTAINER) else { return };
    let mounts = server.volume_mounts.get_or_insert_with(Vec::new);
    let mounted = mounts.iter().any(|m| m.name == names::CONTENT_VOLUME);
    if claimed && !mounted {
        mounts.push(containers::content_mount());
    } else if !claimed && mounted {
        mounts.retain(|m| m.name != names::CONTENT_VOLUME);
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

fn pod_spec(ds: &DittoServer, agent: &AgentDefaults) -> PodSpec {
    let cr = ds.name_any();
    PodSpec {
        service_account_name: Some(names::agent_service_account(&cr)),
        // The token is projected into the agent container only (see `agent_token_volume`).
        automount_service_account_token: Some(false),
        security_context: Some(containers::pod_security_context(ds)),
        termination_grace_period_seconds: Some(ds.spec.termination_grace_period_seconds()),
        init_containers: super::database::init_containers(ds),
        containers: vec![
            containers::server_container(ds),
            containers::agent_container(ds, agent_image(ds, &agent.image), &agent.telemetry),
        ],
        volumes: Some(volumes(ds)),
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
        containers::admin_password_volume(ds),
        Volume {
            name: TMP_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("1Gi".into())), ..Default::default() }),
            ..Default::default()
        },
    ];
    if let Some(cert) = cert_secret(spec) {
        volumes.push(secret_volume(TLS_VOLUME, cert, None));
    }
    volumes.extend(containers::agent_tls_volume(ds));
    volumes.extend(crate::desired::identity::volumes(spec).into_iter().map(|(v, _)| v));
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
