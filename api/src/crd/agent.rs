//! Spec section of the agent: the container next to DittoFS that watches its adapters and reports them in the
//! status — its image, its log and trace settings (each defaulting to the controller's own) and who may scrape
//! its metrics.
//!
//! The string formats are checked twice: by the CRD's CEL rules ([`crate::crd::cel`]) and, for objects
//! stored without them, by the mirrors here ([`is_log_filter`], [`is_otlp_endpoint`], [`is_sampler_arg`]),
//! which the schema tests hold to the rules.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::network::AdapterSource;

/// When the kubelet pulls an image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
// No schema description: it would replace the description of each field of this type.
#[schemars(description = "")]
pub enum PullPolicy {
    /// Pull at every container start.
    Always,
    /// Pull only when the node does not have the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes uses in `Container.imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Format of the agent's log lines (its `LOG_FORMAT`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[schemars(description = "")]
pub enum AgentLogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Plain,
}

impl AgentLogFormat {
    /// The value of the agent's `LOG_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Plain => "plain",
        }
    }
}

/// An OpenTelemetry trace sampler (`OTEL_TRACES_SAMPLER`): the values of the OpenTelemetry specification
/// that the agent's SDK implements.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[schemars(description = "")]
pub enum TraceSampler {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// The share of traces given by samplerArg.
    Traceidratio,
    /// As the parent span decides; root spans always.
    ParentbasedAlwaysOn,
    /// As the parent span decides; root spans never.
    ParentbasedAlwaysOff,
    /// As the parent span decides; root spans by the ratio of samplerArg.
    ParentbasedTraceidratio,
}

impl TraceSampler {
    /// The value of `OTEL_TRACES_SAMPLER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlwaysOn => "always_on",
            Self::AlwaysOff => "always_off",
            Self::Traceidratio => "traceidratio",
            Self::ParentbasedAlwaysOn => "parentbased_always_on",
            Self::ParentbasedAlwaysOff => "parentbased_always_off",
            Self::ParentbasedTraceidratio => "parentbased_traceidratio",
        }
    }
}

/// The agent container added to the server pod. It polls the local DittoFS API and writes what it
/// sees under status.agents; the controller acts on that.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Image of the agent. Unset: the image the controller was built to work with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Pull policy of the agent image. Unset: the Kubernetes default (Always for ":latest", else IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Resources of the agent container. Unset: a small default request and limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Log filter of the agent, in RUST_LOG syntax: a level (trace, debug, info, warn, error, off), or
    /// comma-separated directives `<target>=<level>` such as "info,dittofs_agent=debug"; at most 256
    /// characters. Unset: the controller's own RUST_LOG (the Helm chart's log.level), else info. It is the
    /// agent container's environment: a change restarts the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::LOG_FILTER_RULE, crate::crd::cel::LOG_FILTER_MESSAGE))]
    pub log_level: Option<String>,
    /// Format of the agent's log lines: json (one object per line) or plain. Unset: the controller's own
    /// format (its --log-format, json by default). A change restarts the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<AgentLogFormat>,
    /// Trace export of the agent (OpenTelemetry, OTLP over HTTP). Each field left unset takes the
    /// controller's own OTEL_* setting; the others it was started with (protocol, resource attributes,
    /// OTEL_SDK_DISABLED, …) apply too. A change restarts the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel: Option<AgentOtelSpec>,
    /// Who may scrape the agent's metrics. Each entry (an ipBlock, or a namespaceSelector and/or
    /// podSelector) becomes a `from` peer of one more rule of the `<name>-baseline` NetworkPolicy, which
    /// opens the agent's admin port 8082 (/metrics, /livez, /readyz) and no other port. Empty (default):
    /// no other pod may reach that port. For a Prometheus in namespace monitoring:
    /// `[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]`. At most 16 entries;
    /// a change does not restart the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics_from: Vec<AdapterSource>,
}

/// Where the agent sends its traces, and how many.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AgentOtelSpec {
    /// Base URL of the OTLP/HTTP receiver (the agent's OTEL_EXPORTER_OTLP_ENDPOINT; it posts to
    /// <endpoint>/v1/traces), e.g. "http://otel-collector.monitoring:4318": an http or https URL without
    /// user credentials, query or fragment, at most 512 characters. Replaces both the controller's
    /// OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT. OTEL_SDK_DISABLED=true on the
    /// controller still turns export off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::OTLP_ENDPOINT_RULE, crate::crd::cel::OTLP_ENDPOINT_MESSAGE))]
    pub endpoint: Option<String>,
    /// Trace sampler (OTEL_TRACES_SAMPLER): always_on, always_off, traceidratio, parentbased_always_on,
    /// parentbased_always_off or parentbased_traceidratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<TraceSampler>,
    /// Argument of the ratio samplers (OTEL_TRACES_SAMPLER_ARG): the share of traces kept, a decimal
    /// fraction from 0 to 1 such as "0.25".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = crate::crd::cel::rule(crate::crd::cel::SAMPLER_ARG_RULE, crate::crd::cel::SAMPLER_ARG_MESSAGE))]
    pub sampler_arg: Option<String>,
}

/// Levels a `RUST_LOG` directive may end in (`tracing`'s, as the CRD rule spells them).
const LOG_LEVELS: [&str; 12] =
    ["trace", "debug", "info", "warn", "error", "off", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"];

/// [`crate::crd::cel::LOG_FILTER_RULE`] and the 256-character bound of `agent.logLevel`.
pub fn is_log_filter(s: &str) -> bool {
    let identifier = |id: &str| {
        let mut chars = id.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let directive = |d: &str| {
        let (target, level) = match d.split_once('=') {
            Some((target, level)) => (target, Some(level)),
            None => (d, None),
        };
        target.split("::").all(identifier) && level.is_none_or(|l| LOG_LEVELS.contains(&l))
    };
    s.chars().count() <= 256 && s.split(',').all(directive)
}

/// [`crate::crd::cel::OTLP_ENDPOINT_RULE`] and the 512-character bound of `agent.otel.endpoint`.
pub fn is_otlp_endpoint(s: &str) -> bool {
    // RE2's [:space:]: tab, newline, vertical tab, form feed, carriage return, space.
    let space = |c: char| matches!(c, '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ');
    let Some(rest) = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")) else { return false };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    s.chars().count() <= 512
        && !authority.is_empty()
        && !authority.chars().any(|c| "?#@".contains(c) || space(c))
        && !path.chars().any(|c| "?#".contains(c) || space(c))
}

/// [`crate::crd::cel::SAMPLER_ARG_RULE`]: `0`, `0.<digits>`, `1` or `1.<zeros>`.
pub fn is_sampler_arg(s: &str) -> bool {
    let fraction = |rest: &str, digit: fn(char) -> bool| {
        rest.is_empty() || rest.strip_prefix('.').is_some_and(|d| !d.is_empty() && d.chars().all(digit))
    };
    match s.split_at_checked(1) {
        Some(("0", rest)) => fraction(rest, |c| c.is_ascii_digit()),
        Some(("1", rest)) => fraction(rest, |c| c == '0'),
        _ => false,
    }
}

impl AgentSpec {
    /// The first field whose value a CEL rule of the schema would refuse, as (path under `spec`, message),
    /// for objects stored without those rules.
    pub fn invalid_field(&self) -> Option<(&'static str, &'static str)> {
        use crate::crd::cel;
        let otel = self.otel.as_ref();
        if self.log_level.as_deref().is_some_and(|l| !is_log_filter(l)) {
            return Some(("agent.logLevel", cel::LOG_FILTER_MESSAGE));
        }
        if otel.and_then(|o| o.endpoint.as_deref()).is_some_and(|e| !is_otlp_endpoint(e)) {
            return Some(("agent.otel.endpoint", cel::OTLP_ENDPOINT_MESSAGE));
        }
        if otel.and_then(|o| o.sampler_arg.as_deref()).is_some_and(|a| !is_sampler_arg(a)) {
            return Some(("agent.otel.samplerArg", cel::SAMPLER_ARG_MESSAGE));
        }
        None
    }
}
