//! A blob arriving into a file, read by any number of readers while it arrives.
//!
//! The writer (a layer reconstruction, a fetch from an upstream, a site assembling pieces)
//! reports how many bytes from the start are present and, at the end, its verdict. Readers
//! stream from the file as it grows: bytes only once present, and the last byte of the range
//! they asked for only once the whole blob matched its digest, so no client ever receives a
//! complete response of a wrong blob. A writer that finds bytes it reported were wrong (a
//! site's peer lied) takes them back with a rewind: a reader that already sent any of them
//! ends with an error, one that had not goes on with the corrected bytes.

use std::any::Any;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_oci::{Digest, DigestHasher};
use tokio::sync::watch;

use crate::blob::ByteStream;

/// Bytes per chunk handed to a reader.
const CHUNK: u64 = 256 * 1024;
/// Bytes a [`Spool`] gathers before it writes them and tells its readers.
const SPOOL_BATCH: usize = 1 << 20;

/// How far a fill got.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Bytes from the start that are present.
    pub ready: u64,
    /// `Some(Ok)` once the whole blob matched its digest, `Some(Err)` if the fill failed.
    pub done: Option<Result<(), String>>,
    /// Offsets bytes were taken back from, oldest first.
    rewound: Vec<u64>,
}

impl Progress {
    /// Bytes from `to` on, reported present, were wrong: they will come again.
    pub fn rewind(&mut self, to: u64) {
        self.ready = self.ready.min(to);
        self.rewound.push(to);
    }
}

/// A blob arriving into a file, as its readers see it (clones share it).
#[derive(Clone)]
pub struct Fill {
    size: u64,
    file: Arc<File>,
    progress: watch::Receiver<Progress>,
    /// Whatever must live as long as anyone may open a reader (the file's owner).
    _keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("size", &self.size)
            .field("progress", &*self.progress.borrow())
            .finish()
    }
}

impl Fill {
    /// The blob of `size` bytes arriving into `file` as `progress` tells.
    pub fn new(size: u64, file: Arc<File>, progress: watch::Receiver<Progress>) -> Self {
        Fill {
            size,
            file,
            progress,
            _keep: None,
        }
    }

    /// This fill, keeping `owner` alive while any clone of it is.
    pub fn keeping(mut self, owner: Arc<dyn Any + Send + Sync>) -> Self {
        self._keep = Some(owner);
        self
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The verdict so far: `None` while the fill runs.
    pub fn done(&self) -> Option<Result<(), String>> {
        self.progress.borrow().done.clone()
    }

    /// Waits for the verdict.
    pub async fn verdict(&self) -> Result<(), String> {
        let mut rx = self.progress.clone();
        let verdict = match rx.wait_for(|p| p.done.is_some()).await {
            Ok(p) => p.done.clone().unwrap_or(Ok(())),
            Err(_) => Err("the fill stopped without a verdict".into()),
        };
        verdict
    }

    /// Streams bytes `start..end` as they arrive (see the module docs).
    pub fn stream(&self, start: u64, end: u64) -> ByteStream {
        tail(
            self.file.clone(),
            Some(self.progress.clone()),
            start,
            end.min(self.size),
        )
    }
}

struct Tail {
    /// Read at offsets: readers of one file share no position.
    file: Arc<File>,
    pos: u64,
    end: u64,
    progress: Option<watch::Receiver<Progress>>,
    /// Rewinds already looked at.
    rewinds_seen: usize,
    /// Where the range began: a reader that has sent nothing loses nothing to a rewind.
    start: u64,
}

impl Tail {
    /// How far this reader may go now, or why it must stop.
    fn limit(&mut self) -> Result<u64, String> {
        let Some(rx) = &self.progress else {
            return Ok(self.end);
        };
        let p = rx.borrow();
        for &to in &p.rewound[self.rewinds_seen.min(p.rewound.len())..] {
            if to < self.pos && self.pos > self.start {
                return Err(format!(
                    "bytes from {to} on were taken back after they were sent: ask again"
                ));
            }
        }
        self.rewinds_seen = p.rewound.len();
        match &p.done {
            Some(Ok(())) => Ok(self.end),
            Some(Err(e)) => Err(e.clone()),
            // The range's last byte waits for the verdict.
            None => Ok(p.ready.min(self.end.saturating_sub(1))),
        }
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            let limit = match self.limit() {
                Ok(l) => l,
                Err(e) => {
                    self.pos = self.end;
                    return Some(Err(io::Error::other(e)));
                }
            };
            if self.pos < limit {
                let n = (limit - self.pos).min(CHUNK) as usize;
                let (file, at) = (self.file.clone(), self.pos);
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, at).map(|()| buf)
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                return Some(match read {
                    Ok(buf) => {
                        self.pos += n as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => {
                        self.pos = self.end;
                        Err(e)
                    }
                });
            }
            let rx = self.progress.as_mut()?;
            if rx.changed().await.is_err() && rx.borrow().done.is_none() {
                self.pos = self.end;
                return Some(Err(io::Error::other("the fill stopped without a verdict")));
            }
        }
    }
}

/// Streams bytes `start..end` of `file`, which arrives as `progress` tells (`None`: it is
/// complete and verified).
pub fn tail(
    file: Arc<File>,
    progress: Option<watch::Receiver<Progress>>,
    start: u64,
    end: u64,
) -> ByteStream {
    let rewinds_seen = progress.as_ref().map_or(0, |p| p.borrow().rewound.len());
    let reader = Tail {
        file,
        pos: start,
        end,
        progress,
        rewinds_seen,
        start,
    };
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        r.next().await.map(|item| (item, r))
    }))
}

/// Removes a file when the last holder lets go (readers keep their own handles).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes a blob that arrives in order (an upstream's response) into a file its readers
/// tail, checking its length and digest; the file goes once the writer and every [`Fill`]
/// of it are dropped.
pub struct Spool {
    file: Arc<File>,
    tx: watch::Sender<Progress>,
    hasher: DigestHasher,
    expected: Digest,
    size: u64,
    written: u64,
    pending: BytesMut,
    fill: Fill,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("expected", &self.expected)
            .field("size", &self.size)
            .field("written", &self.written)
            .finish()
    }
}

impl Spool {
    /// A spool at `path` for the blob `expected` of `size` bytes, and the fill readers tail.
    pub fn create(path: PathBuf, expected: &Digest, size: u64) -> io::Result<(Spool, Fill)> {
        let file = scratch_file(&path)?;
        let (tx, rx) = watch::channel(Progress::default());
        let fill = Fill::new(size, Arc::new(file), rx).keeping(Arc::new(RemoveOnDrop(path)));
        let spool = Spool {
            file: fill.file.clone(),
            tx,
            hasher: DigestHasher::new(expected.algorithm()),
            expected: expected.clone(),
            size,
            written: 0,
            pending: BytesMut::new(),
            fill: fill.clone(),
        };
        Ok((spool, fill))
    }

    /// The fill this spool writes.
    pub fn fill(&self) -> &Fill {
        &self.fill
    }

    /// Appends `chunk`; more bytes than the blob's size are an error.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let have = self.written + self.pending.len() as u64;
        if have + chunk.len() as u64 > self.size {
            return Err(io::Error::other(format!(
                "more than the {} bytes announced",
                self.size
            )));
        }
        self.hasher.update(chunk);
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= SPOOL_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.pending.split().freeze();
        let (file, at) = (self.file.clone(), self.written);
        let n = bytes.len() as u64;
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&bytes, at)
        })
        .await
        .map_err(io::Error::other)??;
        self.written += n;
        let ready = self.written;
        self.tx.send_modify(|p| p.ready = ready);
        Ok(())
    }

    /// Ends the blob: its readers get the last byte if the length and digest match, an error
    /// otherwise (also returned).
    pub async fn finish(mut self) -> Result<(), String> {
        let outcome = match self.flush().await {
            Err(e) => Err(format!("writing the blob: {e}")),
            Ok(()) if self.written != self.size => Err(format!(
                "sent {} of the {} bytes announced",
                self.written, self.size
            )),
            Ok(()) => {
                let hasher = std::mem::replace(
                    &mut self.hasher,
                    DigestHasher::new(self.expected.algorithm()),
                );
                let actual = hasher.finish();
                if actual == self.expected {
                    Ok(())
                } else {
                    Err(format!(
                        "sent blob bytes of digest {actual} for {}",
                        self.expected
                    ))
                }
            }
        };
        self.fail_or_end(outcome.clone());
        outcome
    }

    /// Ends the blob with an error (the source failed).
    pub fn fail(self, why: String) {
        self.fail_or_end(Err(why));
    }

    fn fail_or_end(&self, outcome: Result<(), String>) {
        self.tx.send_modify(|p| p.done = Some(outcome));
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.tx.borrow().done.is_none() {
            self.tx
                .send_modify(|p| p.done = Some(Err("the fetch stopped".into())));
        }
    }
}

/// A new, empty file at `path` (truncated if it exists), open to read and write: where a
/// blob is written while readers tail it.
pub fn scratch_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn collect(s: ByteStream) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = s.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn readers_get_bytes_as_they_arrive_and_the_last_only_once_verified() {
        let dir = tempfile::tempdir().expect("tmp");
        let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256(&data);
        let path = dir.path().join("spool");
        let (mut spool, fill) =
            Spool::create(path.clone(), &digest, data.len() as u64).expect("spool");
        let mut early = fill.stream(0, data.len() as u64);
        spool.write(&data[..2 << 20]).await.expect("write");
        // Two MiB are present: the reader gets them before the rest exists.
        let mut got = 0;
        while got < 2 << 20 {
            got += early.try_next().await.expect("read").expect("chunk").len();
        }
        assert_eq!(got, 2 << 20);
        // A range wholly present still waits for the verdict for its last byte.
        let mut ranged = fill.stream(0, 1 << 20);
        let first = ranged.try_next().await.expect("read").expect("chunk");
        assert_eq!(first.len(), 256 << 10);
        spool.write(&data[2 << 20..]).await.expect("write");
        spool.finish().await.expect("verified");
        assert_eq!(got + collect(early).await.expect("rest").len(), data.len());
        assert_eq!(fill.verdict().await, Ok(()));
        assert_eq!(
            collect(fill.stream(10, 20)).await.expect("r"),
            &data[10..20]
        );
        drop(ranged);
        drop(fill);
        assert!(!path.exists(), "the spool goes with its last holder");
    }

    #[tokio::test]
    async fn a_wrong_blob_never_completes_a_response() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut spool, fill) =
            Spool::create(dir.path().join("s"), &Digest::sha256(b"right"), 5).expect("spool");
        let reader = fill.stream(0, 5);
        spool.write(b"wrong").await.expect("write");
        let e = spool.finish().await.expect_err("mismatch");
        assert!(e.contains("sent blob bytes of digest"), "{e}");
        let e = collect(reader)
            .await
            .expect_err("no complete wrong response");
        assert!(e.to_string().contains("sent blob bytes"), "{e}");
        // Too many bytes, too few, or a writer gone: an error, never a complete response.
        let (mut spool, fill) =
            Spool::create(dir.path().join("t"), &Digest::sha256(b"ab"), 2).expect("spool");
        assert!(spool.write(b"abc").await.is_err());
        drop(spool);
        assert!(collect(fill.stream(0, 2)).await.is_err());
        assert!(fill.verdict().await.is_err());
    }

    #[tokio::test]
    async fn a_rewind_stops_readers_that_sent_taken_back_bytes_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = scratch_file(&dir.path().join("f")).expect("file");
        let file = Arc::new(file);
        {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&[7u8; 1 << 20], 0).expect("write");
        }
        let (tx, rx) = watch::channel(Progress::default());
        let fill = Fill::new(1 << 20, file, rx);
        tx.send_modify(|p| p.ready = 1 << 19);
        let mut ahead = fill.stream(0, 1 << 20);
        ahead.try_next().await.expect("read").expect("sent 256 KiB");
        let behind = fill.stream(0, 1 << 20);
        tx.send_modify(|p| p.rewind(1000));
        tx.send_modify(|p| {
            p.ready = 1 << 20;
            p.done = Some(Ok(()));
        });
        assert!(collect(ahead).await.is_err(), "it sent bytes taken back");
        assert_eq!(collect(behind).await.expect("whole").len(), 1 << 20);
    }
}
