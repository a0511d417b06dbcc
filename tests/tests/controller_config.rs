//! The `config.yaml` the controller renders is what DittoFS reads: it loads in the emulator's config
//! loader (the real server's keys and defaults), and DittoFS — the real one with `DITTOFS_BIN`, else the
//! emulator — starts from it, serves its API and logs in the admin.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use dittofs_api::DittoServerSpec;
use dittofs_controller::desired::config::render;
use dittofs_emulator::config::{Config, LogFormat};
use dittofs_tests::dittofs::{DittoFs, Options};

fn spec(extra: Value) -> DittoServerSpec {
    let mut spec = json!({"storage": {"metadataSize": "1Gi"}});
    if let (Value::Object(base), Value::Object(more)) = (&mut spec, extra) {
        base.extend(more);
    }
    serde_json::from_value(spec).expect("valid spec")
}

/// Loads rendered YAML as `dfs start --config` would, with the env the pod template sets.
fn load(yaml: &str) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml)?;
    let env = BTreeMap::from([
        ("DITTOFS_CONTROLPLANE_SECRET".to_owned(), "k".repeat(43)),
        ("DITTOFS_ADMIN_INITIAL_PASSWORD".to_owned(), "pw".to_owned()),
        ("HOME".to_owned(), dir.path().display().to_string()),
    ]);
    Ok(Config::load(Some(&path), &env)?)
}

#[test]
fn the_rendered_config_loads_with_dittofs_keys_and_defaults() -> anyhow::Result<()> {
    let c = load(&render(&spec(json!({}))))?;
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 8080));
    assert_eq!(c.db_path.display().to_string(), "/data/controlplane/controlplane.db");
    assert_eq!(c.access_ttl, Duration::from_secs(15 * 60));
    assert_eq!(c.refresh_ttl, Duration::from_secs(168 * 3600));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!((c.log_level.as_str(), c.log_output.as_str()), ("INFO", "stdout"));
    assert_eq!(c.admin_initial_password.as_deref(), Some("pw"));

    let c = load(&render(&spec(json!({
        "controlPlane": {"port": 9000},
        "identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}, "accessTokenDuration": "90s", "refreshTokenDuration": "2h"}},
        "database": {"sqlite": {"path": "/data/controlplane/other.db"}},
        "logging": {"level": "DEBUG", "format": "text", "output": "stderr"}
    }))))?;
    assert_eq!(c.port, 9000);
    assert_eq!(c.access_ttl, Duration::from_secs(90));
    assert_eq!(c.refresh_ttl, Duration::from_secs(7200));
    assert_eq!(c.db_path.display().to_string(), "/data/controlplane/other.db");
    assert_eq!((c.log_format, c.log_level.as_str(), c.log_output.as_str()), (LogFormat::Text, "DEBUG", "stderr"));
    Ok(())
}

#[tokio::test]
#[ignore = "real-server tier: starts DittoFS (DITTOFS_BIN) or the emulator; run `make test`"]
async fn dittofs_starts_from_the_rendered_config() -> anyhow::Result<()> {
    for extra in [
        json!({}),
        json!({"identity": {"jwt": {"secretRef": {"name": "j", "key": "k"}, "accessTokenDuration": "5m"}},
               "logging": {"level": "DEBUG", "format": "text"}}),
    ] {
        let yaml = render(&spec(extra));
        let fs = DittoFs::start(Options { config_yaml: Some(yaml.clone()), ..Options::default() }).await?;
        // Started from it (not the harness's own config), answers, and the bootstrap admin logs in.
        assert_eq!(std::fs::read_to_string(fs.dir().join("config.yaml"))?, yaml);
        let adapters = fs.adapters().await?;
        assert!(adapters.contains_key("nfs"), "{adapters:?}");
        eprintln!("{:?} started from the rendered config", fs.flavor);
    }
    Ok(())
}
