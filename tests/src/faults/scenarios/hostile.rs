//! Untrusted input: status writes made with the agent's own ServiceAccount token (what a compromised
//! DittoFS container could do), and random DittoServer specs.
//!
//! Hostile writes go to [`HOSTILE`], a server without a pod, so nothing but the writer speaks for it:
//! random entries (pod names, counts, types, ports, flags, health, reachability, timestamps) by server-side
//! apply under an agent's field manager or by a merge patch replacing the whole list. While they are
//! written the checker has no truth for that server and holds it to the screen at every moment (allowed
//! types only, ports 1–65535 and never the API, metrics or agent port). A round ends with an honest empty
//! report; convergence is from it to nothing exposed.
//!
//! A random spec is created as raw JSON: the apiserver refuses it, or the controller must reconcile it
//! (`status.observedGeneration` reaching `metadata.generation`); sometimes it is replaced by another
//! random spec and must be reconciled again. The figure for this kind is the worst time to reconcile.

use std::time::{Duration, Instant};

use dittofs_api::{DittoServer, constants::agent_field_manager, names};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{HOSTILE, Tally, ensure, random_spec::random_spec};
use crate::{
    faults::{
        Rng,
        invariants::Truth,
        watched::Watched,
        world::{NS, World, exited},
    },
    kube_env::{measure_until, wait_until},
    objects::{Reads, apply_body, service_account_client},
};

/// Hostile writes per round.
const WRITES: usize = 20;
/// Random specs per round.
const SPECS: usize = 8;

pub(super) async fn status_writes(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    ensure(world, HOSTILE).await?;
    let sa = names::agent_service_account(HOSTILE);
    let client = service_account_client(&world.cp, NS, &sa, Reads::Server(HOSTILE)).await?;
    let servers: Api<DittoServer> = Api::namespaced(client, NS);
    world.checker.set_truth(HOSTILE, Truth::Unknown);
    world.checker.fault_begin();
    let (mut accepted, mut refused) = (0, 0);
    let result = async {
        for _ in 0..WRITES {
            let wild = world.rng.chance(4);
            let mut entries: Vec<Value> =
                (0..1 + world.rng.below(3)).map(|_| hostile_entry(&mut world.rng, wild)).collect();
            if !wild {
                // One entry per pod: the list is keyed by podName, and duplicates are refused whole.
                let mut seen = std::collections::BTreeSet::new();
                entries.retain(|e| seen.insert(e["podName"].to_string()));
            }
            let pod = entries[0]["podName"].as_str().unwrap_or("hostile-0").to_owned();
            let reconciles = world.controller_reconciles().await;
            let written = if world.rng.chance(3) {
                let body = json!({"status": {"agents": entries}});
                servers.patch_status(HOSTILE, &PatchParams::default(), &Patch::Merge(&body)).await
            } else {
                let body = apply_body::<DittoServer>(HOSTILE, json!({"status": {"agents": entries}}));
                let params = PatchParams::apply(&agent_field_manager(&pod)).force();
                servers.patch_status(HOSTILE, &params, &Patch::Apply(&body)).await
            };
            match written {
                Ok(_) => accepted += 1,
                // Any answer of the apiserver refusing it (duplicate keys in an apply even come back as 500).
                Err(kube::Error::Api(s)) => {
                    if refused == 0 {
                        eprintln!("faults:   a hostile write refused (wild: {wild}): {}", s.message);
                    }
                    refused += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            // Bounded, not required: an entry the controller ignores may change nothing it acts on.
            let _ = wait_until("the controller to reconcile the write", Duration::from_secs(5), async || {
                anyhow::ensure!(world.controller_reconciles().await > reconciles, "not yet");
                Ok(())
            })
            .await;
            for c in &world.controllers {
                if exited(c.proc.pid()) {
                    world.checker.record(HOSTILE, format!("controller {} exited after a hostile write", c.identity));
                }
            }
        }
        // The honest end: the pod's agent reports that nothing runs.
        let honest = json!({"podName": format!("{HOSTILE}-0"), "adapters": [], "lastPollTime": now(),
                            "reachability": {"reachable": true, "reason": "Reachable", "lastTransitionTime": now()}});
        let body = json!({"status": {"agents": [honest]}});
        servers.patch_status(HOSTILE, &PatchParams::default(), &Patch::Merge(&body)).await?;
        anyhow::Ok(())
    }
    .await;
    world.checker.set_truth(HOSTILE, Truth::Fixed(Default::default()));
    let clear = world.checker.fault_end();
    result?;
    tally.count("writes accepted", accepted);
    tally.count("writes refused by the apiserver", refused);
    tally.after_clear(world, clear).await;
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// One random status entry. A `wild` one may also break the status schema (ports out of range, empty or
/// over-long types, unparsable timestamps, too many adapters) and is then refused whole by the apiserver;
/// a tame one stays within the schema, so it reaches the controller, and is hostile by its content: types
/// DittoFS does not have or in the wrong case, the API, metrics and agent ports, other pods' names, stale
/// and future poll times, reports unreachable or without reachability.
fn hostile_entry(rng: &mut Rng, wild: bool) -> Value {
    let long = "a".repeat(70);
    let random_type: String = (0..1 + rng.below(20)).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
    let mut types = vec!["nfs", "smb", "NFS", "Smb", "webdav", "x", "nfs ", "../etc", &random_type];
    let mut ports = vec![0, 1, 80, 8080, 8082, 9090, 12049, 65535, 1 + rng.below(65535) as i64];
    if wild {
        types.extend(["", "smb\u{0}", &long]);
        ports.extend([-1, 65536, 70000]);
    }
    let healths = [Value::Null, "healthy".into(), "unknown".into(), "unhealthy".into(), "degraded".into()];
    let count = if wild && rng.chance(4) { 20 + rng.below(30) } else { rng.below(5) };
    let mut adapters: Vec<Value> = (0..count)
        .map(|_| {
            let mut a = json!({"type": rng.pick(&types), "port": rng.pick(&ports), "enabled": !rng.chance(4),
                               "running": !rng.chance(4)});
            let health = rng.pick(&healths).clone();
            if !health.is_null() {
                a["health"] = health;
            }
            a
        })
        .collect();
    if !wild {
        // The adapters are keyed by type: a repeated type is refused whole.
        let mut seen = std::collections::BTreeSet::new();
        adapters.retain(|a| seen.insert(a["type"].to_string()));
    }
    let hour = jiff::SignedDuration::from_hours(1);
    let at = |rng: &mut Rng| -> Value {
        let t = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_default();
        match rng.below(if wild { 6 } else { 5 }) {
            0 => t.checked_sub(hour * 24).map(|t| t.to_string()).unwrap_or_default().into(),
            1 => t.checked_add(hour).map(|t| t.to_string()).unwrap_or_default().into(),
            2 => "1970-01-01T00:00:00Z".into(),
            5 => "not-a-time".into(),
            _ => t.to_string().into(),
        }
    };
    let pods = ["hostile-0", "hostile-0", "hostile-0", "hostile-1", "fs-0", "x"];
    let mut entry = json!({"podName": rng.pick(&pods), "adapters": adapters, "lastPollTime": at(rng)});
    if !rng.chance(5) {
        let reachable = !rng.chance(4);
        entry["reachability"] = json!({"reachable": reachable, "reason": if reachable { "Reachable" } else { "Timeout" },
                                       "lastTransitionTime": at(rng)});
    }
    entry
}

pub(super) async fn random_specs(world: &mut World, tally: &mut Tally) -> anyhow::Result<()> {
    let ar = ApiResource::erase::<DittoServer>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(world.client.clone(), NS, &ar);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..SPECS {
        world.spawned_specs += 1;
        let name = format!("rnd-{}", world.spawned_specs);
        let obj = DynamicObject::new(&name, &ar).data(json!({"spec": random_spec(&mut world.rng)}));
        match raw.create(&PostParams::default(), &obj).await {
            Ok(_) => accepted += 1,
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                refused += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        world.checker.watch(Watched::screen_only(&name));
        reconciled(world, tally, &raw, &name).await;
        if world.rng.chance(2) {
            let patch = json!({"spec": random_spec(&mut world.rng)});
            if raw.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                reconciled(world, tally, &raw, &name).await;
            }
        }
        world.delete_server(&name).await?;
    }
    tally.count("specs accepted", accepted);
    tally.count("specs refused by the apiserver", refused);
    Ok(())
}

/// Waits until the controller has reconciled the current generation of `name`; records a violation if not.
async fn reconciled(world: &World, tally: &mut Tally, raw: &Api<DynamicObject>, name: &str) {
    let since = Instant::now();
    let done = measure_until(&format!("{name} to be reconciled"), Duration::from_secs(30), async || {
        let obj = raw.get(name).await?;
        let generation = obj.metadata.generation;
        let observed = obj.data["status"]["observedGeneration"].as_i64();
        anyhow::ensure!(observed.is_some() && observed == generation, "observed {observed:?} of {generation:?}");
        Ok(())
    })
    .await;
    match done {
        Ok(_) => tally.converged(since.elapsed()),
        Err(e) => {
            let spec = raw.get(name).await.map(|o| o.data["spec"].to_string()).unwrap_or_default();
            world.checker.record(name, format!("accepted spec {spec} not reconciled: {e:#}"));
        }
    }
}
