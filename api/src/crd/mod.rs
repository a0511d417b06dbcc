//! The `DittoServer` custom resource (`dittofs.dittofs.com/v1alpha1`): its top-level spec, the CRD and its YAML.
//!
//! Field names and meanings follow the Go DittoFS operator so its users can switch. Its sections this
//! controller does not implement yet are kept verbatim (see [`unimplemented`]).

pub mod agent;
pub mod cel;
pub mod identity;
pub mod network;
pub mod observability;
pub mod percona;
mod render;
pub mod snapshot;
pub mod spec;
pub mod status;
pub mod unimplemented;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements, SecurityContext};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use agent::{AgentLogFormat, AgentOtelSpec, AgentSpec, PullPolicy, TraceSampler};
pub use identity::{Idmap, KerberosSpec, LdapSpec, MachineAccountSpec};
pub use network::{
    AdapterDiscoverySpec, AdapterServicesSpec, AdapterSource, ApiServiceSpec, IpBlockSource, ServiceType,
    StaleReportPolicy,
};
pub use observability::{LogFormat, LogLevel, LoggingSpec, MetricsSpec, ServiceMonitorSpec};
pub use percona::{LocalObjectRef, PerconaBackupSpec, PerconaSpec};
pub use render::{CRD_YAML_HEADER, crd_yaml, custom_resource_definition};
pub use snapshot::{AgentSnapshotPolicyStatus, SnapshotPolicySpec, SnapshotPolicyState};
pub use spec::{
    AdminSpec, ControlPlaneSpec, DatabaseSpec, DatabaseType, IdentitySpec, IdentityType, JwtSpec, SecretKeyRef,
    SqliteSpec, StorageSpec,
};
pub use status::{
    AdapterStatus, AgentAdapterStatus, AgentAuth, AgentStatus, DittoServerStatus, Phase, Reachability, adapters_summary,
};
pub use unimplemented::unimplemented_fields;

use crate::constants;

/// API group of the `DittoServer` resource.
pub const GROUP: &str = "dittofs.dittofs.com";
/// Plural (resource) name.
pub const PLURAL: &str = "dittoservers";
/// Name of the CustomResourceDefinition.
pub const CRD_NAME: &str = "dittoservers.dittofs.dittofs.com";

/// Desired state of a DittoFS server. Only the infrastructure is declared here; shares, stores,
/// users and adapters are managed through the DittoFS API, and the controller exposes whatever
/// adapters DittoFS runs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dittofs.dittofs.com",
    version = "v1alpha1",
    kind = "DittoServer",
    plural = "dittoservers",
    singular = "dittoserver",
    shortname = "ditto",
    shortname = "dittofs",
    namespaced,
    status = "DittoServerStatus",
    derive = "PartialEq",
    doc = "A DittoFS file server: a StatefulSet running DittoFS, its API Service, and one Service and NetworkPolicy per running protocol adapter (NFS, SMB).",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas", description = "Desired number of pods (0 or 1)"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Ready pods"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.availableReplicas", description = "Available pods", priority = 1),
    printcolumn(name = "Adapters", type_ = "string", json_path = ".status.adaptersSummary", description = "Exposed adapters as type:port"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = cel::creation_rule(cel::SERVER_NAME_RULE, cel::SERVER_NAME_MESSAGE),
    validation = cel::creation_rule(cel::SERVER_NAME_LENGTH_RULE, cel::SERVER_NAME_LENGTH_MESSAGE)
)]
#[x_kube(
    validation = crate::crd::cel::rule(crate::crd::cel::METRICS_PORT_RULE, crate::crd::cel::METRICS_PORT_MESSAGE),
    validation = crate::crd::cel::rule(crate::crd::cel::POSTGRES_SECRET_RULE, crate::crd::cel::POSTGRES_SECRET_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct DittoServerSpec {
    /// Container image of DittoFS (default "marmos91c/dittofs:latest").
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Number of server pods: 1 (default) runs the server, 0 stops it and keeps its volumes.
    /// DittoFS runs as a single instance, so nothing above 1 is accepted.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1))]
    pub replicas: i32,
    /// Persistent volumes of the server (required: at least metadataSize).
    pub storage: StorageSpec,
    /// Control-plane database: SQLite on the control-plane volume (default) or PostgreSQL.
    #[serde(default)]
    pub database: DatabaseSpec,
    /// The DittoFS REST API: port and TLS.
    #[serde(default)]
    pub control_plane: ControlPlaneSpec,
    /// API authentication (JWT signing key, first admin user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// How the running adapters are discovered.
    #[serde(default)]
    pub adapter_discovery: AdapterDiscoverySpec,
    /// The Services and NetworkPolicies created for each running adapter.
    #[serde(default)]
    pub adapter_services: AdapterServicesSpec,
    /// The `<name>-api` Service of the REST API.
    #[serde(default)]
    pub service: ApiServiceSpec,
    /// Prometheus metrics endpoint (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
    /// Server logging: level, format, output.
    #[serde(default)]
    pub logging: LoggingSpec,
    /// The agent container in the server pod: image, resources, log and trace settings, and who may
    /// scrape its metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// Resources of the DittoFS container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Seconds the pod gets to shut down (at least 36). Unset: 105, enough for DittoFS to drain its
    /// adapters and flush its stores; the Kubernetes default of 30 can cut a flush short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 36, max = 86400))]
    pub termination_grace_period_seconds: Option<i64>,
    /// Security context of the DittoFS container. Unset fields get hardened defaults:
    /// no privilege escalation, non-root, all capabilities dropped, RuntimeDefault seccomp.
    /// What the restricted Pod Security profile forbids is refused: privileged, allowPrivilegeEscalation,
    /// capabilities.add other than NET_BIND_SERVICE, runAsUser 0, runAsNonRoot false, Unconfined seccomp,
    /// SELinux options other than a container type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = cel::rule(cel::PRIVILEGED_RULE, cel::PRIVILEGED_MESSAGE),
        validation = cel::rule(cel::ESCALATION_RULE, cel::ESCALATION_MESSAGE),
        validation = cel::rule(cel::CAPABILITIES_RULE, cel::CAPABILITIES_MESSAGE),
        validation = cel::rule(cel::RUN_AS_ROOT_RULE, cel::RUN_AS_ROOT_MESSAGE),
        validation = cel::rule(cel::RUN_AS_NON_ROOT_RULE, cel::RUN_AS_NON_ROOT_MESSAGE),
        validation = cel::rule(cel::SECCOMP_RULE, cel::SECCOMP_MESSAGE),
        validation = cel::rule(cel::SELINUX_RULE, cel::SELINUX_MESSAGE)
    )]
    pub security_context: Option<SecurityContext>,
    /// Security context of the pod. Unset: fsGroup 65532. As for securityContext, runAsUser 0,
    /// runAsNonRoot false, Unconfined seccomp and SELinux options other than a container type (forbidden
    /// by the restricted profile) are refused, and so are sysctls the profile does not call safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = cel::rule(cel::RUN_AS_ROOT_RULE, cel::POD_RUN_AS_ROOT_MESSAGE),
        validation = cel::rule(cel::RUN_AS_NON_ROOT_RULE, cel::POD_RUN_AS_NON_ROOT_MESSAGE),
        validation = cel::rule(cel::SECCOMP_RULE, cel::POD_SECCOMP_MESSAGE),
        validation = cel::rule(cel::SELINUX_RULE, cel::POD_SELINUX_MESSAGE),
        validation = cel::rule(cel::SYSCTLS_RULE, cel::SYSCTLS_MESSAGE)
    )]
    pub pod_security_context: Option<PodSecurityContext>,
    /// Percona PostgreSQL cluster for the control-plane database, as with the Go operator: the
    /// PerconaPGCluster `<name>-postgres` is created once, and DittoFS runs on its user `dittofs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percona: Option<PerconaSpec>,
    /// Scheduled snapshot policies, one per share (the Go operator's field). The agent applies them to
    /// its DittoFS with a short admin login whenever this list changes (and after DittoFS restarts),
    /// deletes the policy of an entry removed from the list if it applied it, and reports each entry under
    /// status.agents[].snapshotPolicies; a refusal gives one SnapshotPolicyFailed Warning Event. At most 64
    /// entries, one per share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["share".into()]),
        validation = cel::rule(snapshot::SAME_SHARE_RULE, snapshot::SAME_SHARE_MESSAGE)
    )]
    pub snapshot_policies: Vec<SnapshotPolicySpec>,
}

fn default_image() -> String {
    constants::DEFAULT_IMAGE.to_owned()
}

fn default_replicas() -> i32 {
    1
}

impl DittoServerSpec {
    /// A spec with the given metadata size and every other field at its default.
    pub fn with_metadata_size(metadata_size: &str) -> Self {
        serde_json::from_value(serde_json::json!({"storage": {"metadataSize": metadata_size}}))
            .expect("a spec with only storage.metadataSize deserializes")
    }

    /// The adapter polling interval; the default (30s) if the value does not parse or is under 1s
    /// (the CRD refuses such values, so this only happens for objects that bypassed it).
    pub fn polling_interval(&self) -> Duration {
        match crate::duration::parse_go_duration(&self.adapter_discovery.polling_interval) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            _ => Duration::from_secs(30),
        }
    }

    /// The fast-path period the spec asks for; `None` when unset, or when the value does not parse or lies
    /// outside 100ms..=10s (the CRD refuses such values, so this only happens for objects that bypassed it).
    pub fn fast_path_interval(&self) -> Option<Duration> {
        let text = self.adapter_discovery.fast_path_interval.as_deref()?;
        crate::duration::parse_go_duration(text).ok().filter(|d| constants::FAST_PATH_RANGE.contains(d))
    }

    /// The API port.
    pub fn api_port(&self) -> u16 {
        u16::try_from(self.control_plane.port).unwrap_or(constants::DEFAULT_API_PORT)
    }

    /// Whether the API is reached over https (tls, or a server certificate).
    pub fn api_uses_tls(&self) -> bool {
        self.control_plane.tls || self.control_plane.cert_secret_name.as_deref().is_some_and(|s| !s.is_empty())
    }

    /// The pod's termination grace period.
    pub fn termination_grace_period_seconds(&self) -> i64 {
        self.termination_grace_period_seconds.unwrap_or(constants::DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
    }
}
