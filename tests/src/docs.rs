//! The commands of docs/install.md, read from the document and run as a reader would: `bash -c`, with this
//! machine's kubectl and helm first on PATH and the control plane's kubeconfig, from a directory where
//! `deploy/` is the repository's (the repository root, or a scratch directory linking to it, so a command
//! that writes a file leaves nothing in the checkout).

use std::path::Path;
use std::process::Command;

use crate::deploy::{helm_bin, helm_home_env, repo_root};
use crate::kube_env::ControlPlane;

/// The section of docs/install.md whose heading starts with `heading` (e.g. `## 2. `), up to the next
/// heading of the same level or above.
pub fn section(heading: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/install.md"))?;
    let start = text.find(heading).ok_or_else(|| anyhow::anyhow!("docs/install.md has no {heading:?}"))?;
    let rest = &text[start + heading.len()..];
    let level = heading.chars().take_while(|c| *c == '#').count();
    let end = (1..=level).filter_map(|l| rest.find(&format!("\n{} ", "#".repeat(l)))).min();
    Ok(rest[..end.unwrap_or(rest.len())].to_owned())
}

/// The lines of a section's ```sh blocks (comments and blank lines left out).
pub fn commands(section: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in section.split("```sh\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        out.extend(body.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
    }
    out
}

/// Runs `command` as a reader of the docs would, against `cp`, from the repository root.
pub fn run(cp: &ControlPlane, command: &str) -> anyhow::Result<String> {
    run_in(cp, &repo_root(), command)
}

/// Runs `command` from `dir` (see [`scratch_dir`]), against `cp`; its stdout.
pub fn run_in(cp: &ControlPlane, dir: &Path, command: &str) -> anyhow::Result<String> {
    let home = tempfile::tempdir()?;
    let helm_dir = helm_bin()?.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::join_paths(
        [cp.bin_dir().to_path_buf(), helm_dir]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let mut cmd = Command::new("bash");
    helm_home_env(&mut cmd, home.path());
    let out = cmd
        .current_dir(dir)
        .env("PATH", path)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .args(["-c", command])
        .output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ {command}\n{stdout}{stderr}");
    anyhow::ensure!(out.status.success(), "`{command}` failed ({}): {stderr}", out.status);
    Ok(stdout.into_owned())
}

/// A scratch directory whose `deploy` is the repository's: commands that write files write them here.
pub fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::os::unix::fs::symlink(repo_root().join("deploy"), dir.path().join("deploy"))?;
    Ok(dir)
}
