//! Read-only blob sources: where a node can read a blob it may not hold itself.
//!
//! The local store, an upstream registry and the peers of a site all answer the same two
//! questions, so the code that fills a missing blob (and the simulator) treats them alike.
//! Uploads, granularity and garbage collection stay on [`BlobStore`]; a source only reads.
//! Every implementation runs the shared suite `testsuite::blob_source`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use strata_oci::{Digest, RepoName};

use crate::blob::{BlobStore, ByteStream};
use crate::StoreError;

/// A place blobs can be read from.
#[async_trait]
pub trait BlobSource: Send + Sync + Debug {
    /// The size of blob `digest` of repository `repo`, if this source has it. A source that
    /// is content-addressed alone (the local store) ignores `repo`; an upstream registry
    /// needs it.
    async fn stat(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StoreError>;

    /// Bytes `start..end` of the blob (`end` at most its size); `BlobNotFound` if absent.
    async fn read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, StoreError>;
}

/// A node's own blob store, as a source.
#[derive(Debug, Clone)]
pub struct StoreSource(pub Arc<dyn BlobStore>);

#[async_trait]
impl BlobSource for StoreSource {
    async fn stat(&self, _repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.0.stat(digest).await?.map(|i| i.size))
    }

    async fn read(
        &self,
        _repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, StoreError> {
        let size = self
            .0
            .stat(digest)
            .await?
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?
            .size;
        if start > end || end > size {
            return Err(StoreError::Unsupported(format!(
                "range {start}..{end} of a blob of {size} bytes"
            )));
        }
        self.0.read(digest, start, end).await
    }
}
