//! In-memory blob store: the reference implementation for tests.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::Digest;

use crate::blob::{BlobInfo, BlobStore, ByteStream, UploadInfo};
use crate::StoreError;

#[derive(Debug, Default)]
struct Inner {
    blobs: HashMap<Digest, (Bytes, SystemTime)>,
    uploads: HashMap<String, (Vec<u8>, SystemTime)>,
}

/// Blobs held in memory.
#[derive(Debug, Default)]
pub struct MemBlobStore {
    inner: Mutex<Inner>,
}

impl MemBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BlobStore for MemBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        Ok(self.lock().blobs.get(digest).map(|(b, t)| BlobInfo {
            digest: digest.clone(),
            size: b.len() as u64,
            modified: *t,
        }))
    }

    async fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<ByteStream, StoreError> {
        let data = self
            .lock()
            .blobs
            .get(digest)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        let end = (end as usize).min(data.len());
        let start = (start as usize).min(end);
        let chunk: io::Result<Bytes> = Ok(data.slice(start..end));
        Ok(Box::pin(futures_util::stream::once(async move { chunk })))
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let actual = Digest::of(digest.algorithm(), &data);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.lock()
            .blobs
            .insert(digest.clone(), (data, SystemTime::now()));
        Ok(())
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entry = inner
            .blobs
            .get_mut(digest)
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        entry.1 = SystemTime::now();
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.lock().blobs.remove(digest).is_some())
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        Ok(self
            .lock()
            .blobs
            .iter()
            .map(|(d, (b, t))| BlobInfo {
                digest: d.clone(),
                size: b.len() as u64,
                modified: *t,
            })
            .collect())
    }

    async fn upload_start(&self, id: &str) -> Result<(), StoreError> {
        self.lock()
            .uploads
            .insert(id.to_string(), (Vec::new(), SystemTime::now()));
        Ok(())
    }

    async fn upload_append(&self, id: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        if !self.lock().uploads.contains_key(id) {
            return Err(StoreError::UploadNotFound(id.to_string()));
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::BodyInterrupted)?;
            let mut inner = self.lock();
            let entry = inner
                .uploads
                .get_mut(id)
                .ok_or_else(|| StoreError::UploadNotFound(id.to_string()))?;
            entry.0.extend_from_slice(&chunk);
            entry.1 = SystemTime::now();
        }
        self.upload_size(id)
            .await?
            .ok_or_else(|| StoreError::UploadNotFound(id.to_string()))
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.lock().uploads.get(id).map(|(b, _)| b.len() as u64))
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let (data, _) = inner
            .uploads
            .remove(id)
            .ok_or_else(|| StoreError::UploadNotFound(id.to_string()))?;
        let actual = Digest::of(expected.algorithm(), &data);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = data.len() as u64;
        inner
            .blobs
            .insert(expected.clone(), (Bytes::from(data), SystemTime::now()));
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().uploads.remove(id).is_some())
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, StoreError> {
        Ok(self
            .lock()
            .uploads
            .iter()
            .map(|(id, (b, t))| UploadInfo {
                id: id.clone(),
                size: b.len() as u64,
                modified: *t,
            })
            .collect())
    }
}
