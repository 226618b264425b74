//! Rendering of failures as the spec's JSON error envelope with the right status.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_oci::{ErrorCode, ErrorEnvelope, ManifestError, NameError, RouteError};

use crate::services::ServiceError;

/// An API failure: status, envelope, and an optional extra header.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub envelope: ErrorEnvelope,
    pub header: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.default_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            envelope: ErrorEnvelope::new(code, message),
            header: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.envelope.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.header = Some((name, value));
        self
    }

    pub fn unsupported() -> Self {
        ApiError::new(ErrorCode::Unsupported, "the operation is unsupported")
    }

    /// 416 for a blob range that cannot be served from a blob of `size` bytes.
    pub fn range_not_satisfiable(size: u64) -> Self {
        ApiError::new(
            ErrorCode::Unsupported,
            format!("requested range not satisfiable: the blob has {size} bytes"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header("content-range", format!("bytes */{size}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.envelope.to_json()).into_response();
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some((name, value)) = self.header {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::BlobUnknown => ApiError::new(ErrorCode::BlobUnknown, msg),
            ServiceError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown, msg),
            ServiceError::ManifestUnknown => ApiError::new(ErrorCode::ManifestUnknown, msg),
            ServiceError::NameUnknown => ApiError::new(ErrorCode::NameUnknown, msg),
            ServiceError::DigestMismatch { .. } | ServiceError::DigestInvalid(_) => {
                ApiError::new(ErrorCode::DigestInvalid, msg)
            }
            ServiceError::ManifestInvalid(ManifestError::TooLarge) => {
                ApiError::new(ErrorCode::ManifestInvalid, msg)
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            ServiceError::ManifestInvalid(_) => ApiError::new(ErrorCode::ManifestInvalid, msg),
            ServiceError::ManifestBlobUnknown(d) => {
                ApiError::new(ErrorCode::ManifestBlobUnknown, msg)
                    .with_detail(serde_json::json!({ "digest": d.to_string() }))
            }
            ServiceError::DescriptorSize { .. } => ApiError::new(ErrorCode::ManifestInvalid, msg),
            ServiceError::ChunkOutOfOrder { expected, .. } => {
                ApiError::new(ErrorCode::BlobUploadInvalid, msg)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header("range", upload_range(expected))
            }
            ServiceError::StorageFull => ApiError::new(
                ErrorCode::Unknown,
                "insufficient storage: the node's disk is full",
            )
            .with_status(StatusCode::INSUFFICIENT_STORAGE),
            ServiceError::BodyInterrupted(_) => ApiError::new(ErrorCode::BlobUploadInvalid, msg),
            ServiceError::Unsupported(_) => ApiError::new(ErrorCode::Unsupported, msg),
            ServiceError::Denied(_) => ApiError::new(ErrorCode::Denied, msg),
            ServiceError::Upstream(_) => {
                ApiError::new(ErrorCode::Unknown, msg).with_status(StatusCode::BAD_GATEWAY)
            }
            ServiceError::Internal(_) => {
                tracing::error!(error = %msg, "internal error");
                ApiError::new(ErrorCode::Unknown, msg)
            }
        }
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let msg = e.to_string();
        match e {
            RouteError::NotFound => {
                ApiError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::NOT_FOUND)
            }
            RouteError::Name(NameError::InvalidReference(_) | NameError::InvalidTag(_)) => {
                ApiError::new(ErrorCode::ManifestInvalid, msg)
            }
            RouteError::Name(_) => ApiError::new(ErrorCode::NameInvalid, msg),
            RouteError::Digest(_) => ApiError::new(ErrorCode::DigestInvalid, msg),
            RouteError::UploadId(_) => ApiError::new(ErrorCode::BlobUploadUnknown, msg),
        }
    }
}

/// The `Range` header value of an upload holding `size` bytes: `0-<last byte>`.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}
