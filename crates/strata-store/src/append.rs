//! Appending an upload's body to its file, off the async workers.
//!
//! The async side gathers the body's chunks into batches; each batch is written by one short
//! blocking task (a single vectored write), which also updates the running digest and, every
//! [`WRITEBACK`] bytes, asks the kernel to start writing the new range to disk. One batch is
//! written while the next one is received. A blocking thread is held only while a batch is
//! written, never while a slow client sends, so slow uploads cannot starve the blocking pool
//! that reads and metadata commits also use.
//!
//! A blob is fsynced before it becomes visible (see [`crate::FsBlobStore`]); with the
//! writeback started as the bytes arrive, that fsync waits only for the last range instead of
//! the whole blob, which is what a pushing client waits for at the upload's final `PUT`.
//! Measured with skopeo pushing the shared corpus (162.6 MB of blobs, 2 cores): the fsync at
//! commit made up ~0.13 s of a 0.88 s push before the writeback started early.

use std::fs::File;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::DigestHasher;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;

use crate::blob::ByteStream;
use crate::{FreeSpace, StoreError};

/// Bytes written between two writeback requests (1 MiB left the commits of the corpus push
/// 21 ms in all, 4 MiB 29 ms).
const WRITEBACK: u64 = 1024 * 1024;
/// Bytes of body chunks written at once: one blocking task and one system call per batch
/// rather than per chunk (chunks are a few KiB to a few tens of KiB). With one batch being
/// written and one being gathered, this bounds the memory of an append.
const BATCH: usize = 512 * 1024;

/// Where an upload's file stands: its length and the digest of those bytes, if still known.
#[derive(Debug, Default)]
pub(crate) struct UploadHash {
    pub offset: u64,
    pub hasher: Option<DigestHasher>,
}

/// The upload's file with its lock held: whoever holds it may write, and dropping it (after
/// the last write) lets the next append or commit of the upload go on.
struct Writer {
    file: File,
    state: OwnedMutexGuard<UploadHash>,
    /// Where the range not yet handed to the kernel's writeback starts.
    unsynced: u64,
    space: FreeSpace,
}

type Written = (Writer, io::Result<()>);

impl Writer {
    /// Writes and hashes `batch`. A failed write drops the running digest: the commit then
    /// reads the file, whatever part of the batch reached it.
    fn write_batch(mut self, batch: Vec<Bytes>) -> Written {
        let len = batch.iter().map(|c| c.len() as u64).sum();
        if self.space.check_data(len).is_err() {
            let full = io::Error::new(io::ErrorKind::StorageFull, "below the free-space reserve");
            return (self, Err(full));
        }
        let result = write_all_vectored(&mut self.file, &batch);
        match &result {
            Ok(()) => {
                for chunk in &batch {
                    if let Some(h) = self.state.hasher.as_mut() {
                        h.update(chunk);
                    }
                    self.state.offset += chunk.len() as u64;
                }
                if self.state.offset - self.unsynced >= WRITEBACK {
                    let len = self.state.offset - self.unsynced;
                    start_writeback(&self.file, self.unsynced, len);
                    self.unsynced = self.state.offset;
                }
            }
            Err(_) => self.state.hasher = None,
        }
        (self, result)
    }
}

/// Appends `body` to `file` (an upload's, opened to append) and returns the upload's new
/// length. On an error the bytes written before it stay.
///
/// The task writing a batch holds the upload's lock (`state`): if this future is dropped
/// (the client went away), the batch being written is still written and counted, and no
/// other append or commit of the upload starts before.
pub(crate) async fn append(
    file: File,
    state: OwnedMutexGuard<UploadHash>,
    space: FreeSpace,
    mut body: ByteStream,
) -> Result<u64, StoreError> {
    let unsynced = state.offset;
    let mut idle = Some(Writer {
        file,
        state,
        unsynced,
        space,
    });
    let mut writing: Option<JoinHandle<Written>> = None;
    let (mut batch, mut batched) = (Vec::new(), 0);
    let mut interrupted = None;
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
        if full && !batch.is_empty() {
            let writer = ready(&mut idle, &mut writing).await?;
            let chunks = std::mem::take(&mut batch);
            writing = Some(tokio::task::spawn_blocking(move || {
                writer.write_batch(chunks)
            }));
            batched = 0;
        }
        if !more {
            break;
        }
    }
    let writer = ready(&mut idle, &mut writing).await?;
    let offset = writer.state.offset;
    match interrupted {
        Some(e) => Err(StoreError::BodyInterrupted(e)),
        None => Ok(offset),
    }
}

/// The writer once the batch being written (if any) is done; that batch's write error, if
/// it failed.
async fn ready(
    idle: &mut Option<Writer>,
    writing: &mut Option<JoinHandle<Written>>,
) -> Result<Writer, StoreError> {
    if let Some(task) = writing.take() {
        let (writer, written) = task
            .await
            .map_err(|e| io::Error::other(format!("upload writer failed: {e}")))?;
        written?;
        return Ok(writer);
    }
    idle.take()
        .ok_or_else(|| io::Error::other("upload writer lost").into())
}

/// Writes every byte of `chunks`, as few system calls as the kernel allows.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    // Empty chunks are left out: a write of nothing but empty slices would report no progress.
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk without waiting. Only
/// a hint: a write error surfaces at the fsync that makes the blob visible.
fn start_writeback(file: &File, offset: u64, len: u64) {
    if let Err(e) = crate::writeback::start(file, offset, len) {
        tracing::debug!(error = %e, "writeback hint refused");
    }
}
