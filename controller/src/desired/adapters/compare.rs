//! Desired vs live, so a reconcile with nothing to change sends no write at all (not even a no-op apply).
//!
//! An object is up to date when every field of the desired body has the same value in the live object
//! (the apiserver adds defaults and allocations, e.g. node ports, which are not compared) and the
//! controller's field manager owns no annotation the spec no longer asks for (an apply would remove it).
//! Container ports compare the `adapter-*` entries and the ones the ports manager owns.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ContainerPort;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use dittofs_api::constants::{CONTROLLER_FIELD_MANAGER, CONTROLLER_PORTS_FIELD_MANAGER};
use dittofs_api::labels::ADAPTER_TYPE_LABEL;
use dittofs_api::names;

/// Whether every field of `desired` has the same value in `live`. Lists must have the same length
/// and match element by element (the controller's lists are built in a fixed order).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(l)) => {
            d.iter().all(|(k, v)| v.is_null() || l.get(k).is_some_and(|lv| is_subset(v, lv)))
        }
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b)),
        (d, l) => d == l,
    }
}

/// The field paths (`fieldsV1`) `manager` owns by server-side apply on the main resource.
fn applied_fields<'a>(meta: &'a ObjectMeta, manager: &str) -> Option<&'a Value> {
    meta.managed_fields.as_ref()?.iter().find_map(|m| {
        let applied = m.manager.as_deref() == Some(manager)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref().is_none_or(str::is_empty);
        applied.then_some(m.fields_v1.as_ref().map(|f| &f.0)).flatten()
    })
}

/// The keys under `pointer` (e.g. `/f:metadata/f:annotations`) the controller's field manager owns on `meta`.
fn owned_keys(meta: &ObjectMeta, pointer: &str) -> BTreeSet<String> {
    applied_fields(meta, CONTROLLER_FIELD_MANAGER)
        .and_then(|f| f.pointer(pointer))
        .and_then(Value::as_object)
        .map(|a| a.keys().filter_map(|k| k.strip_prefix("f:")).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The annotation keys the controller's field manager owns on `meta`.
pub fn owned_annotations(meta: &ObjectMeta) -> BTreeSet<String> {
    owned_keys(meta, "/f:metadata/f:annotations")
}

/// Whether applying `desired` would change nothing in `live`: every desired field has its value, and the
/// controller owns no annotation or top-level `spec` field the body leaves out (the apply would remove it,
/// e.g. `loadBalancerSourceRanges` once `allowedSources` has no IP block left).
pub fn up_to_date<K: Resource + Serialize>(desired: &K, live: &K) -> bool {
    let (Ok(d), Ok(l)) = (serde_json::to_value(desired), serde_json::to_value(live)) else {
        return false;
    };
    let wanted: BTreeSet<&String> = desired.annotations().keys().collect();
    let spec = d.get("spec").and_then(Value::as_object);
    let in_spec = |k: &String| spec.is_some_and(|s| s.get(k).is_some_and(|v| !v.is_null()));
    is_subset(&d, &l)
        && owned_annotations(live.meta()).iter().all(|k| wanted.contains(k))
        && owned_keys(live.meta(), "/f:spec").iter().all(in_spec)
}

/// The value of the adapter-type label: how labelled objects are matched to desired ones.
pub fn type_label(obj: &impl Resource) -> Option<&str> {
    obj.meta().labels.as_ref()?.get(ADAPTER_TYPE_LABEL).map(String::as_str)
}

/// What to do with one kind of adapter object.
#[derive(Debug)]
pub struct Plan<K> {
    /// Desired objects that differ from (or are missing among) the labelled live ones, with the live one.
    pub apply: Vec<(K, Option<K>)>,
    /// Labelled live objects (with a type label) that no desired object names.
    pub delete: Vec<K>,
}

/// Matches desired objects to the labelled live ones by name. Live objects without a type label are
/// ignored (neither updated nor deleted), like the Go operator.
pub fn plan<K: Resource + Serialize + Clone>(desired: Vec<K>, live: &[K]) -> Plan<K> {
    let labelled: BTreeMap<String, &K> =
        live.iter().filter(|o| type_label(*o).is_some()).map(|o| (o.name_any(), o)).collect();
    let wanted: BTreeSet<String> = desired.iter().map(ResourceExt::name_any).collect();
    let apply = desired
        .into_iter()
        .filter_map(|d| match labelled.get(&d.name_any()) {
            Some(l) if up_to_date(&d, *l) => None,
            Some(l) => Some((d, Some((*l).clone()))),
            None => Some((d, None)),
        })
        .collect();
    let delete = labelled.into_iter().filter(|(name, _)| !wanted.contains(name)).map(|(_, o)| o.clone()).collect();
    Plan { apply, delete }
}

/// (containerPort, protocol): the key of a container port in server-side apply.
pub type PortKey = (i32, String);

fn key(p: &ContainerPort) -> PortKey {
    (p.container_port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))
}

fn server_ports(sts: &StatefulSet) -> Vec<ContainerPort> {
    let containers = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|s| s.containers.as_slice());
    containers
        .unwrap_or_default()
        .iter()
        .find(|c| c.name == names::SERVER_CONTAINER)
        .and_then(|c| c.ports.clone())
        .unwrap_or_default()
}

/// The `adapter-*` ports of the DittoFS container, sorted by name.
pub fn adapter_ports(sts: &StatefulSet) -> Vec<ContainerPort> {
    let mut ports: Vec<_> =
        server_ports(sts).into_iter().filter(|p| p.name.as_deref().is_some_and(names::is_adapter_port_name)).collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// The keys of the DittoFS container's other ports (API, metrics): an adapter port must not reuse them.
pub fn reserved_ports(sts: &StatefulSet) -> BTreeSet<PortKey> {
    server_ports(sts).iter().filter(|p| !p.name.as_deref().is_some_and(names::is_adapter_port_name)).map(key).collect()
}

/// The port keys the ports field manager owns in the DittoFS container.
pub fn owned_port_keys(sts: &StatefulSet) -> BTreeSet<PortKey> {
    let container = format!("k:{}", serde_json::json!({"name": names::SERVER_CONTAINER}));
    let ports = applied_fields(&sts.metadata, CONTROLLER_PORTS_FIELD_MANAGER)
        .and_then(|f| f.pointer("/f:spec/f:template/f:spec/f:containers"))
        .and_then(|c| c.get(&container))
        .and_then(|c| c.get("f:ports"))
        .and_then(Value::as_object);
    ports
        .into_iter()
        .flat_map(|p| p.keys())
        .filter_map(|k| serde_json::from_str::<Value>(k.strip_prefix("k:")?).ok())
        .filter_map(|k| {
            let port = i32::try_from(k.get("containerPort")?.as_i64()?).ok()?;
            Some((port, k.get("protocol")?.as_str()?.to_owned()))
        })
        .collect()
}

/// Whether two port lists hold the same (name, port, protocol) entries, whatever their order.
pub fn same_ports(a: &[ContainerPort], b: &[ContainerPort]) -> bool {
    let set = |ports: &[ContainerPort]| -> BTreeSet<(Option<String>, PortKey)> {
        ports.iter().map(|p| (p.name.clone(), key(p))).collect()
    };
    a.len() == b.len() && set(a) == set(b)
}

/// Whether the ports manager must apply `desired`: the live `adapter-*` entries differ, or it owns
/// other entries than these (an empty list then releases them, once).
pub fn ports_need_apply(sts: &StatefulSet, desired: &[ContainerPort]) -> bool {
    let owned = owned_port_keys(sts);
    let wanted: BTreeSet<PortKey> = desired.iter().map(key).collect();
    if desired.is_empty() {
        return !owned.is_empty();
    }
    !same_ports(&adapter_ports(sts), desired) || owned != wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    fn svc(value: Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn managed(manager: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_allocations_of_the_apiserver_are_not_differences() {
        let desired = json!({"spec": {"type": "NodePort", "ports": [{"port": 1, "protocol": "TCP"}]}});
        let live = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.1",
            "ports": [{"port": 1, "protocol": "TCP", "nodePort": 30001}]}});
        assert!(is_subset(&desired, &live));
        let changed = json!({"spec": {"type": "NodePort", "ports": [{"port": 2, "protocol": "TCP"}]}});
        assert!(!is_subset(&changed, &live));
        let more = json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}});
        assert!(!is_subset(&more, &live), "an extra desired port is a difference");
    }

    #[test]
    fn an_owned_annotation_the_spec_dropped_is_a_difference_and_others_annotations_are_not() {
        let desired = svc(json!({"metadata": {"name": "s", "annotations": {"a": "1"}}}));
        let mut live = svc(json!({"metadata": {"name": "s", "annotations": {"a": "1", "b": "2", "theirs": "x"}}}));
        live.metadata.managed_fields = Some(vec![
            managed(CONTROLLER_FIELD_MANAGER, json!({"f:metadata": {"f:annotations": {"f:a": {}, "f:b": {}}}})),
            managed("someone", json!({"f:metadata": {"f:annotations": {"f:theirs": {}}}})),
        ]);
        assert_eq!(owned_annotations(&live.metadata), BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(!up_to_date(&desired, &live), "b must be removed");
        live.metadata.managed_fields.as_mut().unwrap()[0] =
            managed(CONTROLLER_FIELD_MANAGER, json!({"f:metadata": {"f:annotations": {"f:a": {}}}}));
        assert!(up_to_date(&desired, &live), "theirs belongs to someone else");
    }

    #[test]
    fn an_owned_spec_field_the_body_dropped_is_a_difference() {
        let desired = svc(json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}}));
        let mut live = svc(json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer",
            "externalTrafficPolicy": "Local", "loadBalancerSourceRanges": ["10.0.0.0/8"]}}));
        let owned = |fields: Value| Some(vec![managed(CONTROLLER_FIELD_MANAGER, json!({"f:spec": fields}))]);
        live.metadata.managed_fields = owned(json!({"f:type": {}, "f:loadBalancerSourceRanges": {}}));
        assert!(!up_to_date(&desired, &live), "the ranges must go");
        live.metadata.managed_fields = owned(json!({"f:type": {}}));
        assert!(up_to_date(&desired, &live), "defaults and other managers' fields are not ours to drop");
    }

    #[test]
    fn plan_updates_differences_deletes_the_undesired_and_ignores_objects_without_a_type() {
        let labels = |t: &str| json!({"dittofs.io/adapter-type": t});
        let desired = vec![
            svc(json!({"metadata": {"name": "fs-adapter-nfs"}, "spec": {"ports": [{"port": 2}]}})),
            svc(json!({"metadata": {"name": "fs-adapter-smb"}, "spec": {"ports": [{"port": 3}]}})),
        ];
        let live = vec![
            svc(
                json!({"metadata": {"name": "fs-adapter-nfs", "labels": labels("nfs")}, "spec": {"ports": [{"port": 1}]}}),
            ),
            svc(json!({"metadata": {"name": "fs-adapter-x", "labels": labels("x")}})),
            svc(json!({"metadata": {"name": "fs-adapter-untyped"}})),
        ];
        let plan = plan(desired, &live);
        let apply: Vec<_> = plan.apply.iter().map(|(d, l)| (d.name_any(), l.is_some())).collect();
        assert_eq!(apply, [("fs-adapter-nfs".into(), true), ("fs-adapter-smb".into(), false)]);
        let delete: Vec<_> = plan.delete.iter().map(ResourceExt::name_any).collect();
        assert_eq!(delete, ["fs-adapter-x"]);
    }

    fn sts(ports: Value, owned: Option<Value>) -> StatefulSet {
        let mut sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "fs"},
            "spec": {"selector": {}, "serviceName": "fs", "template": {"spec": {"containers": [
                {"name": "agent", "ports": [{"name": "adapter-no", "containerPort": 1}]},
                {"name": "dittofs", "ports": ports}
            ]}}}
        }))
        .unwrap();
        if let Some(keys) = owned {
            let fields = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"dittofs\"}": {".": {}, "f:name": {}, "f:ports": keys}
            }}}}});
            sts.metadata.managed_fields = Some(vec![managed(CONTROLLER_PORTS_FIELD_MANAGER, fields)]);
        }
        sts
    }

    fn port(name: &str, port: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ports_apply_only_when_entries_or_ownership_differ() {
        let live = json!([
            {"name": "api", "containerPort": 8080, "protocol": "TCP"},
            {"name": "adapter-nfs", "containerPort": 12049, "protocol": "TCP"}
        ]);
        let owned = json!({".": {}, "k:{\"containerPort\":12049,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}});
        let s = sts(live.clone(), Some(owned));
        assert_eq!(owned_port_keys(&s), BTreeSet::from([(12049, "TCP".to_owned())]));
        assert_eq!(reserved_ports(&s), BTreeSet::from([(8080, "TCP".to_owned())]));
        assert_eq!(adapter_ports(&s), [port("adapter-nfs", 12049)]);
        assert!(!ports_need_apply(&s, &[port("adapter-nfs", 12049)]), "in step: no write");
        assert!(ports_need_apply(&s, &[port("adapter-nfs", 2049)]));
        assert!(ports_need_apply(&s, &[]), "owned entries are released");
        let theirs = sts(live, None);
        assert!(!ports_need_apply(&theirs, &[]), "nothing of ours to release");
        assert!(ports_need_apply(&theirs, &[port("adapter-nfs", 12049)]), "take co-ownership");
        let none = sts(json!([{"name": "api", "containerPort": 8080}]), None);
        assert!(!ports_need_apply(&none, &[]));
    }
}
