//! `spec.agent`'s log, trace and metrics-scrape settings against the real control plane: the apiserver refuses
//! hostile values naming the field; `metricsFrom` adds a rule for the agent's admin port to the baseline
//! NetworkPolicy (and only that port, without touching the pod) and takes it away again; the log and OTLP
//! values reach the agent container's env, and an unchanged server then writes nothing.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use dittofs_api::crd::cel;
use dittofs_api::{DittoServer, agent_env};
use dittofs_tests::controller_world::*;
use dittofs_tests::kube_env::{ControlPlane, wait_until};
use dittofs_tests::objects::*;

const CR: &str = "fs";
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn hostile_agent_settings_are_refused_by_the_apiserver_naming_the_field() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-agent-hostile", async |ns| {
            install_crd(ns.client()).await?;
            let resource = ApiResource::erase::<DittoServer>(&());
            let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource);
            let many: Vec<Value> = (0..17).map(|i| json!({"ipBlock": {"cidr": format!("10.{i}.0.0/16")}})).collect();
            let cases: [(&str, Value, &str, &str); 10] = [
                ("filter", json!({"logLevel": "info\"; sh -c 'id'"}), "spec.agent.logLevel", cel::LOG_FILTER_MESSAGE),
                ("filter-long", json!({"logLevel": "a".repeat(257)}), "spec.agent.logLevel", "256"),
                ("format", json!({"logFormat": "xml"}), "spec.agent.logFormat", "Unsupported value"),
                ("scheme", json!({"otel": {"endpoint": "file:///etc/passwd"}}), "spec.agent.otel.endpoint", cel::OTLP_ENDPOINT_MESSAGE),
                ("userinfo", json!({"otel": {"endpoint": "http://u:p@evil:4318"}}), "spec.agent.otel.endpoint", cel::OTLP_ENDPOINT_MESSAGE),
                ("sampler", json!({"otel": {"sampler": "sometimes"}}), "spec.agent.otel.sampler", "Unsupported value"),
                ("ratio", json!({"otel": {"samplerArg": "1.5"}}), "spec.agent.otel.samplerArg", cel::SAMPLER_ARG_MESSAGE),
                ("peer-empty", json!({"metricsFrom": [{}]}), "spec.agent.metricsFrom[0]", cel::SOURCE_PEER_MESSAGE),
                ("peer-cidr", json!({"metricsFrom": [{"ipBlock": {"cidr": "anywhere"}}]}), "spec.agent.metricsFrom[0].ipBlock.cidr", cel::CIDR_MESSAGE),
                ("peers-many", json!({"metricsFrom": many}), "spec.agent.metricsFrom", "16"),
            ];
            for (name, agent, field, message) in cases {
                let spec = json!({"storage": {"metadataSize": "1Gi"}, "agent": agent});
                let obj = DynamicObject::new(name, &resource).data(json!({"spec": spec}));
                match api.create(&PostParams::default(), &obj).await {
                    Err(kube::Error::Api(e)) => {
                        assert_eq!(e.code, 422, "{name}: {e:?}");
                        assert!(e.message.contains(field) && e.message.contains(message), "{name}: {}", e.message);
                        eprintln!("{name}: {}", e.message);
                    }
                    other => anyhow::bail!("{name} was not refused: {other:?}"),
                }
            }
            let fine = json!({"storage": {"metadataSize": "1Gi"}, "agent": {
                "logLevel": "info,dittofs_agent=debug", "logFormat": "plain",
                "otel": {"endpoint": "https://otel-collector.monitoring:4318", "sampler": "parentbased_traceidratio", "samplerArg": "0.25"},
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}});
            api.create(&PostParams::default(), &DynamicObject::new("fine", &resource).data(json!({"spec": fine}))).await?;
            Ok(())
        })
        .await
}

/// The baseline policy's ingress rules as (peers, ports) JSON.
async fn baseline_rules(ns: &dittofs_tests::kube_env::TempNamespace<'_>) -> anyhow::Result<Vec<(Value, Value)>> {
    let np = ns.api::<NetworkPolicy>().get(&dittofs_api::names::baseline_network_policy(CR)).await?;
    let rules = np.spec.and_then(|s| s.ingress).unwrap_or_default();
    let port_numbers = |r: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        r.ports.iter().flatten().map(|p| serde_json::to_value(&p.port).unwrap_or_default()).collect::<Vec<_>>()
    };
    Ok(rules.iter().map(|r| (serde_json::to_value(&r.from).unwrap_or_default(), json!(port_numbers(r)))).collect())
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn metrics_from_opens_the_agents_port_to_the_scrapers_only_and_closes_it_again() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-agent-scrape", async |ns| {
            let (running, servers) = started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}})).await?;
            let api_only = vec![(Value::Null, json!([8080]))];
            assert_eq!(baseline_rules(ns).await?, api_only, "closed by default");
            running.settle(Duration::from_millis(500)).await?;
            let sts_api: Api<StatefulSet> = ns.api();
            let sts_version = sts_api.get(CR).await?.resource_version();

            let monitoring = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}});
            let open = json!({"spec": {"agent": {"metricsFrom": [monitoring]}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&open)).await?;
            let with_scrape = vec![api_only[0].clone(), (json!([monitoring]), json!([agent_env::DEFAULT_ADMIN_PORT]))];
            wait_until("the scrape rule in the baseline policy", WAIT, async || {
                let rules = baseline_rules(ns).await?;
                anyhow::ensure!(rules == with_scrape, "{rules:?}");
                Ok(())
            })
            .await?;
            running.settle(Duration::from_millis(500)).await?;
            assert_eq!(sts_api.get(CR).await?.resource_version(), sts_version, "the pod template is not touched");

            // Removed from the spec: the rule goes, nothing else opens.
            let close = json!({"spec": {"agent": {"metricsFrom": null}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&close)).await?;
            wait_until("the scrape rule to go", WAIT, async || {
                let rules = baseline_rules(ns).await?;
                anyhow::ensure!(rules == api_only, "{rules:?}");
                Ok(())
            })
            .await?;
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_servers_log_and_otel_settings_reach_the_agents_env_and_then_nothing_is_rewritten() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-agent-env", async |ns| {
            let (running, servers) = started(ns, CR, json!({"storage": {"metadataSize": "1Gi"}})).await?;
            let sts_api: Api<StatefulSet> = ns.api();
            let agent_vars = async || -> anyhow::Result<Vec<(String, Option<String>)>> {
                let sts = sts_api.get(CR).await?;
                let pod = sts.spec.and_then(|s| s.template.spec).unwrap_or_default();
                let agent = pod.containers.into_iter().find(|c| c.name == "agent").unwrap_or_default();
                Ok(agent.env.unwrap_or_default().into_iter().map(|e| (e.name, e.value)).collect())
            };
            let tail = |env: &[(String, Option<String>)], n: usize| env[env.len().saturating_sub(n)..].to_vec();
            let pair = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
            assert_eq!(tail(&agent_vars().await?, 1), [pair("LOG_FORMAT", "json")], "the agent's env as before");

            let settings = json!({"spec": {"agent": {"logLevel": "debug", "logFormat": "plain",
                "otel": {"endpoint": "http://otel-collector.monitoring:4318", "sampler": "always_on"}}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&settings)).await?;
            let want = [
                pair("LOG_FORMAT", "plain"),
                pair("RUST_LOG", "debug"),
                pair("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector.monitoring:4318"),
                pair("OTEL_TRACES_SAMPLER", "always_on"),
            ];
            wait_until("the agent's env to carry the settings", WAIT, async || {
                let env = agent_vars().await?;
                anyhow::ensure!(tail(&env, 4) == want, "{env:?}");
                Ok(())
            })
            .await?;

            // Fixed order: another reconcile of the unchanged server writes no StatefulSet.
            let reconciles = running.settle(Duration::from_secs(1)).await?;
            let (writes, version) =
                (running.controller.metrics().write_count("StatefulSet"), sts_api.get(CR).await?.resource_version());
            let touch = json!({"metadata": {"annotations": {"touch": "1"}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&touch)).await?;
            running.wait_reconciles("a reconcile after the touch", None, reconciles).await?;
            running.settle(Duration::from_secs(1)).await?;
            assert_eq!(running.controller.metrics().write_count("StatefulSet"), writes);
            assert_eq!(sts_api.get(CR).await?.resource_version(), version);
            running.stop().await
        })
        .await
}

#[tokio::test]
#[ignore = "real-server tier: needs the Kubernetes test binaries; run `make test`"]
async fn the_controllers_log_and_otel_settings_reach_every_agent_and_the_servers_own_win() -> anyhow::Result<()> {
    ControlPlane::shared()
        .with_temp_ns("ctrl-agent-inherit", async |ns| {
            install_crd(ns.client()).await?;
            let mut config = dittofs_controller::Config::new(AGENT_IMAGE);
            config.namespace = Some(ns.name().to_owned());
            config.agent_telemetry = dittofs_controller::config::AgentTelemetry::from_lookup(
                dittofs_api::crd::AgentLogFormat::Plain,
                |name| match name {
                    "RUST_LOG" => Some("info,kube=warn".into()),
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://central:4318/v1/traces".into()),
                    "OTEL_RESOURCE_ATTRIBUTES" => Some("deployment.environment=test".into()),
                    "OTEL_SERVICE_NAME" => Some("dittofs-controller".into()),
                    _ => None,
                },
            );
            let running = start_with(ns.client(), config);
            create_server(ns, &server(CR, json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
            let servers: Api<DittoServer> = ns.api();
            let sts_api: Api<StatefulSet> = ns.api();
            let pair = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
            let wait_env = async |what: &str, want: Vec<(String, Option<String>)>| {
                wait_until(what, WAIT, async || {
                    let sts = sts_api.get(CR).await?;
                    let pod = sts.spec.and_then(|s| s.template.spec).unwrap_or_default();
                    let agent = pod.containers.into_iter().find(|c| c.name == "agent").unwrap_or_default();
                    let env: Vec<_> = agent.env.unwrap_or_default().into_iter().map(|e| (e.name, e.value)).collect();
                    anyhow::ensure!(env[env.len().saturating_sub(want.len())..] == want[..], "{env:?}");
                    anyhow::ensure!(!env.iter().any(|(k, _)| k == "OTEL_SERVICE_NAME"), "{env:?}");
                    Ok(())
                })
                .await
            };
            wait_env(
                "the controller's settings in the agent's env",
                vec![
                    pair("LOG_FORMAT", "plain"),
                    pair("RUST_LOG", "info,kube=warn"),
                    pair("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://central:4318/v1/traces"),
                    pair("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
                ],
            )
            .await?;
            let own = json!({"spec": {"agent": {"logLevel": "debug", "otel": {"endpoint": "http://team:4318"}}}});
            servers.patch(CR, &PatchParams::default(), &Patch::Merge(&own)).await?;
            wait_env(
                "the server's own values over them",
                vec![
                    pair("LOG_FORMAT", "plain"),
                    pair("RUST_LOG", "debug"),
                    pair("OTEL_EXPORTER_OTLP_ENDPOINT", "http://team:4318"),
                    pair("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
                ],
            )
            .await?;
            running.stop().await
        })
        .await
}
