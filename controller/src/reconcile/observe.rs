//! Observe (IO): the values the controller must keep (managed Secrets), the Secret data DittoFS consumes
//! (for the config hash), the live StatefulSet and, with Percona, its cluster and user Secret. A managed Secret or the StatefulSet that exists but
//! belongs to someone else stops the reconcile here ([`Error::NotOwned`]), before anything is written.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use dittofs_api::secret::SecretString;
use dittofs_api::{DittoServer, names};

use crate::apply::check_owner;
use crate::desired::database::{self, PerconaObserved};
use crate::desired::secrets::{user_admin_ref, user_jwt_ref, value_of};
use crate::error::Error;
use crate::reconcile::percona;
use crate::reconcile::secrets::Existing;

/// What the apiserver holds that the desired objects depend on.
#[derive(Default)]
pub struct Observed {
    /// The managed JWT key, if the managed Secret exists with a value.
    pub managed_jwt: Option<SecretString>,
    /// The managed admin password (or the Go operator's legacy one, adopted).
    pub managed_admin_password: Option<SecretString>,
    /// The operator account's password, if already generated.
    pub operator_password: Option<SecretString>,
    /// What exists of each managed Secret, by name (absent when not read: a user reference replaces it).
    pub managed: BTreeMap<String, Existing>,
    /// The user-referenced Secret data DittoFS consumes, by `secret/key` (hashed into the pod template).
    pub referenced: BTreeMap<String, Vec<u8>>,
    /// `secret/key` references that could not be read (the pod cannot start until they exist).
    pub missing: Vec<String>,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<StatefulSet>,
    /// What is wrong with the `database.postgresSecretRef` Secret (absent, keys missing), naming it and the keys.
    pub database_problem: Option<String>,
    /// Which other required Secret keys DittoFS reads are missing (the user's JWT key, LDAP, Kerberos): the
    /// StatefulSet is held as it is, since a pod template naming them could not start.
    pub secrets_problem: Option<String>,
    /// The Percona cluster and its user Secret, with `percona.enabled`.
    pub percona: Option<PerconaObserved>,
}

/// Secrets stay out of logs and panics: `Debug` shows which are set and which references were read, not
/// values (the managed ones are [`SecretString`]s; the referenced data is raw bytes, so it is left out).
impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("managed_jwt", &self.managed_jwt)
            .field("managed_admin_password", &self.managed_admin_password)
            .field("operator_password", &self.operator_password)
            .field("managed", &self.managed)
            .field("referenced", &self.referenced.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .field("statefulset", &self.statefulset.is_some())
            .field("database_problem", &self.database_problem)
            .field("secrets_problem", &self.secrets_problem)
            .field("percona", &self.percona)
            .finish()
    }
}

async fn get_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))
}

/// Reads the value `key` of a Secret the controller manages from what was fetched, refused if the Secret
/// belongs to someone else; records what exists of it.
fn managed_value(
    fetched: &BTreeMap<String, Option<Secret>>,
    name: &str,
    key: &str,
    uid: &str,
    observed: &mut Observed,
) -> Result<Option<SecretString>, Error> {
    let secret = fetched.get(name).and_then(Option::as_ref);
    check_owner("Secret", name, secret.map(|s| &s.metadata), uid)?;
    let value = value_of(secret, key);
    let existing = match (secret, &value) {
        (None, _) => Existing::Absent,
        (Some(_), Some(_)) => Existing::Complete,
        (Some(_), None) => Existing::Incomplete,
    };
    observed.managed.insert(name.to_owned(), existing);
    Ok(value.map(SecretString::new))
}

/// Every Secret in `names`, read at once: each GET is a round trip to the apiserver, and read one after
/// another they were most of a reconcile's time on a toggle's path.
async fn fetch(api: &Api<Secret>, names: BTreeSet<String>) -> Result<BTreeMap<String, Option<Secret>>, Error> {
    let secrets = futures::future::try_join_all(names.iter().map(|name| get_secret(api, name))).await?;
    Ok(names.into_iter().zip(secrets).collect())
}

/// The live StatefulSet of the server, if any (read first: its selector decides a take-over).
pub async fn statefulset(client: &Client, ds: &DittoServer) -> Result<Option<StatefulSet>, Error> {
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = names::statefulset(&ds.name_any());
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    sts.get_opt(&name).await.map_err(|e| Error::kube(format!("get StatefulSet {name}"), e))
}

/// Reads everything else in one pass (a handful of GETs, no list); `statefulset` is what [`statefulset`] read.
pub async fn observe(client: &Client, ds: &DittoServer, statefulset: Option<StatefulSet>) -> Result<Observed, Error> {
    let ns = ds.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let cr = ds.name_any();
    let uid = ds.metadata.uid.as_deref().ok_or(Error::MissingMetadata("uid"))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut observed = Observed::default();

    let jwt = user_jwt_ref(ds).is_none().then(|| names::jwt_secret(&cr));
    let admin = user_admin_ref(ds).is_none().then(|| names::admin_bootstrap_secret(&cr));
    let operator = names::operator_credentials_secret(&cr);
    let mut wanted: Vec<(String, String, bool)> = Vec::new();
    if let Some(r) = user_jwt_ref(ds) {
        wanted.push((r.name.clone(), r.key.clone(), true));
    }
    wanted.extend(database::consumed_keys(ds));
    let percona_secret = database::percona(ds).map(|_| database::percona_secret(&cr));
    wanted.extend(
        crate::desired::identity::referenced(&ds.spec).into_iter().map(|r| (r.name.clone(), r.key.clone(), true)),
    );
    let all = jwt.iter().chain(&admin).chain([&operator]).chain(wanted.iter().map(|(name, _, _)| name));
    let cache = fetch(&secrets, all.cloned().collect()).await?;

    if let Some(name) = &jwt {
        observed.managed_jwt = managed_value(&cache, name, names::JWT_SECRET_KEY, uid, &mut observed)?;
    }
    if let Some(name) = &admin {
        observed.managed_admin_password = managed_value(&cache, name, names::PASSWORD_KEY, uid, &mut observed)?;
        if observed.managed_admin_password.is_none() {
            // Switching from the Go operator: keep the password its DittoFS was bootstrapped with. The former
            // Secret stays (the Go operator deleted it; that would need the right to delete any Secret) and
            // goes with the server, whose owner reference it carries.
            let legacy = get_secret(&secrets, &names::legacy_admin_secret(&cr)).await?;
            observed.managed_admin_password = value_of(legacy.as_ref(), names::PASSWORD_KEY).map(SecretString::new);
        }
    }
    observed.operator_password = managed_value(&cache, &operator, names::PASSWORD_KEY, uid, &mut observed)?;

    let mut database_missing: Vec<String> = Vec::new();
    for (name, key, required) in wanted {
        let id = format!("{name}/{key}");
        let value = cache[&name].as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get(&key));
        match value {
            Some(v) => {
                observed.referenced.insert(id, v.0.clone());
            }
            // Optional PostgreSQL keys may be absent.
            None if !required => {}
            // Percona writes its Secret when the cluster is up: waiting for it is DatabaseReady's business.
            None if percona_secret.as_deref() == Some(name.as_str()) => database_missing.push(key),
            None => {
                if database::postgres_secret(ds) == Some(name.as_str()) {
                    database_missing.push(key);
                }
                observed.missing.push(id);
            }
        }
    }
    let others: Vec<String> = observed
        .missing
        .iter()
        .filter_map(|id| id.split_once('/'))
        .filter(|(name, _)| database::postgres_secret(ds) != Some(*name))
        .map(|(name, key)| match &cache[name] {
            None => format!("Secret {name} does not exist"),
            Some(_) => format!("Secret {name} has no key {key}"),
        })
        .collect();
    if !others.is_empty() {
        let mut others = others;
        others.dedup();
        observed.secrets_problem = Some(others.join("; "));
    }
    if let Some(secret) = database::postgres_secret(ds) {
        observed.database_problem = match &cache[secret] {
            None => Some(format!("Secret {secret} (database.postgresSecretRef) does not exist")),
            Some(_) if !database_missing.is_empty() => {
                Some(format!("Secret {secret} (database.postgresSecretRef) has no key {}", database_missing.join(", ")))
            }
            Some(_) => None,
        };
    }
    if let Some(secret) = &percona_secret {
        let cluster = percona::get_cluster(client, &ns, &database::cluster_name(&cr)).await?;
        observed.percona = Some(match cluster {
            None => PerconaObserved::NoCluster,
            Some(cluster) => PerconaObserved::Cluster {
                state: cluster.data["status"]["state"].as_str().unwrap_or_default().to_owned(),
                missing_keys: cache[secret].as_ref().map(|_| database_missing.clone()),
            },
        });
    }

    let name = names::statefulset(&cr);
    observed.statefulset = statefulset;
    check_owner("StatefulSet", &name, observed.statefulset.as_ref().map(|s| &s.metadata), uid)?;
    Ok(observed)
}
