//! Settles the values the desired objects are built from: managed secrets kept as observed, generated when missing.
//!
//! The only random source of the reconcile lives here, next to the observed values it fills in, so that
//! `desired/` stays pure: it receives the settled values as arguments and is unit-tested with fixed ones.
//! A value is generated once (when its managed Secret has none) and from then on re-applied as read, so
//! a Secret is never rotated behind the user's back.

use base64::Engine as _;

use dittofs_api::DittoServer;
use dittofs_api::secret::SecretString;

use crate::desired;
use crate::desired::secrets::{jwt_ref, user_admin_ref, user_jwt_ref};
use crate::reconcile::observe::Observed;

/// The values the reconcile settled on before applying (existing or freshly generated). The secrets are
/// [`SecretString`]s, so `Debug` shows whether each is set, never its value.
#[derive(Debug)]
pub struct Values {
    /// Managed JWT key (None with a user reference).
    pub jwt: Option<SecretString>,
    /// Managed admin password (None with a user reference).
    pub admin_password: Option<SecretString>,
    /// The operator account's password.
    pub operator_password: SecretString,
    /// The pod template's config hash.
    pub config_hash: String,
    /// The rendered config.
    pub config: String,
    /// Why DittoFS would refuse the JWT key the pod gets (too short), if it would.
    pub jwt_problem: Option<String>,
}

/// Keeps every existing managed value and generates only what is missing; renders the config and its hash.
pub fn settle(ds: &DittoServer, observed: &Observed) -> Values {
    let jwt = user_jwt_ref(ds).is_none().then(|| observed.managed_jwt.clone().unwrap_or_else(generate_jwt_secret));
    let admin_password =
        user_admin_ref(ds).is_none().then(|| observed.managed_admin_password.clone().unwrap_or_else(generate_password));
    let operator_password = observed.operator_password.clone().unwrap_or_else(generate_password);
    let config = desired::config::render(&ds.spec);
    // The hash covers what DittoFS consumes: the JWT key and the PostgreSQL settings, not the admin
    // password (read once, at the first start) nor the TLS files (DittoFS reloads them).
    let mut consumed = observed.referenced.clone();
    if let Some(jwt) = &jwt {
        let r = jwt_ref(ds);
        consumed.insert(format!("{}/{}", r.name, r.key), jwt.expose().as_bytes().to_vec());
    }
    let config_hash = desired::statefulset::config_hash(&config, &consumed);
    let jwt_problem =
        desired::secrets::jwt_key_problem(ds, &observed.referenced, jwt.as_ref().map(SecretString::expose));
    Values { jwt, admin_password, operator_password, config_hash, config, jwt_problem }
}

/// A fresh JWT signing key: 32 random bytes, base64url without padding (43 characters), as the Go operator.
pub fn generate_jwt_secret() -> SecretString {
    SecretString::new(random_base64url::<32>())
}

/// A fresh password: 18 random bytes, base64url (24 characters), as the Go operator.
pub fn generate_password() -> SecretString {
    SecretString::new(random_base64url::<18>())
}

fn random_base64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // The thread RNG is a CSPRNG seeded from the OS.
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    fn observed_all() -> Observed {
        Observed {
            managed_jwt: Some("jwt-1".into()),
            managed_admin_password: Some("admin-1".into()),
            operator_password: Some("op-1".into()),
            ..Observed::default()
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut observed = observed_all();
        observed.referenced.insert("user-jwt/key".into(), b"referenced-secret".to_vec());
        let values = settle(&server(json!({})), &observed);
        let shown = format!("{observed:?} {values:?}");
        for secret in ["jwt-1", "admin-1", "op-1", "referenced-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("user-jwt/key") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn generated_values_have_the_go_lengths_and_differ() {
        assert_eq!(generate_jwt_secret().expose().len(), 43);
        assert_eq!(generate_password().expose().len(), 24);
        assert_ne!(generate_password(), generate_password());
    }

    #[test]
    fn observed_values_are_kept_and_the_hash_is_stable() {
        let ds = server(json!({}));
        let a = settle(&ds, &observed_all());
        assert_eq!(a.jwt.as_ref().map(SecretString::expose), Some("jwt-1"));
        assert_eq!(a.admin_password.as_ref().map(SecretString::expose), Some("admin-1"));
        assert_eq!(a.operator_password.expose(), "op-1");
        assert_eq!(a.config, desired::config::render(&ds.spec));
        assert_eq!(a.config_hash, settle(&ds, &observed_all()).config_hash);
    }

    #[test]
    fn missing_values_are_generated() {
        let v = settle(&server(json!({})), &Observed::default());
        assert_eq!(v.jwt.map(|s| s.expose().len()), Some(43));
        assert_eq!(v.admin_password.map(|s| s.expose().len()), Some(24));
        assert_eq!(v.operator_password.expose().len(), 24);
    }

    #[test]
    fn user_references_are_not_managed_and_their_data_is_hashed() {
        let ds = server(json!({"identity": {
            "jwt": {"secretRef": {"name": "j", "key": "k"}},
            "admin": {"username": "root", "passwordSecretRef": {"name": "a", "key": "p"}}
        }}));
        let mut observed = observed_all();
        let before = settle(&ds, &observed);
        assert!(before.jwt.is_none() && before.admin_password.is_none());
        assert_eq!(before.operator_password.expose(), "op-1");
        observed.referenced.insert("j/k".into(), b"rotated".to_vec());
        assert_ne!(settle(&ds, &observed).config_hash, before.config_hash, "a new user JWT key rolls the pod");
    }

    #[test]
    fn the_managed_jwt_key_is_hashed_but_the_admin_password_is_not() {
        let ds = server(json!({}));
        let base = settle(&ds, &observed_all()).config_hash;
        let other_jwt = Observed { managed_jwt: Some("jwt-2".into()), ..observed_all() };
        assert_ne!(settle(&ds, &other_jwt).config_hash, base);
        let other_admin = Observed { managed_admin_password: Some("admin-2".into()), ..observed_all() };
        assert_eq!(settle(&ds, &other_admin).config_hash, base);
    }
}
