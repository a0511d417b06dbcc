//! `spec.agent`: its log, trace and metrics-scrape settings are refused by the CRD's CEL rules when malformed,
//! the controller's Rust mirrors of those rules give the same verdicts, and every input a rule reads is bounded.

use crate::common::{node, rules, spec_failures};
use dittofs_api::crd::agent::{is_log_filter, is_otlp_endpoint, is_sampler_arg};
use dittofs_api::crd::cel;
use serde_json::{Value, json};

fn with_agent(agent: Value) -> Value {
    json!({"storage": {"metadataSize": "1Gi"}, "agent": agent})
}

/// The mirror accepts `good` and refuses `bad`, and the CEL rule (refusing with `message` at `field`) agrees
/// on each sample but the empty one, which the schema's minLength refuses before any rule runs.
fn check(good: &[&str], bad: &[&str], field: &str, message: &str, mirror: fn(&str) -> bool, agent: fn(&str) -> Value) {
    for (samples, accepted) in [(good, true), (bad, false)] {
        for &sample in samples {
            assert_eq!(mirror(sample), accepted, "the mirror on {sample:?}");
            if sample.is_empty() {
                continue;
            }
            let failures = spec_failures(with_agent(agent(sample)));
            let expected = if accepted { vec![] } else { vec![(field.to_owned(), message.to_owned())] };
            assert_eq!(failures, expected, "CEL on {sample:?}");
        }
    }
}

#[test]
fn log_filters_follow_rust_log_syntax() {
    let good = [
        "info",
        "debug",
        "INFO",
        "off",
        "info,dittofs_agent=debug",
        "dittofs_agent::poller=trace",
        "kube",
        "a_b=warn,c",
    ];
    let bad = [
        "",
        "info dittofs_agent=debug",
        "info,",
        ",info",
        "dittofs-agent=debug",
        "a=verbose",
        "a=info=debug",
        "a[span]=debug",
        "a:b=info",
        "::a",
    ];
    check(&good, &bad, "spec.agent.logLevel", cel::LOG_FILTER_MESSAGE, is_log_filter, |s| json!({"logLevel": s}));
    assert!(!is_log_filter(&"a".repeat(257)), "the schema's maxLength");
}

#[test]
fn endpoints_are_plain_http_urls() {
    let good = [
        "http://otel-collector.monitoring:4318",
        "https://c.example",
        "http://10.0.0.1:4318/",
        "http://[::1]:4318/otlp",
        "http://c/a@b",
    ];
    let bad = [
        "otel-collector:4318",
        "ftp://c",
        "http://",
        "http:///x",
        "http://u:p@c:4318",
        "http://c?x=1",
        "http://c/#f",
        "http://c d",
        "https://c/a b",
        "http://c\t",
    ];
    check(
        &good,
        &bad,
        "spec.agent.otel.endpoint",
        cel::OTLP_ENDPOINT_MESSAGE,
        is_otlp_endpoint,
        |s| json!({"otel": {"endpoint": s}}),
    );
}

#[test]
fn sampler_args_are_fractions_from_zero_to_one() {
    let good = ["0", "1", "0.25", "0.000001", "1.0", "1.000"];
    let bad = ["", "2", "1.5", "-0.1", ".5", "0.", "1e-3", "0,5", " 0.5", "01"];
    check(
        &good,
        &bad,
        "spec.agent.otel.samplerArg",
        cel::SAMPLER_ARG_MESSAGE,
        is_sampler_arg,
        |s| json!({"otel": {"samplerArg": s}}),
    );
}

#[test]
fn the_schema_bounds_and_enumerates_the_agents_settings() {
    assert_eq!(rules(&node("spec.agent.logLevel")), [cel::LOG_FILTER_RULE]);
    assert_eq!(rules(&node("spec.agent.otel.endpoint")), [cel::OTLP_ENDPOINT_RULE]);
    assert_eq!(rules(&node("spec.agent.otel.samplerArg")), [cel::SAMPLER_ARG_RULE]);
    for (path, max) in
        [("spec.agent.logLevel", 256), ("spec.agent.otel.endpoint", 512), ("spec.agent.otel.samplerArg", 32)]
    {
        assert_eq!(node(path)["maxLength"], max, "{path}");
    }
    assert_eq!(node("spec.agent.logFormat")["enum"], json!(["json", "plain"]));
    let samplers = json!([
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio"
    ]);
    assert_eq!(node("spec.agent.otel.sampler")["enum"], samplers);
    assert_eq!(node("spec.agent.metricsFrom")["maxItems"], 16);
    assert_eq!(rules(&node("spec.agent.metricsFrom[]")), [cel::SOURCE_PEER_RULE]);
}

#[test]
fn a_metrics_source_is_an_ip_block_or_selectors() {
    let monitoring = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}});
    assert_eq!(
        spec_failures(with_agent(json!({"metricsFrom": [monitoring, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}))),
        vec![]
    );
    for bad in [json!({}), json!({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}})] {
        let failures = spec_failures(with_agent(json!({"metricsFrom": [bad]})));
        assert_eq!(failures, [("spec.agent.metricsFrom[0]".to_owned(), cel::SOURCE_PEER_MESSAGE.to_owned())]);
    }
    let failures = spec_failures(with_agent(json!({"metricsFrom": [{"ipBlock": {"cidr": "somewhere"}}]})));
    assert_eq!(failures.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(), [cel::CIDR_MESSAGE]);
}
