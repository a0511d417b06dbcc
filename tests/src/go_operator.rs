//! A namespace exactly as the Go operator (DittoFS v0.29.0, `k8s/dittofs-operator`) leaves it after a
//! reconcile with NFS and SMB running, written from reading its code (names, labels, selectors,
//! annotations, finalizer, Secrets, ConfigMap, adapter Services and NetworkPolicies, `-metrics` Service),
//! and every write recorded under the field manager its binary gets (`manager`). No Go code is copied:
//! these are the objects, as `../shared/reference/go-operator.md` §2 lists them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use dittofs_api::DittoServer;
use dittofs_api::constants::{GO_OPERATOR_FIELD_MANAGER, GO_OPERATOR_FINALIZER};

use crate::kube_env::TempNamespace;

/// The Go operator's pod selector of server `cr`.
pub fn go_labels(cr: &str) -> Value {
    json!({"app": "dittofs-server", "instance": cr})
}

/// What the Go operator left: the server and the ports its adapters listen on.
#[derive(Debug, Clone)]
pub struct GoServer {
    /// The server's name.
    pub cr: String,
    /// The NFS adapter's port.
    pub nfs: i32,
    /// The SMB adapter's port.
    pub smb: i32,
    /// The admin password its DittoFS was bootstrapped with.
    pub admin_password: String,
    /// The operator account's password (the DittoFS user `k8s-operator` must have it).
    pub operator_password: String,
    /// The StatefulSet's selector (the Go operator's unless a test edits it).
    pub selector: Value,
}

impl GoServer {
    /// A server `cr` whose NFS and SMB adapters listen on `nfs` and `smb`.
    pub fn new(cr: &str, nfs: i32, smb: i32, admin_password: &str) -> Self {
        Self {
            cr: cr.to_owned(),
            nfs,
            smb,
            admin_password: admin_password.to_owned(),
            operator_password: "go-operator-made-pw-24ch".to_owned(),
            selector: go_labels(cr),
        }
    }

    /// The DittoServer a user wrote for the Go operator: metrics on, the rest defaulted.
    pub fn spec() -> Value {
        json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true},
            "adapterDiscovery": {"pollingInterval": "2s"}})
    }

    /// Creates the server and every object the Go operator leaves, each written as it writes them.
    pub async fn create(&self, ns: &TempNamespace<'_>) -> anyhow::Result<DittoServer> {
        let servers: Api<DittoServer> = ns.api();
        crate::objects::create_server(ns, &crate::objects::server(&self.cr, Self::spec())?).await?;
        // Step 3 of its reconcile: the finalizer, by an update.
        let patch = json!({"metadata": {"finalizers": [GO_OPERATOR_FINALIZER]}});
        let ds = servers.patch(&self.cr, &go_patch(), &Patch::Merge(&patch)).await?;
        let owner = json!([{"apiVersion": DittoServer::api_version(&()), "kind": "DittoServer", "name": self.cr,
            "uid": ds.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}]);
        for (kind, body) in self.objects(&owner) {
            create(ns, kind, body).await?;
        }
        Ok(ds)
    }

    /// Every child, in the order the Go reconcile writes them.
    fn objects(&self, owner: &Value) -> Vec<(&'static str, Value)> {
        let cr = &self.cr;
        let labels = go_labels(cr);
        let meta = |name: String, extra: Value| {
            let mut labels = labels.clone();
            if let (Some(l), Some(e)) = (labels.as_object_mut(), extra.as_object()) {
                l.extend(e.clone());
            }
            json!({"name": name, "labels": labels, "ownerReferences": owner})
        };
        let secret = |name: String, data: Value| json!({"metadata": meta(name, json!({})), "type": "Opaque", "stringData": data});
        let adapter = |t: &str| json!({"dittofs.io/adapter-type": t});
        let mut objects = vec![
            ("Secret", secret(format!("{cr}-jwt-secret"), json!({"jwt-secret": "k".repeat(43)}))),
            (
                "Secret",
                secret(
                    format!("{cr}-admin-bootstrap-credentials"),
                    json!({"username": "admin", "password": self.admin_password}),
                ),
            ),
            (
                "ConfigMap",
                json!({"metadata": meta(format!("{cr}-config"), json!({})), "data": {"config.yaml": GO_CONFIG}}),
            ),
            (
                "Service",
                service(meta(format!("{cr}-headless"), json!({})), "ClusterIP", &labels, vec![tcp("api", 8080)], true),
            ),
            (
                "Service",
                service(meta(format!("{cr}-api"), json!({})), "LoadBalancer", &labels, vec![tcp("api", 8080)], false),
            ),
        ];
        let mut metrics = service(
            meta(format!("{cr}-metrics"), json!({"dittofs.io/metrics-service": "true"})),
            "ClusterIP",
            &labels,
            vec![tcp("metrics", 9090)],
            false,
        );
        metrics["metadata"]["annotations"] =
            json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"});
        objects.push(("Service", metrics));
        objects.push(("StatefulSet", self.statefulset(meta(cr.clone(), json!({})))));
        let baseline_meta = meta(format!("{cr}-baseline"), json!({"dittofs.io/baseline-networkpolicy": "true"}));
        objects.push((
            "NetworkPolicy",
            policy(baseline_meta, &labels, json!([np_port(8080, "TCP"), np_port(9090, "TCP")])),
        ));
        objects.push((
            "Secret",
            secret(
                format!("{cr}-operator-credentials"),
                json!({"username": "k8s-operator", "password": self.operator_password, "access-token": "",
                    "refresh-token": "", "server-url": format!("http://{cr}-api.ns.svc.cluster.local:8080")}),
            ),
        ));
        let (nfs, smb) = (self.nfs, self.smb);
        let svc_labels = |t: &str| {
            let mut l = adapter(t);
            l["dittofs.io/adapter-service"] = json!("true");
            l
        };
        let nfs_ports = vec![
            tcp("adapter-nfs", nfs),
            port("portmap", 111, 10111, "TCP"),
            port("portmap-udp", 111, 10111, "UDP"),
            port("adapter-nfs-udp", nfs, nfs, "UDP"),
            port("mdns", 5353, 5353, "UDP"),
        ];
        let smb_ports = vec![
            tcp("adapter-smb", smb),
            port("mdns", 5353, 5353, "UDP"),
            port("wsd", 3702, 3702, "UDP"),
            tcp("wsd-meta", 5357),
        ];
        objects.push((
            "Service",
            service(meta(format!("{cr}-adapter-nfs"), svc_labels("nfs")), "LoadBalancer", &labels, nfs_ports, false),
        ));
        objects.push((
            "Service",
            service(meta(format!("{cr}-adapter-smb"), svc_labels("smb")), "LoadBalancer", &labels, smb_ports, false),
        ));
        let np_labels = |t: &str| {
            let mut l = adapter(t);
            l["dittofs.io/adapter-networkpolicy"] = json!("true");
            l
        };
        let nfs_rule = json!([np_port(nfs, "TCP"), np_port(10111, "TCP"), np_port(10111, "UDP"), np_port(nfs, "UDP")]);
        objects.push(("NetworkPolicy", policy(meta(format!("{cr}-adapter-nfs"), np_labels("nfs")), &labels, nfs_rule)));
        objects.push((
            "NetworkPolicy",
            policy(meta(format!("{cr}-adapter-smb"), np_labels("smb")), &labels, json!([np_port(smb, "TCP")])),
        ));
        objects
    }

    /// The StatefulSet after `reconcileContainerPorts` with NFS and SMB running (the pod rolled onto it).
    fn statefulset(&self, meta: Value) -> Value {
        let cr = &self.cr;
        let ports = json!([
            {"name": "api", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            {"name": "adapter-mdns", "containerPort": 5353, "protocol": "UDP"},
            {"name": "adapter-nfs", "containerPort": self.nfs, "protocol": "TCP"},
            {"name": "adapter-nfs-pm", "containerPort": 10111, "protocol": "TCP"},
            {"name": "adapter-pm-udp", "containerPort": 10111, "protocol": "UDP"},
            {"name": "adapter-smb", "containerPort": self.smb, "protocol": "TCP"},
            {"name": "adapter-wsd", "containerPort": 3702, "protocol": "UDP"},
            {"name": "adapter-wsdmeta", "containerPort": 5357, "protocol": "TCP"},
        ]);
        let probe = |path: &str, delay: i32, period: i32, failures: i32| {
            json!({"httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": delay, "periodSeconds": period, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": failures})
        };
        let claim = |name: &str| {
            json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}})
        };
        json!({"metadata": meta, "spec": {
            "replicas": 1, "serviceName": format!("{cr}-headless"), "selector": {"matchLabels": self.selector},
            "template": {"metadata": {"labels": self.selector,
                    "annotations": {"dittofs.io/config-hash": "5f0c1e2d3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f"}},
                "spec": {"automountServiceAccountToken": false, "securityContext": {"fsGroup": 65532},
                    "terminationGracePeriodSeconds": 105,
                    "containers": [{"name": "dittofs", "image": "marmos91c/dittofs:latest", "command": ["/app/dfs"],
                        "args": ["start", "--foreground", "--config", "/config/config.yaml"],
                        "ports": ports,
                        "env": [
                            {"name": "DITTOFS_CONTROLPLANE_SECRET",
                                "valueFrom": {"secretKeyRef": {"name": format!("{cr}-jwt-secret"), "key": "jwt-secret"}}},
                            {"name": "DITTOFS_ADMIN_INITIAL_PASSWORD", "valueFrom": {"secretKeyRef":
                                {"name": format!("{cr}-admin-bootstrap-credentials"), "key": "password", "optional": true}}}],
                        "volumeMounts": [
                            {"name": "controlplane", "mountPath": "/data/controlplane"},
                            {"name": "metadata", "mountPath": "/data/store/metadata"},
                            {"name": "config", "mountPath": "/config"}],
                        "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
                        "livenessProbe": probe("/health", 15, 10, 3),
                        "readinessProbe": probe("/health/ready", 10, 5, 3),
                        "startupProbe": probe("/health", 0, 5, 30),
                        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}}}],
                    "volumes": [{"name": "config", "configMap": {"name": format!("{cr}-config")}}]}},
            "volumeClaimTemplates": [claim("metadata"), claim("controlplane")],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}}})
    }
}

/// The config the Go operator renders for [`GoServer::spec`] (no secrets, no adapters section).
const GO_CONFIG: &str = "logging:\n  level: INFO\n  format: json\n  output: stdout\nshutdown_timeout: 30s\n\
database:\n  type: sqlite\n  sqlite:\n    path: /data/controlplane/controlplane.db\ncontrolplane:\n  host: 0.0.0.0\n  \
port: 8080\n  jwt:\n    access_token_duration: 15m0s\n    refresh_token_duration: 168h0m0s\nadmin:\n  username: admin\n\
metrics:\n  enabled: true\n  host: 0.0.0.0\n  port: 9090\n  path: /metrics\n  auth: none\n";

fn go_patch() -> PatchParams {
    PatchParams { field_manager: Some(GO_OPERATOR_FIELD_MANAGER.to_owned()), ..Default::default() }
}

fn tcp(name: &str, port_number: i32) -> Value {
    port(name, port_number, port_number, "TCP")
}

fn port(name: &str, port: i32, target: i32, protocol: &str) -> Value {
    json!({"name": name, "port": port, "targetPort": target, "protocol": protocol})
}

fn np_port(port: i32, protocol: &str) -> Value {
    json!({"port": port, "protocol": protocol})
}

fn service(meta: Value, kind: &str, selector: &Value, ports: Vec<Value>, headless: bool) -> Value {
    let mut spec = json!({"type": kind, "selector": selector, "ports": ports});
    if headless {
        spec["clusterIP"] = json!("None");
    }
    json!({"metadata": meta, "spec": spec})
}

fn policy(meta: Value, selector: &Value, ports: Value) -> Value {
    json!({"metadata": meta, "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"],
        "ingress": [{"ports": ports}]}})
}

/// Creates `body` as a `kind` with the Go operator's field manager.
async fn create(ns: &TempNamespace<'_>, kind: &str, body: Value) -> anyhow::Result<()> {
    let params = PostParams { field_manager: Some(GO_OPERATOR_FIELD_MANAGER.to_owned()), ..Default::default() };
    match kind {
        "Secret" => drop(ns.api::<Secret>().create(&params, &serde_json::from_value(body)?).await?),
        "ConfigMap" => drop(ns.api::<ConfigMap>().create(&params, &serde_json::from_value(body)?).await?),
        "Service" => drop(ns.api::<Service>().create(&params, &serde_json::from_value(body)?).await?),
        "StatefulSet" => drop(ns.api::<StatefulSet>().create(&params, &serde_json::from_value(body)?).await?),
        "NetworkPolicy" => drop(ns.api::<NetworkPolicy>().create(&params, &serde_json::from_value(body)?).await?),
        other => anyhow::bail!("no fixture for kind {other}"),
    }
    Ok(())
}

/// The labels of `meta` as a map (empty when none).
pub fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}
