//! Specs written to take more than a DittoServer should give: privileged pods (the restricted Pod Security
//! profile), ports of the agent, oversized maps, untrusted adapter types — refused by the CRD's own CEL
//! rules evaluated client-side, or bounded by its schema. The apiserver-backed test is
//! `tests/tests/controller_untrusted.rs`.

use crate::common::{node, spec_failures};
use dittofs_api::crd::cel;
use serde_json::{Value, json};

fn spec(extra: Value) -> Value {
    let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    spec
}

/// The messages of the failures, whatever their field.
fn refusals(extra: Value) -> Vec<String> {
    spec_failures(spec(extra)).into_iter().map(|(_, message)| message).collect()
}

#[test]
fn the_restricted_profile_is_enforced_on_the_container() {
    for (context, message) in [
        (json!({"privileged": true}), cel::PRIVILEGED_MESSAGE),
        (json!({"allowPrivilegeEscalation": true}), cel::ESCALATION_MESSAGE),
        (json!({"capabilities": {"add": ["SYS_ADMIN"]}}), cel::CAPABILITIES_MESSAGE),
        (json!({"capabilities": {"add": ["NET_BIND_SERVICE", "NET_RAW"]}}), cel::CAPABILITIES_MESSAGE),
        (json!({"runAsUser": 0}), cel::RUN_AS_ROOT_MESSAGE),
        (json!({"runAsNonRoot": false}), cel::RUN_AS_NON_ROOT_MESSAGE),
        (json!({"seccompProfile": {"type": "Unconfined"}}), cel::SECCOMP_MESSAGE),
        (json!({"seLinuxOptions": {"type": "spc_t"}}), cel::SELINUX_MESSAGE),
        (json!({"seLinuxOptions": {"user": "system_u"}}), cel::SELINUX_MESSAGE),
    ] {
        assert_eq!(refusals(json!({"securityContext": context})), [message], "{context}");
    }
    for message in [cel::PRIVILEGED_MESSAGE, cel::CAPABILITIES_MESSAGE, cel::RUN_AS_ROOT_MESSAGE] {
        assert!(message.starts_with("securityContext.") && message.contains("restricted Pod Security profile"));
    }
}

#[test]
fn the_restricted_profile_is_enforced_on_the_pod() {
    for (context, message) in [
        (json!({"runAsUser": 0}), cel::POD_RUN_AS_ROOT_MESSAGE),
        (json!({"runAsNonRoot": false}), cel::POD_RUN_AS_NON_ROOT_MESSAGE),
        (json!({"seccompProfile": {"type": "Unconfined"}}), cel::POD_SECCOMP_MESSAGE),
        (json!({"seLinuxOptions": {"role": "sysadm_r"}}), cel::POD_SELINUX_MESSAGE),
        (json!({"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}), cel::SYSCTLS_MESSAGE),
    ] {
        assert_eq!(refusals(json!({"podSecurityContext": context})), [message], "{context}");
        assert!(message.starts_with("podSecurityContext."), "{message}");
    }
}

#[test]
fn what_the_restricted_profile_allows_is_accepted() {
    let allowed = json!({
        "securityContext": {
            "privileged": false,
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "runAsUser": 65532,
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "seccompProfile": {"type": "RuntimeDefault"},
            "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}
        },
        "podSecurityContext": {"runAsUser": 65532, "runAsNonRoot": true, "fsGroup": 65532,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"},
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}
    });
    assert_eq!(refusals(allowed), Vec::<String>::new());
    assert_eq!(refusals(json!({"securityContext": {"capabilities": {"add": []}}})), Vec::<String>::new());
}

#[test]
fn the_api_and_metrics_ports_leave_the_agents_port_and_each_other_alone() {
    assert_eq!(refusals(json!({"controlPlane": {"port": 8082}})), [cel::API_AGENT_PORT_MESSAGE]);
    assert_eq!(refusals(json!({"metrics": {"enabled": true, "port": 8082}})), [cel::METRICS_AGENT_PORT_MESSAGE]);
    assert_eq!(refusals(json!({"metrics": {"enabled": false, "port": 8082}})), Vec::<String>::new(), "not served");
    let same = json!({"controlPlane": {"port": 9000}, "metrics": {"enabled": true, "port": 9000}});
    assert_eq!(refusals(same), [cel::METRICS_PORT_MESSAGE]);
    assert_eq!(refusals(json!({"metrics": {"enabled": true, "port": 8080}})), [cel::METRICS_PORT_MESSAGE], "default");
}

#[test]
fn annotation_maps_are_bounded_in_count_key_and_value() {
    for path in ["spec.adapterServices.annotations", "spec.service.annotations"] {
        let n = node(path);
        assert_eq!(n["maxProperties"], 64, "{path}");
        assert_eq!(n["additionalProperties"]["maxLength"], 4096, "{path}");
        let long_key = json!({ "k".repeat(318): "v" });
        let section = path.split('.').nth(1).unwrap();
        let failures = refusals(json!({ section: {"annotations": long_key} }));
        assert_eq!(failures, [cel::ANNOTATION_KEYS_MESSAGE], "{path}");
        let longest = json!({ format!("{}/{}", "p".repeat(253), "n".repeat(63)): "v" });
        assert_eq!(refusals(json!({ section: {"annotations": longest} })), Vec::<String>::new(), "{path}");
    }
}

#[test]
fn snapshot_policies_are_refused_as_dittofs_would_refuse_them_with_the_field_named() {
    use dittofs_api::crd::snapshot as s;
    let policies = |list: Value| refusals(json!({"snapshotPolicies": list}));
    let ok = json!([
        {"share": "/archive", "interval": "24h", "keepLast": 7, "ttl": "720h", "enabled": true, "namePrefix": "nightly"},
        {"share": "logs", "interval": "@Daily", "ttl": "0"},
        {"share": "/a/b", "interval": "1h30m"},
    ]);
    assert_eq!(policies(ok), Vec::<String>::new());
    for (entry, message) in [
        (json!({"share": "//x", "interval": "1h"}), s::SHARE_NAME_MESSAGE),
        (json!({"share": "/x", "interval": "0s"}), s::INTERVAL_MESSAGE),
        (json!({"share": "/x", "interval": "@yearly"}), s::INTERVAL_MESSAGE),
        (json!({"share": "/x", "interval": "-1h"}), s::INTERVAL_MESSAGE),
        (json!({"share": "/x", "interval": "1h", "ttl": "-1s"}), s::TTL_MESSAGE),
        (json!({"share": "/x", "interval": "1h", "namePrefix": "a/b"}), s::NAME_PREFIX_MESSAGE),
    ] {
        assert_eq!(policies(json!([entry])), [message], "{entry}");
    }
    let same = json!([{"share": "x", "interval": "1h"}, {"share": "/x", "interval": "2h"}]);
    assert_eq!(policies(same), [s::SAME_SHARE_MESSAGE]);
    // The list-map key: one entry per share, and the required fields.
    let n = node("spec.snapshotPolicies");
    assert_eq!((n["x-kubernetes-list-type"].as_str(), n["maxItems"].as_u64()), (Some("map"), Some(64)));
    assert_eq!(n["x-kubernetes-list-map-keys"], json!(["share"]));
    assert_eq!(n["items"]["required"], json!(["interval", "share"]));
    assert_eq!(n["items"]["properties"]["keepLast"]["minimum"].as_f64(), Some(0.0));
}

#[test]
fn a_service_monitor_takes_only_what_prometheus_operator_accepts() {
    let monitor = |sm: Value| refusals(json!({"metrics": {"enabled": true, "serviceMonitor": sm}}));
    for interval in ["30s", "1m30s", "1h", "500ms", "0", "2w1d"] {
        assert_eq!(monitor(json!({"enabled": true, "interval": interval})), Vec::<String>::new(), "{interval}");
    }
    for interval in ["30", "1.5m", "30s1m", "-1s", "1 m"] {
        assert_eq!(
            monitor(json!({"enabled": true, "interval": interval})),
            [cel::PROMETHEUS_DURATION_MESSAGE],
            "{interval}"
        );
    }
    let fine =
        ["release".to_owned(), "prometheus.io/scrape".to_owned(), format!("{}/{}", "p".repeat(253), "n".repeat(63))];
    for key in fine {
        assert_eq!(monitor(json!({"labels": {key.clone(): "v"}})), Vec::<String>::new(), "{key}");
    }
    for key in ["", "-x", "a b", "UPPER.example.com/x", "x/y/z", &"n".repeat(64)] {
        assert_eq!(monitor(json!({"labels": {key: "v"}})), [cel::LABEL_KEYS_MESSAGE], "{key}");
    }
    let labels = node("spec.metrics.serviceMonitor.labels");
    assert_eq!(labels["maxProperties"], 64);
    assert_eq!(labels["additionalProperties"]["maxLength"], 63);
    assert_eq!(labels["additionalProperties"]["pattern"], cel::LABEL_VALUE_REGEX);
}
