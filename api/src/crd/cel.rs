//! The CEL rules (`x-kubernetes-validations`) and hand-written schema fragments the CRD uses.
//!
//! Rules are plain constants so the tests can assert they are in the generated schema and evaluate them.
//! Regexes avoid backslashes (`[.]` rather than `\.`) so they read the same in Rust, CEL and YAML.
//! Every string a rule looks at has a `maxLength`, and every list a `maxItems`, to keep the apiserver's
//! cost estimate low.

use kube::core::Rule;
use schemars::{Schema, json_schema};

/// A Go duration as the CRD accepts it: `<digits>[.<digits>]<unit>` groups, no sign.
pub const GO_DURATION_REGEX: &str = "^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$";
/// A size: a decimal number with an optional binary (`Ki`…`Ei`) or decimal (`k`…`E`) suffix.
pub const SIZE_REGEX: &str = "^[0-9]+([.][0-9]+)?([KMGTPE]i|[kMGTPE])?$";
/// A Kubernetes object name (DNS-1123 subdomain).
pub const OBJECT_NAME_REGEX: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Secret data key.
pub const SECRET_KEY_REGEX: &str = "^[-._a-zA-Z0-9]+$";
/// A `DittoServer` name: a DNS-1035 label, since Services are named after it.
pub const SERVER_NAME_REGEX: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A W3C `traceparent` header value (version 00).
pub const TRACEPARENT_REGEX: &str = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$";

/// Rule text: the value is a Go duration.
pub const DURATION_FORMAT_RULE: &str = "self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$')";
/// Message of [`DURATION_FORMAT_RULE`].
pub const DURATION_FORMAT_MESSAGE: &str = "must be a Go duration such as 30s, 1m30s or 500ms: numbers each followed by a unit (ns, us, ms, s, m, h), without a sign";
/// Rule text: a duration (or size) has a non-zero digit, i.e. is greater than zero.
pub const NON_ZERO_RULE: &str = "self.matches('[1-9]')";
/// Message of [`NON_ZERO_RULE`].
pub const NON_ZERO_MESSAGE: &str = "must be greater than zero";
/// Rule text: a well-formed duration is at least one second.
pub const AT_LEAST_ONE_SECOND_RULE: &str =
    "!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$') || duration(self) >= duration('1s')";
/// Message of [`AT_LEAST_ONE_SECOND_RULE`].
pub const AT_LEAST_ONE_SECOND_MESSAGE: &str = "must be at least 1s";
/// Rule text: a well-formed duration lies within the fast path's bounds (100ms to 10s).
pub const FAST_PATH_RANGE_RULE: &str = "!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$') || \
                                        (duration(self) >= duration('100ms') && duration(self) <= duration('10s'))";
/// Message of [`FAST_PATH_RANGE_RULE`].
pub const FAST_PATH_RANGE_MESSAGE: &str = "must be between 100ms and 10s";
/// Rule text: the value is a size.
pub const SIZE_FORMAT_RULE: &str = "self.matches('^[0-9]+([.][0-9]+)?([KMGTPE]i|[kMGTPE])?$')";
/// Message of [`SIZE_FORMAT_RULE`].
pub const SIZE_FORMAT_MESSAGE: &str = "must be a size such as 10Gi, 500Mi or 1Ti: a number with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000)";
/// Rule text: the value is a Kubernetes object name.
pub const OBJECT_NAME_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
/// Message of [`OBJECT_NAME_RULE`].
pub const OBJECT_NAME_MESSAGE: &str = "must be the name of a Kubernetes object: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit";
/// Rule text: the value is a Secret data key.
pub const SECRET_KEY_RULE: &str = "self.matches('^[-._a-zA-Z0-9]+$')";
/// Message of [`SECRET_KEY_RULE`].
pub const SECRET_KEY_MESSAGE: &str = "must be a key of a Secret: letters, digits, '-', '_' and '.'";
/// Rule text: a path starts with `/`.
pub const ABSOLUTE_PATH_RULE: &str = "self.startsWith('/')";
/// Message of [`ABSOLUTE_PATH_RULE`].
pub const ABSOLUTE_PATH_MESSAGE: &str = "must start with /";
/// Rule text: the value is a CIDR.
pub const CIDR_RULE: &str = "isCIDR(self)";
/// Message of [`CIDR_RULE`].
pub const CIDR_MESSAGE: &str = "must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32";
/// Rule text: every element of a list is a CIDR.
pub const CIDR_LIST_RULE: &str = "self.all(c, isCIDR(c))";
/// Message of [`CIDR_LIST_RULE`].
pub const CIDR_LIST_MESSAGE: &str = "every entry must be a CIDR such as 10.1.2.0/24";

/// Root rule text: the `DittoServer`'s name is a DNS-1035 label.
///
/// Checked at creation only (`oldSelf` is empty then; the rule is built with `optionalOldSelf`):
/// names never change, and an object created before this rule existed must stay updatable, or its
/// finalizer could never be removed.
pub const SERVER_NAME_RULE: &str = "oldSelf.hasValue() || self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
/// Message of [`SERVER_NAME_RULE`].
pub const SERVER_NAME_MESSAGE: &str = "metadata.name must start with a lower-case letter and contain only lower-case letters, digits and '-', because Services are named after it";
/// Root rule text: the `DittoServer`'s name is short enough for the names derived from it
/// (checked at creation only, like [`SERVER_NAME_RULE`]).
pub const SERVER_NAME_LENGTH_RULE: &str = "oldSelf.hasValue() || size(self.metadata.name) <= 40";
/// Message of [`SERVER_NAME_LENGTH_RULE`].
pub const SERVER_NAME_LENGTH_MESSAGE: &str = "metadata.name must be at most 40 characters, so that the names of the StatefulSet, its pod and the Services derived from it stay within Kubernetes limits";

/// Spec rule text: the metrics listener does not take the API port.
pub const METRICS_PORT_RULE: &str = "!has(self.metrics) || !has(self.metrics.enabled) || !self.metrics.enabled || !has(self.metrics.port) || self.metrics.port != (has(self.controlPlane) && has(self.controlPlane.port) ? self.controlPlane.port : 8080)";
/// Message of [`METRICS_PORT_RULE`].
pub const METRICS_PORT_MESSAGE: &str =
    "metrics.port must differ from controlPlane.port: both listeners run in the same container";

/// controlPlane rule text: a client CA (mutual TLS) needs a server certificate.
pub const CLIENT_CA_RULE: &str = "!has(self.clientCASecretName) || size(self.clientCASecretName) == 0 || (has(self.certSecretName) && size(self.certSecretName) > 0)";
/// Message of [`CLIENT_CA_RULE`].
pub const CLIENT_CA_MESSAGE: &str = "clientCASecretName (mutual TLS) needs certSecretName: the server must serve TLS before it can verify client certificates";

/// Spec rule text: `database.type: postgres` needs the Secret to read the connection settings from
/// (or the Go operator's Percona section, which supplies the database itself).
pub const POSTGRES_SECRET_RULE: &str = "!has(self.database) || !has(self.database.type) || self.database.type != 'postgres' || has(self.database.postgresSecretRef) || has(self.percona)";
/// Message of [`POSTGRES_SECRET_RULE`].
pub const POSTGRES_SECRET_MESSAGE: &str = "database.type postgres needs database.postgresSecretRef: the Secret with the keys host, database, user and password (optional: port, sslmode)";

/// allowedSources entry rule text: either an ipBlock, or selectors.
pub const SOURCE_PEER_RULE: &str = "has(self.ipBlock) != (has(self.namespaceSelector) || has(self.podSelector))";
/// Message of [`SOURCE_PEER_RULE`].
pub const SOURCE_PEER_MESSAGE: &str =
    "set either ipBlock, or namespaceSelector and/or podSelector (not both kinds, not neither)";

/// agent.logLevel rule text: a `RUST_LOG` filter of the agent: comma-separated directives, each a target
/// (a level alone is one too) with an optional `=<level>`. Mirrored by [`crate::crd::agent::is_log_filter`].
pub const LOG_FILTER_RULE: &str = "self.matches('^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(=(trace|debug|info|warn|error|off|TRACE|DEBUG|INFO|WARN|ERROR|OFF))?(,[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(=(trace|debug|info|warn|error|off|TRACE|DEBUG|INFO|WARN|ERROR|OFF))?)*$')";
/// Message of [`LOG_FILTER_RULE`].
pub const LOG_FILTER_MESSAGE: &str = "agent.logLevel must be a RUST_LOG filter: comma-separated directives, each a level (trace, debug, info, warn, error, off) or a target such as dittofs_agent or dittofs_agent::poller, optionally followed by =<level>, e.g. info,dittofs_agent=debug (no spaces)";
/// agent.otel.endpoint rule text: an http(s) URL with a host, without user credentials, query, fragment or
/// spaces. Mirrored by [`crate::crd::agent::is_otlp_endpoint`].
pub const OTLP_ENDPOINT_RULE: &str = "self.matches('^https?://[^/?#@[:space:]]+(/[^?#[:space:]]*)?$')";
/// Message of [`OTLP_ENDPOINT_RULE`].
pub const OTLP_ENDPOINT_MESSAGE: &str = "agent.otel.endpoint must be an http:// or https:// URL such as http://otel-collector.monitoring:4318, without user credentials, query, fragment or spaces";
/// agent.otel.samplerArg rule text: a fraction from 0 to 1, as the ratio samplers read it. Mirrored by
/// [`crate::crd::agent::is_sampler_arg`].
pub const SAMPLER_ARG_RULE: &str = "self.matches('^(0([.][0-9]+)?|1([.]0+)?)$')";
/// Message of [`SAMPLER_ARG_RULE`].
pub const SAMPLER_ARG_MESSAGE: &str =
    "agent.otel.samplerArg must be a decimal fraction from 0 to 1 such as 0.25 (the share of traces kept)";

/// An adapter type in `adapterServices.allowedTypes`: what the name sanitizing leaves (lower-case
/// letters, digits, inner '-').
pub const ADAPTER_TYPE_REGEX: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Annotations rule text: every key fits an annotation key (a 253-character prefix, '/', a 63-character
/// name), so one server cannot make the controller's cache hold arbitrarily large maps.
pub const ANNOTATION_KEYS_RULE: &str = "self.all(k, size(k) <= 317)";
/// Message of [`ANNOTATION_KEYS_RULE`].
pub const ANNOTATION_KEYS_MESSAGE: &str =
    "annotation keys must be at most 317 characters (a 253-character prefix, '/' and a 63-character name)";

/// A label value: at most 63 characters (the schema's maxLength), alphanumeric at both ends, '-', '_'
/// and '.' inside, or empty.
pub const LABEL_VALUE_REGEX: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// Labels rule text: every key is a label key (an optional DNS-subdomain prefix of at most 253
/// characters and '/', then a name of at most 63), so the ServiceMonitor they go on is never refused.
pub const LABEL_KEYS_RULE: &str = "self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))";
/// Message of [`LABEL_KEYS_RULE`].
pub const LABEL_KEYS_MESSAGE: &str = "label keys must be a name of at most 63 characters (letters, digits, '-', '_', '.'; alphanumeric at both ends), optionally after a DNS-subdomain prefix of at most 253 characters and '/'";

/// A scrape interval as the prometheus-operator's CRD accepts it: `0`, or units y, w, d, h, m, s, ms
/// in that order, each at most once.
pub const PROMETHEUS_DURATION_RULE: &str =
    "self.matches('^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$')";
/// Message of [`PROMETHEUS_DURATION_RULE`].
pub const PROMETHEUS_DURATION_MESSAGE: &str = "serviceMonitor.interval must be a Prometheus duration such as 30s, 1m or 1m30s: numbers each followed by a unit (y, w, d, h, m, s, ms) in that order";

/// controlPlane rule text: the API does not take the agent's admin port
/// ([`crate::agent_env::DEFAULT_ADMIN_PORT`]).
pub const API_AGENT_PORT_RULE: &str = "!has(self.port) || self.port != 8082";
/// Message of [`API_AGENT_PORT_RULE`].
pub const API_AGENT_PORT_MESSAGE: &str =
    "controlPlane.port must not be 8082: the agent container of the same pod serves its admin endpoints there";
/// metrics rule text: an enabled metrics listener does not take the agent's admin port.
pub const METRICS_AGENT_PORT_RULE: &str = "!has(self.enabled) || !self.enabled || !has(self.port) || self.port != 8082";
/// Message of [`METRICS_AGENT_PORT_RULE`].
pub const METRICS_AGENT_PORT_MESSAGE: &str =
    "metrics.port must not be 8082: the agent container of the same pod serves its admin endpoints there";

/// securityContext rule text: not privileged (restricted Pod Security profile).
pub const PRIVILEGED_RULE: &str = "!has(self.privileged) || !self.privileged";
/// Message of [`PRIVILEGED_RULE`].
pub const PRIVILEGED_MESSAGE: &str =
    "securityContext.privileged must not be true: the restricted Pod Security profile forbids privileged containers";
/// securityContext rule text: no privilege escalation (restricted Pod Security profile).
pub const ESCALATION_RULE: &str = "!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation";
/// Message of [`ESCALATION_RULE`].
pub const ESCALATION_MESSAGE: &str = "securityContext.allowPrivilegeEscalation must not be true: the restricted Pod Security profile forbids privilege escalation";
/// securityContext rule text: no capability added but NET_BIND_SERVICE (restricted Pod Security
/// profile). Written without a loop over the list, whose length the schema does not bound, so the
/// apiserver's cost estimate stays constant.
pub const CAPABILITIES_RULE: &str = "!has(self.capabilities) || !has(self.capabilities.add) || size(self.capabilities.add) == 0 || (size(self.capabilities.add) == 1 && self.capabilities.add[0] == 'NET_BIND_SERVICE')";
/// Message of [`CAPABILITIES_RULE`].
pub const CAPABILITIES_MESSAGE: &str = "securityContext.capabilities.add may hold only NET_BIND_SERVICE: the restricted Pod Security profile forbids adding any other capability";
/// securityContext rule text: not root (restricted Pod Security profile).
pub const RUN_AS_ROOT_RULE: &str = "!has(self.runAsUser) || self.runAsUser != 0";
/// Message of [`RUN_AS_ROOT_RULE`] on the container's security context.
pub const RUN_AS_ROOT_MESSAGE: &str =
    "securityContext.runAsUser must not be 0: the restricted Pod Security profile forbids running as root";
/// Message of [`RUN_AS_ROOT_RULE`] on the pod's security context.
pub const POD_RUN_AS_ROOT_MESSAGE: &str =
    "podSecurityContext.runAsUser must not be 0: the restricted Pod Security profile forbids running as root";
/// securityContext rule text: runAsNonRoot is not switched off (restricted Pod Security profile).
pub const RUN_AS_NON_ROOT_RULE: &str = "!has(self.runAsNonRoot) || self.runAsNonRoot";
/// Message of [`RUN_AS_NON_ROOT_RULE`] on the container's security context.
pub const RUN_AS_NON_ROOT_MESSAGE: &str =
    "securityContext.runAsNonRoot must not be false: the restricted Pod Security profile requires non-root containers";
/// Message of [`RUN_AS_NON_ROOT_RULE`] on the pod's security context.
pub const POD_RUN_AS_NON_ROOT_MESSAGE: &str = "podSecurityContext.runAsNonRoot must not be false: the restricted Pod Security profile requires non-root containers";
/// securityContext rule text: seccomp is not switched off (restricted Pod Security profile).
pub const SECCOMP_RULE: &str = "!has(self.seccompProfile) || self.seccompProfile.type != 'Unconfined'";
/// Message of [`SECCOMP_RULE`] on the container's security context.
pub const SECCOMP_MESSAGE: &str = "securityContext.seccompProfile.type must not be Unconfined: the restricted Pod Security profile requires RuntimeDefault or Localhost";
/// Message of [`SECCOMP_RULE`] on the pod's security context.
pub const POD_SECCOMP_MESSAGE: &str = "podSecurityContext.seccompProfile.type must not be Unconfined: the restricted Pod Security profile requires RuntimeDefault or Localhost";

/// securityContext rule text: SELinux options the restricted (and baseline) Pod Security profile allows:
/// a container type of the runtime, no user or role.
pub const SELINUX_RULE: &str = "!has(self.seLinuxOptions) || ((!has(self.seLinuxOptions.type) || self.seLinuxOptions.type in ['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']) && (!has(self.seLinuxOptions.user) || self.seLinuxOptions.user == '') && (!has(self.seLinuxOptions.role) || self.seLinuxOptions.role == ''))";
/// Message of [`SELINUX_RULE`] on the container's security context.
pub const SELINUX_MESSAGE: &str = "securityContext.seLinuxOptions may only set type to container_t, container_init_t, container_kvm_t or container_engine_t, and no user or role: the restricted Pod Security profile forbids other SELinux options";
/// Message of [`SELINUX_RULE`] on the pod's security context.
pub const POD_SELINUX_MESSAGE: &str = "podSecurityContext.seLinuxOptions may only set type to container_t, container_init_t, container_kvm_t or container_engine_t, and no user or role: the restricted Pod Security profile forbids other SELinux options";
/// podSecurityContext rule text: only the sysctls the restricted Pod Security profile calls safe.
pub const SYSCTLS_RULE: &str = "!has(self.sysctls) || self.sysctls.all(s, s.name in ['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes'])";
/// Message of [`SYSCTLS_RULE`].
pub const SYSCTLS_MESSAGE: &str = "podSecurityContext.sysctls may only set the sysctls the restricted Pod Security profile calls safe (kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, net.ipv4.ip_unprivileged_port_start, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.ip_local_reserved_ports, net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, net.ipv4.tcp_keepalive_probes)";

/// Builds a [`Rule`] with a message.
pub fn rule(rule: &str, message: &str) -> Rule {
    Rule::new(rule).message(message)
}

/// Builds a [`Rule`] with a message whose `oldSelf` is optional (empty on creation), so that it can
/// tell creation from update.
pub fn creation_rule(rule: &str, message: &str) -> Rule {
    Rule::new(rule).message(message).optional_old_self(true)
}

/// Schema of an object kept verbatim (`x-kubernetes-preserve-unknown-fields`): a Go-operator
/// section this controller does not implement yet, so that nothing a user wrote is pruned.
///
/// Its top level holds at most 64 fields; deeper levels are bounded by the apiserver's object size only.
pub fn preserved_object(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "maxProperties": 64,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_use_the_published_regexes() {
        let matches = |re: &str| format!("self.matches('{re}')");
        assert_eq!(DURATION_FORMAT_RULE, matches(GO_DURATION_REGEX));
        assert_eq!(SIZE_FORMAT_RULE, matches(SIZE_REGEX));
        assert_eq!(OBJECT_NAME_RULE, matches(OBJECT_NAME_REGEX));
        assert_eq!(SECRET_KEY_RULE, matches(SECRET_KEY_REGEX));
        assert_eq!(
            AT_LEAST_ONE_SECOND_RULE,
            format!("!{} || duration(self) >= duration('1s')", matches(GO_DURATION_REGEX))
        );
        assert_eq!(
            FAST_PATH_RANGE_RULE,
            format!(
                "!{} || (duration(self) >= duration('100ms') && duration(self) <= duration('10s'))",
                matches(GO_DURATION_REGEX)
            )
        );
        assert_eq!(
            SERVER_NAME_RULE,
            format!("oldSelf.hasValue() || self.metadata.name.matches('{SERVER_NAME_REGEX}')")
        );
    }

    #[test]
    fn port_rules_name_the_agents_admin_port() {
        let port = crate::agent_env::DEFAULT_ADMIN_PORT.to_string();
        for (rule, message) in
            [(API_AGENT_PORT_RULE, API_AGENT_PORT_MESSAGE), (METRICS_AGENT_PORT_RULE, METRICS_AGENT_PORT_MESSAGE)]
        {
            assert!(rule.ends_with(&format!("self.port != {port}")), "{rule}");
            assert!(message.contains(&port), "{message}");
        }
    }
}
