//! Garbage collection: remove blobs no manifest references, abandoned uploads, and the
//! stored files of file-level layers that no remaining layer uses.
//!
//! Safe while pushes run: collection holds the reachability lock exclusively while it reads
//! the live set and deletes, so no manifest push or blob commit interleaves with it; and a
//! blob younger than the grace period (written, mounted, checked by HEAD or referenced by a
//! push within it) is never removed, which protects the blobs of a push whose manifest has
//! not arrived yet.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Registry, ServiceError};

/// How conservative a collection is.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Unreferenced blobs younger than this are kept.
    pub grace: Duration,
    /// Uploads idle for longer than this are abandoned.
    pub upload_ttl: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: u64,
    pub uploads_removed: u64,
    /// Stored files (of file-level layers) no remaining layer uses.
    #[serde(default)]
    pub files_removed: u64,
    /// Their size on disk.
    #[serde(default)]
    pub file_bytes_freed: u64,
}

/// The shortest grace period and upload lifetime an operator may ask for without `force`:
/// a blob pushed a moment ago whose manifest is still on its way, or an upload whose client
/// pauses between chunks, must not be collected.
pub const MIN_GRACE: Duration = Duration::from_secs(600);

impl GcOptions {
    /// Options an operator asked for: a grace period or upload lifetime under
    /// [`MIN_GRACE`] is refused unless `force`, since it would collect pushes in flight.
    pub fn requested(
        grace: Duration,
        upload_ttl: Duration,
        force: bool,
    ) -> Result<Self, ServiceError> {
        let short = |what: &str, d: Duration| {
            ServiceError::Unsupported(format!(
                "a {what} of {}s could remove pushes in progress; the minimum is {}s (force to override)",
                d.as_secs(),
                MIN_GRACE.as_secs()
            ))
        };
        if !force && grace < MIN_GRACE {
            return Err(short("grace period", grace));
        }
        if !force && upload_ttl < MIN_GRACE {
            return Err(short("upload lifetime", upload_ttl));
        }
        Ok(GcOptions { grace, upload_ttl })
    }
}

/// Upload data without a record, or a record without data, is left alone this long: the
/// other half of a session being created may still be on its way.
const ORPHAN_AGE: Duration = Duration::from_secs(60);

fn older_than(t: SystemTime, age: Duration, now: SystemTime) -> bool {
    now.duration_since(t).map(|d| d > age).unwrap_or(false)
}

impl Registry {
    /// Run one garbage collection.
    pub async fn gc(&self, opts: GcOptions) -> Result<GcReport, ServiceError> {
        let _exclusive = self.reachability.write().await;
        let now = SystemTime::now();
        let mut report = GcReport::default();
        let live = self.meta.referenced_blobs()?;
        for blob in self.blobs.list().await? {
            if live.contains(&blob.digest) {
                continue;
            }
            if !older_than(blob.modified, opts.grace, now) {
                report.blobs_in_grace += 1;
                continue;
            }
            if self.blobs.delete(&blob.digest).await? {
                report.blobs_removed += 1;
                report.bytes_freed += blob.size;
            }
            let d = blob.digest.clone();
            self.meta_write(move |m| m.unlink_blob_everywhere(&d))
                .await?;
        }
        report.uploads_removed = self.collect_uploads(opts.upload_ttl, now).await?;
        let files = self.blobs.collect_files().await?;
        report.files_removed = files.files_removed;
        report.file_bytes_freed = files.bytes_freed;
        Ok(report)
    }

    /// Remove uploads idle for longer than `ttl`, and records or data left without their
    /// other half by a crash.
    async fn collect_uploads(&self, ttl: Duration, now: SystemTime) -> Result<u64, ServiceError> {
        let records = self.meta.list_uploads()?;
        let data = self.blobs.list_uploads().await?;
        let with_data: HashSet<&str> = data.iter().map(|u| u.id.as_str()).collect();
        let with_record: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let mut removed = 0;
        for u in &data {
            if older_than(u.modified, ttl, now)
                || !with_record.contains(u.id.as_str()) && older_than(u.modified, ORPHAN_AGE, now)
            {
                self.discard_upload(&u.id).await;
                removed += 1;
            }
        }
        let now_unix = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for r in &records {
            let orphan = !with_data.contains(r.id.as_str());
            if orphan && now_unix.saturating_sub(r.started_unix) > ORPHAN_AGE.as_secs() {
                self.discard_upload(&r.id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
