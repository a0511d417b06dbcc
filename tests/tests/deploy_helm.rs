//! The Helm chart `deploy/helm/dittofs-operator`: its CRD is the generated one, every value is documented,
//! `helm lint` passes, the schema refuses bad values, and the default and the non-default (`ci/`) renders
//! hold what the values say and are accepted by the real apiserver (server-side apply). The controller run
//! with the chart's RBAC is in `deploy_helm_controller.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use dittofs_tests::deploy::{apply_docs, chart_dir, find, helm, helm_template, kinds, parse_docs, repo_root};
use dittofs_tests::kube_env::{ControlPlane, TempNamespace, wait_until};

const CI_VALUES: &str = "deploy/helm/dittofs-operator/ci/namespaced-values.yaml";

fn read(rel: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(repo_root().join(rel))?)
}

/// The chart cannot read files outside itself, so it carries a copy of the generated CRD. `UPDATE_CRD=1`
/// refreshes it (after `make crd`), as for the generated file itself.
#[test]
fn the_charts_crd_is_the_generated_one() -> anyhow::Result<()> {
    let (generated, copy) = ("deploy/crds/dittoservers.yaml", "deploy/helm/dittofs-operator/files/dittoservers.yaml");
    if std::env::var_os("UPDATE_CRD").is_some() {
        std::fs::copy(repo_root().join(generated), repo_root().join(copy))?;
    }
    assert!(
        read(generated)? == read(copy)?,
        "{copy} differs from {generated}: run UPDATE_CRD=1 cargo test -p dittofs-tests --test deploy_helm"
    );
    Ok(())
}

/// The value paths of values.yaml: a key is a value unless it is a group (an object the schema closes
/// with `additionalProperties: false`), whose keys are the values then.
fn value_paths(values: &Value, schema: &Value, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in values.as_object().into_iter().flatten() {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let sub = &schema["properties"][key];
        if value.as_object().is_some_and(|o| !o.is_empty()) && sub["additionalProperties"] == false {
            value_paths(value, sub, &path, out);
        } else {
            out.push(path);
        }
    }
}

/// The key paths of values.yaml that a `# -- ` comment introduces (two-space indentation).
fn commented_paths(text: &str) -> BTreeSet<String> {
    let (mut stack, mut pending, mut out) = (Vec::<String>::new(), false, BTreeSet::new());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("# -- ") {
            pending = true;
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let depth = (line.len() - trimmed.len()) / 2;
        let key = trimmed.split_once(':').map(|(k, _)| k).filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric()));
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            stack.truncate(depth);
            stack.push(key.to_owned());
            if pending {
                out.insert(stack.join("."));
            }
        }
        pending = false;
    }
    out
}

#[test]
fn every_value_is_documented_in_values_yaml_and_the_readme() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml"))?;
    let values: Value = serde_saphyr::from_str(&text)?;
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(chart_dir().join("values.schema.json"))?)?;
    let mut paths = Vec::new();
    value_paths(&values, &schema, "", &mut paths);
    assert!(paths.len() > 40, "{paths:?}");

    let commented = commented_paths(&text);
    let undocumented: Vec<&String> = paths.iter().filter(|p| !commented.contains(*p)).collect();
    assert!(undocumented.is_empty(), "values.yaml: no `# -- ` comment for {undocumented:?}");

    let readme = std::fs::read_to_string(chart_dir().join("README.md"))?;
    let table = readme.split_once("## Values").map(|(_, t)| t).unwrap_or_default();
    let rows: BTreeSet<&str> =
        table.lines().filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(path, _)| path)).collect();
    let wanted: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
    let missing: Vec<&&str> = wanted.difference(&rows).collect();
    let stale: Vec<&&str> = rows.difference(&wanted).collect();
    assert!(missing.is_empty() && stale.is_empty(), "README.md's values table lacks {missing:?}, has stale {stale:?}");
    Ok(())
}

#[test]
#[ignore = "real-server tier: needs helm from scripts/testenv/helm.sh; run `make test`"]
fn helm_lint_passes_and_the_schema_refuses_bad_values() -> anyhow::Result<()> {
    let chart = chart_dir().display().to_string();
    let out = helm(&["lint", "--strict", &chart])?;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let out = helm(&["lint", "--strict", &chart, "-f", CI_VALUES])?;
    assert!(out.contains("0 chart(s) failed"), "{out}");
    for (set, refusal) in [
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("watchNamespaces={a,b}", "maxItems"),
        ("log.format=xml", "value must be one of"),
        ("agent.image.digest=latest", "/agent/image/digest"),
        ("otel.sampler=sometimes", "/otel/sampler"),
        ("leaderElection.enabled=false", "leaderElection.enabled=false needs replicaCount 1"),
        ("metrics.serviceMonitor.enabled=true", "needs metrics.service.enabled"),
    ] {
        let err = helm_template("bad", "ns", &["--set", set]).expect_err(set).to_string();
        assert!(err.contains(refusal), "--set {set}: {err}");
    }
    Ok(())
}

/// The path and values of the first difference between two documents (`None`: equal, numbers compared as
/// the apiserver reads them), for a readable failure on a 100 kB CRD.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (null, sub) = (Value::Null, format!("{path}.{k}"));
                first_difference(x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), &sub)
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]")))
        }
        // Helm's fromYaml/toYaml round trip turns the generated `86400.0` into `86400`: one JSON number.
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then(|| format!("{path}: {x} vs {y}")),
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// The rules of `kind` in a deploy/ or rendered document set.
fn rules<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    Ok(&find(docs, kind, name)?["rules"])
}

fn deploy_rbac() -> anyhow::Result<Vec<Value>> {
    parse_docs(&read("deploy/rbac/controller-rbac.yaml")?)
}

/// Labels `ns` to enforce Pod Security `restricted`.
async fn enforce_restricted(ns: &TempNamespace<'_>) -> anyhow::Result<()> {
    let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    Api::<Namespace>::all(ns.client()).patch(ns.name(), &PatchParams::default(), &Patch::Merge(labels)).await?;
    Ok(())
}

/// Waits until the ReplicaSet of the chart's Deployment created `n` pods: admission let them in.
async fn wait_for_pods(ns: &TempNamespace<'_>, selector: &str, n: usize) -> anyhow::Result<()> {
    let pods: Api<Pod> = ns.api();
    wait_until(&format!("{n} controller pods"), Duration::from_secs(60), async || {
        let have = pods.list(&ListParams::default().labels(selector)).await?.items.len();
        anyhow::ensure!(have == n, "{have} pods");
        Ok(())
    })
    .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and helm; run `make test`"]
async fn the_default_render_is_deploy_s_and_the_apiserver_accepts_it() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("helm-default", async |ns| {
            let docs = helm_template("dfs", ns.name(), &[])?;
            let fullname = "dfs-dittofs-operator";

            // The CRD: the generated one, plus the release's labels and the keep annotation.
            let mut crd = find(&docs, "CustomResourceDefinition", "dittoservers.dittofs.dittofs.com")?.clone();
            assert_eq!(crd["metadata"]["annotations"], json!({"helm.sh/resource-policy": "keep"}));
            assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/instance"], "dfs");
            let meta = crd["metadata"].as_object_mut().unwrap();
            meta.remove("labels");
            meta.remove("annotations");
            let generated: Value = serde_saphyr::from_str(&read("deploy/crds/dittoservers.yaml")?)?;
            assert_eq!(
                first_difference(&crd, &generated, "$"),
                None,
                "the rendered CRD vs deploy/crds/dittoservers.yaml"
            );
            let unkept = helm_template("dfs", ns.name(), &["--set", "crds.keep=false"])?;
            assert!(
                find(&unkept, "CustomResourceDefinition", "dittoservers.dittofs.dittofs.com")?["metadata"]
                    .get("annotations")
                    .is_none()
            );
            let without = helm_template("dfs", ns.name(), &["--set", "crds.install=false"])?;
            assert!(!kinds(&without).iter().any(|k| k.starts_with("CustomResourceDefinition/")));

            // Least privilege: exactly deploy/rbac's rules.
            let rbac = deploy_rbac()?;
            assert_eq!(rules(&docs, "ClusterRole", fullname)?, rules(&rbac, "ClusterRole", "dittofs-controller")?);
            let leader = rules(&docs, "Role", &format!("{fullname}-leader-election"))?;
            let mut want = rules(&rbac, "Role", "dittofs-controller-leader-election")?.clone();
            want[1]["resourceNames"] = json!([format!("{fullname}-leader")]);
            assert_eq!(leader, &want);
            assert_eq!(
                find(&docs, "ClusterRoleBinding", fullname)?["subjects"],
                json!([{"kind": "ServiceAccount", "name": fullname, "namespace": ns.name()}])
            );

            // The pod: deploy/controller's security settings, two replicas spread over nodes, a PDB.
            let deployment = find(&docs, "Deployment", fullname)?;
            let ours = parse_docs(&read("deploy/controller/controller.yaml")?)?;
            let theirs = &find(&ours, "Deployment", "dittofs-controller")?["spec"]["template"]["spec"];
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"], theirs["securityContext"]);
            assert_eq!(pod["containers"][0]["securityContext"], theirs["containers"][0]["securityContext"]);
            assert_eq!(pod["containers"][0]["resources"], theirs["containers"][0]["resources"]);
            assert_eq!(deployment["spec"]["replicas"], 2);
            assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname");
            assert_eq!(find(&docs, "PodDisruptionBudget", fullname)?["spec"]["maxUnavailable"], 1);
            for off in ["Service", "ServiceMonitor", "PodMonitor"] {
                assert!(!kinds(&docs).iter().any(|k| k.starts_with(&format!("{off}/"))), "{off} is off by default");
            }

            enforce_restricted(ns).await?;
            let applied = apply_docs(&ns.client(), &docs, "helm-default-test").await?;
            eprintln!("applied: {applied:?}");
            wait_for_pods(ns, "app.kubernetes.io/instance=dfs,app.kubernetes.io/component=controller", 2).await
        })
        .await
}

/// Just enough of prometheus-operator's CRDs for the apiserver to store a ServiceMonitor and a PodMonitor
/// (their content is checked by this test, not by a schema).
fn monitoring_crd(kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
    })
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name).map(|e| &e["value"])
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries and helm; run `make test`"]
async fn the_non_default_render_holds_its_values_and_the_apiserver_accepts_it() -> anyhow::Result<()> {
    let cp = ControlPlane::shared();
    cp.with_temp_ns("helm-ci", async |ns| {
        let watched = TempNamespace::create(cp, "helm-ci-watched").await?;
        let set = format!("watchNamespaces[0]={}", watched.name());
        let docs = helm_template("ci", ns.name(), &["-f", CI_VALUES, "--set", &set])?;
        eprintln!("rendered: {:?}", kinds(&docs));

        // Namespaced mode: the controller's rules as a Role in the watched namespace, nothing cluster-wide.
        let role = find(&docs, "Role", "dfs-ns")?;
        assert_eq!(role["metadata"]["namespace"], watched.name());
        assert_eq!(&role["rules"], rules(&deploy_rbac()?, "ClusterRole", "dittofs-controller")?);
        let binding = find(&docs, "RoleBinding", "dfs-ns")?;
        assert_eq!(binding["subjects"][0]["name"], "dfs-ns-controller");
        for cluster_wide in ["ClusterRole/", "ClusterRoleBinding/", "CustomResourceDefinition/"] {
            assert!(!kinds(&docs).iter().any(|k| k.starts_with(cluster_wide)), "{cluster_wide} rendered");
        }

        let deployment = find(&docs, "Deployment", "dfs-ns")?;
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(deployment["spec"]["replicas"], 3);
        assert_eq!(
            container["image"],
            "registry.example/dittofs/controller@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        assert_eq!(container["imagePullPolicy"], "Always");
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(pod["serviceAccountName"], "dfs-ns-controller");
        for (var, want) in [
            ("DITTOFS_AGENT_IMAGE", "registry.example/dittofs/agent:1.2.3-test"),
            ("WATCH_NAMESPACE", watched.name()),
            ("LOG_FORMAT", "plain"),
            ("RUST_LOG", "info,dittofs_controller=debug"),
            ("ADMIN_ADDR", "0.0.0.0:9081"),
            ("LEADER_ELECTION_LEASE_NAME", "dfs-ns-lease"),
            ("LEADER_ELECTION_LEASE_DURATION", "8s"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "dittofs-controller-ns"),
        ] {
            assert_eq!(env(container, var), Some(&json!(want)), "{var}");
        }
        assert_eq!(container["ports"][0]["containerPort"], 9081);
        assert_eq!(container["resources"]["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
        assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
        assert_eq!(pod["tolerations"][0]["key"], "dedicated");
        assert!(pod["affinity"]["nodeAffinity"].is_object());
        let spread = &pod["topologySpreadConstraints"][0];
        assert_eq!((&spread["topologyKey"], &spread["maxSkew"]), (&json!("topology.kubernetes.io/zone"), &json!(2)));
        assert_eq!(pod["terminationGracePeriodSeconds"], 20);
        assert_eq!(deployment["spec"]["template"]["metadata"]["labels"]["example.com/team"], "storage");
        assert_eq!(find(&docs, "PodDisruptionBudget", "dfs-ns")?["spec"]["maxUnavailable"], 2);
        let lease = find(&docs, "Role", "dfs-ns-leader-election")?;
        assert_eq!(lease["rules"][1]["resourceNames"], json!(["dfs-ns-lease"]));

        // Metrics: the Service targets the admin port; the ServiceMonitor selects exactly that Service's
        // labels and port; the PodMonitor the agents' port in the watched namespace.
        let service = find(&docs, "Service", "dfs-ns-metrics")?;
        assert_eq!(service["spec"]["ports"][0], json!({"name": "metrics", "port": 9090, "targetPort": "admin", "protocol": "TCP"}));
        let monitor = find(&docs, "ServiceMonitor", "dfs-ns")?;
        for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&service["metadata"]["labels"][k], v, "ServiceMonitor selects {k}={v}");
            assert_eq!(&service["spec"]["selector"][k], v);
        }
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
        let agents = find(&docs, "PodMonitor", "dfs-ns-agents")?;
        assert_eq!(agents["spec"]["namespaceSelector"], json!({"matchNames": [watched.name()]}));
        assert_eq!(agents["spec"]["podMetricsEndpoints"][0]["port"], "agent-admin");
        let server_pods = dittofs_api::labels::selector_labels("any");
        for (k, v) in agents["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(server_pods.get(k).map(String::as_str), v.as_str(), "PodMonitor selects {k}={v}");
        }

        let admin = ns.client();
        apply_docs(&admin, &[monitoring_crd("ServiceMonitor", "servicemonitors"), monitoring_crd("PodMonitor", "podmonitors")], "helm-ci-test").await?;
        dittofs_tests::objects::install_crd(admin.clone()).await?;
        enforce_restricted(ns).await?;
        let applied = apply_docs(&admin, &docs, "helm-ci-test").await?;
        eprintln!("applied: {applied:?}");
        wait_for_pods(ns, "app.kubernetes.io/instance=ci,app.kubernetes.io/component=controller", 3).await?;
        watched.delete().await
    })
    .await
}
