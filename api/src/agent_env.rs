//! The agent container's environment: the contract between the controller's pod template and the agent.

/// Pod name, from the downward API; also the key of the agent's entry in `status.agents`.
pub const POD_NAME: &str = "POD_NAME";
/// Pod namespace, from the downward API; the DittoServer lives there.
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Name of the DittoServer this pod serves.
pub const DITTOSERVER_NAME: &str = "DITTOSERVER_NAME";
/// DittoFS control-plane URL on loopback, e.g. `http://127.0.0.1:8080`.
pub const DITTOFS_URL: &str = "DITTOFS_URL";
/// Bootstrap admin password (secretKeyRef); used only to provision the operator account.
pub const ADMIN_PASSWORD: &str = "DITTOFS_ADMIN_PASSWORD";
/// Bootstrap admin username (DittoFS hard-codes `admin`; kept for the Go operator's `identity.admin.username`).
pub const ADMIN_USERNAME: &str = "DITTOFS_ADMIN_USERNAME";
/// Name of the Secret the admin password comes from, so a refused login can name it.
pub const ADMIN_SECRET_NAME: &str = "DITTOFS_ADMIN_SECRET_NAME";
/// Key in that Secret.
pub const ADMIN_SECRET_KEY: &str = "DITTOFS_ADMIN_SECRET_KEY";
/// Address of the agent's admin server (`/livez`, `/readyz`, `/metrics`).
pub const ADMIN_ADDR: &str = "AGENT_ADMIN_ADDR";
/// `json` or `plain` log lines.
pub const LOG_FORMAT: &str = "LOG_FORMAT";

/// The agent's admin port inside the pod.
pub const DEFAULT_ADMIN_PORT: u16 = 8082;
