//! The agent's Kubernetes client configuration and its token, without an apiserver (the real-server tests
//! run the binary against one: tests/tests/agent_process.rs).

use std::collections::HashMap;

use super::*;

const HOST_PORT: [(&str, &str); 2] =
    [(agent_env::KUBERNETES_SERVICE_HOST, "10.96.0.1"), (agent_env::KUBERNETES_SERVICE_PORT, "443")];

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// A directory as the kubelet projects it: `token`, `ca.crt` (a fresh self-signed certificate), `namespace`.
fn projected(token: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap().cert.pem();
    std::fs::write(dir.path().join("ca.crt"), ca).unwrap();
    std::fs::write(dir.path().join("token"), token).unwrap();
    std::fs::write(dir.path().join("namespace"), "team-a").unwrap();
    dir
}

#[test]
fn the_apiserver_and_the_files_come_from_where_the_kubelet_puts_them() {
    let at = InCluster::from_lookup(env(&HOST_PORT)).unwrap();
    assert_eq!(at.url.to_string(), "https://10.96.0.1:443/");
    assert_eq!(at.dir, Path::new("/var/run/secrets/kubernetes.io/serviceaccount"));

    let moved = [HOST_PORT[0], HOST_PORT[1], (agent_env::SERVICEACCOUNT_DIR, "/tmp/sa")];
    assert_eq!(InCluster::from_lookup(env(&moved)).unwrap().dir, Path::new("/tmp/sa"));

    let v6 = [(agent_env::KUBERNETES_SERVICE_HOST, "fd00::1"), (agent_env::KUBERNETES_SERVICE_PORT, "6443")];
    assert_eq!(InCluster::from_lookup(env(&v6)).unwrap().url.to_string(), "https://[fd00::1]:6443/");
}

#[test]
fn outside_a_pod_it_says_what_is_missing() {
    let err = InCluster::from_lookup(env(&HOST_PORT[..1])).unwrap_err().to_string();
    assert!(err.contains("KUBERNETES_SERVICE_PORT is not set"), "{err}");
    let bad_port = [HOST_PORT[0], (agent_env::KUBERNETES_SERVICE_PORT, "https")];
    let err = InCluster::from_lookup(env(&bad_port)).unwrap_err().to_string();
    assert!(err.contains("\"https\" is not a port"), "{err}");
}

fn refused(result: Result<kube::Client, AgentError>) -> String {
    result.err().expect("refused").to_string()
}

#[tokio::test]
async fn unusable_files_fail_at_start_naming_the_file_never_the_token() {
    let at = |dir: &Path| InCluster { url: "https://10.96.0.1:443".parse().unwrap(), dir: dir.to_owned() };
    let ok = projected("abc");
    at(ok.path()).client("ns").expect("a usable projected volume");

    let no_ca = projected("abc");
    std::fs::write(no_ca.path().join("ca.crt"), "").unwrap();
    let err = refused(at(no_ca.path()).client("ns"));
    assert!(err.contains("ca.crt holds no CA certificate"), "{err}");

    let missing = tempfile::tempdir().unwrap();
    let err = refused(at(missing.path()).client("ns"));
    assert!(err.contains("cluster CA bundle: cannot read") && err.contains("ca.crt"), "{err}");

    let bad_token = projected("line\nbreak-in-the-middle");
    let err = refused(at(bad_token.path()).client("ns"));
    assert!(err.contains("is not a header value") && !err.contains("break-in"), "{err}");
    let no_token = projected(" \n");
    let err = refused(at(no_token.path()).client("ns"));
    assert!(err.contains("token") && err.contains("is empty"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn the_token_follows_the_kubelets_rotation_and_survives_a_failed_read() {
    let dir = projected("first\n");
    let file = TokenFile::open(dir.path().join("token")).unwrap();
    let bearer = |file: &TokenFile| {
        let req = file.authorize(Request::get("/api").body(Body::empty()).unwrap());
        let value = req.headers()[AUTHORIZATION].clone();
        assert!(value.is_sensitive(), "the token is never logged by the HTTP stack");
        value.to_str().unwrap().to_owned()
    };
    assert_eq!(bearer(&file), "Bearer first");

    std::fs::write(dir.path().join("token"), "second").unwrap();
    assert_eq!(bearer(&file), "Bearer first", "read again only after {TOKEN_REREAD:?}");
    tokio::time::advance(TOKEN_REREAD).await;
    assert_eq!(bearer(&file), "Bearer second");

    std::fs::remove_file(dir.path().join("token")).unwrap();
    tokio::time::advance(TOKEN_REREAD).await;
    assert_eq!(bearer(&file), "Bearer second", "a failed read keeps the last token");
}
