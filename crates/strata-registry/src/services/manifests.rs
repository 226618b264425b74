//! Manifest push, fetch and delete; tag listing, catalog and referrers.

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::manifest::{self, Descriptor};
use strata_oci::{Digest, Reference, RepoName, Tag};
use strata_store::ManifestRecord;

use super::{Registry, ServiceError};

/// A fetched manifest: its record and exact bytes.
#[derive(Debug, Clone)]
pub struct ManifestContent {
    pub record: ManifestRecord,
    pub bytes: Bytes,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// The tags now pointing at it.
    pub tags: Vec<Tag>,
}

impl Registry {
    /// The digest a reference points at in `repo`.
    pub fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest, ServiceError> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => self
                .meta
                .resolve_tag(repo, t)?
                .ok_or(ServiceError::ManifestUnknown),
        }
    }

    /// The record of a manifest, without its bytes (for HEAD). A mirroring node fetches it
    /// from its upstream first if it must.
    pub async fn manifest_record(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord, ServiceError> {
        self.mirror_manifest(repo, reference).await?;
        let digest = self.resolve(repo, reference)?;
        self.meta
            .get_manifest(repo, &digest)?
            .ok_or(ServiceError::ManifestUnknown)
    }

    /// A manifest with its exact pushed bytes.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestContent, ServiceError> {
        self.mirror_manifest(repo, reference).await?;
        self.manifest_local(repo, reference).await
    }

    /// A manifest this node holds, never fetched from an upstream (what the peers of a site
    /// ask for when their upstream cannot be reached).
    pub async fn manifest_local(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestContent, ServiceError> {
        let digest = self.resolve(repo, reference)?;
        let record = self
            .meta
            .get_manifest(repo, &digest)?
            .ok_or(ServiceError::ManifestUnknown)?;
        let mut chunks = self
            .blobs
            .read(&record.digest, 0, record.size)
            .await
            .map_err(|_| ServiceError::ManifestUnknown)?;
        let mut buf = Vec::with_capacity(record.size as usize);
        while let Some(chunk) = chunks.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| ServiceError::Internal(e.to_string()))?);
        }
        Ok(ManifestContent {
            record,
            bytes: Bytes::from(buf),
        })
    }

    /// Validate and store a manifest; point the tag reference (if it is one) and every one
    /// of `extra_tags` at it, all in one transaction.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PushedManifest, ServiceError> {
        self.check_writable(repo)?;
        let parsed = manifest::parse(&bytes, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(ServiceError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256(&bytes),
        };
        let mut tags = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        let sizes = (parsed.blob_sizes.clone(), parsed.manifest_sizes.clone());
        let record = ManifestRecord::new(digest.clone(), bytes.len() as u64, parsed);
        let _live = self.reachability.read().await;
        self.check_references(repo, &record, &sizes.0, &sizes.1)
            .await?;
        // What a pushed manifest references is the node's own: never evicted.
        self.pin(record.blobs.clone()).await?;
        self.blobs.put(&digest, bytes).await?;
        let subject = record.subject.clone();
        let r = repo.clone();
        let applied = tags.clone();
        self.meta_write(move |m| m.put_manifest(&r, &record, &tags))
            .await?;
        Ok(PushedManifest {
            digest,
            subject,
            tags: applied,
        })
    }

    /// Every blob and child manifest must already be in `repo`, with the size the manifest
    /// gives it (a client would fail on a wrong one later); each referenced blob is marked as
    /// used so garbage collection spares it.
    async fn check_references(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        blob_sizes: &[u64],
        manifest_sizes: &[u64],
    ) -> Result<(), ServiceError> {
        let wrong_size = |d: &Digest, declared: u64, stored: u64| ServiceError::DescriptorSize {
            digest: d.clone(),
            declared,
            stored,
        };
        for (d, &declared) in record.blobs.iter().zip(blob_sizes) {
            if !self.meta.blob_linked(repo, d)? {
                return Err(ServiceError::ManifestBlobUnknown(d.clone()));
            }
            let Some(info) = self.blobs.stat(d).await? else {
                return Err(ServiceError::ManifestBlobUnknown(d.clone()));
            };
            if info.size != declared {
                return Err(wrong_size(d, declared, info.size));
            }
            self.blobs.touch(d).await?;
        }
        for (d, &declared) in record.manifests.iter().zip(manifest_sizes) {
            let Some(child) = self.meta.get_manifest(repo, d)? else {
                return Err(ServiceError::ManifestBlobUnknown(d.clone()));
            };
            if child.size != declared {
                return Err(wrong_size(d, declared, child.size));
            }
        }
        Ok(())
    }

    /// Delete a manifest by digest (with its tags), or only a tag.
    pub async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), ServiceError> {
        let r = repo.clone();
        let deleted = match reference.clone() {
            Reference::Digest(d) => self.meta_write(move |m| m.delete_manifest(&r, &d)).await?,
            Reference::Tag(t) => self.meta_write(move |m| m.delete_tag(&r, &t)).await?,
        };
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::ManifestUnknown)
        }
    }

    /// Tags of `repo` after `last`, at most `limit`, plus whether more follow.
    pub fn tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), ServiceError> {
        if !self.meta.repo_exists(repo)? {
            return Err(ServiceError::NameUnknown);
        }
        let mut tags = self.meta.list_tags(repo, last, limit.saturating_add(1))?;
        let more = tags.len() > limit;
        tags.truncate(limit);
        Ok((tags, more))
    }

    /// Repository names after `last`, at most `limit`, plus whether more follow.
    /// Up to `limit` repositories after `last` that the caller may see (`visible`), and
    /// whether there are more.
    pub fn catalog(
        &self,
        last: Option<&str>,
        limit: usize,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<String>, bool), ServiceError> {
        let mut repos = Vec::new();
        let mut cursor = last.map(str::to_string);
        let batch = limit.saturating_add(1).clamp(1, 10_000);
        loop {
            let page = self.meta.list_repos(cursor.as_deref(), batch)?;
            let exhausted = page.len() < batch;
            cursor = page.last().cloned();
            repos.extend(page.into_iter().filter(|r| visible(r)));
            if repos.len() > limit || exhausted {
                break;
            }
        }
        let more = repos.len() > limit;
        repos.truncate(limit);
        Ok((repos, more))
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, optionally only
    /// those of one artifact type.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, ServiceError> {
        let records = self.meta.referrers(repo, subject)?;
        Ok(records
            .into_iter()
            .filter(|r| artifact_type.is_none() || r.artifact_type.as_deref() == artifact_type)
            .map(|r| Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size as i64,
                artifact_type: r.artifact_type,
                annotations: r.annotations,
            })
            .collect())
    }
}
