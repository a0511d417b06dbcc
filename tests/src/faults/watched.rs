//! What the checker holds each watched server to, derived from its spec the way the controller reads it:
//! where the truth comes from, the screen (allowed types, reserved ports), the static children and the
//! Secrets whose values must never change.

use std::collections::BTreeMap;

use dittofs_api::{
    constants::{NFS, SMB},
    crd::DittoServerSpec,
    names,
};

/// Where the checker learns what should be exposed.
#[derive(Debug, Clone)]
pub enum Truth {
    /// This DittoFS, asked as admin: its enabled and running adapters.
    DittoFs { url: String },
    /// Known to the test: exactly these adapters (type → port), e.g. none for a server without a pod.
    Fixed(BTreeMap<String, i32>),
    /// Untrusted reports are being written: nothing to compare with, only the screen applies.
    Unknown,
}

/// A server under test.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub truth: Truth,
    /// Check the static children and the Secrets (servers whose spec the test chose; not random specs).
    pub statics: bool,
    pub allowed_types: Vec<String>,
    /// The API, metrics and agent ports: never exposed.
    pub reserved_ports: Vec<(i32, &'static str)>,
    /// The children that must never disappear once seen, as (kind, name).
    pub children: Vec<(&'static str, String)>,
    /// (Secret, key) pairs whose value must never change once seen.
    pub secrets: Vec<(String, String)>,
}

impl Watched {
    /// A server named `name` with `spec` (JSON as created), judged against `truth`.
    pub fn new(name: &str, spec: &serde_json::Value, truth: Truth) -> anyhow::Result<Watched> {
        let spec: DittoServerSpec = serde_json::from_value(spec.clone())?;
        let identity = spec.identity.clone().unwrap_or_default();
        let jwt = match &identity.jwt {
            Some(j) => (j.secret_ref.name.clone(), j.secret_ref.key.clone()),
            None => (names::jwt_secret(name), names::JWT_SECRET_KEY.to_owned()),
        };
        let admin = match identity.admin.as_ref().and_then(|a| a.password_secret_ref.clone()) {
            Some(r) => (r.name, r.key),
            None => (names::admin_bootstrap_secret(name), names::PASSWORD_KEY.to_owned()),
        };
        let operator = (names::operator_credentials_secret(name), names::PASSWORD_KEY.to_owned());
        let mut children: Vec<(&'static str, String)> = vec![
            ("Service", names::api_service(name)),
            ("Service", names::headless_service(name)),
            ("ConfigMap", names::config_map(name)),
            ("StatefulSet", names::statefulset(name)),
            ("ServiceAccount", names::agent_service_account(name)),
            ("Role", names::agent_role(name)),
            ("RoleBinding", names::agent_role_binding(name)),
            ("NetworkPolicy", names::baseline_network_policy(name)),
        ];
        // Generated Secrets are children; a Secret the spec names belongs to the user, but its value must not
        // change under the server either.
        let generated = [names::jwt_secret(name), names::admin_bootstrap_secret(name), operator.0.clone()];
        for (secret, _) in [&jwt, &admin, &operator] {
            if generated.contains(secret) {
                children.push(("Secret", secret.clone()));
            }
        }
        let mut reserved_ports = vec![
            (spec.control_plane.port, "the API port"),
            (i32::from(dittofs_api::agent_env::DEFAULT_ADMIN_PORT), "the agent's admin port"),
        ];
        // The metrics port is DittoFS's only while it serves metrics; otherwise an adapter may use it.
        if let Some(metrics) = spec.metrics.as_ref().filter(|m| m.enabled) {
            reserved_ports.push((metrics.port, "the metrics port"));
        }
        Ok(Watched {
            name: name.to_owned(),
            truth,
            statics: true,
            allowed_types: spec.adapter_services.allowed_types.clone(),
            reserved_ports,
            children,
            secrets: vec![jwt, admin, operator],
        })
    }

    /// A server with a spec the test did not choose (random specs): the screen and the baseline only.
    pub fn screen_only(name: &str) -> Watched {
        Watched {
            name: name.to_owned(),
            truth: Truth::Fixed(BTreeMap::new()),
            statics: false,
            allowed_types: vec![NFS.to_owned(), SMB.to_owned()],
            reserved_ports: vec![],
            children: vec![],
            secrets: vec![],
        }
    }

    /// Why an exposed (type label, port) must never be exposed, if it must not.
    pub fn screen(&self, type_label: &str, port: i32) -> Option<String> {
        if !self.allowed_types.iter().any(|t| t == type_label) {
            return Some(format!("type not in allowedTypes {:?}", self.allowed_types));
        }
        self.screen_port(port)
    }

    pub fn screen_port(&self, port: i32) -> Option<String> {
        if !(1..=65535).contains(&port) {
            return Some("port outside 1–65535".into());
        }
        self.reserved_ports.iter().find(|(p, _)| *p == port).map(|(_, what)| format!("{what}, reserved"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dittofs_api::constants::DEFAULT_METRICS_PORT;
    use serde_json::json;

    #[test]
    fn spec_decides_secrets_children_and_screen() {
        let spec = json!({"storage": {"metadataSize": "1Gi"},
                          "identity": {"admin": {"passwordSecretRef": {"name": "mine", "key": "pw"}}}});
        let w = Watched::new("fs", &spec, Truth::Unknown).unwrap();
        assert_eq!(w.secrets[1], ("mine".to_owned(), "pw".to_owned()));
        assert!(w.children.contains(&("Secret", "fs-jwt-secret".to_owned())));
        assert!(!w.children.iter().any(|(_, n)| n == "mine"), "a user's Secret is not a child");
        assert_eq!(w.screen("nfs", 12049), None);
        assert!(w.screen("x", 12049).unwrap().contains("allowedTypes"));
        assert!(w.screen("nfs", 8080).unwrap().contains("API"));
        assert!(w.screen("smb", 8082).unwrap().contains("agent"));
        assert!(w.screen("smb", 0).is_some());
        // Metrics off: DittoFS does not listen on 9090, so an adapter may (as the controller allows).
        assert_eq!(w.screen("smb", i32::from(DEFAULT_METRICS_PORT)), None);
        let served = json!({"storage": {"metadataSize": "1Gi"}, "metrics": {"enabled": true}});
        let w = Watched::new("fs", &served, Truth::Unknown).unwrap();
        assert!(w.screen("smb", i32::from(DEFAULT_METRICS_PORT)).unwrap().contains("metrics"));
    }
}
