//! The `<cr>-operator-credentials` Secret: the controller creates it with `username` and `password`; the
//! agent reads the password from it and mirrors its current token pair, the access token's expiry and the
//! server URL into it (the roadmap's "JWT in a Secret"), so a restarted agent can reuse a valid pair.
//!
//! Only the agent's keys are written, with a JSON merge patch of `data`: the controller's keys are never
//! touched and no read-modify-write race exists.

use std::{collections::BTreeMap, future::Future};

use base64::Engine as _;
use dittofs_api::names;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};

use crate::secret::SecretString;

/// What the Secret holds. `Debug` redacts the secrets.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub password: Option<SecretString>,
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<Timestamp>,
    pub server_url: Option<String>,
}

/// What the agent writes.
#[derive(Debug, Clone)]
pub struct Mirror<'a> {
    pub access_token: &'a SecretString,
    pub refresh_token: &'a SecretString,
    pub expires_at: Timestamp,
    pub server_url: &'a str,
}

/// What the agent does with the credentials Secret.
pub trait SecretStore: Send + Sync {
    /// The Secret's name, for messages.
    fn name(&self) -> &str;
    /// The Secret's contents, `None` when it does not exist (yet).
    fn read(&self) -> impl Future<Output = Result<Option<Stored>, kube::Error>> + Send;
    /// Writes the agent's four keys.
    fn mirror(&self, m: &Mirror<'_>) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// Reads and patches the one Secret (the agent's Role allows get and patch on exactly that name).
#[derive(Debug, Clone)]
pub struct Store {
    api: Api<Secret>,
    name: String,
}

impl Store {
    pub fn new(client: kube::Client, namespace: &str, name: String) -> Store {
        Store { api: Api::namespaced(client, namespace), name }
    }
}

impl SecretStore for Store {
    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self) -> Result<Option<Stored>, kube::Error> {
        let Some(secret) = self.api.get_opt(&self.name).await? else {
            return Ok(None);
        };
        let data = secret.data.unwrap_or_default();
        let text =
            |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok()).filter(|s| !s.is_empty());
        Ok(Some(Stored {
            password: text(names::PASSWORD_KEY).map(SecretString::new),
            access_token: text(names::ACCESS_TOKEN_KEY).map(SecretString::new),
            refresh_token: text(names::REFRESH_TOKEN_KEY).map(SecretString::new),
            expires_at: text(names::EXPIRES_AT_KEY).and_then(|s| s.parse().ok()),
            server_url: text(names::SERVER_URL_KEY),
        }))
    }

    async fn mirror(&self, m: &Mirror<'_>) -> Result<(), kube::Error> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let data: BTreeMap<&str, String> = [
            (names::ACCESS_TOKEN_KEY, b64(m.access_token.expose())),
            (names::REFRESH_TOKEN_KEY, b64(m.refresh_token.expose())),
            (names::EXPIRES_AT_KEY, b64(&m.expires_at.to_string())),
            (names::SERVER_URL_KEY, b64(m.server_url)),
        ]
        .into_iter()
        .collect();
        let patch = serde_json::json!({ "data": data });
        self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }
}

/// The Secret for unit tests: what it holds and how often the agent wrote it.
#[cfg(test)]
pub(crate) mod fake {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct Contents {
        /// `None`: the Secret does not exist.
        pub stored: Option<Stored>,
        pub mirrors: u32,
        /// Every read and mirror fails (the apiserver is unreachable).
        pub unreachable: bool,
    }

    #[derive(Debug, Clone, Default)]
    pub(crate) struct FakeStore(pub Arc<Mutex<Contents>>);

    impl FakeStore {
        /// A Secret as the controller creates it: the operator password only.
        pub(crate) fn with_password(password: &str) -> FakeStore {
            let stored = Stored { password: Some(password.into()), ..Stored::default() };
            FakeStore(Arc::new(Mutex::new(Contents { stored: Some(stored), ..Contents::default() })))
        }

        pub(crate) fn contents(&self) -> std::sync::MutexGuard<'_, Contents> {
            self.0.lock().unwrap()
        }
    }

    fn unreachable() -> kube::Error {
        kube::Error::Service(Box::new(std::io::Error::other("apiserver unreachable")))
    }

    impl SecretStore for FakeStore {
        fn name(&self) -> &str {
            "fs-operator-credentials"
        }

        async fn read(&self) -> Result<Option<Stored>, kube::Error> {
            let c = self.contents();
            if c.unreachable { Err(unreachable()) } else { Ok(c.stored.clone()) }
        }

        async fn mirror(&self, m: &Mirror<'_>) -> Result<(), kube::Error> {
            let mut c = self.contents();
            if c.unreachable {
                return Err(unreachable());
            }
            c.mirrors += 1;
            let stored = c.stored.get_or_insert_with(Stored::default);
            stored.access_token = Some(m.access_token.clone());
            stored.refresh_token = Some(m.refresh_token.clone());
            stored.expires_at = Some(m.expires_at);
            stored.server_url = Some(m.server_url.to_owned());
            Ok(())
        }
    }
}
