//! The agent's ServiceAccount, Role and RoleBinding: least privilege, every rule but Events pinned by
//! `resourceNames`.
//!
//! The agent may read and watch its own `DittoServer`, patch that server's status, read and patch the
//! operator-credentials Secret (where it stores the token pair, with a merge patch of its own keys), and
//! create `events.k8s.io` Events in its namespace (the Go operator's auth Events, on its DittoServer).
//! Nothing else: not `update` of that Secret (a full replace could drop the controller's keys), not `patch`
//! of Events (the agent never aggregates them into series), not another server, not another Secret, not
//! the admin password (which reaches it as a file of a Secret volume the kubelet mounts).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::ResourceExt;

use dittofs_api::labels::{COMPONENT_AGENT, common_labels};
use dittofs_api::{DittoServer, crd, names};

use super::child_meta;

/// The agent's ServiceAccount, Role and RoleBinding (all named `<cr>-agent`).
///
/// `get`, `list` and `watch` on the server are pinned to its name: a watcher lists before it watches,
/// and the apiserver authorizes a list or watch against `resourceNames` only when the request carries
/// the field selector `metadata.name=<cr>`, so the agent must watch with that selector.
pub fn agent_rbac(ds: &DittoServer) -> (ServiceAccount, Role, RoleBinding) {
    let cr = ds.name_any();
    let labels = common_labels(&cr, COMPONENT_AGENT);
    let sa_name = names::agent_service_account(&cr);

    let service_account = ServiceAccount {
        metadata: child_meta(ds, sa_name.clone(), labels.clone()),
        // The pod mounts the token into the agent container only; nothing mounts it by default.
        automount_service_account_token: Some(false),
        ..Default::default()
    };

    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let rule = |group: &str, resource: &str, names: Option<Vec<String>>, verbs: &[&str]| PolicyRule {
        api_groups: strings(&[group]),
        resources: strings(&[resource]),
        resource_names: names,
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        non_resource_urls: None,
    };
    let only = |name: String| Some(vec![name]);
    let role = Role {
        metadata: child_meta(ds, names::agent_role(&cr), labels.clone()),
        rules: Some(vec![
            rule(crd::GROUP, crd::PLURAL, only(cr.clone()), &["get", "list", "watch"]),
            rule(crd::GROUP, &format!("{}/status", crd::PLURAL), only(cr.clone()), &["get", "patch"]),
            rule("", "secrets", only(names::operator_credentials_secret(&cr)), &["get", "patch"]),
            // Not pinned: a create request has no object name yet when it is authorized (the Event's name is
            // generated), so `resourceNames` cannot restrict it. The namespace is the bound: the Role's.
            rule("events.k8s.io", "events", None, &["create"]),
        ]),
    };

    let role_binding = RoleBinding {
        metadata: child_meta(ds, names::agent_role_binding(&cr), labels),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names::agent_role(&cr),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa_name,
            namespace: ds.namespace(),
            api_group: None,
        }]),
    };
    (service_account, role, role_binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::test_support::server;
    use serde_json::json;

    #[test]
    fn rules_are_pinned_to_this_server() {
        let (sa, role, binding) = agent_rbac(&server(json!({})));
        assert_eq!(sa.metadata.name.as_deref(), Some("fs-agent"));
        assert_eq!(sa.automount_service_account_token, Some(false));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 4);
        for rule in &rules[..3] {
            let names = rule.resource_names.as_ref().expect("pinned");
            assert_eq!(names.len(), 1);
        }
        assert_eq!(rules[0].resource_names.as_ref().unwrap()[0], "fs");
        assert_eq!(rules[1].resources.as_ref().unwrap()[0], "dittoservers/status");
        assert_eq!(rules[1].verbs, ["get", "patch"]);
        assert_eq!(rules[2].resource_names.as_ref().unwrap()[0], "fs-operator-credentials");
        assert_eq!(rules[2].verbs, ["get", "patch"], "a merge patch of its keys; never a full update");
        assert!(
            !rules[..3]
                .iter()
                .any(|r| r.verbs.iter().any(|v| ["delete", "update", "create", "*"].contains(&v.as_str())))
        );
        // Events: create only, in the events.k8s.io group only (the recorder's), nothing to read back.
        let events: Vec<_> =
            rules.iter().filter(|r| r.resources.iter().flatten().any(|res| res.starts_with("events"))).collect();
        assert_eq!(events.len(), 1, "one rule for Events");
        assert_eq!(events[0].api_groups.as_deref(), Some(&["events.k8s.io".to_owned()][..]));
        assert_eq!(events[0].resources.as_deref(), Some(&["events".to_owned()][..]));
        assert_eq!(events[0].verbs, ["create"], "no patch: the agent never updates an Event");
        assert_eq!(events[0].resource_names, None, "a create cannot be pinned by name");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), ("fs-agent", Some("ns")));
        assert_eq!(binding.role_ref.name, "fs-agent");
        let owner = &role.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("DittoServer", Some(true)));
    }
}
