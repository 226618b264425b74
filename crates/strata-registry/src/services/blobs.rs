//! Blob reads, deletes and cross-repository mounts.

use strata_oci::{Digest, RepoName};
use strata_store::{BlobInfo, ByteStream, Conversion, Granularity, LayerStats};

use super::{Registry, ServiceError};

impl Registry {
    /// How the node's store holds layers (file level, kept whole, reconstructions).
    pub async fn layer_stats(&self) -> Result<LayerStats, ServiceError> {
        Ok(self.blobs.layer_stats().await?)
    }

    /// Moves a stored layer to `to` (`strata store convert`); readable throughout. Holds
    /// the reachability lock shared, like a push, so collection cannot interleave.
    pub async fn store_as(
        &self,
        digest: &Digest,
        to: Granularity,
    ) -> Result<Conversion, ServiceError> {
        let _live = self.reachability.read().await;
        Ok(self.blobs.store_as(digest, to).await?)
    }

    /// A blob of `repo`, if it is linked there and stored.
    pub async fn blob_stat(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobInfo, ServiceError> {
        self.mirror_blob(repo, digest).await?;
        if !self.meta.blob_linked(repo, digest)? {
            return Err(ServiceError::BlobUnknown);
        }
        self.blobs
            .stat(digest)
            .await?
            .ok_or(ServiceError::BlobUnknown)
    }

    /// Like [`Registry::blob_stat`], and marks the blob as used: a client that checks for a
    /// blob before pushing a manifest that references it must not lose it to garbage
    /// collection in between.
    pub async fn blob_check_for_push(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobInfo, ServiceError> {
        let info = self.blob_stat(repo, digest).await?;
        self.blobs.touch(digest).await?;
        Ok(info)
    }

    /// Stream bytes `start..end` of a blob of `repo`.
    pub async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, ServiceError> {
        self.mirror_blob(repo, digest).await?;
        if !self.meta.blob_linked(repo, digest)? {
            return Err(ServiceError::BlobUnknown);
        }
        Ok(self.blobs.read(digest, start, end).await?)
    }

    /// Remove a blob from a repository. Its bytes go at the next garbage collection if no
    /// manifest references them.
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<(), ServiceError> {
        let (r, d) = (repo.clone(), digest.clone());
        if self.meta_write(move |m| m.unlink_blob(&r, &d)).await? {
            Ok(())
        } else {
            Err(ServiceError::BlobUnknown)
        }
    }

    /// Mount a blob of repository `from` (or, without `from`, any stored blob) into `repo`;
    /// `false` if there is no such blob to mount.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<bool, ServiceError> {
        self.check_writable(repo)?;
        let _live = self.reachability.read().await;
        let linked = match from {
            Some(from) => self.meta.blob_linked(from, digest)?,
            None => true,
        };
        if !linked || self.blobs.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.blobs.touch(digest).await?;
        let (r, d) = (repo.clone(), digest.clone());
        self.meta_write(move |m| m.link_blob(&r, &d)).await?;
        Ok(true)
    }
}
