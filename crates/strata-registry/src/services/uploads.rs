//! Upload sessions: start, append (in order), status, finish (verified), cancel.

use std::time::{SystemTime, UNIX_EPOCH};

use strata_oci::{Digest, RepoName};
use strata_store::{ByteStream, StoreError, UploadRecord};

use super::{Registry, ServiceError};

impl Registry {
    /// Open an upload session in `repo` for a client; returns its id.
    pub async fn upload_start(&self, repo: &RepoName) -> Result<String, ServiceError> {
        self.check_writable(repo)?;
        self.upload_open(repo).await
    }

    /// Open an upload session in `repo` (a client's, or the mirror's own); returns its id.
    pub(super) async fn upload_open(&self, repo: &RepoName) -> Result<String, ServiceError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.upload_start(&id).await?;
        let record = UploadRecord {
            id: id.clone(),
            repo: repo.clone(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.meta_write(move |m| m.put_upload(&record)).await?;
        Ok(id)
    }

    /// The session `id` must exist and belong to `repo`.
    fn check_session(&self, repo: &RepoName, id: &str) -> Result<(), ServiceError> {
        match self.meta.get_upload(id)? {
            Some(r) if &r.repo == repo => Ok(()),
            _ => Err(ServiceError::UploadUnknown),
        }
    }

    /// Bytes received so far by session `id`.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64, ServiceError> {
        self.check_session(repo, id)?;
        self.blobs
            .upload_size(id)
            .await?
            .ok_or(ServiceError::UploadUnknown)
    }

    /// Append a chunk. With `start`, the chunk must begin exactly where the upload ends.
    pub async fn upload_append(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, ServiceError> {
        let size = self.upload_status(repo, id).await?;
        if let Some(got) = start {
            if got != size {
                return Err(ServiceError::ChunkOutOfOrder {
                    expected: size,
                    got,
                });
            }
        }
        match self.blobs.upload_append(id, body).await {
            Err(StoreError::StorageFull) => {
                // A full disk ends the upload and frees what it held: the client starts over.
                self.discard_upload(id).await;
                Err(StoreError::StorageFull.into())
            }
            other => Ok(other?),
        }
    }

    /// Append an optional last chunk (in order, as [`Self::upload_append`]), verify the whole
    /// upload against `digest` and make it a blob of `repo`. On a digest mismatch nothing is
    /// stored and the session ends; an out-of-order last chunk keeps the session. A full disk
    /// ends the session and removes its data (as in [`Self::upload_append`]).
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<u64, ServiceError> {
        self.check_session(repo, id)?;
        if let Some((start, body)) = last_chunk {
            self.upload_append(repo, id, start, body).await?;
        }
        let _live = self.reachability.read().await;
        let committed = self.blobs.upload_commit(id, digest).await;
        // The session ends when the data became a blob (linked in the same transaction) or
        // was discarded as a mismatch; any other failure keeps it, so the client can retry.
        match &committed {
            Err(StoreError::DigestMismatch { .. } | StoreError::UploadNotFound(_)) => {
                let id_owned = id.to_string();
                self.meta_write(move |m| m.delete_upload(&id_owned)).await?;
            }
            Err(StoreError::StorageFull) => self.discard_upload(id).await,
            _ => {}
        }
        let size = committed?;
        let (id, r, d) = (id.to_string(), repo.clone(), digest.clone());
        self.meta_write(move |m| m.finish_upload(&id, &r, &d))
            .await?;
        // Pushed: the node's own, even if it was mirrored (the mirror marks what it stores
        // as cached after this).
        self.pin(vec![digest.clone()]).await?;
        Ok(size)
    }

    /// Push a whole blob in one request.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64, ServiceError> {
        let id = self.upload_start(repo).await?;
        let result = self
            .upload_finish(repo, &id, digest, Some((None, body)))
            .await;
        if result.is_err() {
            self.discard_upload(&id).await;
        }
        result
    }

    /// Cancel session `id`.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<(), ServiceError> {
        self.check_session(repo, id)?;
        self.discard_upload(id).await;
        Ok(())
    }

    /// Best-effort removal of an upload's data and record.
    pub(super) async fn discard_upload(&self, id: &str) {
        if let Err(e) = self.blobs.upload_abort(id).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload data");
        }
        let id_owned = id.to_string();
        if let Err(e) = self.meta_write(move |m| m.delete_upload(&id_owned)).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload record");
        }
    }
}
