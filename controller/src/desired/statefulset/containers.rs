//! The two containers of the DittoFS pod: DittoFS itself and the agent, with their env, probes and hardening.
//!
//! DittoFS gets its secrets only as env vars from Secrets and never a Kubernetes credential; the agent
//! runs read-only as `nonroot` and reaches DittoFS over loopback, with the projected token of
//! [`super::agent_token_volume`] as its only Kubernetes identity and the bootstrap admin password as a
//! file of [`admin_password_volume`], mounted into the agent only: no container's env holds it, so it
//! is not inherited by child processes nor fixed for the container's life (the kubelet updates the file
//! when the Secret changes).
//!
//! When DittoFS serves TLS itself (`controlPlane.certSecretName`), the agent dials
//! `https://127.0.0.1:<port>` and checks the certificate against the cert Secret's `ca.crt` and the `-api`
//! Service name, from [`agent_tls_volume`] (agent only); under mutual TLS it presents the same Secret's
//! `tls.crt`/`tls.key`. `controlPlane.tls` alone means TLS ends in front of the pod: DittoFS serves plain
//! HTTP, so the probes and the agent do too.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, PodSecurityContext, Probe, ResourceRequirements, SELinuxOptions,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use dittofs_api::crd::SecretKeyRef;
use dittofs_api::{DittoServer, agent_env, names};

use super::telemetry_env::telemetry_env;
use super::{
    AGENT_ADMIN_PORT_NAME, AGENT_TOKEN_VOLUME, CONFIG_VOLUME, METRICS_TOKEN_VOLUME, NONROOT_ID, SA_TOKEN_DIR,
    TLS_CLIENT_CA_VOLUME, TLS_VOLUME, TMP_VOLUME,
};
use crate::config::AgentTelemetry;
use crate::desired::config::{
    CONFIG_DIR, CONFIG_PATH, METRICS_TOKEN_DIR, TLS_CLIENT_CA_DIR, TLS_DIR, cert_secret, client_ca_secret, metrics,
};
use crate::desired::secrets::{admin_password_ref, admin_username, jwt_ref, user_admin_ref};

/// The Secret volume with the bootstrap admin password, mounted into the agent container only.
pub(super) const ADMIN_PASSWORD_VOLUME: &str = "admin-password";

/// Only the admin password key of its Secret, as the file [`agent_env::ADMIN_PASSWORD_FILE_NAME`].
///
/// Mode 0440: the kubelet makes a Secret volume's files root-owned, with the pod's `fsGroup` as their
/// group when one is set (the default pod security context sets 65532, and every container gets the
/// fsGroup as a supplementary group) — so the agent, `nonroot` 65532, reads it through its group. A user
/// pod security context without `fsGroup` leaves the files `root:root`: then 0444, the least that lets a
/// non-root user read it (only the agent container mounts the volume, so "others" is the agent).
pub(super) fn admin_password_volume(ds: &DittoServer) -> Volume {
    let admin = admin_password_ref(ds);
    let mode = if pod_security_context(ds).fs_group.is_some() { 0o440 } else { 0o444 };
    let item = KeyToPath { key: admin.key, path: agent_env::ADMIN_PASSWORD_FILE_NAME.into(), mode: None };
    Volume {
        name: ADMIN_PASSWORD_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(admin.name),
            items: Some(vec![item]),
            default_mode: Some(mode),
            // The managed bootstrap Secret is the controller's own: optional, so a pod never blocks on it
            // (the agent reports a missing file when it needs the admin).
            optional: user_admin_ref(ds).is_none().then_some(true),
        }),
        ..Default::default()
    }
}

/// The cert Secret's files the agent needs, mounted into the agent container only: `ca.crt` (its trust
/// root), and under mutual TLS `tls.crt` and `tls.key` (its client certificate). `None` without native TLS.
///
/// Optional: a Secret without `ca.crt` must not keep DittoFS from starting (a pod whose volume misses a
/// key does not start); the agent then reports `TLSFilesUnusable` in its status entry. Same file modes as
/// [`admin_password_volume`], for the same reason.
pub(super) fn agent_tls_volume(ds: &DittoServer) -> Option<Volume> {
    let cert = cert_secret(&ds.spec)?;
    let mut keys = vec![TLS_CA_KEY];
    if client_ca_secret(&ds.spec).is_some() {
        keys.extend([TLS_CERT_KEY, TLS_KEY_KEY]);
    }
    let items = keys.into_iter().map(|key| KeyToPath { key: key.into(), path: key.into(), mode: None }).collect();
    let mode = if pod_security_context(ds).fs_group.is_some() { 0o440 } else { 0o444 };
    Some(Volume {
        name: AGENT_TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(cert.into()),
            items: Some(items),
            default_mode: Some(mode),
            optional: Some(true),
        }),
        ..Default::default()
    })
}

/// The agent's volume with the cert Secret's files.
pub(super) const AGENT_TLS_VOLUME: &str = "agent-tls";
/// Keys of a kubernetes.io/tls Secret (cert-manager adds `ca.crt`).
const TLS_CA_KEY: &str = "ca.crt";
const TLS_CERT_KEY: &str = "tls.crt";
const TLS_KEY_KEY: &str = "tls.key";

/// The agent's TLS env: the CA file and the name to check, plus the client certificate under mutual TLS.
fn agent_tls_env(ds: &DittoServer) -> Vec<EnvVar> {
    if cert_secret(&ds.spec).is_none() {
        return Vec::new();
    }
    let file = |key: &str| format!("{}/{key}", agent_env::TLS_DIR);
    // The -api Service's name without the cluster domain: what a certificate for the Service names
    // whatever the domain, and what the Service's clients resolve.
    let name = format!("{}.{}.svc", names::api_service(&ds.name_any()), ds.namespace().unwrap_or_default());
    let mut env =
        vec![plain_env(agent_env::TLS_CA_FILE, file(TLS_CA_KEY)), plain_env(agent_env::TLS_SERVER_NAME, name)];
    if client_ca_secret(&ds.spec).is_some() {
        env.push(plain_env(agent_env::TLS_CLIENT_CERT_FILE, file(TLS_CERT_KEY)));
        env.push(plain_env(agent_env::TLS_CLIENT_KEY_FILE, file(TLS_KEY_KEY)));
    }
    env
}

fn admin_password_file() -> String {
    format!("{}/{}", agent_env::ADMIN_PASSWORD_DIR, agent_env::ADMIN_PASSWORD_FILE_NAME)
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
    env.extend(crate::desired::database::database_env(ds));
    env.extend(crate::desired::identity::env(&ds.spec, |name, r| secret_env(name, r, false)));
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
    // HTTPS only when DittoFS itself serves TLS: with `controlPlane.tls` alone it serves plain HTTP.
    let mut probe = http_probe(path, port, cert_secret(&ds.spec).is_some(), timing);
    // Under mutual TLS the kubelet cannot present a client certificate: probe the TCP port instead.
    if client_ca_secret(&ds.spec).is_some() {
        probe.http_get = None;
        probe.tcp_socket = Some(TCPSocketAction { port: IntOrString::Int(port), host: None });
    }
    probe
}

/// The only capability the restricted Pod Security profile lets a container add.
const NET_BIND_SERVICE: &str = "NET_BIND_SERVICE";

/// The user's container security context with hardened defaults back-filled per field (as in Go).
///
/// What the restricted Pod Security profile forbids is refused by the CRD; an object stored before
/// those rules (or past them) is still never run privileged: such values are replaced here.
fn server_security_context(ds: &DittoServer) -> SecurityContext {
    let mut sc = ds.spec.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        sc.privileged = Some(false);
    }
    sc.allow_privilege_escalation = Some(false);
    sc.run_as_non_root = Some(true);
    sc.run_as_user = sc.run_as_user.filter(|uid| *uid != 0);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    // The restricted profile requires ALL among the dropped capabilities, whatever else the user drops.
    let drop = caps.drop.get_or_insert_with(Vec::new);
    if !drop.iter().any(|c| c == "ALL") {
        drop.push("ALL".into());
    }
    if let Some(add) = caps.add.as_mut() {
        add.retain(|c| c == NET_BIND_SERVICE);
        add.dedup();
    }
    restrict_seccomp(&mut sc.seccomp_profile);
    // Also forbidden by the profile: an unmasked /proc and an unconfined AppArmor profile.
    sc.proc_mount = sc.proc_mount.filter(|m| m != "Unmasked");
    sc.app_armor_profile = sc.app_armor_profile.filter(|p| p.type_ != "Unconfined");
    sc.se_linux_options = sc.se_linux_options.filter(allowed_selinux);
    // DittoFS writes only to its volumes and os.TempDir() (an emptyDir at /tmp here): a read-only root
    // filesystem by default; a user may still turn it off.
    sc.read_only_root_filesystem.get_or_insert(true);
    // The image's user (65532), numeric, so the kubelet can verify runAsNonRoot with any image — unless the
    // pod's security context chooses the user.
    let pod = ds.spec.pod_security_context.as_ref();
    if sc.run_as_user.is_none() && pod.is_none_or(|p| p.run_as_user.is_none()) {
        sc.run_as_user = Some(NONROOT_ID);
    }
    if sc.run_as_group.is_none() && pod.is_none_or(|p| p.run_as_group.is_none()) {
        sc.run_as_group = Some(NONROOT_ID);
    }
    sc
}

/// SELinux options the restricted profile allows: a container type of the runtime, no user or role.
fn allowed_selinux(o: &SELinuxOptions) -> bool {
    let types = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
    o.type_.as_deref().is_none_or(|t| types.contains(&t))
        && o.user.as_deref().is_none_or(str::is_empty)
        && o.role.as_deref().is_none_or(str::is_empty)
}

/// The sysctls the restricted profile calls safe.
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// The user's pod security context (fsGroup 65532 when unset), without what the restricted profile
/// forbids (root, runAsNonRoot false, Unconfined seccomp, other SELinux options, unsafe sysctls), as for
/// [`server_security_context`].
pub(super) fn pod_security_context(ds: &DittoServer) -> PodSecurityContext {
    let Some(mut psc) = ds.spec.pod_security_context.clone() else {
        return PodSecurityContext { fs_group: Some(NONROOT_ID), ..Default::default() };
    };
    psc.run_as_user = psc.run_as_user.filter(|uid| *uid != 0);
    if psc.run_as_non_root == Some(false) {
        psc.run_as_non_root = Some(true);
    }
    if psc.seccomp_profile.is_some() {
        restrict_seccomp(&mut psc.seccomp_profile);
    }
    psc.se_linux_options = psc.se_linux_options.filter(allowed_selinux);
    if let Some(sysctls) = psc.sysctls.as_mut() {
        sysctls.retain(|s| SAFE_SYSCTLS.contains(&s.name.as_str()));
    }
    psc
}

/// RuntimeDefault unless a profile other than Unconfined is set.
fn restrict_seccomp(profile: &mut Option<SeccompProfile>) {
    if profile.as_ref().is_none_or(|p| p.type_ == "Unconfined") {
        *profile = Some(runtime_default_seccomp());
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

/// Where the content volume (`storage.contentSize`) is mounted in the DittoFS container.
pub(super) fn content_mount() -> VolumeMount {
    VolumeMount { name: names::CONTENT_VOLUME.into(), mount_path: "/data/store/block".into(), ..Default::default() }
}

pub(super) fn server_container(ds: &DittoServer) -> Container {
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
        mount(TMP_VOLUME, "/tmp", false),
    ];
    if spec.storage.content_size.is_some() {
        mounts.push(content_mount());
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
    mounts.extend(crate::desired::identity::volumes(spec).into_iter().map(|(_, m)| m));
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

pub(super) fn agent_container(ds: &DittoServer, image: &str, telemetry: &AgentTelemetry) -> Container {
    let cr = ds.name_any();
    let agent = ds.spec.agent.as_ref();
    // What DittoFS really serves on loopback (see the module docs).
    let scheme = if cert_secret(&ds.spec).is_some() { "https" } else { "http" };
    let admin = admin_password_ref(ds);
    let mut env = vec![
        field_env(agent_env::POD_NAME, "metadata.name"),
        field_env(agent_env::POD_NAMESPACE, "metadata.namespace"),
        plain_env(agent_env::DITTOSERVER_NAME, cr),
        plain_env(agent_env::DITTOFS_URL, format!("{scheme}://127.0.0.1:{}", ds.spec.control_plane.port)),
        plain_env(agent_env::ADMIN_PASSWORD_FILE, admin_password_file()),
        plain_env(agent_env::ADMIN_USERNAME, admin_username(ds)),
        plain_env(agent_env::ADMIN_SECRET_NAME, admin.name.clone()),
        plain_env(agent_env::ADMIN_SECRET_KEY, admin.key.clone()),
        plain_env(agent_env::ADMIN_ADDR, format!("0.0.0.0:{}", agent_env::DEFAULT_ADMIN_PORT)),
    ];
    env.extend(agent_tls_env(ds));
    env.extend(telemetry_env(ds, telemetry).into_iter().map(|(name, value)| plain_env(&name, value)));
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
        security_context: Some(restricted_context()),
        liveness_probe: Some(http_probe("/livez", admin_port, false, (5, 10, 3, 3))),
        readiness_probe: Some(http_probe("/readyz", admin_port, false, (2, 5, 3, 3))),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: AGENT_TOKEN_VOLUME.into(),
                    mount_path: SA_TOKEN_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: ADMIN_PASSWORD_VOLUME.into(),
                    mount_path: agent_env::ADMIN_PASSWORD_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(cert_secret(&ds.spec).map(|_| VolumeMount {
                name: AGENT_TLS_VOLUME.into(),
                mount_path: agent_env::TLS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }))
            .collect(),
        ),
        ..Default::default()
    }
}

/// The restricted Pod Security profile's container context, as the controller's own containers (the agent,
/// the database wait) run: non-root 65532, read-only root, no privilege escalation, no capabilities,
/// RuntimeDefault seccomp.
pub(crate) fn restricted_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT_ID),
        run_as_group: Some(NONROOT_ID),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}
