//! Manifest parsing: the facts a registry needs from a pushed manifest.
//!
//! The registry stores and serves the exact bytes a client pushed; parsing only validates the
//! document and extracts what the registry must act on: its media type, the blobs and child
//! manifests it references, its `subject` (for the referrers API), `artifactType` and
//! annotations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Largest manifest accepted, as in the spec's guidance and the CNCF registry.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Layer media types whose blobs live elsewhere (`urls`) and need not exist in the registry.
const FOREIGN_LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Why a manifest is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest is not valid json: {0}")]
    Json(String),
    #[error("unsupported schemaVersion {0}, expected 2")]
    SchemaVersion(i64),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest mediaType {field:?} does not match content type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("image manifest has no config descriptor")]
    MissingConfig,
    #[error("index has no manifests list")]
    MissingManifests,
    #[error("descriptor has a negative size")]
    NegativeSize,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The raw shape shared by image manifests and indexes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry learned from a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The media type the manifest is served with.
    pub media_type: String,
    /// `artifactType`, or for an image manifest without one, the config's media type.
    pub artifact_type: Option<String>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs (config and layers) that must exist in the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index) that must exist in the repository.
    pub manifests: Vec<Digest>,
    /// The sizes the manifest gives [`Self::blobs`] and [`Self::manifests`], in their order.
    pub blob_sizes: Vec<u64>,
    pub manifest_sizes: Vec<u64>,
}

impl ParsedManifest {
    /// Whether the media type is one of the index kinds.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

fn is_index_type(t: &str) -> bool {
    t == OCI_INDEX || t == DOCKER_MANIFEST_LIST
}

fn is_image_type(t: &str) -> bool {
    t == OCI_MANIFEST || t == DOCKER_MANIFEST
}

/// Strip parameters (`; charset=...`) and whitespace from a Content-Type value.
fn bare_content_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// Decide the manifest's media type from its `mediaType` field and the request's Content-Type.
fn effective_media_type(
    raw: &RawManifest,
    content_type: Option<&str>,
) -> Result<String, ManifestError> {
    let header = content_type
        .map(bare_content_type)
        .filter(|s| !s.is_empty());
    let chosen = match (raw.media_type.as_deref(), header) {
        (Some(field), Some(h)) if field != h => {
            return Err(ManifestError::MediaTypeMismatch {
                field: field.to_string(),
                header: h.to_string(),
            })
        }
        (Some(field), _) => field.to_string(),
        (None, Some(h)) => h.to_string(),
        // No declared type: infer the OCI kind from the document's shape.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if is_index_type(&chosen) || is_image_type(&chosen) {
        Ok(chosen)
    } else {
        Err(ManifestError::UnsupportedMediaType(chosen))
    }
}

fn check_sizes<'a>(descs: impl IntoIterator<Item = &'a Descriptor>) -> Result<(), ManifestError> {
    if descs.into_iter().any(|d| d.size < 0) {
        return Err(ManifestError::NegativeSize);
    }
    Ok(())
}

/// Validate a manifest document and extract what the registry must act on.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    match raw.schema_version {
        Some(2) => {}
        Some(v) => return Err(ManifestError::SchemaVersion(v)),
        None => return Err(ManifestError::SchemaVersion(0)),
    }
    let media_type = effective_media_type(&raw, content_type)?;
    check_sizes(raw.subject.iter())?;
    let (blobs, manifests, artifact_type) = if is_index_type(&media_type) {
        let children = raw
            .manifests
            .as_ref()
            .ok_or(ManifestError::MissingManifests)?;
        check_sizes(children)?;
        let digests = children
            .iter()
            .map(|d| (d.digest.clone(), d.size.unsigned_abs()))
            .collect();
        (Vec::new(), digests, raw.artifact_type.clone())
    } else {
        let config = raw.config.as_ref().ok_or(ManifestError::MissingConfig)?;
        let layers = raw.layers.as_deref().unwrap_or(&[]);
        check_sizes(std::iter::once(config).chain(layers))?;
        let mut blobs = vec![(config.digest.clone(), config.size.unsigned_abs())];
        blobs.extend(
            layers
                .iter()
                .filter(|l| !FOREIGN_LAYER_TYPES.contains(&l.media_type.as_str()))
                .map(|l| (l.digest.clone(), l.size.unsigned_abs())),
        );
        let artifact = raw
            .artifact_type
            .clone()
            .or_else(|| Some(config.media_type.clone()));
        (blobs, Vec::new(), artifact)
    };
    Ok(ParsedManifest {
        media_type,
        artifact_type,
        subject: raw.subject,
        annotations: raw.annotations,
        blob_sizes: blobs.iter().map(|b| b.1).collect(),
        blobs: blobs.into_iter().map(|b| b.0).collect(),
        manifest_sizes: manifests.iter().map(|m| m.1).collect(),
        manifests: manifests.into_iter().map(|m| m.0).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10}}]{extra}}}"#,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn parses_image_manifest() {
        let p = parse(image("").as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(p.blobs[1].to_string(), d('b'));
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(p.subject.is_none());
        assert!(!p.is_index());
    }

    #[test]
    fn extracts_subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sbom","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}}"#,
            d('c')
        );
        let p = parse(image(&extra).as_bytes(), None).expect("valid");
        assert_eq!(p.artifact_type.as_deref(), Some("application/x-sbom"));
        assert_eq!(p.subject.expect("subject").digest.to_string(), d('c'));
    }

    #[test]
    fn parses_index() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}}]}}"#,
            d('e')
        );
        let p = parse(body.as_bytes(), Some(OCI_INDEX)).expect("valid");
        assert!(p.is_index());
        assert_eq!(p.manifests.len(), 1);
        assert!(p.blobs.is_empty());
    }

    #[test]
    fn rejects_invalid_manifests() {
        assert!(matches!(
            parse(b"{not json", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(matches!(
            parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse(image("").as_bytes(), Some(OCI_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let no_config = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#);
        assert_eq!(
            parse(no_config.as_bytes(), None),
            Err(ManifestError::MissingConfig)
        );
        let bad_digest = image("").replace(&d('b'), "sha256:nothex");
        assert!(matches!(
            parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let negative = image("").replace("\"size\":10", "\"size\":-1");
        assert_eq!(
            parse(negative.as_bytes(), None),
            Err(ManifestError::NegativeSize)
        );
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(parse(&huge, None), Err(ManifestError::TooLarge));
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        let ct = format!("{OCI_MANIFEST}; charset=utf-8");
        assert!(parse(image("").as_bytes(), Some(&ct)).is_ok());
    }
}
