//! Spec sections about watching the server: the metrics endpoint, its ServiceMonitor, and logging.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::SecretKeyRef;
use crate::constants;

/// The Prometheus metrics endpoint of DittoFS (opt-in).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::METRICS_AGENT_PORT_RULE, crate::crd::cel::METRICS_AGENT_PORT_MESSAGE))]
pub struct MetricsSpec {
    /// Serve metrics, with a container port and a `<name>-metrics` Service carrying the
    /// prometheus.io/scrape annotations (default false).
    #[serde(default)]
    pub enabled: bool,
    /// TCP port of the metrics endpoint (1-65535, default 9090); must differ from controlPlane.port
    /// and from 8082, the agent's admin port.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// HTTP path of the metrics (default "/metrics"); must start with "/".
    #[serde(default = "default_metrics_path")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::ABSOLUTE_PATH_RULE, crate::crd::cel::ABSOLUTE_PATH_MESSAGE))]
    pub path: String,
    /// Secret key holding a bearer token that scrapers must present. Unset: the endpoint is
    /// unauthenticated and protected by its port and the NetworkPolicies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyRef>,
    /// A prometheus-operator ServiceMonitor `<name>-metrics` selecting the `<name>-metrics` Service,
    /// when metrics are enabled and the cluster serves monitoring.coreos.com/v1 ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

/// The prometheus-operator ServiceMonitor of the metrics endpoint (the Go operator's fields).
///
/// Honoured only while the cluster serves monitoring.coreos.com/v1 ServiceMonitor: otherwise the
/// condition MetricsReady is False (ServiceMonitorAPIMissing) with one Warning Event, and the rest of
/// the server is reconciled as usual.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor (default false). Switched off, or with metrics disabled, an
    /// existing one is deleted.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval of the endpoint, a Prometheus duration such as 30s or 1m (unset or empty:
    /// the Prometheus default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::PROMETHEUS_DURATION_RULE, crate::crd::cel::PROMETHEUS_DURATION_MESSAGE))]
    pub interval: Option<String>,
    /// Labels of the ServiceMonitor, e.g. the one a Prometheus selects monitors by
    /// (`release: kube-prometheus-stack`); at most 64. The controller's own labels (app.kubernetes.io/*,
    /// dittofs.io/metrics-service) win over these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": crate::crd::cel::LABEL_VALUE_REGEX}))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::LABEL_KEYS_RULE, crate::crd::cel::LABEL_KEYS_MESSAGE))]
    pub labels: BTreeMap<String, String>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            port: default_metrics_port(),
            path: default_metrics_path(),
            bearer_token_secret: None,
            service_monitor: None,
        }
    }
}

fn default_metrics_port() -> i32 {
    i32::from(constants::DEFAULT_METRICS_PORT)
}

fn default_metrics_path() -> String {
    constants::DEFAULT_METRICS_PATH.to_owned()
}

/// Minimum level of the server's log.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum LogLevel {
    /// Everything, including debugging detail.
    Debug,
    /// Normal operation (the default).
    #[default]
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

/// Format of the server's log lines.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line (the default).
    #[default]
    Json,
}

/// Logging of the DittoFS server. DittoFS reads it at start-up, so a change restarts the pod.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// Minimum level: DEBUG, INFO (default), WARN or ERROR.
    #[serde(default)]
    pub level: LogLevel,
    /// Line format: text or json (default).
    #[serde(default)]
    pub format: LogFormat,
    /// Destination: "stdout" (default), "stderr" or a file path in the container.
    #[serde(default = "default_log_output")]
    #[schemars(length(min = 1, max = 1024))]
    pub output: String,
}

impl Default for LoggingSpec {
    fn default() -> Self {
        Self { level: LogLevel::Info, format: LogFormat::Json, output: default_log_output() }
    }
}

fn default_log_output() -> String {
    "stdout".to_owned()
}
