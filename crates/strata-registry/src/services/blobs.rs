//! Blob reads, deletes and cross-repository mounts.

use strata_oci::{Digest, RepoName};
use strata_store::fill::Fill;
use strata_store::{BlobInfo, ByteStream, Conversion, Granularity, LayerStats};

use super::{Registry, ServiceError};

/// A blob opened for reading: stored, or arriving from the upstream.
#[derive(Debug)]
pub struct OpenBlob(Option<Fill>);

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
        if let Some(fill) = self.mirror_blob(repo, digest).await? {
            return Ok(Self::arriving_info(digest, &fill));
        }
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
        // A blob still arriving from the upstream is stored (and so fresh) once it is whole.
        if self.blobs.stat(digest).await?.is_some() {
            self.blobs.touch(digest).await?;
        }
        Ok(info)
    }

    /// A blob of `repo` to read, stored or still arriving from the upstream (one fetch
    /// joined, however many ranges are then read).
    pub async fn blob_open(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(BlobInfo, OpenBlob), ServiceError> {
        if let Some(fill) = self.mirror_blob(repo, digest).await? {
            return Ok((Self::arriving_info(digest, &fill), OpenBlob(Some(fill))));
        }
        if !self.meta.blob_linked(repo, digest)? {
            return Err(ServiceError::BlobUnknown);
        }
        let info = self
            .blobs
            .stat(digest)
            .await?
            .ok_or(ServiceError::BlobUnknown)?;
        self.note_pulled(digest);
        Ok((info, OpenBlob(None)))
    }

    /// Stream bytes `start..end` of a blob [`Registry::blob_open`] opened.
    pub async fn blob_read_open(
        &self,
        blob: OpenBlob,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, ServiceError> {
        match blob.0 {
            Some(fill) => Ok(fill.stream(start, end)),
            None => Ok(self.blobs.read(digest, start, end).await?),
        }
    }

    /// Stream bytes `start..end` of a blob of `repo`.
    pub async fn blob_read(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, ServiceError> {
        if let Some(fill) = self.mirror_blob(repo, digest).await? {
            return Ok(fill.stream(start, end));
        }
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
        self.pin(vec![digest.clone()]).await?;
        let (r, d) = (repo.clone(), digest.clone());
        self.meta_write(move |m| m.link_blob(&r, &d)).await?;
        Ok(true)
    }
}
