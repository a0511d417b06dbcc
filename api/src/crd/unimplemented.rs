//! The Go-operator fields this controller would keep (never prune) without acting on them, and how to name
//! those a spec sets. Every field of the Go operator v0.29.0 is implemented now, so the list is empty and
//! `SpecSupported` is True; the machinery stays for the next field the Go operator grows before this one does.

use super::DittoServerSpec;

/// Every field kept verbatim without being implemented, as paths under `spec`: none.
pub const ALL: [&str; 0] = [];

/// The unimplemented fields that `spec` sets, in the order of [`ALL`]: the controller reports them in the
/// SpecSupported condition and a Warning Event.
pub fn unimplemented_fields(_spec: &DittoServerSpec) -> Vec<&'static str> {
    ALL.to_vec()
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

    #[test]
    fn every_go_section_is_implemented() {
        let s: DittoServerSpec = serde_json::from_value(json!({
            "storage": {"metadataSize": "1Gi"},
            "identity": {
                "ldap": {"enabled": true, "url": "ldaps://dc:636", "baseDN": "DC=x", "bindDN": "CN=y",
                    "bindPasswordSecretRef": {"name": "b", "key": "p"}},
                "kerberos": {"servicePrincipal": "nfs/h@R"}
            },
            "percona": {"enabled": true},
            "snapshotPolicies": [{"share": "/a", "interval": "24h"}],
            "metrics": {"enabled": true, "serviceMonitor": {"enabled": true}}
        }))
        .expect("valid spec");
        assert!(unimplemented_fields(&s).is_empty());
        assert_eq!(
            unimplemented_message(&["x.y"]),
            "not implemented by this controller yet, kept as written but not acted on: spec.x.y"
        );
    }
}
