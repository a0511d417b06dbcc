//! The release tier, run by `make release` (filtered out of `make test`: the musl release build is slow): the
//! static binaries really are static executables of the platform and start — the agent's `--help`, the
//! controller's `--help` and `crd`, and the controller against the real apiserver until `/readyz`, a
//! DittoServer reconciled, SIGTERM and a clean exit. The images are in `release_images.rs`.

use std::process::Command;
use std::time::Duration;

use dittofs_api::agent_env;
use dittofs_tests::free_port;
use dittofs_tests::kube_env::ControlPlane;
use dittofs_tests::objects::install_crd;
use dittofs_tests::pod::Proc;
use dittofs_tests::release::{
    BIN_DIR_VAR, BINARIES, arch_of, controller_reconciles, dir_from_env, elf, machine_for, release_bin,
};

/// Every variable of the agent's environment contract, as `--help` must list them.
fn agent_variables() -> Vec<&'static str> {
    let mut names = vec![
        agent_env::POD_NAME,
        agent_env::POD_NAMESPACE,
        agent_env::DITTOSERVER_NAME,
        agent_env::DITTOFS_URL,
        agent_env::ADMIN_PASSWORD_FILE,
        agent_env::ADMIN_PASSWORD,
        agent_env::ADMIN_USERNAME,
        agent_env::ADMIN_SECRET_NAME,
        agent_env::ADMIN_SECRET_KEY,
        agent_env::ADMIN_ADDR,
        agent_env::LOG_FORMAT,
        agent_env::RUST_LOG,
    ];
    names.extend(agent_env::PASSED_OTEL_VARS);
    names
}

/// `bin args…` to completion: (exit code, stdout, stderr).
fn run(bin: &std::path::Path, args: &[&str]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = Command::new(bin).args(args).env_clear().output()?;
    Ok((out.status.code(), String::from_utf8(out.stdout)?, String::from_utf8(out.stderr)?))
}

#[test]
#[ignore = "release tier: needs the static release binaries; run `make release`"]
fn release_binaries_are_static_executables_of_the_platform() -> anyhow::Result<()> {
    let dir = dir_from_env(BIN_DIR_VAR)?;
    let machine = machine_for(&arch_of(&dir)?)?;
    for name in BINARIES {
        let bin = release_bin(name)?;
        let linkage = elf::linkage(&std::fs::read(&bin)?)?;
        let size = std::fs::metadata(&bin)?.len();
        eprintln!("{name}: {size} bytes ({:.1} MiB), {linkage:?}", size as f64 / 1048576.0);
        assert_eq!(linkage.machine, machine, "{name} is built for another machine");
        assert!(linkage.is_static(), "{name} needs a loader or shared libraries: {linkage:?}");
        // An executable: position-independent (musl's static-pie on amd64, so ASLR works) or fixed-address.
        assert!(matches!(linkage.kind, 2 | 3), "{name} is an ELF file of type {}, not an executable", linkage.kind);
    }
    Ok(())
}

#[test]
#[ignore = "release tier: needs the static release binaries; run `make release`"]
fn release_agent_starts_and_lists_its_environment_on_help() -> anyhow::Result<()> {
    let agent = release_bin("dittofs-agent")?;
    let (code, help, _) = run(&agent, &["--help"])?;
    assert_eq!(code, Some(0), "--help exits 0");
    for name in agent_variables() {
        assert!(
            help.lines().any(|l| l.split_whitespace().next() == Some(name)),
            "--help does not list {name}:\n{help}"
        );
    }
    let (code, version, _) = run(&agent, &["--version"])?;
    assert_eq!((code, version.trim()), (Some(0), concat!("dittofs-agent ", env!("CARGO_PKG_VERSION"))));
    let (code, _, err) = run(&agent, &["--pod-name=x"])?;
    assert_eq!(code, Some(2), "an unknown argument is a usage error");
    assert!(err.contains("unknown argument \"--pod-name=x\""), "{err}");
    // No environment at all: it starts, and refuses with the first missing variable.
    let (code, out, err) = run(&agent, &[])?;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(format!("{out}{err}").contains("POD_NAME is not set"), "{out}{err}");
    Ok(())
}

#[test]
#[ignore = "release tier: needs the static release binaries; run `make release`"]
fn release_controller_prints_help_and_the_crd() -> anyhow::Result<()> {
    let controller = release_bin("dittofs-controller")?;
    let (code, help, _) = run(&controller, &["--help"])?;
    assert_eq!(code, Some(0));
    assert!(help.contains("--agent-image") && help.contains("--admin-addr"), "{help}");
    let (code, crd, _) = run(&controller, &["crd"])?;
    assert_eq!(code, Some(0));
    let committed = std::fs::read_to_string(dittofs_tests::deploy::repo_root().join("deploy/crds/dittoservers.yaml"))?;
    assert!(crd == committed, "the release binary's CRD differs from deploy/crds/dittoservers.yaml");
    Ok(())
}

#[tokio::test]
#[ignore = "release tier: needs the static release binaries and the Kubernetes test binaries; run `make release`"]
async fn release_controller_reconciles_against_the_apiserver_and_stops_on_sigterm() -> anyhow::Result<()> {
    let controller = release_bin("dittofs-controller")?;
    let cp = ControlPlane::shared();
    cp.with_temp_ns("release-ctrl", async |ns| {
        install_crd(ns.client()).await?;
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new(&controller);
        cmd.env_clear()
            .env("KUBECONFIG", cp.kubeconfig_path())
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--log-format", "plain"])
            .args(["--namespace", ns.name(), "--lease-namespace", ns.name(), "--identity", "release-under-test"]);
        let mut proc = Proc::spawn("dittofs-controller (release)", cmd, dir.path().join("controller.log"))?;
        let checked = controller_reconciles(ns, port, Duration::from_secs(30)).await;
        if let Err(e) = checked {
            anyhow::bail!("{e:#}\n{}", proc.log_tail(40));
        }
        let status = proc.terminate(Duration::from_secs(15))?;
        assert!(status.success(), "SIGTERM: {status}\n{}", proc.log_tail(40));
        Ok(())
    })
    .await
}
