//! Locates the etcd / kube-apiserver / kube-controller-manager / kubectl binaries built by `scripts/testenv/build.sh`.

use std::path::{Path, PathBuf};

/// Kubernetes release the binaries are built from. Mirrors `K8S_VERSION` in
/// `scripts/testenv/build.sh`; a unit test below keeps the two in step.
pub const K8S_VERSION: &str = "v1.35.4";
/// etcd release the binaries are built from. Mirrors `ETCD_VERSION` in the script.
pub const ETCD_VERSION: &str = "v3.6.16";

/// Environment variable naming a directory that holds all four binaries;
/// overrides the cache lookup (CI images, or binaries built elsewhere).
pub const BIN_DIR_ENV: &str = "DITTOFS_TESTENV_BIN";
/// Environment variable overriding the cache root, as in the build script.
pub const CACHE_ENV: &str = "DITTOFS_TESTENV_CACHE";

/// The binaries the control plane needs, in start order, plus kubectl for humans.
pub const BINARIES: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kubectl"];

/// Where `scripts/testenv/build.sh` puts the binaries for the pinned versions:
/// `${DITTOFS_TESTENV_CACHE:-$HOME/.cache/dittofs-operator/testenv}/<k8s>-etcd<etcd>/bin`.
pub fn cache_bin_dir() -> Option<PathBuf> {
    let root = match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/dittofs-operator/testenv"),
    };
    let etcd = ETCD_VERSION.trim_start_matches('v');
    Some(root.join(format!("{K8S_VERSION}-etcd{etcd}")).join("bin"))
}

/// Resolves the bin dir: `$DITTOFS_TESTENV_BIN` if set, else the cache dir.
/// Fails with instructions when any binary is missing, because the usual cause
/// is simply that nobody has run the (10-minute, once) build yet.
pub fn locate_bin_dir() -> anyhow::Result<PathBuf> {
    let (dir, source) = match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), format!("${BIN_DIR_ENV}")),
        _ => (
            cache_bin_dir().ok_or_else(|| anyhow::anyhow!("neither ${BIN_DIR_ENV} nor $HOME is set"))?,
            "the testenv cache".to_owned(),
        ),
    };
    check_bin_dir(&dir).map_err(|missing| {
        anyhow::anyhow!(
            "Kubernetes test binaries not found: {missing} missing in {} (from {source}).\n\
             Build them once (about 10 min on 2 cores, cached afterwards) with\n    \
             scripts/testenv/build.sh\nor run the whole suite with `make test`, \
             or point ${BIN_DIR_ENV} at a directory holding {}.",
            dir.display(),
            BINARIES.join(", "),
        )
    })?;
    Ok(dir)
}

/// `Err(list of missing binaries)` unless every binary is an existing file.
fn check_bin_dir(dir: &Path) -> Result<(), String> {
    let missing: Vec<&str> = BINARIES.iter().copied().filter(|b| !dir.join(b).is_file()).collect();
    if missing.is_empty() { Ok(()) } else { Err(missing.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust pins and the build script's pins must name the same cache entry,
    /// or the harness would look for binaries the script never builds.
    #[test]
    fn pins_match_build_script() {
        let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testenv/build.sh"))
            .expect("read scripts/testenv/build.sh");
        for (var, value) in [("K8S_VERSION", K8S_VERSION), ("ETCD_VERSION", ETCD_VERSION)] {
            let line = format!("\n{var}={value}\n");
            assert!(script.contains(&line), "build.sh should pin {var}={value}");
        }
    }

    #[test]
    fn missing_binaries_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        assert_eq!(check_bin_dir(dir.path()), Err("kube-apiserver, kube-controller-manager, kubectl".to_owned()));
    }
}
