//! Durable metadata store on redb (one file, ACID transactions, crash safe).
//!
//! Keys join their parts with NUL, which sorts before every character a repository name,
//! tag or digest may contain, so the keys of one repository form one contiguous range.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_oci::{Digest, RepoName, Tag};

use crate::meta::{CachedBlob, ManifestRecord, MetaStore, UploadRecord};
use crate::{FreeSpace, StoreError};

/// repository name -> ()
const REPOS: TableDefinition<&str, ()> = TableDefinition::new("repos");
/// repo \0 digest -> ()
const BLOB_LINKS: TableDefinition<&str, ()> = TableDefinition::new("blob_links");
/// repo \0 digest -> ManifestRecord (json)
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
/// repo \0 tag -> digest
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// repo \0 subject \0 referrer digest -> ()
const REFERRERS: TableDefinition<&str, ()> = TableDefinition::new("referrers");
/// upload id -> UploadRecord (json)
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// digest -> CachedBlob (json): mirrored blobs, evictable
const CACHED: TableDefinition<&str, &[u8]> = TableDefinition::new("cached");

/// Metadata in a redb database file.
///
/// redb refuses every operation after a write of its file failed (a full disk, say) until
/// the database is reopened. So a failed write drops the handle and the next operation
/// reopens the file (redb repairs it if needed), and every commit first checks the
/// filesystem's free-space reserve ([`FreeSpace`]) so that a full disk is a clean refusal.
#[derive(Debug)]
pub struct RedbMetaStore {
    path: PathBuf,
    /// `None` once the handle failed and until it is reopened.
    db: RwLock<Option<Arc<Database>>>,
    space: FreeSpace,
}

fn key(parts: &[&str]) -> String {
    parts.join("\0")
}

/// The half-open key range of every key that starts with `prefix` followed by NUL.
fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}\0"), format!("{prefix}\u{1}"))
}

/// Links `digest` to `repo` (creating the repository) within `tx`.
fn link_in(
    tx: &redb::WriteTransaction,
    repo: &RepoName,
    digest: &Digest,
) -> Result<(), StoreError> {
    tx.open_table(REPOS)?.insert(repo.as_str(), ())?;
    let k = key(&[repo.as_str(), &digest.to_string()]);
    tx.open_table(BLOB_LINKS)?.insert(k.as_str(), ())?;
    Ok(())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_digest(s: &str) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|e: strata_oci::DigestError| StoreError::Corrupt(e.to_string()))
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path)?;
    let tx = db.begin_write()?;
    tx.open_table(REPOS)?;
    tx.open_table(BLOB_LINKS)?;
    tx.open_table(MANIFESTS)?;
    tx.open_table(TAGS)?;
    tx.open_table(REFERRERS)?;
    tx.open_table(UPLOADS)?;
    tx.open_table(CACHED)?;
    tx.commit()?;
    Ok(db)
}

impl RedbMetaStore {
    /// Open (creating if needed) the database at `path`, with the default free-space
    /// reserve of its filesystem.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::open_with_space(path, FreeSpace::for_dir(dir)?)
    }

    /// Open the database at `path`, committing only while `space` allows.
    pub fn open_with_space(path: &Path, space: FreeSpace) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        Ok(RedbMetaStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            space,
        })
    }

    /// The open database, reopened if a failed write dropped it.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let open = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(db) = open {
            return Ok(db);
        }
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(open_db(&self.path)?);
        tracing::info!(path = %self.path.display(), "metadata database reopened after a failed write");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// After `result` of an operation on `db`: an i/o failure leaves redb refusing all
    /// further work, so the handle is dropped (it closes once the last transaction on it
    /// ends) and the next operation reopens the file.
    fn after<T>(&self, db: &Arc<Database>, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(result, Err(StoreError::Io(_) | StoreError::StorageFull)) {
            let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
            if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, db)) {
                tracing::warn!(path = %self.path.display(), "metadata database write failed; reopening it");
                *slot = None;
            }
        }
        result
    }

    /// Run `f` in a write transaction and commit it, if the free-space reserve allows.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.space.check_metadata()?;
        self.commit(f)
    }

    /// Like [`Self::write`] for a transaction that only removes, which a full disk must
    /// not refuse: it is how space is freed (a failure still reopens the database).
    fn remove<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.commit(f)
    }

    fn commit<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        let result = (|| {
            let tx = db.begin_write()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        self.after(&db, result)
    }

    /// A read transaction on the open database.
    fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        let db = self.db()?;
        let tx = db.begin_read().map_err(StoreError::from);
        self.after(&db, tx)
    }

    fn exists(&self, table: TableDefinition<&str, ()>, k: &str) -> Result<bool, StoreError> {
        let tx = self.read()?;
        Ok(tx.open_table(table)?.get(k)?.is_some())
    }
}

/// Keys (with `prefix\0` stripped) strictly after `after`, at most `limit`.
fn page_keys<V: redb::Value + 'static>(
    table: &impl ReadableTable<&'static str, V>,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let (start, end) = match prefix {
        Some(p) => prefix_range(p),
        None => (String::new(), String::from("\u{10ffff}")),
    };
    let strip = prefix.map_or(0, |p| p.len() + 1);
    let lower = match after {
        Some(a) => Bound::Excluded(format!("{}{a}", &start)),
        None => Bound::Included(start),
    };
    let mut out = Vec::new();
    for entry in table.range::<&str>((
        lower.as_ref().map(String::as_str),
        Bound::Excluded(end.as_str()),
    ))? {
        if out.len() >= limit {
            break;
        }
        let (k, _) = entry?;
        out.push(k.value()[strip..].to_string());
    }
    Ok(out)
}

impl MetaStore for RedbMetaStore {
    fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        self.write(|tx| link_in(tx, repo, digest))
    }

    fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        let k = key(&[repo.as_str(), &digest.to_string()]);
        self.remove(|tx| Ok(tx.open_table(BLOB_LINKS)?.remove(k.as_str())?.is_some()))
    }

    fn blob_linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        self.exists(BLOB_LINKS, &key(&[repo.as_str(), &digest.to_string()]))
    }

    fn unlink_blob_everywhere(&self, digest: &Digest) -> Result<(), StoreError> {
        let suffix = format!("\0{digest}");
        self.remove(|tx| {
            let mut t = tx.open_table(BLOB_LINKS)?;
            t.retain(|k, _| !k.ends_with(&suffix))?;
            Ok(())
        })
    }

    fn put_manifest(
        &self,
        repo: &RepoName,
        record: &ManifestRecord,
        tags: &[Tag],
    ) -> Result<(), StoreError> {
        let digest = record.digest.to_string();
        let value = encode(record)?;
        self.write(|tx| {
            tx.open_table(REPOS)?.insert(repo.as_str(), ())?;
            let k = key(&[repo.as_str(), &digest]);
            tx.open_table(MANIFESTS)?
                .insert(k.as_str(), value.as_slice())?;
            let mut tag_table = tx.open_table(TAGS)?;
            for t in tags {
                let tk = key(&[repo.as_str(), t.as_str()]);
                tag_table.insert(tk.as_str(), digest.as_str())?;
            }
            drop(tag_table);
            if let Some(subject) = &record.subject {
                let rk = key(&[repo.as_str(), &subject.to_string(), &digest]);
                tx.open_table(REFERRERS)?.insert(rk.as_str(), ())?;
            }
            Ok(())
        })
    }

    fn get_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(MANIFESTS)?;
        let k = key(&[repo.as_str(), &digest.to_string()]);
        t.get(k.as_str())?.map(|v| decode(v.value())).transpose()
    }

    fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StoreError> {
        let d = digest.to_string();
        self.remove(|tx| {
            let k = key(&[repo.as_str(), &d]);
            let mut manifests = tx.open_table(MANIFESTS)?;
            let record: ManifestRecord = match manifests.remove(k.as_str())? {
                Some(old) => decode(old.value())?,
                None => return Ok(false),
            };
            let (start, end) = prefix_range(repo.as_str());
            let mut tags = tx.open_table(TAGS)?;
            let stale: Vec<String> = tags
                .range::<&str>(start.as_str()..end.as_str())?
                .filter_map(|e| e.ok())
                .filter(|(_, v)| v.value() == d)
                .map(|(k, _)| k.value().to_string())
                .collect();
            for k in stale {
                tags.remove(k.as_str())?;
            }
            if let Some(subject) = record.subject {
                let rk = key(&[repo.as_str(), &subject.to_string(), &d]);
                tx.open_table(REFERRERS)?.remove(rk.as_str())?;
            }
            Ok(true)
        })
    }

    fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(TAGS)?;
        let k = key(&[repo.as_str(), tag.as_str()]);
        t.get(k.as_str())?
            .map(|v| parse_digest(v.value()))
            .transpose()
    }

    fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StoreError> {
        let k = key(&[repo.as_str(), tag.as_str()]);
        self.remove(|tx| Ok(tx.open_table(TAGS)?.remove(k.as_str())?.is_some()))
    }

    fn list_tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        page_keys(&tx.open_table(TAGS)?, Some(repo.as_str()), after, limit)
    }

    fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        let tx = self.read()?;
        let refs = tx.open_table(REFERRERS)?;
        let manifests = tx.open_table(MANIFESTS)?;
        let prefix = key(&[repo.as_str(), &subject.to_string()]);
        let mut out = Vec::new();
        for d in page_keys(&refs, Some(&prefix), None, usize::MAX)? {
            let k = key(&[repo.as_str(), &d]);
            if let Some(v) = manifests.get(k.as_str())? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    fn repo_exists(&self, repo: &RepoName) -> Result<bool, StoreError> {
        self.exists(REPOS, repo.as_str())
    }

    fn list_repos(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let tx = self.read()?;
        page_keys(&tx.open_table(REPOS)?, None, after, limit)
    }

    fn referenced_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let tx = self.read()?;
        let mut live = BTreeSet::new();
        for entry in tx.open_table(MANIFESTS)?.iter()? {
            let (_, v) = entry?;
            let m: ManifestRecord = decode(v.value())?;
            live.insert(m.digest);
            live.extend(m.blobs);
        }
        Ok(live)
    }

    fn put_upload(&self, record: &UploadRecord) -> Result<(), StoreError> {
        let value = encode(record)?;
        self.write(|tx| {
            tx.open_table(UPLOADS)?
                .insert(record.id.as_str(), value.as_slice())?;
            Ok(())
        })
    }

    fn get_upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(UPLOADS)?;
        t.get(id)?.map(|v| decode(v.value())).transpose()
    }

    fn delete_upload(&self, id: &str) -> Result<bool, StoreError> {
        self.remove(|tx| Ok(tx.open_table(UPLOADS)?.remove(id)?.is_some()))
    }

    fn finish_upload(&self, id: &str, repo: &RepoName, digest: &Digest) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(UPLOADS)?.remove(id)?;
            link_in(tx, repo, digest)
        })
    }

    fn list_uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        let tx = self.read()?;
        let mut out = Vec::new();
        for entry in tx.open_table(UPLOADS)?.iter()? {
            out.push(decode(entry?.1.value())?);
        }
        Ok(out)
    }

    fn put_cached(&self, blob: &CachedBlob) -> Result<(), StoreError> {
        let value = encode(blob)?;
        let k = blob.digest.to_string();
        self.write(|tx| {
            tx.open_table(CACHED)?
                .insert(k.as_str(), value.as_slice())?;
            Ok(())
        })
    }

    fn remove_cached(&self, digest: &Digest) -> Result<bool, StoreError> {
        let k = digest.to_string();
        self.remove(|tx| Ok(tx.open_table(CACHED)?.remove(k.as_str())?.is_some()))
    }

    fn list_cached(&self) -> Result<Vec<CachedBlob>, StoreError> {
        let tx = self.read()?;
        let mut out = Vec::new();
        for entry in tx.open_table(CACHED)?.iter()? {
            out.push(decode(entry?.1.value())?);
        }
        Ok(out)
    }
}
