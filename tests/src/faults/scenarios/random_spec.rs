//! Random DittoServer specs: a minimal valid spec with one or two random edits, each setting a field the
//! schema knows (or an unknown one) to a value within or outside what the schema allows — wrong types,
//! out-of-range numbers, malformed durations and sizes, refused security settings, colliding ports,
//! missing Secrets — or removing it. Now and then the spec itself is not even an object.

use serde_json::{Value, json};

use crate::faults::Rng;

/// A random spec (see the module docs).
pub fn random_spec(rng: &mut Rng) -> Value {
    if rng.chance(25) {
        return rng.pick(&[json!("a string"), json!([1, 2]), json!(null), json!(7)]).clone();
    }
    let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
    for _ in 0..1 + rng.below(2) {
        let (path, values) = edits(rng);
        let value = rng.pick(&values).clone();
        set(&mut spec, path, value);
    }
    spec
}

/// One field and the values it may get (`null` removes it).
fn edits(rng: &mut Rng) -> (&'static [&'static str], Vec<Value>) {
    let huge = "v".repeat(5000);
    let long_type = "a".repeat(15);
    let many_types: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    let table: Vec<(&'static [&'static str], Vec<Value>)> = vec![
        (&["replicas"], vec![json!(0), json!(1), json!(2), json!(-1), json!("two"), json!(null), json!(1e12)]),
        (
            &["image"],
            vec![json!(""), json!("x"), json!("a".repeat(600)), json!("registry.invalid/dittofs:1"), json!(5)],
        ),
        (
            &["storage", "metadataSize"],
            vec![json!("0"), json!("1Gi"), json!("lots"), json!(""), json!("10Ti"), json!(3)],
        ),
        (&["storage", "contentSize"], vec![json!("50Gi"), json!("-1Gi"), json!(null)]),
        (&["storage"], vec![json!(null), json!({}), json!("x")]),
        (
            &["controlPlane", "port"],
            vec![json!(0), json!(1), json!(8080), json!(8082), json!(65535), json!(65536), json!("http")],
        ),
        (&["controlPlane", "tls"], vec![json!(true), json!("yes")]),
        (&["controlPlane", "certSecretName"], vec![json!("missing-cert"), json!("")]),
        (&["controlPlane", "clientCASecretName"], vec![json!("missing-ca")]),
        (
            &["adapterDiscovery", "pollingInterval"],
            vec![json!("0s"), json!("1s"), json!("abc"), json!("-5s"), json!("999999h")],
        ),
        (&["adapterServices", "type"], vec![json!("NodePort"), json!("ClusterIP"), json!("ExternalName"), json!("x")]),
        (
            &["adapterServices", "allowedTypes"],
            vec![
                json!([]),
                json!(["nfs"]),
                json!(["NFS"]),
                json!([long_type]),
                json!(["nfs", "nfs"]),
                json!("nfs"),
                json!(many_types),
            ],
        ),
        (
            &["adapterServices", "annotations"],
            vec![json!({"a": "b"}), json!({"bad key!": "x"}), json!({"k": huge}), json!({"n": 1})],
        ),
        (
            &["adapterServices", "reportMaxAgeSeconds"],
            vec![json!(29), json!(30), json!(86400), json!(86401), json!("x")],
        ),
        (&["adapterServices", "onStaleReport"], vec![json!("Keep"), json!("Close"), json!("Open")]),
        (&["adapterServices", "syncContainerPorts"], vec![json!(false), json!("no")]),
        (
            &["adapterServices", "allowedSources"],
            vec![json!([{"ipBlock": {"cidr": "10.0.0.0/8"}}]), json!([{"ipBlock": {"cidr": "nonsense"}}]), json!([{}])],
        ),
        (
            &["identity", "jwt"],
            vec![
                json!({"secretRef": {"name": "missing", "key": "k"}}),
                json!({"secretRef": {"name": "faults-jwt", "key": "jwt-secret"}, "accessTokenDuration": "0s"}),
                json!({"secretRef": {"name": "faults-admin", "key": "password"}}),
                json!({}),
            ],
        ),
        (
            &["identity", "admin"],
            vec![json!({"passwordSecretRef": {"name": "missing", "key": "password"}}), json!({"username": ""})],
        ),
        (
            &["metrics"],
            vec![
                json!({"enabled": true}),
                json!({"enabled": true, "port": 8080}),
                json!({"port": 8082}),
                json!({"port": 70000}),
            ],
        ),
        (&["logging", "level"], vec![json!("DEBUG"), json!("TRACE"), json!(3)]),
        (
            &["securityContext"],
            vec![
                json!({"privileged": true}),
                json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
                json!({"runAsUser": 0}),
                json!({"allowPrivilegeEscalation": true}),
                json!({"readOnlyRootFilesystem": true}),
            ],
        ),
        (
            &["podSecurityContext"],
            vec![json!({"runAsUser": 0}), json!({"fsGroup": 1000}), json!({"runAsNonRoot": false})],
        ),
        (&["resources"], vec![json!({"limits": {"memory": "1Gi"}}), json!({"limits": {"cpu": "lots"}})]),
        (&["terminationGracePeriodSeconds"], vec![json!(0), json!(35), json!(36), json!(105), json!(-1)]),
        (&["agent"], vec![json!({"image": "registry.invalid/agent:x"}), json!({"imagePullPolicy": "Sometimes"})]),
        (&["percona"], vec![json!({"enabled": true}), json!("x")]),
        (&["snapshotPolicies"], vec![json!([{"share": "/a", "interval": "1h"}]), json!({})]),
        (&["unknownField"], vec![json!(1), json!({"nested": true})]),
        (
            &["database"],
            vec![
                json!({"type": "postgres"}),
                json!({"postgresSecretRef": {"name": "pg", "key": "x"}}),
                json!({"type": "oracle"}),
            ],
        ),
    ];
    let i = rng.below(table.len() as u64) as usize;
    table.into_iter().nth(i).expect("index within the table")
}

/// Sets `path` in `spec` to `value` (creating objects on the way; `null` removes the field).
fn set(spec: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut at = spec;
    for key in parents {
        if !at[*key].is_object() {
            at[*key] = json!({});
        }
        at = &mut at[*key];
    }
    match (value, at.as_object_mut()) {
        (Value::Null, Some(map)) => drop(map.remove(*last)),
        (value, Some(map)) => drop(map.insert((*last).to_owned(), value)),
        (_, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_vary_and_are_reproducible() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let specs: Vec<Value> = (0..50).map(|_| random_spec(&mut a)).collect();
        assert_eq!(specs, (0..50).map(|_| random_spec(&mut b)).collect::<Vec<_>>(), "same seed, same specs");
        let distinct: std::collections::BTreeSet<String> = specs.iter().map(Value::to_string).collect();
        assert!(distinct.len() > 30, "{distinct:?}");
        let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
        set(&mut spec, &["storage"], Value::Null);
        set(&mut spec, &["identity", "admin"], json!({"username": "x"}));
        assert_eq!(spec, json!({"identity": {"admin": {"username": "x"}}}));
    }
}
