//! The agent's whole command line: `--help` (every environment variable it reads), `--version`, nothing else.
//!
//! The agent is configured by its container's environment only (the controller's pod template sets it), so
//! it has no flags to parse and no argument parser to carry in every DittoFS pod. These two exist so that an
//! image can be checked (`docker run … --help`) and a mistyped flag fails loudly instead of being ignored.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use dittofs_api::agent_env as env;

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No arguments: run the agent.
    Run,
    /// Print `text` on stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Print `message` on stderr and exit 2: a usage error.
    Refuse(String),
}

/// The exit code of a usage error (as clap and most Unix tools use).
pub const USAGE_ERROR: u8 = 2;

/// One line of `--help`'s table for each variable the agent reads, in the order an operator needs them.
const VARIABLES: &[(&str, &str)] = &[
    (env::POD_NAME, "pod name (downward API); the key of this agent's entry in status.agents; required"),
    (env::POD_NAMESPACE, "pod namespace (downward API), where the DittoServer is; required"),
    (env::DITTOSERVER_NAME, "name of the DittoServer this pod serves; required"),
    (env::DITTOFS_URL, "DittoFS control-plane URL on loopback (default http://127.0.0.1:8080)"),
    (env::TLS_CA_FILE, "CA bundle DittoFS's certificate must chain to; required with an https:// URL"),
    (env::TLS_SERVER_NAME, "name DittoFS's certificate must carry (default <server>-api.<namespace>.svc)"),
    (env::TLS_CLIENT_CERT_FILE, "client certificate presented under mutual TLS (with the key file)"),
    (env::TLS_CLIENT_KEY_FILE, "private key of that client certificate"),
    (env::ADMIN_PASSWORD_FILE, "file holding the bootstrap admin password (the Secret volume in a pod)"),
    (env::ADMIN_PASSWORD, "the admin password itself, outside Kubernetes; the _FILE variable wins"),
    (env::ADMIN_USERNAME, "bootstrap admin username (default admin)"),
    (env::ADMIN_SECRET_NAME, "Secret the admin password comes from, named when a login is refused"),
    (env::ADMIN_SECRET_KEY, "key of the password in that Secret (default password)"),
    (env::ADMIN_ADDR, "admin server address for /livez, /readyz, /metrics (default 0.0.0.0:8082; off: none)"),
    (env::FAST_PATH_INTERVAL, "fast-path period, 100ms..10s (default 250ms); the DittoServer's fastPathInterval wins"),
    (env::LOG_FORMAT, "json or plain (default) log lines; the controller sets its own format"),
    (env::RUST_LOG, "log filter, tracing env-filter syntax (default info)"),
    (env::KUBERNETES_SERVICE_HOST, "the apiserver's address (the kubelet sets it); required"),
    (env::KUBERNETES_SERVICE_PORT, "the apiserver's port (the kubelet sets it); required"),
    (env::SERVICEACCOUNT_DIR, "directory of the ServiceAccount's token, ca.crt, namespace (default the mount)"),
];

/// The OpenTelemetry variables the controller passes on ([`env::PASSED_OTEL_VARS`]), read by the exporter.
const OTEL_VARIABLES: &[(&str, &str)] = &[
    (env::OTEL_EXPORTER_OTLP_ENDPOINT, "OTLP receiver base URL; traces are exported only when one is set"),
    (env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "OTLP traces URL; wins over the base URL"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTLP protocol (the agent speaks http/protobuf)"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "the same, for traces only"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "export timeout in milliseconds"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "the same, for traces only"),
    ("OTEL_TRACES_EXPORTER", "none: export no traces"),
    (env::OTEL_TRACES_SAMPLER, "trace sampler, e.g. parentbased_traceidratio"),
    (env::OTEL_TRACES_SAMPLER_ARG, "the sampler's argument, e.g. 0.1"),
    ("OTEL_RESOURCE_ATTRIBUTES", "extra resource attributes, key=value,…"),
    ("OTEL_SDK_DISABLED", "true: no OpenTelemetry at all"),
];

/// The usage text: what the agent is, its two flags and every environment variable it reads.
pub fn usage() -> String {
    let width = VARIABLES.iter().chain(OTEL_VARIABLES).map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = format!(
        "dittofs-agent {} — sidecar of a DittoFS pod: provisions its least-privilege DittoFS account, watches \
         the adapters and reports them in its entry of the DittoServer's status.agents.\n\n\
         Usage: dittofs-agent [--help | --version]\n\n\
         Configured by environment variables only (the controller's pod template sets them):\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, meaning) in VARIABLES {
        text.push_str(&format!("  {name:width$}  {meaning}\n"));
    }
    text.push_str("OpenTelemetry tracing (standard variables; the controller passes its own on):\n");
    for (name, meaning) in OTEL_VARIABLES {
        text.push_str(&format!("  {name:width$}  {meaning}\n"));
    }
    text
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Outcome {
    let args: Vec<OsString> = args.into_iter().collect();
    let Some(first) = args.first() else { return Outcome::Run };
    let refuse = |what: String| {
        Outcome::Refuse(format!(
            "dittofs-agent: {what}\nThe agent takes no arguments: it is configured by environment variables \
             (see dittofs-agent --help)."
        ))
    };
    if args.len() > 1 {
        return refuse(format!("too many arguments: {args:?}"));
    }
    match first.to_str() {
        Some("--help" | "-h") => Outcome::Print(usage()),
        Some("--version" | "-V") => Outcome::Print(format!("dittofs-agent {}\n", env!("CARGO_PKG_VERSION"))),
        Some(other) => refuse(format!("unknown argument {other:?}")),
        None => refuse(format!("unknown argument {first:?} (not UTF-8)")),
    }
}

/// Answers `--help`, `--version` and wrong arguments (printed, with the exit code to return); `None`: run.
pub fn answer(args: impl IntoIterator<Item = OsString>) -> Option<ExitCode> {
    match parse(args) {
        Outcome::Run => None,
        Outcome::Print(text) => {
            // A closed stdout (`--help | head`) is not an error worth reporting.
            let _ = std::io::stdout().write_all(text.as_bytes());
            Some(ExitCode::SUCCESS)
        }
        Outcome::Refuse(message) => {
            eprintln!("{message}");
            Some(ExitCode::from(USAGE_ERROR))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// The environment variable names of `api/src/agent_env.rs`, read from its source so that a variable
    /// added there without a line in `--help` fails this test.
    fn declared_variables() -> Vec<String> {
        let source = include_str!("../../api/src/agent_env.rs");
        let mut names = Vec::new();
        for line in source.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for literal in line.split('"').skip(1).step_by(2) {
                let is_var = literal.starts_with(|c: char| c.is_ascii_uppercase())
                    && literal.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if is_var {
                    names.push(literal.to_owned());
                }
            }
        }
        names
    }

    #[test]
    fn help_lists_every_variable_of_the_contract() {
        let declared = declared_variables();
        assert!(declared.len() >= 20, "the source scan found too few variables: {declared:?}");
        let Outcome::Print(help) = parse(args(&["--help"])) else { panic!("--help must print") };
        let missing: Vec<&String> =
            declared.iter().filter(|name| !help.lines().any(|l| l.split_whitespace().next() == Some(name))).collect();
        assert!(missing.is_empty(), "--help does not list {missing:?}:\n{help}");
        assert_eq!(parse(args(&["-h"])), Outcome::Print(help));
    }

    #[test]
    fn every_listed_variable_has_a_meaning_on_its_line() {
        let help = usage();
        for (name, _) in VARIABLES.iter().chain(OTEL_VARIABLES) {
            let line = help.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap();
            assert!(line.split_whitespace().count() > 3, "no meaning for {name}: {line:?}");
        }
    }

    #[test]
    fn version_and_no_arguments() {
        assert_eq!(parse(args(&[])), Outcome::Run);
        assert_eq!(
            parse(args(&["--version"])),
            Outcome::Print(format!("dittofs-agent {}\n", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for bad in [&["--pod-name=x"][..], &["run"], &["--help", "--version"], &["-"]] {
            let Outcome::Refuse(message) = parse(args(bad)) else { panic!("{bad:?} must be refused") };
            assert!(message.contains("environment variables"), "{message}");
            assert!(message.contains(bad[0]), "the message names the argument: {message}");
        }
    }
}
