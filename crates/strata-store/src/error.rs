use std::io;

use strata_oci::Digest;

/// Errors of the storage backends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    #[error("upload {0} not found")]
    UploadNotFound(String),
    #[error("content digest {actual} does not match expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("storage is full")]
    StorageFull,
    #[error("upload body ended early: {0}")]
    BodyInterrupted(io::Error),
    #[error("i/o error: {0}")]
    Io(io::Error),
    #[error("metadata database is in use by another process")]
    Locked,
    #[error("metadata database error: {0}")]
    Database(String),
    #[error("corrupt metadata record: {0}")]
    Corrupt(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// ENOSPC and EDQUOT: the disk or the quota is full.
const STORAGE_FULL_ERRNOS: [i32; 2] = [28, 122];

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        let full = e.kind() == io::ErrorKind::StorageFull
            || e.kind() == io::ErrorKind::QuotaExceeded
            || e.raw_os_error()
                .is_some_and(|c| STORAGE_FULL_ERRNOS.contains(&c));
        if full {
            StoreError::StorageFull
        } else {
            StoreError::Io(e)
        }
    }
}

/// redb's errors: a failed write of the file keeps its cause (a full disk is
/// [`StoreError::StorageFull`]); a database refusing work after an earlier failed write is an
/// i/o error, so that the store reopens it.
fn from_redb(e: redb::Error) -> StoreError {
    match e {
        redb::Error::Io(e) => e.into(),
        redb::Error::PreviousIo => StoreError::Io(io::Error::other(
            "an earlier write of the metadata database failed",
        )),
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
        other => StoreError::Database(other.to_string()),
    }
}

macro_rules! db_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                from_redb(e.into())
            }
        }
    )*};
}

db_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
