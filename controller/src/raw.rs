//! A lenient, compact view of a `DittoServer` for the watch: spec and status stay JSON text until one
//! reconcile parses them.
//!
//! Why lenient: the watcher deserializes every object of the list. With the typed `DittoServer`, one object
//! that got in before the schema (or through a CRD without validation) would fail the whole list and
//! wedge the controller for every server. Here only that object's reconcile fails, with a message
//! naming the field.
//!
//! Why text: the cache holds every server for as long as the controller runs. As a `serde_json::Value`
//! a server with its agents' reports took about 19 KB (a map node and a string per key), as its compact
//! JSON text a fifth of that; the text is parsed when a reconcile or a watch event needs it.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use dittofs_api::{DittoServer, DittoServerSpec, DittoServerStatus};

/// A `DittoServer` as stored, with `spec` and `status` not yet parsed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawDittoServer {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec as JSON text.
    #[serde(default = "empty_object")]
    pub spec: Box<RawValue>,
    /// The status as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<RawValue>>,
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

impl Default for RawDittoServer {
    fn default() -> Self {
        Self { metadata: ObjectMeta::default(), spec: empty_object(), status: None }
    }
}

impl Resource for RawDittoServer {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        DittoServer::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        DittoServer::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        DittoServer::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        DittoServer::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What a change must touch to trigger a reconcile (a kube-runtime predicate): the metadata that steers it
/// and the agents' entries, but not their `lastPollTime` and nothing the controller writes itself.
///
/// Healthy agents refresh `lastPollTime` every third of `reportMaxAgeSeconds` as a heartbeat; reconciling
/// each one would cost every server a dozen requests a minute for nothing. The controller's own status
/// (phase, conditions, …) is what a reconcile just wrote: reconciling again on it found nothing to do but
/// cost the server its reads, several times per server on the way up. The controller reads the freshest
/// entries from its cache whenever it does reconcile, and requeues itself for the moment a report would go
/// stale.
pub fn trigger_hash(ds: &RawDittoServer) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut agents = ds.status_part("agents").unwrap_or(Value::Null);
    for agent in agents.as_array_mut().into_iter().flatten().filter_map(Value::as_object_mut) {
        agent.remove("lastPollTime");
    }
    let meta = &ds.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&meta.uid, meta.generation, &meta.finalizers, meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()))
        .hash(&mut hasher);
    (&meta.labels, &meta.annotations).hash(&mut hasher);
    agents.to_string().hash(&mut hasher);
    Some(hasher.finish())
}

/// `kubectl apply` (client-side) keeps a copy of the whole object in this annotation; nothing here reads it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the cache keeps of a watched server: not its managedFields (often the larger part of its metadata)
/// nor `kubectl apply`'s copy of it, which nothing here reads.
pub fn slim(ds: &mut RawDittoServer) {
    ds.metadata.managed_fields = None;
    if let Some(annotations) = ds.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Why a stored object is not a valid `DittoServer` spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{path}: {message}")]
pub struct InvalidSpec {
    /// Path of the offending field under `spec` (`.` when the spec itself is wrong).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl RawDittoServer {
    /// The spec as a JSON value (`{}` if it does not parse, which the stored text always does).
    pub fn spec_value(&self) -> Value {
        serde_json::from_str(self.spec.get()).unwrap_or_else(|_| Value::Object(Default::default()))
    }

    /// One top-level field of the status (`phase`, `agents`), parsed alone.
    pub fn status_part(&self, field: &str) -> Option<Value> {
        let status: serde_json::Map<String, Value> = serde_json::from_str(self.status.as_ref()?.get()).ok()?;
        status.into_iter().find(|(k, _)| k == field).map(|(_, v)| v)
    }

    /// The status, parsed leniently: one that does not parse counts as none.
    pub fn typed_status(&self) -> Option<DittoServerStatus> {
        serde_json::from_str::<DittoServerStatus>(self.status.as_ref()?.get()).ok()
    }

    /// Parses the spec (naming the offending field on failure) and, leniently, the status: a status
    /// that does not parse counts as empty, since the controller rewrites the parts it owns anyway.
    pub fn parse(&self) -> Result<DittoServer, InvalidSpec> {
        let mut json = serde_json::Deserializer::from_str(self.spec.get());
        let spec: DittoServerSpec = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let path = e.path().to_string();
            InvalidSpec {
                path: if path == "." { String::new() } else { path }.trim_start_matches('.').to_owned(),
                message: e.into_inner().to_string(),
            }
        })?;
        check(&spec)?;
        let status = self.typed_status();
        let mut ds = DittoServer::new(self.metadata.name.as_deref().unwrap_or_default(), spec);
        ds.metadata = self.metadata.clone();
        ds.status = status;
        Ok(ds)
    }
}

/// The schema's rules a spec must meet to give valid children, checked again for objects stored
/// before (or without) the schema: the apiserver would refuse the children, some with a 500.
fn check(spec: &DittoServerSpec) -> Result<(), InvalidSpec> {
    let invalid = |path: &str, message: String| Err(InvalidSpec { path: path.to_owned(), message });
    let storage = &spec.storage;
    let sizes = [
        ("storage.metadataSize", Some(&storage.metadata_size)),
        ("storage.contentSize", storage.content_size.as_ref()),
        ("storage.controlPlaneSize", Some(&storage.control_plane_size)),
    ];
    for (path, size) in sizes {
        if let Some(size) = size.filter(|s| !is_size(s)) {
            return invalid(path, format!("{size:?} is not a size such as 10Gi"));
        }
    }
    if !(0..=1).contains(&spec.replicas) {
        return invalid("replicas", format!("{} is not 0 or 1", spec.replicas));
    }
    if !(1..=65535).contains(&spec.control_plane.port) {
        return invalid("controlPlane.port", format!("{} is not a port", spec.control_plane.port));
    }
    if let Some(m) = spec.metrics.as_ref().filter(|m| !(1..=65535).contains(&m.port)) {
        return invalid("metrics.port", format!("{} is not a port", m.port));
    }
    if let Some(t) = spec.termination_grace_period_seconds.filter(|t| *t < 0) {
        return invalid("terminationGracePeriodSeconds", format!("{t} is negative"));
    }
    // Resource quantities are int-or-string in the schema, which cannot check them; the apiserver refuses the
    // StatefulSet with a 500 (a failed conversion), which would look transient.
    let resources = [
        ("resources", spec.resources.as_ref()),
        ("agent.resources", spec.agent.as_ref().and_then(|a| a.resources.as_ref())),
    ];
    for (field, r) in resources {
        let Some(r) = r else { continue };
        for (part, map) in [("limits", r.limits.as_ref()), ("requests", r.requests.as_ref())] {
            if let Some((name, q)) = map.into_iter().flatten().find(|(_, q)| !is_quantity(&q.0)) {
                return invalid(
                    &format!("{field}.{part}.{name}"),
                    format!("{:?} is not a quantity such as 500m, 1Gi or 2", q.0),
                );
            }
        }
    }
    // The agent would not start with a log filter it cannot parse; the others are checked alike.
    if let Some((path, message)) = spec.agent.as_ref().and_then(|a| a.invalid_field()) {
        return invalid(path, message.to_owned());
    }
    Ok(())
}

/// `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`: what the apiserver checks before it parses a quantity.
fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.').len();
    if number == 0 {
        return false;
    }
    let rest = s[number..].trim_start_matches(|c: char| "eEinumkKMGTP".contains(c));
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    rest.chars().all(|c| c.is_ascii_digit())
}

/// `^[0-9]+([.][0-9]+)?([KMGTPE]i|[kMGTPE])?$`, the CRD's size rule (a subset of Kubernetes quantities).
fn is_size(s: &str) -> bool {
    let digits = |t: &str| t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let int = digits(s);
    if int == 0 {
        return false;
    }
    let mut rest = &s[int..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = digits(frac);
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    matches!(rest, "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "k" | "M" | "G" | "T" | "P" | "E")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

    fn raw(spec: Value) -> RawDittoServer {
        RawDittoServer {
            metadata: ObjectMeta { name: Some("fs".into()), namespace: Some("ns".into()), ..Default::default() },
            spec: text(spec),
            status: Some(text(json!({"phase": 42}))),
        }
    }

    #[test]
    fn watch_events_and_lists_hold_spec_and_status_as_text_and_parse_on_demand() {
        let object = r#"{"apiVersion":"dittofs.dittofs.com/v1alpha1","kind":"DittoServer","metadata":{"name":"fs",
            "namespace":"ns","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}","keep":"me"}},
            "spec":{"storage":{"metadataSize":"1Gi"}},"status":{"phase":"Running","agents":[{"podName":"fs-0"}]}}"#;
        let event: kube::core::WatchEvent<RawDittoServer> =
            serde_json::from_str(&format!(r#"{{"type":"MODIFIED","object":{object}}}"#)).unwrap();
        let kube::core::WatchEvent::Modified(mut ds) = event else { panic!("{event:?}") };
        assert_eq!(ds.spec.get(), r#"{"storage":{"metadataSize":"1Gi"}}"#);
        assert_eq!(ds.status_part("phase"), Some(json!("Running")));
        assert_eq!(ds.status_part("agents"), Some(json!([{"podName": "fs-0"}])));
        assert_eq!(ds.typed_status().unwrap().agents[0].pod_name, "fs-0");
        assert_eq!(ds.parse().unwrap().spec.storage.metadata_size, "1Gi");
        slim(&mut ds);
        assert_eq!(ds.metadata.annotations.unwrap().keys().collect::<Vec<_>>(), ["keep"]);
        let list: kube::core::ObjectList<RawDittoServer> = serde_json::from_str(&format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{"resourceVersion":"5"}},"items":[{object}]}}"#
        ))
        .unwrap();
        assert_eq!(list.items[0].spec_value(), json!({"storage": {"metadataSize": "1Gi"}}));
        assert_eq!(RawDittoServer::default().spec_value(), json!({}));
    }

    #[test]
    fn heartbeats_do_not_trigger_but_reports_and_spec_do() {
        let with = |poll: &str, adapters: Value, generation: i64| {
            let mut ds = raw(json!({}));
            ds.metadata.generation = Some(generation);
            ds.status =
                Some(text(json!({"agents": [{"podName": "fs-0", "lastPollTime": poll, "adapters": adapters}]})));
            trigger_hash(&ds)
        };
        let nfs = json!([{"type": "nfs", "port": 12049}]);
        let base = with("2026-01-01T00:00:00Z", nfs.clone(), 1);
        assert_eq!(base, with("2026-01-01T00:01:40Z", nfs.clone(), 1), "a heartbeat alone");
        assert_ne!(base, with("2026-01-01T00:01:40Z", json!([]), 1), "a new report");
        assert_ne!(base, with("2026-01-01T00:00:00Z", nfs.clone(), 2), "a spec change");
        let mut own = raw(json!({}));
        own.metadata.generation = Some(1);
        own.status = Some(text(json!({"phase": "Running", "conditions": [{"type": "Ready"}], "agents": [
            {"podName": "fs-0", "lastPollTime": "2026-01-01T00:00:00Z", "adapters": nfs}]})));
        assert_eq!(base, trigger_hash(&own), "the controller's own status");
    }

    #[test]
    fn a_valid_spec_parses_and_a_bad_status_counts_as_empty() {
        let ds = raw(json!({"storage": {"metadataSize": "1Gi"}})).parse().unwrap();
        assert_eq!(ds.spec.storage.metadata_size, "1Gi");
        assert_eq!(ds.metadata.namespace.as_deref(), Some("ns"));
        assert!(ds.status.is_none());
    }

    #[test]
    fn sizes_follow_the_crd_rule() {
        for good in ["1Gi", "10Gi", "1.5Ti", "500M", "1000"] {
            assert!(is_size(good), "{good}");
        }
        for bad in ["lots", "", "Gi", "1.Gi", "1GB", "-1Gi", "1 Gi"] {
            assert!(!is_size(bad), "{bad}");
        }
        let e = raw(json!({"storage": {"metadataSize": "lots"}})).parse().unwrap_err();
        assert_eq!(e.path, "storage.metadataSize");
        let e = raw(json!({"storage": {"metadataSize": "1Gi"}, "replicas": 3})).parse().unwrap_err();
        assert_eq!(e.path, "replicas");
    }

    #[test]
    fn agent_settings_the_schema_would_refuse_are_invalid() {
        let agent = |agent: Value| raw(json!({"storage": {"metadataSize": "1Gi"}, "agent": agent})).parse();
        for (bad, path) in [
            (json!({"logLevel": "info dittofs_agent=debug"}), "agent.logLevel"),
            (json!({"otel": {"endpoint": "ftp://collector"}}), "agent.otel.endpoint"),
            (json!({"otel": {"samplerArg": "2"}}), "agent.otel.samplerArg"),
        ] {
            assert_eq!(agent(bad.clone()).unwrap_err().path, path, "{bad}");
        }
        let e = agent(json!({"otel": {"sampler": "sometimes"}})).unwrap_err();
        assert_eq!(e.path, "agent.otel.sampler");
        let good = json!({"logLevel": "info,dittofs_agent=debug", "otel": {"endpoint": "https://c:4318", "samplerArg": "0.5"}});
        assert!(agent(good).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let e = raw(json!({"storage": {"metadataSize": "1Gi"}, "replicas": "two"})).parse().unwrap_err();
        assert_eq!(e.path, "replicas");
        assert!(e.to_string().starts_with("spec.replicas: invalid type"), "{e}");
        let e = raw(json!({"replicas": 1})).parse().unwrap_err();
        assert!(e.to_string().contains("missing field `storage`"), "{e}");
        let e = raw(json!({"storage": {"metadataSize": 5}})).parse().unwrap_err();
        assert_eq!(e.path, "storage.metadataSize");
    }
}

#[cfg(test)]
mod quantity_tests {
    use super::*;

    #[test]
    fn quantities_as_the_apiserver_checks_them() {
        for ok in ["2", "500m", "1Gi", "1.5", "+1", "1e3", "100Ki"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["lots", "", "Gi", "1 Gi", "1Gi!"] {
            assert!(!is_quantity(bad), "{bad}");
        }
        let spec: DittoServerSpec = serde_json::from_value(serde_json::json!({
            "storage": {"metadataSize": "1Gi"}, "resources": {"limits": {"cpu": "lots"}}
        }))
        .unwrap();
        let refused = check(&spec).unwrap_err();
        assert_eq!(refused.path, "resources.limits.cpu");
    }
}
