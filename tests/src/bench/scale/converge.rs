//! When the scale bench's servers have converged, as one client's watches of the adapter Services and the
//! DittoServers see it: [`Convergence`] is the pure bookkeeping of those events (`super::tracker` feeds it
//! and lets the bench wait on it).
//!
//! A server has converged when its adapter Services are exactly the expected ones (`<cr>-adapter-<type>`,
//! each with the port its agent reports) and its `AdaptersReady` condition is True at the current
//! generation (`status.observedGeneration == metadata.generation`). `Ready` cannot be asked for: it needs an
//! available replica, and the harness runs no kubelet.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use dittofs_api::{DittoServer, conditions, labels, names};
use k8s_openapi::api::core::v1::Service;
use kube::{ResourceExt as _, runtime::watcher};

/// Adapter type → port, as an agent reports it.
pub type Ports = BTreeMap<String, i32>;

/// What the watches have shown so far.
#[derive(Debug, Default)]
pub struct Convergence {
    /// The servers waited for.
    tracked: BTreeSet<String>,
    /// Server → Service name → port, of the Services that must exist.
    expected: BTreeMap<String, BTreeMap<String, i32>>,
    /// Server → Service name → port, of the adapter Services that exist.
    services: BTreeMap<String, BTreeMap<String, i32>>,
    /// Service name → server, to file a deletion.
    service_owner: BTreeMap<String, String>,
    /// Servers whose AdaptersReady is True at the current generation.
    ready: BTreeSet<String>,
    /// Server → its AdaptersReady as last seen, for the report of a server that did not converge.
    notes: BTreeMap<String, String>,
    generations: BTreeMap<String, i64>,
    converged: BTreeSet<String>,
    /// When each server's Services last changed (a toggle's end).
    services_at: BTreeMap<String, Instant>,
    /// When each server last became converged.
    converged_at: BTreeMap<String, Instant>,
    /// Keys listed since the watch (re)started, per kind: at the end of the list, the others are gone.
    relisted_services: Option<BTreeSet<String>>,
    relisted_servers: Option<BTreeSet<String>>,
    /// The first fatal error of an agent (simulated or real): every waiter stops on it.
    failed: Option<String>,
}

/// One event of either watch.
#[derive(Debug)]
pub enum Seen {
    // Boxed: both objects are large, and of different sizes.
    Service(Box<watcher::Event<Service>>),
    Server(Box<watcher::Event<DittoServer>>),
}

impl Convergence {
    pub fn track(&mut self, server: &str) {
        self.tracked.insert(server.to_owned());
    }

    /// The ports `server`'s agent reports: the Services that must exist.
    pub fn expect(&mut self, server: &str, ports: &Ports, at: Instant) {
        let by_name = ports.iter().map(|(kind, port)| (names::adapter_object_name(server, kind), *port)).collect();
        self.expected.insert(server.to_owned(), by_name);
        self.update(server, at);
    }

    /// Records a fatal error (the first one is kept).
    pub fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn on(&mut self, seen: Seen, at: Instant) {
        match seen {
            Seen::Service(event) => match *event {
                watcher::Event::Init => self.relisted_services = Some(BTreeSet::new()),
                watcher::Event::InitApply(svc) => {
                    self.relisted_services.get_or_insert_default().insert(svc.name_any());
                    self.apply_service(&svc, at);
                }
                watcher::Event::Apply(svc) => self.apply_service(&svc, at),
                watcher::Event::Delete(svc) => self.delete_service(&svc.name_any(), at),
                watcher::Event::InitDone => {
                    let kept = self.relisted_services.take().unwrap_or_default();
                    let gone: Vec<String> = self.service_owner.keys().filter(|n| !kept.contains(*n)).cloned().collect();
                    gone.iter().for_each(|name| self.delete_service(name, at));
                }
            },
            Seen::Server(event) => match *event {
                watcher::Event::Init => self.relisted_servers = Some(BTreeSet::new()),
                watcher::Event::InitApply(ds) => {
                    self.relisted_servers.get_or_insert_default().insert(ds.name_any());
                    self.apply_server(&ds, at);
                }
                watcher::Event::Apply(ds) => self.apply_server(&ds, at),
                watcher::Event::Delete(ds) => self.delete_server(&ds.name_any(), at),
                watcher::Event::InitDone => {
                    let kept = self.relisted_servers.take().unwrap_or_default();
                    let gone: Vec<String> = self.generations.keys().filter(|n| !kept.contains(*n)).cloned().collect();
                    gone.iter().for_each(|name| self.delete_server(name, at));
                }
            },
        }
    }

    fn apply_service(&mut self, svc: &Service, at: Instant) {
        let Some(server) = svc.labels().get(labels::INSTANCE_LABEL).cloned() else { return };
        let port = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p.first()).map_or(0, |p| p.port);
        let name = svc.name_any();
        let services = self.services.entry(server.clone()).or_default();
        if services.insert(name.clone(), port) != Some(port) {
            self.services_at.insert(server.clone(), at);
        }
        self.service_owner.insert(name, server.clone());
        self.update(&server, at);
    }

    fn delete_service(&mut self, name: &str, at: Instant) {
        let Some(server) = self.service_owner.remove(name) else { return };
        if let Some(services) = self.services.get_mut(&server) {
            services.remove(name);
        }
        self.services_at.insert(server.clone(), at);
        self.update(&server, at);
    }

    fn apply_server(&mut self, ds: &DittoServer, at: Instant) {
        let name = ds.name_any();
        let status = ds.status.as_ref();
        let current = status.and_then(|s| s.observed_generation) == ds.metadata.generation;
        let cond = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::ADAPTERS_READY));
        let note = match cond {
            Some(c) => format!("AdaptersReady={} ({}: {})", c.status, c.reason, c.message),
            None => "no AdaptersReady condition".to_owned(),
        };
        let note = format!("{note}, observedGeneration {:?}", status.and_then(|s| s.observed_generation));
        self.notes.insert(name.clone(), note);
        if current && cond.is_some_and(|c| c.status == conditions::STATUS_TRUE) {
            self.ready.insert(name.clone());
        } else {
            self.ready.remove(&name);
        }
        self.generations.insert(name.clone(), ds.metadata.generation.unwrap_or_default());
        self.update(&name, at);
    }

    fn delete_server(&mut self, name: &str, at: Instant) {
        self.ready.remove(name);
        self.generations.remove(name);
        self.notes.insert(name.to_owned(), "deleted".to_owned());
        self.update(name, at);
    }

    /// Recomputes whether `server` has converged.
    fn update(&mut self, server: &str, at: Instant) {
        let empty = BTreeMap::new();
        let services = self.services.get(server).unwrap_or(&empty);
        let now = self.ready.contains(server) && self.expected.get(server).is_some_and(|e| e == services);
        if !now {
            self.converged.remove(server);
        } else if self.converged.insert(server.to_owned()) {
            self.converged_at.insert(server.to_owned(), at);
        }
    }

    /// How many tracked servers have converged.
    pub fn converged_count(&self) -> usize {
        self.converged.intersection(&self.tracked).count()
    }

    pub fn tracked_count(&self) -> usize {
        self.tracked.len()
    }

    /// When the last tracked server converged, once all have.
    pub fn all_converged_at(&self) -> Option<Instant> {
        if self.tracked.is_empty() || !self.tracked.is_subset(&self.converged) {
            return None;
        }
        self.tracked.iter().filter_map(|s| self.converged_at.get(s)).max().copied()
    }

    /// When `server` became converged, if it is.
    pub fn converged_since(&self, server: &str) -> Option<Instant> {
        self.converged.contains(server).then(|| self.converged_at.get(server).copied()).flatten()
    }

    /// When `server`'s Services last changed, if none of them is named after adapter `kind` now.
    pub fn without_service_since(&self, server: &str, kind: &str) -> Option<Instant> {
        let name = names::adapter_object_name(server, kind);
        let present = self.services.get(server).is_some_and(|s| s.contains_key(&name));
        if present { None } else { self.services_at.get(server).copied() }
    }

    /// The generation of `server` as last seen (what an agent's watch would tell it).
    pub fn generation(&self, server: &str) -> Option<i64> {
        self.generations.get(server).copied()
    }

    /// A tracked server that has not converged, with what was seen of it.
    pub fn example_unconverged(&self) -> Option<String> {
        let server = self.tracked.iter().find(|s| !self.converged.contains(*s))?;
        let none = "none seen".to_owned();
        Some(format!(
            "{server}: expected Services {:?}, seen {:?}; {}",
            self.expected.get(server),
            self.services.get(server),
            self.notes.get(server).unwrap_or(&none)
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn svc(server: &str, kind: &str, port: i32) -> Service {
        serde_json::from_value(json!({
            "metadata": {
                "name": names::adapter_object_name(server, kind),
                "labels": labels::adapter_service_labels(server, kind),
            },
            "spec": {"ports": [{"port": port}]},
        }))
        .unwrap()
    }

    fn ds(name: &str, generation: i64, observed: i64, adapters_ready: &str) -> DittoServer {
        let mut ds = crate::objects::server(name, crate::scenario::server_spec()).unwrap();
        ds.metadata.generation = Some(generation);
        ds.status = Some(
            serde_json::from_value(json!({"observedGeneration": observed, "conditions": [{
                "type": "AdaptersReady", "status": adapters_ready, "reason": "R", "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]}))
            .unwrap(),
        );
        ds
    }

    fn both() -> Ports {
        [("nfs".to_owned(), 12049), ("smb".to_owned(), 12445)].into()
    }

    #[test]
    fn a_server_converges_once_its_services_match_and_adapters_ready_holds_at_its_generation() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Convergence::default();
        c.track("a");
        c.expect("a", &both(), at(0));
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "nfs", 12049)))), at(1));
        c.on(Seen::Server(Box::new(watcher::Event::Apply(ds("a", 2, 1, "True")))), at(2));
        assert_eq!(c.converged_count(), 0, "one Service missing, and an old generation");
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "smb", 1)))), at(3));
        c.on(Seen::Server(Box::new(watcher::Event::Apply(ds("a", 2, 2, "True")))), at(4));
        assert_eq!(c.converged_count(), 0, "smb on the wrong port");
        assert!(c.example_unconverged().unwrap().starts_with("a: expected Services"));
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "smb", 12445)))), at(5));
        assert_eq!((c.converged_count(), c.all_converged_at()), (1, Some(at(5))));
        assert_eq!(c.generation("a"), Some(2));
        c.on(Seen::Server(Box::new(watcher::Event::Apply(ds("a", 2, 2, "False")))), at(6));
        assert_eq!(c.converged_count(), 0, "AdaptersReady went False");
    }

    #[test]
    fn a_toggle_ends_when_the_service_is_gone_and_when_it_is_back() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Convergence::default();
        c.track("a");
        c.expect("a", &both(), at(0));
        c.on(Seen::Server(Box::new(watcher::Event::Apply(ds("a", 1, 1, "True")))), at(1));
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "nfs", 12049)))), at(2));
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "smb", 12445)))), at(3));
        assert_eq!(c.without_service_since("a", "smb"), None);
        c.on(Seen::Service(Box::new(watcher::Event::Delete(svc("a", "smb", 12445)))), at(10));
        c.on(Seen::Server(Box::new(watcher::Event::Apply(ds("a", 1, 1, "True")))), at(11));
        assert_eq!(c.without_service_since("a", "smb"), Some(at(10)), "the Service's deletion, not the later status");
        assert_eq!(c.converged_since("a"), None);
        c.on(Seen::Service(Box::new(watcher::Event::Apply(svc("a", "smb", 12445)))), at(20));
        assert_eq!(c.converged_since("a"), Some(at(20)));
    }

    #[test]
    fn a_relist_drops_what_it_no_longer_lists_and_failures_are_kept_first() {
        let t0 = Instant::now();
        let mut c = Convergence::default();
        ["a", "b"].iter().for_each(|s| c.track(s));
        c.expect("a", &both(), t0);
        c.expect("b", &both(), t0);
        for s in ["a", "b"] {
            c.on(Seen::Server(Box::new(watcher::Event::Apply(ds(s, 1, 1, "True")))), t0);
            c.on(Seen::Service(Box::new(watcher::Event::Apply(svc(s, "nfs", 12049)))), t0);
            c.on(Seen::Service(Box::new(watcher::Event::Apply(svc(s, "smb", 12445)))), t0);
        }
        assert_eq!(c.converged_count(), 2);
        c.on(Seen::Service(Box::new(watcher::Event::Init)), t0);
        for (s, kind, port) in [("a", "nfs", 12049), ("a", "smb", 12445), ("b", "nfs", 12049)] {
            c.on(Seen::Service(Box::new(watcher::Event::InitApply(svc(s, kind, port)))), t0);
        }
        assert_eq!(c.converged_count(), 2, "nothing is dropped before the list ends");
        c.on(Seen::Service(Box::new(watcher::Event::InitDone)), t0);
        assert_eq!(c.converged_count(), 1);
        assert_eq!(c.all_converged_at(), None);
        c.fail("first".into());
        c.fail("second".into());
        assert_eq!(c.failed(), Some("first"));
    }
}
