//! Moving field ownership from the Go operator's field manager to this controller's (pure, on managedFields).
//!
//! The Go operator wrote with plain updates, recorded under the manager `manager`. Server-side apply
//! leaves a field alone when the body omits it and another manager owns it, so without this move every
//! field the Go operator set and this controller does not (the portmapper and discovery ports, its
//! labels) would stay forever, and a port this controller later changes would linger beside the new one.
//! Handing the Go manager's field set to this controller's apply manager makes the next apply the sole
//! authority: what its body omits is removed. This is what `kubectl apply --server-side` does when it
//! upgrades client-side-applied objects (client-go's `csaupgrade`).
//!
//! The StatefulSet's `adapter-*` container ports of running adapters go to the ports manager instead, so
//! the main apply does not strip them and the pod is not rolled a second time when the agent reports the
//! same ports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
use serde_json::{Map, Value};

/// Where the moved fields go: the manager for everything, and one for a subset of container ports.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The apply manager taking the Go manager's fields.
    pub manager: &'a str,
    /// A second manager taking the ports of `container` whose (port, protocol) is listed.
    pub ports: Option<PortsTarget<'a>>,
}

/// The container ports that go to a manager of their own.
#[derive(Debug, Clone)]
pub struct PortsTarget<'a> {
    /// That manager.
    pub manager: &'a str,
    /// The container whose ports move.
    pub container: &'a str,
    /// (containerPort, protocol) of the ports that move.
    pub keys: Vec<(i32, String)>,
}

/// The managedFields after moving every entry of manager `from` (of the main resource, not a subresource)
/// into `target`'s apply entries; `None` when `from` owns nothing there.
pub fn transfer(
    entries: &[ManagedFieldsEntry],
    from: &str,
    target: &Target<'_>,
    now: Time,
) -> Option<Vec<ManagedFieldsEntry>> {
    let is_from = |e: &ManagedFieldsEntry| e.manager.as_deref() == Some(from) && e.subresource.is_none();
    let moved: Vec<&ManagedFieldsEntry> = entries.iter().filter(|e| is_from(e)).collect();
    if moved.is_empty() {
        return None;
    }
    let api_version = moved[0].api_version.clone();
    let mut main = Value::Object(Map::new());
    for entry in &moved {
        if let Some(FieldsV1(fields)) = &entry.fields_v1 {
            merge(&mut main, fields);
        }
    }
    let ports = target.ports.as_ref().map(|p| (p.manager, take_ports(&mut main, p.container, &p.keys)));

    let mut out: Vec<ManagedFieldsEntry> = entries.iter().filter(|e| !is_from(e)).cloned().collect();
    let mut give = |manager: &str, fields: Value| {
        if is_empty(&fields) {
            return;
        }
        let apply = |e: &ManagedFieldsEntry| {
            e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some("Apply") && e.subresource.is_none()
        };
        match out.iter_mut().find(|e| apply(e)) {
            Some(existing) => {
                let mut set = existing.fields_v1.take().map(|f| f.0).unwrap_or(Value::Object(Map::new()));
                merge(&mut set, &fields);
                existing.fields_v1 = Some(FieldsV1(set));
            }
            None => out.push(ManagedFieldsEntry {
                manager: Some(manager.to_owned()),
                operation: Some("Apply".to_owned()),
                api_version: api_version.clone(),
                time: Some(now.clone()),
                fields_type: Some("FieldsV1".to_owned()),
                fields_v1: Some(FieldsV1(fields)),
                subresource: None,
            }),
        }
    };
    give(target.manager, main);
    if let Some((manager, fields)) = ports {
        give(manager, fields);
    }
    Some(out)
}

/// The union of two field sets (a field set is a tree of objects; leaves are `{}`).
pub fn merge(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else { return };
    for (key, value) in from {
        match into.get_mut(key) {
            Some(existing) => merge(existing, value),
            None => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn is_empty(fields: &Value) -> bool {
    fields.as_object().is_none_or(Map::is_empty)
}

/// The path `f:spec.f:template.f:spec.f:containers` of a StatefulSet's field set.
const CONTAINERS: [&str; 4] = ["f:spec", "f:template", "f:spec", "f:containers"];

/// Removes the listed ports of `container` from `fields` and returns them as a field set of their own
/// (with the container's key, so the new owner's set is well-formed).
fn take_ports(fields: &mut Value, container: &str, keys: &[(i32, String)]) -> Value {
    let mut node = &mut *fields;
    for step in CONTAINERS {
        match node.get_mut(step) {
            Some(next) => node = next,
            None => return Value::Object(Map::new()),
        }
    }
    let Some(containers) = node.as_object_mut() else { return Value::Object(Map::new()) };
    let Some(container_key) = containers
        .keys()
        .find(|k| list_key(k).and_then(|v| v.get("name").cloned()) == Some(Value::from(container)))
        .cloned()
    else {
        return Value::Object(Map::new());
    };
    let Some(ports) =
        containers.get_mut(&container_key).and_then(|c| c.get_mut("f:ports")).and_then(Value::as_object_mut)
    else {
        return Value::Object(Map::new());
    };
    let wanted = |k: &str| {
        list_key(k).is_some_and(|v| {
            let port = v.get("containerPort").and_then(Value::as_i64);
            let protocol = v.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            keys.iter().any(|(p, proto)| Some(i64::from(*p)) == port && proto == protocol)
        })
    };
    let moving: Vec<String> = ports.keys().filter(|k| wanted(k)).cloned().collect();
    if moving.is_empty() {
        return Value::Object(Map::new());
    }
    let taken: Map<String, Value> = moving.iter().filter_map(|k| ports.remove(k).map(|v| (k.clone(), v))).collect();
    let mut container_fields = Map::new();
    container_fields.insert(".".into(), Value::Object(Map::new()));
    container_fields.insert("f:name".into(), Value::Object(Map::new()));
    container_fields.insert("f:ports".into(), Value::Object(taken));
    let mut set = Value::Object(Map::from_iter([(container_key, Value::Object(container_fields))]));
    for step in CONTAINERS.iter().rev() {
        set = Value::Object(Map::from_iter([((*step).to_owned(), set)]));
    }
    set
}

/// The key object of a list-map entry's field (`k:{"name":"dittofs"}` → `{"name":"dittofs"}`).
fn list_key(field: &str) -> Option<Value> {
    serde_json::from_str(field.strip_prefix("k:")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            api_version: Some("apps/v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time("2026-12-07T08:00:00Z".parse().unwrap())
    }

    fn go_statefulset_fields() -> Value {
        json!({"f:metadata": {"f:labels": {"f:app": {}, "f:instance": {}}},
        "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"dittofs\"}": {
            ".": {}, "f:image": {}, "f:name": {},
            "f:ports": {
                "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}},
                "k:{\"containerPort\":12049,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}},
                "k:{\"containerPort\":10111,\"protocol\":\"UDP\"}": {".": {}, "f:name": {}}
            }}}}}}})
    }

    #[test]
    fn the_go_managers_fields_become_ours_and_running_adapter_ports_the_ports_managers() {
        let status = ManagedFieldsEntry {
            subresource: Some("status".into()),
            ..entry("kube-controller-manager", "Update", json!({"f:status": {}}))
        };
        let entries = vec![entry("manager", "Update", go_statefulset_fields()), status.clone()];
        let target = Target {
            manager: "ours",
            ports: Some(PortsTarget { manager: "ports", container: "dittofs", keys: vec![(12049, "TCP".into())] }),
        };
        let out = transfer(&entries, "manager", &target, now()).unwrap();
        assert_eq!(out.len(), 3, "{out:#?}");
        assert_eq!(out[0], status, "other managers' entries are kept as they are");
        let ours = out[1].fields_v1.as_ref().unwrap().0.clone();
        assert_eq!(out[1].manager.as_deref(), Some("ours"));
        assert_eq!(out[1].operation.as_deref(), Some("Apply"));
        let ports = &ours["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"dittofs\"}"]["f:ports"];
        assert!(ports.get("k:{\"containerPort\":8080,\"protocol\":\"TCP\"}").is_some());
        assert!(
            ports.get("k:{\"containerPort\":10111,\"protocol\":\"UDP\"}").is_some(),
            "companions are ours: dropped"
        );
        assert!(ports.get("k:{\"containerPort\":12049,\"protocol\":\"TCP\"}").is_none());
        assert_eq!(ours["f:metadata"]["f:labels"], json!({"f:app": {}, "f:instance": {}}));
        let moved = out[2].fields_v1.as_ref().unwrap().0.clone();
        assert_eq!(out[2].manager.as_deref(), Some("ports"));
        assert_eq!(
            moved,
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"dittofs\"}": {
                ".": {}, "f:name": {},
                "f:ports": {"k:{\"containerPort\":12049,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}}}}}}}})
        );
    }

    #[test]
    fn an_existing_apply_entry_of_ours_is_merged_into_and_nothing_to_move_is_none() {
        let entries = vec![
            entry("ours", "Apply", json!({"f:metadata": {"f:labels": {"f:x": {}}}})),
            entry("manager", "Update", json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:k": {}}})),
        ];
        let target = Target { manager: "ours", ports: None };
        let out = transfer(&entries, "manager", &target, now()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].fields_v1.as_ref().unwrap().0,
            json!({"f:metadata": {"f:labels": {"f:x": {}, "f:app": {}}}, "f:data": {"f:k": {}}})
        );
        assert!(transfer(&out, "manager", &target, now()).is_none(), "a second pass has nothing to do");
    }
}
