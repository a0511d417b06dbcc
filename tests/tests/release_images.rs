//! The release images (`scripts/release/images.sh`, run by `make release`): each OCI layout holds one image
//! for the platform whose config runs the binary as 65532:65532, whose only file is the static release binary
//! (no shell, nothing else), labelled, and the agent's at most 15 MB. With podman able to run containers here
//! (`make release` probes it and filters the `release_podman_…` tests out with the reason when it cannot),
//! the agent image prints its `--help` and has no shell, and the controller image reconciles against the real
//! apiserver and stops cleanly on SIGTERM.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::{Value, json};

use dittofs_api::agent_env;
use dittofs_tests::free_port;
use dittofs_tests::kube_env::ControlPlane;
use dittofs_tests::objects::install_crd;
use dittofs_tests::pod::Proc;
use dittofs_tests::release::oci::{Image, entry_path};
use dittofs_tests::release::{
    AGENT_IMAGE_LIMIT, BINARIES, IMAGE_USER, IMAGES_DIR_VAR, arch_of, controller_reconciles, dir_from_env, podman,
    podman_load, release_bin,
};

const LABELS: [&str; 7] = ["title", "description", "version", "revision", "source", "licenses", "created"];

#[test]
#[ignore = "release tier: needs the images of `scripts/release/images.sh`; run `make release`"]
fn release_images_run_the_static_binary_alone_as_65532() -> anyhow::Result<()> {
    let dir = dir_from_env(IMAGES_DIR_VAR)?;
    let arch = arch_of(&dir)?;
    for name in BINARIES {
        let image = Image::open(&dir.join(name))?;
        let config = &image.config;
        eprintln!(
            "{name}: {} bytes stored ({:.2} MB), config {}",
            image.stored_size,
            image.stored_size as f64 / 1e6,
            config["config"]
        );
        assert_eq!(image.ref_name, format!("{name}:{}", env!("CARGO_PKG_VERSION")));
        assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some(arch.as_str())));
        assert_eq!(config["config"]["User"], IMAGE_USER, "{name} runs as {IMAGE_USER}");
        assert_eq!(config["config"]["Entrypoint"], json!([format!("/{name}")]));
        assert!(matches!(&config["config"]["Cmd"], Value::Null), "no default arguments: {}", config["config"]["Cmd"]);
        for label in LABELS {
            let key = format!("org.opencontainers.image.{label}");
            assert!(image.label(&key).is_some_and(|v| !v.is_empty()), "{name} lacks the label {key}");
        }
        assert_eq!(image.label("org.opencontainers.image.title"), Some(name));
        assert_eq!(image.label("org.opencontainers.image.licenses"), Some("Apache-2.0"));
        assert_eq!(image.label("org.opencontainers.image.version"), Some(env!("CARGO_PKG_VERSION")));
        let created = image.label("org.opencontainers.image.created").unwrap_or_default();
        assert!(created.parse::<jiff::Timestamp>().is_ok(), "created {created:?} is not an RFC 3339 time");

        // The rootfs is the binary and nothing else: no shell, no libraries, no /etc.
        let entries = image.entries()?;
        let files: Vec<&String> = entries.iter().filter(|e| !e.starts_with('d')).collect();
        assert_eq!(files.len(), 1, "{name}'s layers hold more than its binary: {entries:#?}");
        assert_eq!(entry_path(files[0]), name, "{entries:#?}");
        assert!(files[0].starts_with("-rwxr-xr-x"), "the binary's mode: {}", files[0]);
        assert!(image.file(name)? == std::fs::read(release_bin(name)?)?, "{name}'s image holds another binary");
        if name == "dittofs-agent" {
            assert!(image.stored_size <= AGENT_IMAGE_LIMIT, "the agent image is {} bytes", image.stored_size);
        }
    }
    Ok(())
}

/// `podman.sh run --rm args…` to completion: (exit code, stdout + stderr).
fn podman_run(args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let out = podman().args(["run", "--rm", "--network", "host"]).args(args).output()?;
    Ok((out.status.code(), format!("{}{}", String::from_utf8(out.stdout)?, String::from_utf8(out.stderr)?)))
}

#[test]
#[ignore = "release tier: needs podman and the images of `scripts/release/images.sh`; run `make release`"]
fn release_podman_agent_image_prints_its_help_and_has_no_shell() -> anyhow::Result<()> {
    let loaded = podman_load("dittofs-agent")?;
    let image = loaded.0.as_str();
    let (code, help) = podman_run(&[image, "--help"])?;
    assert_eq!(code, Some(0), "{help}");
    for name in [agent_env::POD_NAME, agent_env::DITTOFS_URL, agent_env::ADMIN_PASSWORD_FILE] {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
    // The image's own entrypoint started without the pod's env: the agent itself refuses.
    let (code, out) = podman_run(&[image])?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("POD_NAME is not set"), "{out}");
    let (code, out) = podman_run(&["--entrypoint", "/bin/sh", image, "-c", "true"])?;
    assert_ne!(code, Some(0), "a shell ran in the agent image: {out}");
    Ok(())
}

#[tokio::test]
#[ignore = "release tier: needs podman, the images and the Kubernetes test binaries; run `make release`"]
async fn release_podman_controller_image_reconciles_against_the_apiserver() -> anyhow::Result<()> {
    let loaded = podman_load("dittofs-controller")?;
    let image = loaded.0.clone();
    let cp = ControlPlane::shared();
    cp.with_temp_ns("release-image", async |ns| {
        install_crd(ns.client()).await?;
        // Mounted read-only as the image's user (65532) reads it: a copy anyone may read.
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::copy(cp.kubeconfig_path(), &kubeconfig)?;
        std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644))?;
        let port = free_port()?;
        let name = format!("dittofs-release-{}", ns.name());
        let mut cmd = podman();
        cmd.args(["run", "--rm", "--network", "host", "--name", &name])
            .arg(format!("--volume={}:/kubeconfig:ro", kubeconfig.display()))
            .args(["--env", "KUBECONFIG=/kubeconfig", &image])
            .args(["--admin-addr", &format!("127.0.0.1:{port}"), "--log-format", "plain"])
            .args(["--namespace", ns.name(), "--lease-namespace", ns.name(), "--identity", "release-image"]);
        let mut proc = Proc::spawn("dittofs-controller (image)", cmd, dir.path().join("controller.log"))?;
        let checked = controller_reconciles(ns, port, Duration::from_secs(60)).await;
        if let Err(e) = checked {
            let _ = podman().args(["rm", "--force", &name]).output();
            anyhow::bail!("{e:#}\n{}", proc.log_tail(40));
        }
        // SIGTERM to `podman run`, which passes it on to the container (--sig-proxy) and exits with its code.
        let status = proc.terminate(Duration::from_secs(20));
        if status.as_ref().map_or(true, |s| !s.success()) {
            let _ = podman().args(["rm", "--force", &name]).output();
        }
        let status = status?;
        assert!(status.success(), "SIGTERM: {status}\n{}", proc.log_tail(40));
        Ok(())
    })
    .await
}
