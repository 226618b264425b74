//! In-memory metadata store: the reference implementation for tests.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use strata_oci::{Digest, RepoName, Tag};

use crate::meta::{CachedBlob, ManifestRecord, MetaStore, UploadRecord};
use crate::StoreError;

#[derive(Debug, Default)]
struct Repo {
    blobs: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, ManifestRecord>,
    tags: BTreeMap<String, Digest>,
}

#[derive(Debug, Default)]
struct Inner {
    repos: BTreeMap<String, Repo>,
    uploads: BTreeMap<String, UploadRecord>,
    cached: BTreeMap<Digest, CachedBlob>,
}

impl Inner {
    /// Links `digest` to `repo`, creating the repository.
    fn link(&mut self, repo: &RepoName, digest: &Digest) {
        let r = self.repos.entry(repo.to_string()).or_default();
        r.blobs.insert(digest.clone());
    }
}

/// Metadata held in memory.
#[derive(Debug, Default)]
pub struct MemMetaStore {
    inner: Mutex<Inner>,
}

impl MemMetaStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_repo<T>(&self, repo: &RepoName, f: impl FnOnce(&Repo) -> T) -> Option<T> {
        self.lock().repos.get(repo.as_str()).map(f)
    }
}

/// Keys of `map` strictly after `after`, at most `limit`.
fn page<V>(map: &BTreeMap<String, V>, after: Option<&str>, limit: usize) -> Vec<String> {
    let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
    map.range((lower, Bound::Unbounded))
        .take(limit)
        .map(|(k, _)| k.clone())
        .collect()
}

impl MetaStore for MemMetaStore {
    fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        self.lock().link(repo, digest);
        Ok(())
    }

    fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        Ok(inner
            .repos
            .get_mut(repo.as_str())
            .is_some_and(|r| r.blobs.remove(digest)))
    }

    fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .with_repo(repo, |r| r.blobs.contains(digest))
            .unwrap_or(false))
    }

    fn unlink_blob_everywhere(&self, digest: &Digest) -> Result<(), StoreError> {
        for r in self.lock().repos.values_mut() {
            r.blobs.remove(digest);
        }
        Ok(())
    }

    fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let r = inner.repos.entry(repo.to_string()).or_default();
        r.manifests.insert(record.digest.clone(), record.clone());
        for t in tags {
            r.tags.insert(t.to_string(), record.digest.clone());
        }
        Ok(())
    }

    fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        Ok(self
            .with_repo(repo, |r| r.manifests.get(digest).cloned())
            .flatten())
    }

    fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.repos.get_mut(repo.as_str()) else {
            return Ok(false);
        };
        if r.manifests.remove(digest).is_none() {
            return Ok(false);
        }
        r.tags.retain(|_, d| d != digest);
        Ok(true)
    }

    fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        Ok(self
            .with_repo(repo, |r| r.tags.get(tag.as_str()).cloned())
            .flatten())
    }

    fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        Ok(inner
            .repos
            .get_mut(repo.as_str())
            .is_some_and(|r| r.tags.remove(tag.as_str()).is_some()))
    }

    fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .with_repo(repo, |r| page(&r.tags, after, limit))
            .unwrap_or_default())
    }

    fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        Ok(self
            .with_repo(repo, |r| {
                r.manifests
                    .values()
                    .filter(|m| m.subject.as_ref() == Some(subject))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn repo_exists(&self, repo: &RepoName) -> Result<bool, StoreError> {
        Ok(self.lock().repos.contains_key(repo.as_str()))
    }

    fn list_repos(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(page(&self.lock().repos, after, limit))
    }

    fn referenced_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let inner = self.lock();
        let mut live = BTreeSet::new();
        for m in inner.repos.values().flat_map(|r| r.manifests.values()) {
            live.insert(m.digest.clone());
            live.extend(m.blobs.iter().cloned());
        }
        Ok(live)
    }

    fn put_upload(&self, record: &UploadRecord) -> Result<(), StoreError> {
        self.lock()
            .uploads
            .insert(record.id.clone(), record.clone());
        Ok(())
    }

    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        Ok(self.lock().uploads.get(id).cloned())
    }

    fn delete_upload(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().uploads.remove(id).is_some())
    }

    fn finish_upload(&self, id: &str, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.uploads.remove(id);
        inner.link(repo, digest);
        Ok(())
    }

    fn list_uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(self.lock().uploads.values().cloned().collect())
    }

    fn put_cached(&self, blob: &CachedBlob) -> Result<(), StoreError> {
        self.lock().cached.insert(blob.digest.clone(), blob.clone());
        Ok(())
    }

    fn remove_cached(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.lock().cached.remove(digest).is_some())
    }

    fn list_cached(&self) -> Result<Vec<CachedBlob>, StoreError> {
        Ok(self.lock().cached.values().cloned().collect())
    }
}
