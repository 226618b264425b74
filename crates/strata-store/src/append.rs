//! Appending an upload's body to its file, off the async workers.
//!
//! The async side only moves the body's chunks into a bounded queue; one blocking thread per
//! append writes them, updates the running digest and, every [`WRITEBACK`] bytes, asks the
//! kernel to start writing the new range to disk. A blob is fsynced before it becomes visible
//! (see [`crate::FsBlobStore`]); with the writeback started as the bytes arrive, that fsync
//! waits only for the last range instead of the whole blob, which is what a pushing client
//! waits for at the upload's final `PUT`.
//!
//! Measured with skopeo pushing the shared corpus (162.6 MB of blobs, 2 cores): the fsync at
//! commit made up ~0.13 s of a 0.88 s push before the writeback started early.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::DigestHasher;
use tokio::sync::OwnedMutexGuard;

use crate::blob::ByteStream;
use crate::StoreError;

/// Bytes written between two writeback requests (1 MiB left the commits of the corpus push
/// 21 ms in all, 4 MiB 29 ms).
const WRITEBACK: u64 = 1024 * 1024;
/// Batches queued between the body and the writing thread (with [`BATCH`], bounds the
/// memory of an append).
const QUEUE: usize = 4;
/// Bytes of body chunks handed to the writing thread at once: one wake-up per batch rather
/// than per chunk (chunks are a few KiB to a few tens of KiB).
const BATCH: usize = 512 * 1024;
/// Small chunks are gathered up to this size before a write.
const WRITE_BUF: usize = 1024 * 1024;

/// Where an upload's file stands: its length and the digest of those bytes, if still known.
#[derive(Debug, Default)]
pub(crate) struct UploadHash {
    pub offset: u64,
    pub hasher: Option<DigestHasher>,
}

/// Appends `body` to `file` (an upload's, opened to append) and returns the upload's new
/// length. On an error the bytes written before it stay, and a failed write drops the running
/// digest (the commit then reads the file).
///
/// The writing thread holds the upload's lock (`state`) until its last write: if this future
/// is dropped (the client went away), the batches already queued are still written and
/// counted, and no other append or commit of the upload starts before.
pub(crate) async fn append(
    file: File,
    state: OwnedMutexGuard<UploadHash>,
    mut body: ByteStream,
) -> Result<u64, StoreError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_chunks(file, state, rx));
    let mut interrupted = None;
    let (mut batch, mut batched) = (Vec::new(), 0);
    loop {
        let (more, full) = match body.next().await {
            Some(Ok(chunk)) => {
                batched += chunk.len();
                batch.push(chunk);
                (true, batched >= BATCH)
            }
            Some(Err(e)) => {
                interrupted = Some(e);
                (false, true)
            }
            None => (false, true),
        };
        // A closed queue means the writer failed: its error is the one to report.
        if full && !batch.is_empty() && tx.send(std::mem::take(&mut batch)).await.is_err() {
            break;
        }
        if full {
            batched = 0;
        }
        if !more {
            break;
        }
    }
    drop(tx);
    let (offset, written) = writer
        .await
        .map_err(|e| io::Error::other(format!("upload writer failed: {e}")))?;
    written?;
    match interrupted {
        Some(e) => Err(StoreError::BodyInterrupted(e)),
        None => Ok(offset),
    }
}

/// The blocking side of [`append`]: writes and hashes every queued chunk; returns the
/// upload's length and releases its lock.
fn write_chunks(
    file: File,
    mut state: OwnedMutexGuard<UploadHash>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> (u64, io::Result<()>) {
    let mut out = BufWriter::with_capacity(WRITE_BUF, file);
    let mut started = state.offset;
    let mut result = Ok(());
    'batches: while let Some(batch) = rx.blocking_recv() {
        for chunk in batch {
            if let Err(e) = out.write_all(&chunk) {
                result = Err(e);
                break 'batches;
            }
            if let Some(h) = state.hasher.as_mut() {
                h.update(&chunk);
            }
            state.offset += chunk.len() as u64;
        }
        if state.offset - started >= WRITEBACK {
            if let Err(e) = out.flush() {
                result = Err(e);
                break;
            }
            start_writeback(out.get_ref(), started, state.offset - started);
            started = state.offset;
        }
    }
    if result.is_ok() {
        result = out.flush();
    }
    if result.is_err() {
        state.hasher = None;
    }
    (state.offset, result)
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk without waiting. Only
/// a hint: a write error surfaces at the fsync that makes the blob visible.
fn start_writeback(file: &File, offset: u64, len: u64) {
    if let Err(e) = crate::writeback::start(file, offset, len) {
        tracing::debug!(error = %e, "writeback hint refused");
    }
}
