//! The release tier (`make release`): where the static release binaries and their OCI images are, what the
//! platform expects of them, and podman run as `scripts/release/podman.sh` sets it up for this machine.
//!
//! The directories come from environment variables that `make release` sets; a test of this tier run without
//! them fails and says so (it never passes unchecked).

pub mod elf;
pub mod oci;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use kube::Api;
use serde_json::json;

use dittofs_api::{DittoServer, conditions};

use crate::kube_env::{TempNamespace, wait_until};
use crate::objects::{create_server, server, wait_for_condition};

/// The directory of the static binaries (`scripts/release/binaries.sh --print-dir`), e.g.
/// `target/release-static/amd64`; its name is the platform's architecture.
pub const BIN_DIR_VAR: &str = "DITTOFS_RELEASE_BIN_DIR";
/// The directory of the OCI layouts (`scripts/release/images.sh --print-dir`), e.g. `target/images/amd64`.
pub const IMAGES_DIR_VAR: &str = "DITTOFS_RELEASE_IMAGES_DIR";
/// The two release binaries, each the only file of its image.
pub const BINARIES: [&str; 2] = ["dittofs-agent", "dittofs-controller"];
/// The agent runs in every DittoFS pod: its image (as stored and pulled) stays at most this many bytes.
pub const AGENT_IMAGE_LIMIT: u64 = 15_000_000;
/// The user every image runs as (no `/etc/passwd` in the image: numeric, so `runAsNonRoot` can check it).
pub const IMAGE_USER: &str = "65532:65532";

/// The directory named by `var`, which must exist.
pub fn dir_from_env(var: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os(var).filter(|d| !d.is_empty()).map(PathBuf::from).with_context(|| {
        format!("{var} is not set: this release-tier test checks what `make release` builds; run `make release`")
    })?;
    ensure!(dir.is_dir(), "{var}={} is not a directory (run `make release`)", dir.display());
    Ok(dir)
}

/// The architecture a release directory is for (its last component: `amd64` or `arm64`).
pub fn arch_of(dir: &std::path::Path) -> anyhow::Result<String> {
    let arch = dir.file_name().and_then(|n| n.to_str()).context("release directory without a name")?;
    Ok(arch.to_owned())
}

/// The ELF `e_machine` of the architecture's binaries.
pub fn machine_for(arch: &str) -> anyhow::Result<u16> {
    match arch {
        "amd64" => Ok(elf::EM_X86_64),
        "arm64" => Ok(elf::EM_AARCH64),
        other => anyhow::bail!("no release platform {other:?} (amd64 and arm64 are)"),
    }
}

/// The release binary `name` of `$DITTOFS_RELEASE_BIN_DIR`.
pub fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let bin = dir_from_env(BIN_DIR_VAR)?.join(name);
    ensure!(bin.is_file(), "{} is missing (run `make release`)", bin.display());
    Ok(bin)
}

/// `scripts/release/podman.sh`: podman with the storage and settings the release tests use.
pub fn podman() -> Command {
    Command::new(crate::deploy::repo_root().join("scripts/release/podman.sh"))
}

/// An image imported into podman's storage, removed from it when dropped.
#[derive(Debug)]
pub struct PodmanImage(pub String);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.0]).output();
    }
}

/// Imports the OCI layout of image `name` into podman's storage.
pub fn podman_load(name: &str) -> anyhow::Result<PodmanImage> {
    let layout = dir_from_env(IMAGES_DIR_VAR)?.join(name);
    let out = podman().args(["pull", "--quiet"]).arg(format!("oci:{}", layout.display())).output()?;
    ensure!(out.status.success(), "podman pull oci:{}: {}", layout.display(), String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(!id.is_empty(), "podman pull printed no image ID");
    Ok(PodmanImage(id))
}

/// Waits (up to `ready_within`) for a controller whose admin server is on loopback `port` to be ready, then
/// checks that it reconciles a new DittoServer in `ns` to ConfigReady=True.
pub async fn controller_reconciles(ns: &TempNamespace<'_>, port: u16, ready_within: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    wait_until("the controller's /readyz", ready_within, async || {
        let status = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await?.status();
        ensure!(status == 200, "{status}");
        Ok(())
    })
    .await?;
    create_server(ns, &server("fs", json!({"storage": {"metadataSize": "1Gi"}}))?).await?;
    let servers: Api<DittoServer> = ns.api();
    wait_for_condition(&servers, "fs", conditions::CONFIG_READY, "True", Duration::from_secs(30)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_map_to_their_elf_machine() {
        assert_eq!(machine_for("amd64").unwrap(), elf::EM_X86_64);
        assert_eq!(machine_for("arm64").unwrap(), elf::EM_AARCH64);
        assert!(machine_for("x86_64").is_err(), "directories are named by the image platform, not the triple");
        assert_eq!(arch_of(std::path::Path::new("target/release-static/arm64")).unwrap(), "arm64");
    }

    #[test]
    fn a_missing_variable_says_to_run_make_release() {
        let err = dir_from_env("DITTOFS_RELEASE_TEST_UNSET_VARIABLE").unwrap_err().to_string();
        assert!(err.contains("is not set") && err.contains("make release"), "{err}");
    }
}
