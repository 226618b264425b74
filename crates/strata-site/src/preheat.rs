//! Preheat: pull images into a node (and, spread to the site, into every live node) before
//! any client asks, through the node's own mirror path, so each byte still crosses the uplink
//! once and is verified before it is stored.
//!
//! An image is `REPOSITORY:TAG` or `REPOSITORY@DIGEST` as this node names it (a namespace's
//! repositories under their prefix, e.g. `docker.io/library/nginx:1.27`). An index is
//! narrowed to the manifests of this node's platform (`linux` and its architecture).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::Registry;

/// What a preheat asks for.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PreheatRequest {
    pub images: Vec<String>,
    /// `node` (this node only, the default) or `site` (this node and every live peer).
    #[serde(default)]
    pub spread: Spread,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    #[default]
    Node,
    Site,
}

/// What one node did.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PreheatReport {
    pub images: usize,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// The architecture name OCI platforms use for this build's target.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Splits `REPOSITORY:TAG` or `REPOSITORY@DIGEST` (a bare repository means `latest`).
pub fn parse_image(image: &str) -> Result<(RepoName, Reference), String> {
    let (repo, reference) = match image.split_once('@') {
        Some((r, d)) => (r, d.to_string()),
        None => match image.rsplit_once(':') {
            // A ':' after the last '/' is a tag; before it, a registry's port.
            Some((r, t)) if !t.contains('/') => (r, t.to_string()),
            _ => (image, "latest".to_string()),
        },
    };
    let repo = repo
        .parse::<RepoName>()
        .map_err(|e| format!("{image}: {e}"))?;
    let reference = reference
        .parse::<Reference>()
        .map_err(|e| format!("{image}: {e}"))?;
    Ok((repo, reference))
}

/// The child manifests of an index that run on `os`/`arch` (those without a platform are
/// skipped: attestations and other artifacts).
fn for_platform(index: &[u8], os: &str, arch: &str) -> Result<Vec<Digest>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(index).map_err(|e| format!("index is not JSON: {e}"))?;
    let mut out = Vec::new();
    for m in v["manifests"].as_array().into_iter().flatten() {
        let p = &m["platform"];
        if p["os"] == os && p["architecture"] == arch {
            let d = m["digest"]
                .as_str()
                .and_then(|d| d.parse::<Digest>().ok())
                .ok_or("index entry without a valid digest")?;
            out.push(d);
        }
    }
    Ok(out)
}

/// Pulls `images` into this node through its registry (mirroring what it lacks).
pub async fn preheat_node(registry: &Registry, images: &[String]) -> Result<PreheatReport, String> {
    let mut report = PreheatReport::default();
    let mut seen_blobs: HashSet<Digest> = HashSet::new();
    for image in images {
        let (repo, reference) = parse_image(image)?;
        let top = registry
            .manifest_get(&repo, &reference)
            .await
            .map_err(|e| format!("{image}: {e}"))?;
        let mut manifests = vec![top];
        if !manifests[0].record.manifests.is_empty() {
            let children = for_platform(&manifests[0].bytes, "linux", oci_arch())
                .map_err(|e| format!("{image}: {e}"))?;
            if children.is_empty() {
                return Err(format!("{image}: no manifest for linux/{}", oci_arch()));
            }
            report.manifests += 1;
            manifests.clear();
            for d in children {
                manifests.push(
                    registry
                        .manifest_get(&repo, &Reference::Digest(d.clone()))
                        .await
                        .map_err(|e| format!("{image}: manifest {d}: {e}"))?,
                );
            }
        }
        for m in manifests {
            report.manifests += 1;
            for blob in &m.record.blobs {
                if !seen_blobs.insert(blob.clone()) {
                    continue;
                }
                let info = registry
                    .blob_stat_stored(&repo, blob)
                    .await
                    .map_err(|e| format!("{image}: blob {blob}: {e}"))?;
                report.blobs += 1;
                report.bytes += info.size;
            }
        }
        report.images += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_read_as_repository_and_reference() {
        let (r, t) = parse_image("docker.io/library/nginx:1.27").expect("parsed");
        assert_eq!(
            (r.as_str(), t.to_string().as_str()),
            ("docker.io/library/nginx", "1.27")
        );
        let (r, t) = parse_image("10.0.0.1-5000/app").expect("parsed");
        assert_eq!(
            (r.as_str(), t.to_string().as_str()),
            ("10.0.0.1-5000/app", "latest")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let (_, t) = parse_image(&format!("lib/app@{d}")).expect("parsed");
        assert_eq!(t.to_string(), d);
        assert!(parse_image("Bad Name:1").is_err());
        assert!(parse_image("lib/app@sha256:short").is_err());
    }

    #[test]
    fn an_index_is_narrowed_to_the_nodes_platform() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({"manifests": [
            {"digest": d('a'), "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": d('c'), "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": d('e')},
        ]})
        .to_string();
        let got = for_platform(index.as_bytes(), "linux", "arm64").expect("an index");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to_string(), d('b'));
        assert!(for_platform(b"nope", "linux", "amd64").is_err());
    }
}
