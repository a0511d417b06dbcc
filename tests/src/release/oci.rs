//! Reading an OCI image layout directory (what `scripts/release/images.sh` exports): the index, the one
//! manifest, the image config and the layers, every blob checked against its digest. Layer contents are
//! listed with the system's `tar` (it reads the gzip layers as well).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The media type of an OCI image manifest (buildah's `--format oci`).
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image of an OCI layout, its blobs verified.
#[derive(Debug)]
pub struct Image {
    pub dir: PathBuf,
    /// The `org.opencontainers.image.ref.name` of the index entry, e.g. `dittofs-agent:0.1.0`.
    pub ref_name: String,
    /// The image config (`architecture`, `os`, `config.User`, `config.Entrypoint`, `config.Labels`, …).
    pub config: Value,
    /// The layer blobs, in order.
    pub layers: Vec<PathBuf>,
    /// What a registry stores and a node pulls: manifest, config and (compressed) layers, in bytes.
    pub stored_size: u64,
}

/// The blob `digest` of the layout `dir`, checked against its digest and, when given, its size.
fn blob(dir: &Path, descriptor: &Value) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let digest = descriptor["digest"].as_str().with_context(|| format!("descriptor without digest: {descriptor}"))?;
    let hex = digest.strip_prefix("sha256:").with_context(|| format!("digest {digest} is not sha256"))?;
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).with_context(|| format!("read blob {}", path.display()))?;
    let actual = format!("{:x}", Sha256::digest(&bytes));
    ensure!(actual == hex, "blob {} has digest sha256:{actual}, not {digest}", path.display());
    if let Some(size) = descriptor["size"].as_u64() {
        ensure!(size == bytes.len() as u64, "blob {digest} is {} bytes, its descriptor says {size}", bytes.len());
    }
    Ok((path, bytes))
}

impl Image {
    /// The only image of the layout `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Image> {
        let layout: Value = serde_json::from_slice(
            &std::fs::read(dir.join("oci-layout")).with_context(|| format!("{} is no OCI layout", dir.display()))?,
        )?;
        ensure!(layout["imageLayoutVersion"] == "1.0.0", "unknown layout version in {}: {layout}", dir.display());
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
        let manifests = index["manifests"].as_array().context("index.json without manifests")?;
        ensure!(manifests.len() == 1, "{} holds {} images, expected one", dir.display(), manifests.len());
        let entry = &manifests[0];
        let ref_name =
            entry["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or_default().to_owned();
        let (_, manifest_bytes) = blob(dir, entry)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)?;
        ensure!(
            manifest["mediaType"] == OCI_MANIFEST || entry["mediaType"] == OCI_MANIFEST,
            "not an OCI image manifest: {manifest}"
        );
        let (_, config_bytes) = blob(dir, &manifest["config"])?;
        let mut stored_size = (manifest_bytes.len() + config_bytes.len()) as u64;
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().context("manifest without layers")? {
            let (path, bytes) = blob(dir, layer)?;
            stored_size += bytes.len() as u64;
            layers.push(path);
        }
        Ok(Image { dir: dir.to_owned(), ref_name, config: serde_json::from_slice(&config_bytes)?, layers, stored_size })
    }

    /// Every entry of every layer as `tar -tv` shows it (mode, owner, size, …, path).
    pub fn entries(&self) -> anyhow::Result<Vec<String>> {
        let mut all = Vec::new();
        for layer in &self.layers {
            let out = Command::new("tar").arg("-tvf").arg(layer).output().context("run tar (to list a layer)")?;
            ensure!(out.status.success(), "tar -tvf {}: {}", layer.display(), String::from_utf8_lossy(&out.stderr));
            all.extend(String::from_utf8(out.stdout)?.lines().map(str::to_owned));
        }
        Ok(all)
    }

    /// The bytes of `path` (as named in the layer, e.g. `dittofs-agent`) in the last layer holding it.
    pub fn file(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        for layer in self.layers.iter().rev() {
            let out = Command::new("tar").arg("-xOf").arg(layer).arg(path).output()?;
            if out.status.success() {
                return Ok(out.stdout);
            }
        }
        anyhow::bail!("no layer of {} holds {path}", self.dir.display())
    }

    /// A label of the image config.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.config["config"]["Labels"][name].as_str()
    }
}

/// The path of an entry of `tar -tv` output (the last field; release images have no spaces in names),
/// without the leading `./` or `/`.
pub fn entry_path(line: &str) -> &str {
    let path = line.split_whitespace().last().unwrap_or_default();
    path.trim_start_matches("./").trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_drop_the_leading_dot_slash() {
        assert_eq!(entry_path("-rwxr-xr-x 0/0 9000 2026-01-01 00:00 ./dittofs-agent"), "dittofs-agent");
        assert_eq!(entry_path("drwxr-xr-x 0/0 0 2026-01-01 00:00 ./"), "");
        assert_eq!(entry_path("-rwxr-xr-x 0/0 1 2026-01-01 00:00 bin/sh"), "bin/sh");
    }

    #[test]
    fn a_blob_with_another_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        let hex = format!("{:x}", Sha256::digest(b"right"));
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), b"wrong").unwrap();
        let err = blob(dir.path(), &serde_json::json!({"digest": format!("sha256:{hex}")})).unwrap_err();
        assert!(err.to_string().contains("has digest"), "{err}");
        std::fs::write(dir.path().join("blobs/sha256").join(&hex), b"right").unwrap();
        let err = blob(dir.path(), &serde_json::json!({"digest": format!("sha256:{hex}"), "size": 9})).unwrap_err();
        assert!(err.to_string().contains("descriptor says 9"), "{err}");
    }
}
