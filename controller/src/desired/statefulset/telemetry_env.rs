//! The agent container's log and OpenTelemetry env: the controller's own settings ([`AgentTelemetry`]) with the
//! server's `spec.agent` values over them.
//!
//! The order is fixed (LOG_FORMAT, RUST_LOG, then the OTEL_* variables by name), so an unchanged input
//! renders an identical pod template and a second reconcile writes nothing.

use std::collections::BTreeMap;

use dittofs_api::DittoServer;
use dittofs_api::agent_env::{
    LOG_FORMAT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG, RUST_LOG,
};

use crate::config::AgentTelemetry;

/// `(name, value)` pairs of the agent's telemetry env, in their fixed order.
pub(super) fn telemetry_env(ds: &DittoServer, defaults: &AgentTelemetry) -> Vec<(String, String)> {
    let agent = ds.spec.agent.as_ref();
    let format = agent.and_then(|a| a.log_format).unwrap_or(defaults.log_format);
    let filter = agent.and_then(|a| a.log_level.clone()).or_else(|| defaults.log_filter.clone());
    let mut otel: BTreeMap<String, String> = defaults.otel.clone();
    if let Some(spec) = agent.and_then(|a| a.otel.as_ref()) {
        if let Some(endpoint) = &spec.endpoint {
            otel.insert(OTEL_EXPORTER_OTLP_ENDPOINT.to_owned(), endpoint.clone());
            // The SDK prefers the traces-specific URL: left in, it would keep the controller's endpoint.
            otel.remove(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
        }
        if let Some(sampler) = spec.sampler {
            otel.insert(OTEL_TRACES_SAMPLER.to_owned(), sampler.as_str().to_owned());
        }
        if let Some(arg) = &spec.sampler_arg {
            otel.insert(OTEL_TRACES_SAMPLER_ARG.to_owned(), arg.clone());
        }
    }
    let mut env = vec![(LOG_FORMAT.to_owned(), format.as_str().to_owned())];
    env.extend(filter.map(|f| (RUST_LOG.to_owned(), f)));
    env.extend(otel);
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use dittofs_api::crd::AgentLogFormat;
    use serde_json::json;

    fn controller(format: AgentLogFormat, filter: Option<&str>, otel: &[(&str, &str)]) -> AgentTelemetry {
        AgentTelemetry {
            log_format: format,
            log_filter: filter.map(str::to_owned),
            otel: otel.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn env(spec: serde_json::Value, defaults: &AgentTelemetry) -> Vec<(String, String)> {
        telemetry_env(&server(spec), defaults)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn without_settings_the_agent_logs_json_as_before() {
        assert_eq!(env(json!({}), &AgentTelemetry::default()), pairs(&[("LOG_FORMAT", "json")]));
    }

    #[test]
    fn the_controllers_settings_reach_the_agent_in_a_fixed_order() {
        let defaults = controller(
            AgentLogFormat::Plain,
            Some("info,dittofs_agent=debug"),
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
            ],
        );
        let want = pairs(&[
            ("LOG_FORMAT", "plain"),
            ("RUST_LOG", "info,dittofs_agent=debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ]);
        assert_eq!(env(json!({}), &defaults), want);
        assert_eq!(env(json!({}), &defaults), env(json!({}), &defaults.clone()), "deterministic");
    }

    #[test]
    fn the_servers_values_win_and_its_endpoint_replaces_both_of_the_controllers() {
        let defaults = controller(
            AgentLogFormat::Json,
            Some("warn"),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://central:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://central:4318/v1/traces"),
                ("OTEL_TRACES_SAMPLER", "always_on"),
                ("OTEL_TRACES_SAMPLER_ARG", "1"),
                ("OTEL_SDK_DISABLED", "false"),
            ],
        );
        let spec = json!({"agent": {
            "logLevel": "debug",
            "logFormat": "plain",
            "otel": {"endpoint": "https://team.example:4318", "sampler": "traceidratio", "samplerArg": "0.25"},
        }});
        let want = pairs(&[
            ("LOG_FORMAT", "plain"),
            ("RUST_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://team.example:4318"),
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(env(spec, &defaults), want);
        // A field left out keeps the controller's value.
        let only_sampler = json!({"agent": {"otel": {"sampler": "always_off"}}});
        let want = pairs(&[
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://central:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://central:4318/v1/traces"),
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ]);
        assert_eq!(env(only_sampler, &defaults), want);
    }
}
