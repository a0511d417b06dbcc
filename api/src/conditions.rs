//! Condition types and reasons of `status.conditions`, and the reasons of the Events the controller and the
//! agents emit.
//!
//! The types and reasons of the Go operator are kept so dashboards and scripts written for it keep working.

/// `"True"` condition status.
pub const STATUS_TRUE: &str = "True";
/// `"False"` condition status.
pub const STATUS_FALSE: &str = "False";
/// `"Unknown"` condition status.
pub const STATUS_UNKNOWN: &str = "Unknown";

/// Ready = ConfigReady ∧ Available ∧ ¬Progressing ∧ (DatabaseReady with Percona) ∧ (Authenticated when replicas > 0);
/// SpecSupported does not count.
pub const READY: &str = "Ready";
/// At least one replica is ready, or the server is intentionally stopped (replicas = 0).
pub const AVAILABLE: &str = "Available";
/// The rendered config ConfigMap exists and holds `config.yaml`.
pub const CONFIG_READY: &str = "ConfigReady";
/// The StatefulSet is rolling out or scaling.
pub const PROGRESSING: &str = "Progressing";
/// The Percona PostgreSQL cluster is ready and its user Secret exists; absent when `percona` is off (as in Go).
pub const DATABASE_READY: &str = "DatabaseReady";
/// The agents could log in to the DittoFS API (aggregated from `status.agents[*].auth`).
pub const AUTHENTICATED: &str = "Authenticated";
/// Every field set in the spec is implemented; False names the fields that are kept but not acted on.
pub const SPEC_SUPPORTED: &str = "SpecSupported";
/// The adapter Services, NetworkPolicies and container ports match the agents' reports.
pub const ADAPTERS_READY: &str = "AdaptersReady";

/// Present while metrics are enabled: the `<name>-metrics` Service serves them, and the ServiceMonitor
/// `metrics.serviceMonitor` asks for is applied. Not part of Ready: scraping is not serving files.
pub const METRICS_READY: &str = "MetricsReady";

/// All the conditions the controller maintains, in display order (DatabaseReady only with Percona, MetricsReady
/// only while metrics are on).
pub const ALL: [&str; 9] = [
    READY,
    AVAILABLE,
    CONFIG_READY,
    PROGRESSING,
    DATABASE_READY,
    AUTHENTICATED,
    ADAPTERS_READY,
    METRICS_READY,
    SPEC_SUPPORTED,
];

/// Reasons of the conditions (type in the comment).
pub mod reasons {
    /// Ready=True.
    pub const ALL_CONDITIONS_MET: &str = "AllConditionsMet";
    /// Ready=False; the message lists the unmet conditions.
    pub const CONDITIONS_NOT_MET: &str = "ConditionsNotMet";
    /// Available=True with replicas = 0.
    pub const STOPPED: &str = "Stopped";
    /// Available=True.
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available=False.
    pub const NO_REPLICAS_AVAILABLE: &str = "NoReplicasAvailable";
    /// ConfigReady=True.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// ConfigReady=False: the ConfigMap does not exist.
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// ConfigReady=False: the ConfigMap has no `config.yaml`.
    pub const CONFIG_MISSING: &str = "ConfigMissing";
    /// Progressing=True: the StatefulSet has not observed its latest generation.
    pub const STATEFULSET_UPDATING: &str = "StatefulSetUpdating";
    /// Progressing=True: ready replicas differ from the desired count.
    pub const SCALING_REPLICAS: &str = "ScalingReplicas";
    /// Progressing=False.
    pub const RECONCILE_COMPLETE: &str = "ReconcileComplete";
    /// Authenticated=True.
    pub const AUTHENTICATION_SUCCEEDED: &str = "AuthenticationSucceeded";
    /// Authenticated=False: the API could not be reached (transient).
    pub const API_UNREACHABLE: &str = "APIUnreachable";
    /// Authenticated=False: the API refused the credentials (permanent until they change).
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// Authenticated=Unknown: no agent has reported yet.
    pub const NO_AGENT_REPORT: &str = "NoAgentReport";
    /// SpecSupported=True.
    pub const ALL_FIELDS_SUPPORTED: &str = "AllFieldsSupported";
    /// SpecSupported=False; the message names the fields.
    pub const UNIMPLEMENTED_FIELDS: &str = "UnimplementedFields";
    /// AdaptersReady=True: every serving adapter is exposed and nothing else is.
    pub const ADAPTERS_EXPOSED: &str = "AdaptersExposed";
    /// AdaptersReady=Unknown: no agent has read the adapter list yet; adapter objects are left as they are.
    pub const NO_REPORT: &str = "NoReport";
    /// AdaptersReady=Unknown: an agent cannot reach DittoFS; adapter objects are kept as they are.
    pub const AGENT_UNREACHABLE: &str = "AgentUnreachable";
    /// AdaptersReady=False: pods report different ports for an adapter (the lowest ordinal wins).
    pub const PORT_CONFLICT: &str = "PortConflict";
    /// AdaptersReady=False: an object with an adapter object's name exists without the adapter labels
    /// (it is never touched, so that adapter is not exposed).
    pub const OBJECT_NOT_MANAGED: &str = "ObjectNotManaged";
    /// AdaptersReady=False: applying or deleting an adapter object failed (retried with a backoff).
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// AdaptersReady=False: the agents reported adapters the controller refuses to expose (a type not in
    /// `adapterServices.allowedTypes`, a port of the API, metrics or agent, a port out of range, or a
    /// name another type already has); the message names each and why.
    pub const ADAPTERS_REFUSED: &str = "AdaptersRefused";
    /// ConfigReady=False: the JWT signing key is shorter than DittoFS accepts (it would not start).
    pub const JWT_SECRET_TOO_SHORT: &str = "JWTSecretTooShort";
    /// Ready=False: a child's fixed name (e.g. `<name>-api`) is taken by an object that does not belong to
    /// this server; it is never written or deleted, and nothing else is created until it is gone or renamed.
    pub const CHILD_NOT_OWNED: &str = "ChildNotOwned";
    /// AdaptersReady=Unknown: the agents' reports are older than `adapterServices.reportMaxAge`; adapter
    /// objects are kept or closed per `adapterServices.onStaleReport`.
    pub const REPORT_STALE: &str = "ReportStale";
    /// MetricsReady=True: the `<name>-metrics` Service serves the metrics (no ServiceMonitor asked for).
    pub const METRICS_SERVED: &str = "MetricsServed";
    /// MetricsReady=True: the ServiceMonitor `<name>-metrics` selects the `<name>-metrics` Service.
    pub const SERVICE_MONITOR_APPLIED: &str = "ServiceMonitorApplied";
    /// MetricsReady=False: `metrics.serviceMonitor.enabled` is set but the cluster does not serve
    /// monitoring.coreos.com/v1 ServiceMonitor (the prometheus-operator's CRDs are not installed).
    pub const SERVICE_MONITOR_API_MISSING: &str = "ServiceMonitorAPIMissing";
    /// MetricsReady=Unknown: the controller could not ask the apiserver yet whether it serves ServiceMonitors.
    pub const SERVICE_MONITOR_API_UNKNOWN: &str = "ServiceMonitorAPIUnknown";
    /// Ready=False: the server's StatefulSet was not made by this controller or the Go operator in a shape
    /// it can take over (e.g. a selector edited by hand); nothing is written until that is resolved.
    pub const TAKEOVER_BLOCKED: &str = "TakeoverBlocked";
    /// DatabaseReady=True: the PerconaPGCluster is ready and its user Secret holds every key DittoFS reads.
    pub const PERCONA_READY: &str = "PerconaReady";
    /// DatabaseReady=False: the PerconaPGCluster (or its API: Percona's operator) does not exist.
    pub const PERCONA_NOT_FOUND: &str = "PerconaNotFound";
    /// DatabaseReady=False: the PerconaPGCluster is not ready (the message gives its state) or its user
    /// Secret is missing or incomplete; the StatefulSet is not created or changed meanwhile.
    pub const PERCONA_NOT_READY: &str = "PerconaNotReady";
    /// ConfigReady=False: `database.postgresSecretRef` names a Secret or a key that does not exist; the
    /// StatefulSet is not created or changed until it does.
    pub const DATABASE_SECRET_MISSING: &str = "DatabaseSecretMissing";
    /// ConfigReady=False: a Secret or key the spec references for DittoFS (the JWT key, LDAP, Kerberos) does not
    /// exist; the StatefulSet is not created or changed until it does.
    pub const SECRET_MISSING: &str = "SecretMissing";
}

/// Reasons of the Events on a `DittoServer`: the controller's, then the agents' (reporter `dittofs-agent`).
pub mod events {
    /// Warning: the spec sets fields this controller keeps but does not implement yet (the note names them).
    pub const UNIMPLEMENTED_FIELDS: &str = "UnimplementedFields";
    /// Warning: a reconcile step failed.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
    /// Normal: an adapter Service was created.
    pub const ADAPTER_SERVICE_CREATED: &str = "AdapterServiceCreated";
    /// Normal: an adapter Service was updated.
    pub const ADAPTER_SERVICE_UPDATED: &str = "AdapterServiceUpdated";
    /// Normal: an adapter Service was deleted.
    pub const ADAPTER_SERVICE_DELETED: &str = "AdapterServiceDeleted";
    /// Warning: an adapter Service could not be reconciled.
    pub const ADAPTER_SERVICE_FAILED: &str = "AdapterServiceFailed";
    /// Normal: an adapter NetworkPolicy was created.
    pub const ADAPTER_NETWORK_POLICY_CREATED: &str = "AdapterNetworkPolicyCreated";
    /// Normal: an adapter NetworkPolicy was updated.
    pub const ADAPTER_NETWORK_POLICY_UPDATED: &str = "AdapterNetworkPolicyUpdated";
    /// Normal: an adapter NetworkPolicy was deleted.
    pub const ADAPTER_NETWORK_POLICY_DELETED: &str = "AdapterNetworkPolicyDeleted";
    /// Warning: a NetworkPolicy could not be reconciled.
    pub const NETWORK_POLICY_FAILED: &str = "NetworkPolicyFailed";
    /// Normal: the StatefulSet's adapter container ports changed.
    pub const CONTAINER_PORTS_UPDATED: &str = "ContainerPortsUpdated";
    /// Warning: reported adapters are refused (once per change of the refused set; the note names them).
    pub const ADAPTERS_REFUSED: &str = "AdaptersRefused";
    /// Warning: the JWT signing key is shorter than DittoFS accepts.
    pub const JWT_SECRET_TOO_SHORT: &str = "JWTSecretTooShort";
    /// Warning: DittoFS waits for its Percona PostgreSQL cluster (once per change of the cluster's state).
    pub const PERCONA_NOT_READY: &str = "PerconaNotReady";
    /// Warning: the `database.postgresSecretRef` Secret or one of its keys is missing (once per change).
    pub const DATABASE_SECRET_MISSING: &str = "DatabaseSecretMissing";
    /// Warning: a referenced Secret or key (JWT, LDAP, Kerberos) does not exist (once per change).
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// Warning: a child's name is taken by an object of someone else (the note names it and its owner).
    pub const CHILD_NOT_OWNED: &str = "ChildNotOwned";
    /// Warning: the agents' reports are older than the freshness limit (once per change).
    pub const REPORT_STALE: &str = "ReportStale";
    /// Normal: a server the Go operator managed was taken over (the note says what was adopted).
    pub const TAKEN_OVER: &str = "TakenOver";
    /// Warning: a server of the Go operator cannot be taken over as it is (the note says why and what to do).
    pub const TAKEOVER_BLOCKED: &str = "TakeoverBlocked";
    /// Warning: `metrics.serviceMonitor.enabled` is set but the cluster does not serve ServiceMonitors
    /// (once per change).
    pub const SERVICE_MONITOR_API_MISSING: &str = "ServiceMonitorAPIMissing";
    /// Normal: the server is being deleted (`status.phase` is `Deleting`); once per deletion.
    pub const DELETING: &str = "Deleting";

    /// Normal (agent): the DittoFS account `k8s-operator` was created, or its password reset, and logged in.
    pub const AUTH_PROVISIONED: &str = "AuthProvisioned";
    /// Warning (agent): authentication failed for a reason retrying does not fix (the note says which).
    pub const AUTH_FAILED: &str = "AuthFailed";
    /// Warning (agent): DittoFS did not answer (or answered 5xx) while the agent authenticated; once per outage.
    pub const AUTH_API_UNREACHABLE: &str = "AuthAPIUnreachable";
    /// Warning (agent): DittoFS refused the admin password of the managed bootstrap Secret.
    pub const ADMIN_BOOTSTRAP_UNAUTHORIZED: &str = "AdminBootstrapUnauthorized";
    /// Warning (agent): DittoFS refused the admin password of `identity.admin.passwordSecretRef` (the note
    /// names the Secret and key).
    pub const ADMIN_CREDENTIAL_UNAUTHORIZED: &str = "AdminCredentialUnauthorized";
    /// Normal (agent): a snapshot policy of the spec was written to DittoFS, or a removed one deleted (once
    /// per change; the note names the share).
    pub const SNAPSHOT_POLICY_APPLIED: &str = "SnapshotPolicyApplied";
    /// Warning (agent): DittoFS refused a snapshot policy, or the admin login to apply it failed (the Go
    /// operator's reason; once per change of the entry or of the error, never per retry).
    pub const SNAPSHOT_POLICY_FAILED: &str = "SnapshotPolicyFailed";
    /// Normal (agent): the policy of an entry removed from spec.snapshotPolicies was deleted from DittoFS.
    pub const SNAPSHOT_POLICY_DELETED: &str = "SnapshotPolicyDeleted";
}
