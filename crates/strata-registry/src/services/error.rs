use strata_oci::{Digest, ManifestError};
use strata_store::StoreError;

/// Why a registry operation failed, in the registry's terms (the HTTP layer maps these to
/// the spec's codes).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("provided digest did not match uploaded content: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(ManifestError),
    #[error("manifest references {0}, which is unknown to this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest gives {digest} a size of {declared} bytes; the stored content has {stored}")]
    DescriptorSize {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
    #[error("upload chunk starts at {got}, expected {expected}")]
    ChunkOutOfOrder { expected: u64, got: u64 },
    #[error("storage is full")]
    StorageFull,
    #[error("request body ended early: {0}")]
    BodyInterrupted(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Denied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BlobNotFound(_) => ServiceError::BlobUnknown,
            StoreError::UploadNotFound(_) => ServiceError::UploadUnknown,
            StoreError::DigestMismatch { expected, actual } => {
                ServiceError::DigestMismatch { expected, actual }
            }
            StoreError::StorageFull => ServiceError::StorageFull,
            StoreError::BodyInterrupted(e) => ServiceError::BodyInterrupted(e.to_string()),
            StoreError::Unsupported(m) => ServiceError::Unsupported(m),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<ManifestError> for ServiceError {
    fn from(e: ManifestError) -> Self {
        ServiceError::ManifestInvalid(e)
    }
}
