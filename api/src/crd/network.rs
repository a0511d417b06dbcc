//! Spec sections about reaching the server: the API Service, adapter discovery, the per-adapter Services
//! and NetworkPolicies.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constants;

/// Type of a Kubernetes Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus an external load balancer (needs a load-balancer controller in the cluster).
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes uses in `Service.spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// What the controller does with the adapter objects while the agents' reports are stale.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[schemars(description = "")]
pub enum StaleReportPolicy {
    /// Keep every adapter Service and NetworkPolicy as it is (the default): a silent agent is not a
    /// stopped file server, and closing would turn a broken sidecar into an outage for every client.
    #[default]
    Keep,
    /// Remove them, as if no adapter ran: fail closed when not knowing must mean not exposing.
    Close,
}

/// The Service of the control-plane API, `<name>-api`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiServiceSpec {
    /// Type of the `<name>-api` Service: ClusterIP (default), NodePort or LoadBalancer.
    /// Unlike the Go operator, an omitted `service` section also means ClusterIP.
    #[serde(default = "default_api_service_type")]
    pub r#type: ServiceType,
    /// Annotations added to the `<name>-api` Service (e.g. for a cloud load balancer): at most 64,
    /// values of at most 4096 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::ANNOTATION_KEYS_RULE, crate::crd::cel::ANNOTATION_KEYS_MESSAGE))]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ApiServiceSpec {
    fn default() -> Self {
        Self { r#type: default_api_service_type(), annotations: BTreeMap::new() }
    }
}

fn default_api_service_type() -> ServiceType {
    ServiceType::ClusterIp
}

/// How the adapters running in DittoFS are discovered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdapterDiscoverySpec {
    /// How often the adapter list of the DittoFS API is read, a Go duration of at least 1s
    /// (default "30s"). Invalid values such as "abc", "-5s" or "0s" are refused.
    #[serde(default = "default_polling_interval")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::DURATION_FORMAT_RULE, crate::crd::cel::DURATION_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::AT_LEAST_ONE_SECOND_RULE, crate::crd::cel::AT_LEAST_ONE_SECOND_MESSAGE)
    )]
    pub polling_interval: String,
    /// How often the agent checks for adapter changes without asking DittoFS for the adapter list: it
    /// reads which adapters run (`GET /health/ready`, unauthenticated, logged by DittoFS at DEBUG only)
    /// and whether their listed ports still listen in the pod (a port change closes the old one). A
    /// change seen there triggers an adapter-list read at once, so Kubernetes follows within about this
    /// period. A Go duration from 100ms to 10s. Unset: the agent's default (250ms; docs/performance.md
    /// lists what each period costs). Changing it does not restart the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = crate::crd::cel::rule(crate::crd::cel::DURATION_FORMAT_RULE, crate::crd::cel::DURATION_FORMAT_MESSAGE),
        validation = crate::crd::cel::rule(crate::crd::cel::FAST_PATH_RANGE_RULE, crate::crd::cel::FAST_PATH_RANGE_MESSAGE)
    )]
    pub fast_path_interval: Option<String>,
}

impl Default for AdapterDiscoverySpec {
    fn default() -> Self {
        Self { polling_interval: default_polling_interval(), fast_path_interval: None }
    }
}

fn default_polling_interval() -> String {
    constants::DEFAULT_POLLING_INTERVAL.to_owned()
}

/// The Service and NetworkPolicy created for each running adapter (`<name>-adapter-<type>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdapterServicesSpec {
    /// Type of the adapter Services: LoadBalancer (default), NodePort or ClusterIP. Without a
    /// load-balancer controller (kind, bare metal) choose NodePort to reach the adapters from outside.
    #[serde(default = "default_adapter_service_type")]
    pub r#type: ServiceType,
    /// Annotations added to every adapter Service (e.g. for a cloud load balancer). Keys removed
    /// here are removed from the Services; annotations added by others are left alone. At most 64,
    /// values of at most 4096 characters (the apiserver refuses more than 256 KiB of annotations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::ANNOTATION_KEYS_RULE, crate::crd::cel::ANNOTATION_KEYS_MESSAGE))]
    pub annotations: BTreeMap<String, String>,
    /// Keep the adapter ports of the server container in step with the running adapters (default
    /// true). Each change of those ports is a pod-template change and restarts the pod; set false
    /// to expose adapters through their Services and NetworkPolicies only (both use the port
    /// numbers, so only the informational container ports are lost) and never restart the file
    /// server on an adapter toggle. Turning it off removes the ports synced before, once.
    #[serde(default = "default_true")]
    pub sync_container_ports: bool,
    /// Who may connect to the adapters. Each entry becomes a `from` peer of the adapters'
    /// NetworkPolicies. Empty (default): any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allowed_sources: Vec<AdapterSource>,
    /// Adapter types the controller may expose (default ["nfs", "smb"], the types DittoFS has). The
    /// agents' reports are not trusted: a reported adapter of another type is refused, with a Warning
    /// Event and the AdaptersReady condition naming it. Each entry is a lower-case type of at most 14
    /// characters (letters, digits, '-'), so that `<name>-adapter-<type>` is never shortened; an empty
    /// list exposes no adapter. Compared with the reported type lower-cased, with other characters as '-'.
    #[serde(default = "default_allowed_types")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 14), regex(pattern = crate::crd::cel::ADAPTER_TYPE_REGEX)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_types: Vec<String>,
    /// How old, in seconds, an agent's report may get before the controller stops trusting it (default
    /// 300, 30–86400). A healthy agent refreshes its `lastPollTime` well within this (every third of it);
    /// an entry older than this, or an agent unable to reach DittoFS for that long, makes the reports
    /// stale: AdaptersReady=Unknown (reason ReportStale), a Warning Event, and `onStaleReport` applies.
    #[serde(default = "default_report_max_age")]
    #[schemars(range(min = 30, max = 86400))]
    pub report_max_age_seconds: i32,
    /// What happens to the adapter objects while the reports are stale: Keep (default) leaves them as
    /// they are; Close removes them until a fresh report says what runs.
    #[serde(default)]
    pub on_stale_report: StaleReportPolicy,
}

impl AdapterServicesSpec {
    /// Whether `spec.adapterServices.allowedTypes` lists the (sanitized) adapter type.
    pub fn allows(&self, sanitized_type: &str) -> bool {
        self.allowed_types.iter().any(|t| t == sanitized_type)
    }
}

fn default_report_max_age() -> i32 {
    300
}

fn default_allowed_types() -> Vec<String> {
    vec![constants::NFS.to_owned(), constants::SMB.to_owned()]
}

impl Default for AdapterServicesSpec {
    fn default() -> Self {
        Self {
            r#type: default_adapter_service_type(),
            annotations: BTreeMap::new(),
            sync_container_ports: true,
            allowed_sources: Vec::new(),
            allowed_types: default_allowed_types(),
            report_max_age_seconds: default_report_max_age(),
            on_stale_report: StaleReportPolicy::Keep,
        }
    }
}

fn default_adapter_service_type() -> ServiceType {
    ServiceType::LoadBalancer
}

fn default_true() -> bool {
    true
}

/// A source allowed to connect: an IP block, or pods chosen by namespace and/or pod labels (a
/// NetworkPolicy peer).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::SOURCE_PEER_RULE, crate::crd::cel::SOURCE_PEER_MESSAGE))]
pub struct AdapterSource {
    /// Addresses allowed to connect (e.g. the clients' subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlockSource>,
    /// Namespaces whose pods may connect (all pods of them, or those matching podSelector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods that may connect (in the DittoServer's namespace, or in the namespaces of namespaceSelector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// A range of IP addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IpBlockSource {
    /// The allowed range, e.g. "192.168.0.0/16" or "2001:db8::/32".
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::CIDR_RULE, crate::crd::cel::CIDR_MESSAGE))]
    pub cidr: String,
    /// Ranges inside cidr that are not allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::CIDR_LIST_RULE, crate::crd::cel::CIDR_LIST_MESSAGE))]
    pub except: Vec<String>,
}
