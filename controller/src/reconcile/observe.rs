//! Observe (IO): the values the controller must keep (managed Secrets), the Secret data DittoFS consumes
//! (for the config hash) and the live StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use dittofs_api::{DittoServer, names};

use crate::desired::secrets::{user_admin_ref, user_jwt_ref, value_of};
use crate::desired::statefulset::POSTGRES_KEYS;
use crate::error::Error;

/// What the apiserver holds that the desired objects depend on.
#[derive(Default)]
pub struct Observed {
    /// The managed JWT key, if the managed Secret exists with a value.
    pub managed_jwt: Option<String>,
    /// The managed admin password (or the Go operator's legacy one, adopted).
    pub managed_admin_password: Option<String>,
    /// The operator account's password, if already generated.
    pub operator_password: Option<String>,
    /// The user-referenced Secret data DittoFS consumes, by `secret/key` (hashed into the pod template).
    pub referenced: BTreeMap<String, Vec<u8>>,
    /// `secret/key` references that could not be read (the pod cannot start until they exist).
    pub missing: Vec<String>,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<StatefulSet>,
}

/// Secrets stay out of logs and panics: `Debug` shows which are set and which references were read, not values.
impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("Observed")
            .field("managed_jwt", &set(&self.managed_jwt))
            .field("managed_admin_password", &set(&self.managed_admin_password))
            .field("operator_password", &set(&self.operator_password))
            .field("referenced", &self.referenced.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .field("statefulset", &self.statefulset.is_some())
            .finish()
    }
}

async fn get_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))
}

/// Reads everything in one pass (a handful of GETs, no list).
pub async fn observe(client: &Client, ds: &DittoServer) -> Result<Observed, Error> {
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let cr = ds.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut observed = Observed::default();

    if user_jwt_ref(ds).is_none() {
        let managed = get_secret(&secrets, &names::jwt_secret(&cr)).await?;
        observed.managed_jwt = value_of(managed.as_ref(), names::JWT_SECRET_KEY);
    }
    if user_admin_ref(ds).is_none() {
        let managed = get_secret(&secrets, &names::admin_bootstrap_secret(&cr)).await?;
        observed.managed_admin_password = value_of(managed.as_ref(), names::PASSWORD_KEY);
        if observed.managed_admin_password.is_none() {
            // Switching from the Go operator: keep the password its DittoFS was bootstrapped with.
            let legacy = get_secret(&secrets, &names::legacy_admin_secret(&cr)).await?;
            observed.managed_admin_password = value_of(legacy.as_ref(), names::PASSWORD_KEY);
        }
    }
    let credentials = get_secret(&secrets, &names::operator_credentials_secret(&cr)).await?;
    observed.operator_password = value_of(credentials.as_ref(), names::PASSWORD_KEY);

    let mut wanted: Vec<(String, String)> = Vec::new();
    if let Some(r) = user_jwt_ref(ds) {
        wanted.push((r.name.clone(), r.key.clone()));
    }
    if let Some(pg) = &ds.spec.database.postgres_secret_ref {
        wanted.extend(POSTGRES_KEYS.iter().map(|(k, _)| (pg.name.clone(), (*k).to_owned())));
    }
    let mut cache: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for (name, key) in wanted {
        if !cache.contains_key(&name) {
            cache.insert(name.clone(), get_secret(&secrets, &name).await?);
        }
        let id = format!("{name}/{key}");
        let value = cache[&name].as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get(&key));
        match value {
            Some(v) => {
                observed.referenced.insert(id, v.0.clone());
            }
            // Optional PostgreSQL keys may be absent.
            None if POSTGRES_KEYS.iter().any(|(k, req)| *k == key && !req) => {}
            None => observed.missing.push(id),
        }
    }

    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    observed.statefulset =
        sts.get_opt(&names::statefulset(&cr)).await.map_err(|e| Error::kube(format!("get StatefulSet {cr}"), e))?;
    Ok(observed)
}
