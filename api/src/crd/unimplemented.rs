//! The Go-operator fields this controller keeps (never prunes) but does not act on yet, and how to name those set.

use serde_json::Value;

use super::DittoServerSpec;

/// `spec.identity.ldap`.
pub const LDAP: &str = "identity.ldap";
/// `spec.identity.kerberos`.
pub const KERBEROS: &str = "identity.kerberos";
/// `spec.percona`.
pub const PERCONA: &str = "percona";
/// `spec.snapshotPolicies`.
pub const SNAPSHOT_POLICIES: &str = "snapshotPolicies";

/// Every field kept verbatim without being implemented, as paths under `spec`.
pub const ALL: [&str; 4] = [LDAP, KERBEROS, PERCONA, SNAPSHOT_POLICIES];

/// The unimplemented fields that `spec` sets, in the order of [`ALL`]: the controller reports them
/// in the SpecSupported condition and a Warning Event.
///
/// A section counts as set when it is present and not switched off: a section written as
/// `{enabled: false}` (or `null`) asks for nothing, so ignoring it is faithful. A list counts when
/// it has entries.
pub fn unimplemented_fields(spec: &DittoServerSpec) -> Vec<&'static str> {
    let identity = spec.identity.as_ref();
    let candidates = [
        (LDAP, identity.and_then(|i| i.ldap.as_ref())),
        (KERBEROS, identity.and_then(|i| i.kerberos.as_ref())),
        (PERCONA, spec.percona.as_ref()),
        (SNAPSHOT_POLICIES, spec.snapshot_policies.as_ref()),
    ];
    candidates.into_iter().filter(|(_, value)| value.is_some_and(requests_something)).map(|(name, _)| name).collect()
}

/// Whether a kept section asks for something: not null, not an empty list, not `enabled: false`.
fn requests_something(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => fields.get("enabled") != Some(&Value::Bool(false)),
        _ => true,
    }
}

/// A sentence naming the fields, for the condition message and the Event note.
pub fn unimplemented_message(fields: &[&str]) -> String {
    let listed = fields.iter().map(|f| format!("spec.{f}")).collect::<Vec<_>>().join(", ");
    format!("not implemented by this controller yet, kept as written but not acted on: {listed}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> DittoServerSpec {
        serde_json::from_value(value).expect("valid spec")
    }

    #[test]
    fn nothing_set() {
        let s = spec(json!({"storage": {"metadataSize": "1Gi"}}));
        assert!(unimplemented_fields(&s).is_empty());
    }

    #[test]
    fn all_set() {
        let s = spec(json!({
            "storage": {"metadataSize": "1Gi"},
            "identity": {
                "ldap": {"enabled": true, "url": "ldaps://dc:636", "baseDN": "DC=x", "bindDN": "CN=y"},
                "kerberos": {"servicePrincipal": "nfs/h@R"}
            },
            "percona": {"enabled": true},
            "snapshotPolicies": [{"share": "/a", "interval": "24h"}],
            "metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}
        }));
        assert_eq!(unimplemented_fields(&s), ALL.to_vec());
        assert_eq!(
            unimplemented_message(&[PERCONA, SNAPSHOT_POLICIES]),
            "not implemented by this controller yet, kept as written but not acted on: spec.percona, spec.snapshotPolicies"
        );
    }

    #[test]
    fn switched_off_sections_do_not_count() {
        let s = spec(json!({
            "storage": {"metadataSize": "1Gi"},
            "identity": {"ldap": {"enabled": false, "url": "x", "baseDN": "y", "bindDN": "z"}},
            "percona": {"enabled": false},
            "snapshotPolicies": []
        }));
        assert!(unimplemented_fields(&s).is_empty());
    }
}
