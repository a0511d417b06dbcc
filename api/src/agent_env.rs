//! The agent container's environment: the contract between the controller's pod template and the agent.

/// Pod name, from the downward API; also the key of the agent's entry in `status.agents`.
pub const POD_NAME: &str = "POD_NAME";
/// Pod namespace, from the downward API; the DittoServer lives there.
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Name of the DittoServer this pod serves.
pub const DITTOSERVER_NAME: &str = "DITTOSERVER_NAME";
/// DittoFS control-plane URL on loopback, e.g. `http://127.0.0.1:8080`.
pub const DITTOFS_URL: &str = "DITTOFS_URL";
/// PEM bundle of the CA(s) DittoFS's certificate must chain to: the `ca.crt` of the cert Secret
/// (`controlPlane.certSecretName`), mounted into the agent container only ([`TLS_DIR`]). Set exactly when
/// DittoFS serves TLS itself, and then [`DITTOFS_URL`] is `https://127.0.0.1:<port>`.
pub const TLS_CA_FILE: &str = "DITTOFS_TLS_CA_FILE";
/// DNS name DittoFS's certificate must carry, checked although the agent dials loopback: the `-api`
/// Service's `<cr>-api.<ns>.svc` (the default when unset and [`TLS_CA_FILE`] is set).
pub const TLS_SERVER_NAME: &str = "DITTOFS_TLS_SERVER_NAME";
/// Client certificate the agent presents under mutual TLS (`controlPlane.clientCASecretName`): the cert
/// Secret's own `tls.crt`, which must then allow client authentication and chain to the client CA.
pub const TLS_CLIENT_CERT_FILE: &str = "DITTOFS_TLS_CLIENT_CERT_FILE";
/// The private key of [`TLS_CLIENT_CERT_FILE`] (the cert Secret's `tls.key`).
pub const TLS_CLIENT_KEY_FILE: &str = "DITTOFS_TLS_CLIENT_KEY_FILE";
/// Where the controller mounts the cert Secret's files (`ca.crt`, and under mutual TLS `tls.crt` and
/// `tls.key`) in the agent container.
pub const TLS_DIR: &str = "/var/run/secrets/dittofs/tls";
/// Path of the file holding the bootstrap admin password: in a pod, the Secret volume the controller mounts
/// into the agent container only ([`ADMIN_PASSWORD_DIR`]). Used only to provision the operator account and
/// to repair its role; read each time it is needed, so a Secret the kubelet updated in the volume is used.
pub const ADMIN_PASSWORD_FILE: &str = "DITTOFS_ADMIN_PASSWORD_FILE";
/// The bootstrap admin password itself, for running the agent outside Kubernetes. The controller never
/// sets it: an env var is inherited by child processes, readable in `/proc/<pid>/environ` and fixed for
/// the container's life, while a Secret file is updated in place. [`ADMIN_PASSWORD_FILE`] wins when both
/// are set.
pub const ADMIN_PASSWORD: &str = "DITTOFS_ADMIN_PASSWORD";
/// Where the controller mounts the admin-password Secret volume in the agent container.
pub const ADMIN_PASSWORD_DIR: &str = "/var/run/secrets/dittofs/admin";
/// The one file of that volume (the Secret key is projected to this name).
pub const ADMIN_PASSWORD_FILE_NAME: &str = "password";
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
/// The fast path's period (a Go duration, 100ms to 10s) when the DittoServer does not set
/// `spec.adapterDiscovery.fastPathInterval`; unset: [`crate::constants::DEFAULT_FAST_PATH_INTERVAL`].
pub const FAST_PATH_INTERVAL: &str = "DITTOFS_AGENT_FAST_PATH_INTERVAL";

/// The directory of the pod's ServiceAccount credentials (`token`, `ca.crt`, `namespace`); unset:
/// [`SERVICEACCOUNT_DIR_DEFAULT`], where the controller's pod template mounts them. Set only to run the agent
/// outside a pod (the test harness writes the projected volume's files there).
pub const SERVICEACCOUNT_DIR: &str = "DITTOFS_AGENT_SERVICEACCOUNT_DIR";
/// Where a pod's ServiceAccount credentials are mounted, as every in-cluster client reads them.
pub const SERVICEACCOUNT_DIR_DEFAULT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The apiserver's address, as the kubelet sets it in every container.
pub const KUBERNETES_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
/// The apiserver's port, as the kubelet sets it in every container.
pub const KUBERNETES_SERVICE_PORT: &str = "KUBERNETES_SERVICE_PORT";

/// The agent's admin port inside the pod.
pub const DEFAULT_ADMIN_PORT: u16 = 8082;
/// The agent's log filter (`tracing`'s env filter syntax); unset: `info`.
pub const RUST_LOG: &str = "RUST_LOG";

/// The standard OpenTelemetry variables the controller passes on to every agent, with the values it was
/// started with (a server's `spec.agent.otel` replaces some). Not passed: `OTEL_SERVICE_NAME` (the agent
/// names itself `dittofs-agent`), `OTEL_EXPORTER_OTLP_HEADERS` and `…_TRACES_HEADERS` (they may carry a
/// credential, which would stand in clear in every pod template), and the certificate paths (files of the
/// controller's container, absent from the agent's).
pub const PASSED_OTEL_VARS: [&str; 11] = [
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_TRACES_EXPORTER",
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
];
/// Base URL of the OTLP receiver (`spec.agent.otel.endpoint`).
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Full URL of the OTLP traces receiver; wins over [`OTEL_EXPORTER_OTLP_ENDPOINT`] in the SDK, so a
/// server's own endpoint drops the controller's.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Trace sampler (`spec.agent.otel.sampler`).
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// Sampler argument (`spec.agent.otel.samplerArg`).
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
