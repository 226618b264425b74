//! Upload request bodies that can be drained after a failed upload.
//!
//! When an upload fails mid-body (full disk, digest mismatch), answering at once and closing
//! the connection makes most clients report a broken pipe instead of the error. So the
//! handler reads and discards the rest of the body first, within bounds, and the client
//! gets the error response.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use futures_util::StreamExt;
use strata_store::ByteStream;
use tokio::sync::Mutex;

use crate::metrics::Metrics;

/// Most bytes drained before giving up on a failed upload's body.
const DRAIN_BYTES: u64 = 1 << 30;
/// Longest time spent draining.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// What is left of a request body after the stream handed to the store stopped.
#[derive(Debug, Clone)]
pub struct BodyRest(Arc<Mutex<BodyDataStream>>);

/// The body as a stream of chunks (counted into the metrics), and a handle to drain it.
pub fn upload_body(body: Body, metrics: &Arc<Metrics>) -> (ByteStream, BodyRest) {
    let shared = Arc::new(Mutex::new(body.into_data_stream()));
    let m = metrics.clone();
    let stream = futures_util::stream::unfold(shared.clone(), move |s| {
        let m = m.clone();
        async move {
            let next = s.lock().await.next().await?;
            let item = next
                .map_err(io::Error::other)
                .inspect(|b| m.bytes_received(b.len()));
            Some((item, s))
        }
    });
    (Box::pin(stream), BodyRest(shared))
}

impl BodyRest {
    /// Read and discard the rest of the body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
    pub async fn drain(self) {
        let work = async {
            let mut stream = self.0.lock().await;
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, work).await;
    }
}
