//! The Secrets the controller manages: JWT signing key, admin bootstrap password, operator credentials.
//!
//! The values come in as arguments: [`crate::reconcile::values`] keeps what the managed Secrets hold and
//! generates only what is missing, so a Secret is never rotated behind the user's back. A Secret the user
//! references instead is never touched.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use dittofs_api::crd::SecretKeyRef;
use dittofs_api::labels::{COMPONENT_CREDENTIALS, common_labels};
use dittofs_api::{DittoServer, constants, names};

use super::child_meta;

/// The JWT signing key DittoFS reads from `DITTOFS_CONTROLPLANE_SECRET`: the user's reference, or the managed Secret.
pub fn jwt_ref(ds: &DittoServer) -> SecretKeyRef {
    user_jwt_ref(ds).cloned().unwrap_or_else(|| SecretKeyRef {
        name: names::jwt_secret(&ds.name_any()),
        key: names::JWT_SECRET_KEY.into(),
        optional: None,
    })
}

/// The user's JWT Secret reference, if any (then no `<cr>-jwt-secret` is managed).
pub fn user_jwt_ref(ds: &DittoServer) -> Option<&SecretKeyRef> {
    let jwt = ds.spec.identity.as_ref()?.jwt.as_ref()?;
    Some(&jwt.secret_ref)
}

/// Why DittoFS would refuse the JWT signing key the pod is given, if it would: shorter than
/// [`constants::MIN_JWT_SECRET_LEN`] bytes (docs/dittofs-api.md#authentication-and-tokens). `referenced`
/// holds the user-referenced Secret data by `secret/key` (a missing key is reported elsewhere); `managed`
/// the managed key's value. The schema cannot see a Secret, so this is checked at reconcile.
pub fn jwt_key_problem(
    ds: &DittoServer,
    referenced: &BTreeMap<String, Vec<u8>>,
    managed: Option<&str>,
) -> Option<String> {
    let r = jwt_ref(ds);
    let len = match user_jwt_ref(ds) {
        Some(_) => referenced.get(&format!("{}/{}", r.name, r.key))?.len(),
        None => managed?.len(),
    };
    (len < constants::MIN_JWT_SECRET_LEN).then(|| {
        format!(
            "the JWT signing key in Secret {} (key {}) has {len} bytes; DittoFS needs at least {} and does not start \
             with a shorter one",
            r.name,
            r.key,
            constants::MIN_JWT_SECRET_LEN
        )
    })
}

/// The admin bootstrap password: the user's reference, or the managed Secret's `password`.
pub fn admin_password_ref(ds: &DittoServer) -> SecretKeyRef {
    user_admin_ref(ds).cloned().unwrap_or_else(|| SecretKeyRef {
        name: names::admin_bootstrap_secret(&ds.name_any()),
        key: names::PASSWORD_KEY.into(),
        optional: None,
    })
}

/// The user's admin password reference, if any (then no bootstrap Secret is managed).
pub fn user_admin_ref(ds: &DittoServer) -> Option<&SecretKeyRef> {
    ds.spec.identity.as_ref()?.admin.as_ref()?.password_secret_ref.as_ref()
}

/// The admin user name given to the agent (DittoFS itself always creates `admin`).
pub fn admin_username(ds: &DittoServer) -> String {
    ds.spec
        .identity
        .as_ref()
        .and_then(|i| i.admin.as_ref())
        .map(|a| a.username.clone())
        .unwrap_or_else(|| constants::DEFAULT_ADMIN_USERNAME.to_owned())
}

/// `<cr>-jwt-secret` with `jwt-secret` = `value`.
pub fn jwt_secret(ds: &DittoServer, value: &str) -> Secret {
    secret(ds, names::jwt_secret(&ds.name_any()), [(names::JWT_SECRET_KEY, value)])
}

/// `<cr>-admin-bootstrap-credentials` with `username` = admin and `password`.
pub fn admin_bootstrap_secret(ds: &DittoServer, password: &str) -> Secret {
    secret(
        ds,
        names::admin_bootstrap_secret(&ds.name_any()),
        [(names::USERNAME_KEY, constants::DEFAULT_ADMIN_USERNAME), (names::PASSWORD_KEY, password)],
    )
}

/// `<cr>-operator-credentials` with `username` = `k8s-operator` and `password`.
///
/// Only these two keys are in the controller's apply: the agent adds the token pair under its own
/// field manager, and server-side apply leaves keys another manager owns alone.
pub fn operator_credentials_secret(ds: &DittoServer, password: &str) -> Secret {
    secret(
        ds,
        names::operator_credentials_secret(&ds.name_any()),
        [(names::USERNAME_KEY, names::OPERATOR_USERNAME), (names::PASSWORD_KEY, password)],
    )
}

fn secret<const N: usize>(ds: &DittoServer, name: String, data: [(&str, &str); N]) -> Secret {
    Secret {
        metadata: child_meta(ds, name, common_labels(&ds.name_any(), COMPONENT_CREDENTIALS)),
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

/// The value of `key` in `secret`, if present, UTF-8 and not empty.
pub fn value_of(secret: Option<&Secret>, key: &str) -> Option<String> {
    let bytes = secret?.data.as_ref()?.get(key)?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    #[test]
    fn managed_refs_by_default() {
        let ds = server(json!({}));
        assert!(user_jwt_ref(&ds).is_none() && user_admin_ref(&ds).is_none());
        assert_eq!(jwt_ref(&ds).name, "fs-jwt-secret");
        assert_eq!(jwt_ref(&ds).key, "jwt-secret");
        assert_eq!(admin_password_ref(&ds).name, "fs-admin-bootstrap-credentials");
        assert_eq!(admin_username(&ds), "admin");
    }

    #[test]
    fn user_refs_win() {
        let ds = server(json!({"identity": {
            "jwt": {"secretRef": {"name": "j", "key": "k"}},
            "admin": {"username": "root", "passwordSecretRef": {"name": "a", "key": "p"}}
        }}));
        assert_eq!((jwt_ref(&ds).name.as_str(), jwt_ref(&ds).key.as_str()), ("j", "k"));
        assert_eq!(admin_password_ref(&ds).name, "a");
        assert_eq!(admin_username(&ds), "root");
    }

    #[test]
    fn secrets_carry_exactly_their_keys() {
        let ds = server(json!({}));
        let s = operator_credentials_secret(&ds, "pw");
        let data = s.data.as_ref().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["password", "username"]);
        assert_eq!(value_of(Some(&s), "username").as_deref(), Some("k8s-operator"));
        assert_eq!(value_of(Some(&s), "access-token"), None);
        let admin = admin_bootstrap_secret(&ds, "x");
        assert_eq!(value_of(Some(&admin), "username").as_deref(), Some("admin"));
        assert_eq!(value_of(Some(&admin), "password").as_deref(), Some("x"));
        assert_eq!(value_of(Some(&s), "password").as_deref(), Some("pw"));
        let jwt = jwt_secret(&ds, "key-1");
        assert_eq!(jwt.metadata.name.as_deref(), Some("fs-jwt-secret"));
        assert_eq!(value_of(Some(&jwt), "jwt-secret").as_deref(), Some("key-1"));
        assert_eq!(s.metadata.labels.unwrap()["app.kubernetes.io/component"], "credentials");
    }

    #[test]
    fn a_jwt_key_shorter_than_dittofs_accepts_is_named() {
        let ds = server(json!({"identity": {"jwt": {"secretRef": {"name": "mine", "key": "k"}}}}));
        let short = BTreeMap::from([("mine/k".to_owned(), b"x".repeat(31))]);
        let problem = jwt_key_problem(&ds, &short, None).expect("31 bytes are refused");
        assert_eq!(
            problem,
            "the JWT signing key in Secret mine (key k) has 31 bytes; DittoFS needs at least 32 and does not start \
             with a shorter one"
        );
        let long = BTreeMap::from([("mine/k".to_owned(), b"x".repeat(32))]);
        assert_eq!(jwt_key_problem(&ds, &long, None), None);
        assert_eq!(jwt_key_problem(&ds, &BTreeMap::new(), None), None, "missing: reported as missing instead");
        let managed = server(json!({}));
        assert!(jwt_key_problem(&managed, &short, Some("edited")).unwrap().contains("Secret fs-jwt-secret"));
        assert_eq!(jwt_key_problem(&managed, &short, None), None, "not generated yet");
    }
}
