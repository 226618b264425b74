//! The metadata store trait: what a registry knows about its repositories.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::{Deserialize, Serialize};
use strata_oci::{Digest, ParsedManifest, RepoName, Tag};

use crate::StoreError;

/// A blob the node mirrored from an upstream, and so may evict from its cache. Pushed
/// content (and whatever a pushed manifest references) is never one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBlob {
    pub digest: Digest,
    pub size: u64,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub stored_ms: u64,
}

/// A manifest stored in a repository. Its bytes are the blob `digest` in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs the manifest references (config and layers).
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index).
    pub manifests: Vec<Digest>,
}

impl ManifestRecord {
    /// The record of a parsed manifest whose bytes have digest `digest` and length `size`.
    pub fn new(digest: Digest, size: u64, parsed: ParsedManifest) -> Self {
        ManifestRecord {
            digest,
            media_type: parsed.media_type,
            size,
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.map(|s| s.digest),
            annotations: parsed.annotations,
            blobs: parsed.blobs,
            manifests: parsed.manifests,
        }
    }
}

/// An upload session, persisted so it can be resumed after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: String,
    pub repo: RepoName,
    /// Seconds since the Unix epoch at which the session started.
    pub started_unix: u64,
}

/// Registry metadata. Every method is one transaction: a crash leaves either the state before
/// or the state after it.
pub trait MetaStore: Send + Sync + Debug {
    /// Record that a blob is available in a repository.
    fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError>;
    /// Forget a blob in a repository; `false` if it was not linked.
    fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError>;
    fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError>;
    /// Forget a blob in every repository (after garbage collection removed it).
    fn unlink_blob_everywhere(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Store a manifest record and point every one of `tags` at it, in one transaction.
    fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), StoreError>;
    fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError>;
    /// Delete a manifest and every tag pointing at it; `false` if absent.
    fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError>;
    fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StoreError>;
    /// Delete a tag (not the manifest); `false` if absent.
    fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError>;
    /// Tags in lexical order, strictly after `after`, at most `limit`.
    fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Manifests in `repo` whose subject is `subject`.
    fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, StoreError>;

    /// Whether anything was ever pushed to the repository.
    fn repo_exists(&self, repo: &RepoName) -> Result<bool, StoreError>;
    /// Repository names in lexical order, strictly after `after`, at most `limit`.
    fn list_repos(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Every manifest digest and every blob a manifest references, across repositories:
    /// the live set of garbage collection.
    fn referenced_blobs(&self) -> Result<BTreeSet<Digest>, StoreError>;

    fn put_upload(&self, record: &UploadRecord) -> Result<(), StoreError>;
    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError>;
    fn delete_upload(&self, id: &str) -> Result<bool, StoreError>;
    /// Ends upload session `id` (if it is still there) and links `digest`, the blob it
    /// became, to `repo`, in one transaction.
    fn finish_upload(&self, id: &str, repo: &RepoName, digest: &Digest) -> Result<(), StoreError>;
    fn list_uploads(&self) -> Result<Vec<UploadRecord>, StoreError>;

    /// Records a blob the node mirrored (it may be evicted).
    fn put_cached(&self, blob: &CachedBlob) -> Result<(), StoreError>;
    /// `digest` is no longer evictable (evicted, or now the node's own); whether it was.
    fn remove_cached(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// Every blob the node may evict.
    fn list_cached(&self) -> Result<Vec<CachedBlob>, StoreError>;
}
