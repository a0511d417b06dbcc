//! Fixed values shared by the agent and the controller: field managers, default ports, defaults of the spec.

/// Field manager of the controller's server-side applies (status and child objects).
///
/// The controller must never put `status.agents` into its own applies, or it would take the agents' entries over.
pub const CONTROLLER_FIELD_MANAGER: &str = "dittofs-controller";

/// Field manager of the controller's applies of the `adapter-*` container ports of the DittoFS container.
///
/// Separate from [`CONTROLLER_FIELD_MANAGER`]: the main StatefulSet apply leaves those entries out
/// (so it never strips them), and this manager's minimal body lists only them (an empty list releases
/// them).
pub const CONTROLLER_PORTS_FIELD_MANAGER: &str = "dittofs-controller-ports";

/// Prefix of the agents' field managers; see [`agent_field_manager`].
pub const AGENT_FIELD_MANAGER_PREFIX: &str = "dittofs-agent";

/// Field manager of the agent running in pod `pod_name`: `dittofs-agent-<pod>`.
///
/// Each pod's agent needs a manager of its own: server-side apply treats the fields a manager
/// omits from its next apply as released, so two agents sharing one manager name would delete each
/// other's `status.agents` entries.
pub fn agent_field_manager(pod_name: &str) -> String {
    format!("{AGENT_FIELD_MANAGER_PREFIX}-{pod_name}")
}

/// Name of the controller as an Event reporting component and in `app.kubernetes.io/managed-by`.
pub const CONTROLLER_NAME: &str = "dittofs-controller";

/// The finalizer the Go operator puts on a `DittoServer` (kept so that its objects can be adopted).
pub const GO_OPERATOR_FINALIZER: &str = "dittofs.dittofs.com/finalizer";

/// The field manager the Go operator's writes are recorded under: controller-runtime sets none, so the
/// apiserver takes the binary's name, `manager` in the Go operator's image. A take-over moves what it
/// owns on the server's children to this controller's managers (see the controller's `takeover`).
pub const GO_OPERATOR_FIELD_MANAGER: &str = "manager";

/// The Go operator's annotation counting transient auth failures on a `DittoServer` (removed on take-over).
pub const GO_AUTH_RETRY_ANNOTATION: &str = "dittofs.dittofs.com/auth-retry-count";

/// This controller's finalizer on a `DittoServer`: on deletion the Services go first, then the pods,
/// and only when no pod is left may the NetworkPolicies go (the garbage collector takes them).
pub const TEARDOWN_FINALIZER: &str = "dittofs.dittofs.com/teardown";

/// The finalizer on the baseline NetworkPolicy: it outlives the pods even under foreground deletion,
/// where the garbage collector deletes the server's dependents before the server.
pub const POLICY_FINALIZER: &str = "dittofs.dittofs.com/pods-gone";

/// The DittoFS image used when `spec.image` is not set (the Go operator's default).
pub const DEFAULT_IMAGE: &str = "marmos91c/dittofs:latest";

/// Default control-plane API port (`spec.controlPlane.port`).
pub const DEFAULT_API_PORT: u16 = 8080;

/// Default metrics port (`spec.metrics.port`).
pub const DEFAULT_METRICS_PORT: u16 = 9090;

/// Default metrics path (`spec.metrics.path`).
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// Default adapter polling interval (`spec.adapterDiscovery.pollingInterval`).
pub const DEFAULT_POLLING_INTERVAL: &str = "30s";

/// The agent's fast-path period when neither `spec.adapterDiscovery.fastPathInterval` nor its environment
/// sets one. Chosen from the bench's cost table (docs/performance.md): at 250 ms the wait for the next sample
/// is 125 ms on average, and the agent's idle CPU stays about one millicore.
pub const DEFAULT_FAST_PATH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The fast-path periods accepted (`spec.adapterDiscovery.fastPathInterval`, the agent's environment).
pub const FAST_PATH_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(10);

/// Shortest JWT signing key DittoFS starts with, in bytes (docs/dittofs-api.md#authentication-and-tokens).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// Default access-token lifetime (`spec.identity.jwt.accessTokenDuration`).
pub const DEFAULT_ACCESS_TOKEN_DURATION: &str = "15m";

/// Default refresh-token lifetime (`spec.identity.jwt.refreshTokenDuration`).
pub const DEFAULT_REFRESH_TOKEN_DURATION: &str = "168h";

/// Default admin user name (`spec.identity.admin.username`).
pub const DEFAULT_ADMIN_USERNAME: &str = "admin";

/// Default size of the control-plane PVC (`spec.storage.controlPlaneSize`).
pub const DEFAULT_CONTROL_PLANE_SIZE: &str = "1Gi";

/// Default SQLite path (`spec.database.sqlite.path`), on the control-plane PVC.
pub const DEFAULT_SQLITE_PATH: &str = "/data/controlplane/controlplane.db";

/// Grace period used when `spec.terminationGracePeriodSeconds` is unset:
/// 5 s preStop + 3 × 30 s shutdown stages + 10 s margin.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 105;

/// NFS adapter type, as DittoFS names it.
pub const NFS: &str = "nfs";

/// SMB adapter type, as DittoFS names it.
pub const SMB: &str = "smb";

/// Port of the NFS adapter when DittoFS reports port 0 ("the type's default").
pub const DEFAULT_NFS_PORT: u16 = 12049;

/// Port of the SMB adapter when DittoFS reports port 0 ("the type's default").
pub const DEFAULT_SMB_PORT: u16 = 12445;

/// The default port of an adapter type (`nfs` → 12049, `smb` → 12445), matched after sanitizing.
pub fn default_adapter_port(adapter_type: &str) -> Option<u16> {
    match crate::names::sanitize_adapter_type(adapter_type).as_str() {
        NFS => Some(DEFAULT_NFS_PORT),
        SMB => Some(DEFAULT_SMB_PORT),
        _ => None,
    }
}

/// The port an adapter really listens on: DittoFS reports the *stored* port, where 0 means
/// "the type's default". Returns `None` for port 0 of a type without a known default, and for
/// values outside 1..=65535 — such an adapter cannot be exposed.
pub fn resolve_adapter_port(adapter_type: &str, reported: i64) -> Option<u16> {
    match reported {
        0 => default_adapter_port(adapter_type),
        1..=65535 => u16::try_from(reported).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_to_the_type_default() {
        assert_eq!(resolve_adapter_port("nfs", 0), Some(12049));
        assert_eq!(resolve_adapter_port("SMB", 0), Some(12445));
        assert_eq!(resolve_adapter_port("ftp", 0), None);
        assert_eq!(resolve_adapter_port("smb", 1445), Some(1445));
        assert_eq!(resolve_adapter_port("nfs", 70000), None);
        assert_eq!(resolve_adapter_port("nfs", -1), None);
    }

    #[test]
    fn agent_field_managers_differ_per_pod() {
        assert_eq!(agent_field_manager("fs-0"), "dittofs-agent-fs-0");
        assert_ne!(agent_field_manager("a-0"), agent_field_manager("b-0"));
    }
}
