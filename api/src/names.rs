//! Names of the objects, Secret keys and ports derived from a `DittoServer` (pure functions, Go-operator compatible).
//!
//! `cr` is always the `DittoServer`'s name. The CRD limits it to [`MAX_SERVER_NAME_LEN`] characters of
//! a DNS-1035 label, so every name built here is a valid Service / Secret / label value as long as the
//! adapter type is short; longer results are cut and disambiguated by a hash (see [`adapter_object_name`]).

use sha2::{Digest, Sha256};

/// Longest accepted `DittoServer` name (enforced by the CRD).
///
/// The StatefulSet is named like the server and its name must leave room for the 11-character
/// controller-revision suffix in a 63-character label; `<cr>-adapter-<type>` must stay a 63-character
/// DNS label for the usual adapter types.
pub const MAX_SERVER_NAME_LEN: usize = 40;

/// Longest DNS-1035 label (Service names) and label value.
pub const MAX_LABEL_LEN: usize = 63;

/// Longest port name (IANA service name).
pub const MAX_PORT_NAME_LEN: usize = 15;

/// Prefix of every port name the controller manages per adapter.
pub const ADAPTER_PORT_PREFIX: &str = "adapter-";

/// Port name of the API (container, headless and `-api` Services, baseline NetworkPolicy).
pub const API_PORT_NAME: &str = "api";
/// Port name of the metrics endpoint.
pub const METRICS_PORT_NAME: &str = "metrics";

/// ConfigMap key holding the rendered DittoFS configuration.
pub const CONFIG_KEY: &str = "config.yaml";
/// Key of the managed JWT signing Secret.
pub const JWT_SECRET_KEY: &str = "jwt-secret";
/// Key of a user name in the admin bootstrap and operator credentials Secrets.
pub const USERNAME_KEY: &str = "username";
/// Key of a password in the admin bootstrap and operator credentials Secrets.
pub const PASSWORD_KEY: &str = "password";
/// Key of the access token in the operator credentials Secret.
pub const ACCESS_TOKEN_KEY: &str = "access-token";
/// Key of the refresh token in the operator credentials Secret.
pub const REFRESH_TOKEN_KEY: &str = "refresh-token";
/// Key of the API URL in the operator credentials Secret.
pub const SERVER_URL_KEY: &str = "server-url";
/// Key of the access token's expiry (RFC 3339) in the operator credentials Secret, written by the agent.
pub const EXPIRES_AT_KEY: &str = "expires-at";
/// The DittoFS user the controller provisions for itself (role `operator`).
pub const OPERATOR_USERNAME: &str = "k8s-operator";

/// PVC template of the metadata store (`/data/store/metadata`).
pub const METADATA_VOLUME: &str = "metadata";
/// PVC template of the content (block) store (`/data/store/block`), only with `storage.contentSize`.
pub const CONTENT_VOLUME: &str = "content";
/// PVC template of the control plane (`/data/controlplane`).
pub const CONTROL_PLANE_VOLUME: &str = "controlplane";

/// Name of the DittoFS container in the server pod.
pub const SERVER_CONTAINER: &str = "dittofs";
/// Name of the agent container in the server pod.
pub const AGENT_CONTAINER: &str = "agent";

/// StatefulSet running the server: `<cr>`.
pub fn statefulset(cr: &str) -> String {
    cr.to_owned()
}

/// Pod of the StatefulSet with the given ordinal: `<cr>-<ordinal>`.
pub fn pod(cr: &str, ordinal: u32) -> String {
    format!("{cr}-{ordinal}")
}

/// ConfigMap with the rendered DittoFS config: `<cr>-config`.
pub fn config_map(cr: &str) -> String {
    format!("{cr}-config")
}

/// Headless Service of the StatefulSet: `<cr>-headless`.
pub fn headless_service(cr: &str) -> String {
    format!("{cr}-headless")
}

/// Service of the control-plane API: `<cr>-api`.
pub fn api_service(cr: &str) -> String {
    format!("{cr}-api")
}

/// Service (and ServiceMonitor) of the metrics endpoint: `<cr>-metrics`.
pub fn metrics_service(cr: &str) -> String {
    format!("{cr}-metrics")
}

/// NetworkPolicy always present, allowing the API (and metrics) port: `<cr>-baseline`.
pub fn baseline_network_policy(cr: &str) -> String {
    format!("{cr}-baseline")
}

/// Managed JWT signing Secret (when `identity.jwt` is absent): `<cr>-jwt-secret`.
pub fn jwt_secret(cr: &str) -> String {
    format!("{cr}-jwt-secret")
}

/// Managed admin bootstrap Secret (when `identity.admin.passwordSecretRef` is absent): `<cr>-admin-bootstrap-credentials`.
pub fn admin_bootstrap_secret(cr: &str) -> String {
    format!("{cr}-admin-bootstrap-credentials")
}

/// The Go operator's former name of the admin bootstrap Secret: `<cr>-admin-credentials`.
pub fn legacy_admin_secret(cr: &str) -> String {
    format!("{cr}-admin-credentials")
}

/// Credentials of the DittoFS `operator`-role user: `<cr>-operator-credentials`.
pub fn operator_credentials_secret(cr: &str) -> String {
    format!("{cr}-operator-credentials")
}

/// ServiceAccount of the server pod (its token is mounted into the agent container only): `<cr>-agent`.
pub fn agent_service_account(cr: &str) -> String {
    format!("{cr}-agent")
}

/// Role letting the agent patch this server's status: `<cr>-agent`.
pub fn agent_role(cr: &str) -> String {
    agent_service_account(cr)
}

/// RoleBinding of [`agent_role`] to [`agent_service_account`]: `<cr>-agent`.
pub fn agent_role_binding(cr: &str) -> String {
    agent_service_account(cr)
}

/// Service and NetworkPolicy of one adapter: `<cr>-adapter-<sanitized type>`.
///
/// Identical to the Go operator's name whenever that is a valid 63-character DNS label; a longer
/// result keeps its first 58 characters (without a trailing `-`) and gets `-` plus 4 hex digits of
/// the SHA-256 of the sanitized type.
pub fn adapter_object_name(cr: &str, adapter_type: &str) -> String {
    let sanitized = sanitize_adapter_type(adapter_type);
    let name = format!("{cr}-adapter-{sanitized}");
    if name.len() <= MAX_LABEL_LEN {
        return name;
    }
    let keep = MAX_LABEL_LEN - 5;
    let prefix = name[..keep].trim_end_matches('-');
    format!("{prefix}-{}", short_hash(&sanitized))
}

/// Normalizes an adapter type for names, labels and port names, exactly as the Go operator:
/// lower-case; every character outside `[a-z0-9-]` becomes `-`; runs of `-` collapse;
/// leading and trailing `-` are trimmed; an empty result becomes `unknown`.
pub fn sanitize_adapter_type(adapter_type: &str) -> String {
    let mut out = String::with_capacity(adapter_type.len());
    for c in adapter_type.to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() { "unknown".to_owned() } else { trimmed.to_owned() }
}

/// Container (and Service) port name of an adapter: `adapter-<sanitized type>`, at most 15 characters.
///
/// Same algorithm as the Go operator, so live ports keep their names when switching operators:
/// a longer name becomes its first 10 characters (trailing `-` trimmed) + `-` + the first 4 hex
/// digits of the SHA-256 of the sanitized type.
pub fn adapter_port_name(adapter_type: &str) -> String {
    let sanitized = sanitize_adapter_type(adapter_type);
    let name = format!("{ADAPTER_PORT_PREFIX}{sanitized}");
    if name.len() <= MAX_PORT_NAME_LEN {
        return name;
    }
    let prefix = name[..10].trim_end_matches('-');
    format!("{prefix}-{}", short_hash(&sanitized))
}

/// True for the port names the controller manages per adapter (they start with `adapter-`).
pub fn is_adapter_port_name(name: &str) -> bool {
    name.starts_with(ADAPTER_PORT_PREFIX)
}

/// The first 4 hex digits of the SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    format!("{:02x}{:02x}", digest[0], digest[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IANA service name: 1..=15 of `[a-z0-9-]`, a letter somewhere, no leading, trailing or double `-`.
    fn is_iana_svc_name(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_PORT_NAME_LEN
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && s.chars().any(|c| c.is_ascii_lowercase())
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
    }

    /// DNS-1035 label: 1..=63 of `[a-z0-9-]`, starting with a letter, ending alphanumeric.
    fn is_dns1035(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_LABEL_LEN
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
    }

    #[test]
    fn object_names() {
        assert_eq!(statefulset("fs"), "fs");
        assert_eq!(pod("fs", 0), "fs-0");
        assert_eq!(config_map("fs"), "fs-config");
        assert_eq!(headless_service("fs"), "fs-headless");
        assert_eq!(api_service("fs"), "fs-api");
        assert_eq!(metrics_service("fs"), "fs-metrics");
        assert_eq!(baseline_network_policy("fs"), "fs-baseline");
        assert_eq!(jwt_secret("fs"), "fs-jwt-secret");
        assert_eq!(admin_bootstrap_secret("fs"), "fs-admin-bootstrap-credentials");
        assert_eq!(legacy_admin_secret("fs"), "fs-admin-credentials");
        assert_eq!(operator_credentials_secret("fs"), "fs-operator-credentials");
        assert_eq!(agent_service_account("fs"), "fs-agent");
        assert_eq!(agent_role("fs"), "fs-agent");
        assert_eq!(agent_role_binding("fs"), "fs-agent");
        assert_eq!(adapter_object_name("fs", "NFS"), "fs-adapter-nfs");
        assert_eq!(adapter_object_name("fs", "smb"), "fs-adapter-smb");
    }

    #[test]
    fn sanitize_matches_the_go_operator() {
        assert_eq!(sanitize_adapter_type("NFS"), "nfs");
        assert_eq!(sanitize_adapter_type("nfs_v4"), "nfs-v4");
        assert_eq!(sanitize_adapter_type("--"), "unknown");
        assert_eq!(sanitize_adapter_type(""), "unknown");
        assert_eq!(sanitize_adapter_type("a__b..c"), "a-b-c");
        assert_eq!(sanitize_adapter_type("-x-"), "x");
        assert_eq!(sanitize_adapter_type("Ünï"), "n");
    }

    #[test]
    fn port_names_fit_the_iana_rule() {
        assert_eq!(adapter_port_name("nfs"), "adapter-nfs");
        assert_eq!(adapter_port_name("smb"), "adapter-smb");
        assert_eq!(adapter_port_name("portmap"), "adapter-portmap");
        // Longer than 15: "adapter-" + 2 characters + "-" + 4 hex digits.
        let long = adapter_port_name("custom-adapter-a");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with("adapter-cu-"), "{long}");
        assert_ne!(long, adapter_port_name("custom-adapter-b"));
        // A type whose second character is '-' must not leave "--".
        assert!(adapter_port_name("a-very-long-type").starts_with("adapter-a-"));
        for t in [
            "nfs",
            "smb",
            "portmap",
            "NFS_v4.1",
            "custom-adapter-a",
            "a-very-long-type",
            "x",
            "--",
            "webdav-over-https",
            "0123456789abcdef",
        ] {
            let name = adapter_port_name(t);
            assert!(is_iana_svc_name(&name), "{t} → {name}");
            assert!(is_adapter_port_name(&name));
        }
        for fixed in [API_PORT_NAME, METRICS_PORT_NAME] {
            assert!(is_iana_svc_name(fixed), "{fixed}");
        }
    }

    #[test]
    fn go_hash_suffix_is_reproduced() {
        // sha256("custom-adapter-a") starts with these two bytes; the Go operator uses hex(hash[:2]).
        let digest = Sha256::digest(b"custom-adapter-a");
        let expected = format!("adapter-cu-{:02x}{:02x}", digest[0], digest[1]);
        assert_eq!(adapter_port_name("custom-adapter-a"), expected);
    }

    #[test]
    fn names_of_a_longest_server_are_valid_dns_labels() {
        let cr = "a".repeat(MAX_SERVER_NAME_LEN);
        for name in [
            headless_service(&cr),
            api_service(&cr),
            metrics_service(&cr),
            baseline_network_policy(&cr),
            adapter_object_name(&cr, "nfs"),
            adapter_object_name(&cr, "smb"),
            adapter_object_name(&cr, "a-rather-long-adapter-type-name"),
            pod(&cr, 0),
            agent_service_account(&cr),
        ] {
            assert!(is_dns1035(&name), "{name} ({} chars)", name.len());
        }
        // StatefulSet name + "-" + 10-character revision hash must fit a label value.
        assert!(statefulset(&cr).len() + 11 <= MAX_LABEL_LEN);
        let long = adapter_object_name(&cr, "a-rather-long-adapter-type-name");
        assert!(long.len() <= MAX_LABEL_LEN);
        assert_ne!(long, adapter_object_name(&cr, "a-rather-long-adapter-type-nam2"));
    }
}
