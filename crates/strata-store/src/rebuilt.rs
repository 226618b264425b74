//! Reconstructions of file-level layers: one per layer at a time, shared by every reader,
//! and kept afterwards in a bounded cache (the GF-R baseline's pre-reconstruction, sized by
//! the operator).
//!
//! The first reader of a layer that is not cached starts its reconstruction into
//! `<data>/rebuilt/.tmp-<alg>-<hex>`; every reader, that one included, streams from that
//! file as it grows. Bytes are only handed out once written, and the last byte of a range
//! only after the whole reconstruction matched the layer's digest, so no client ever
//! receives a complete range of a wrong blob. A verified reconstruction is renamed to
//! `<data>/rebuilt/<alg>-<hex>`; afterwards the least recently read ones are removed until
//! the cache fits its budget (a budget of 0 keeps nothing, but concurrent readers still
//! share one reconstruction). Readers hold open files, so removal never cuts a read short.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use strata_oci::{Algorithm, Digest, DigestHasher};
use tokio::sync::watch;

use crate::blob::ByteStream;
use crate::fill::{self, Progress};

/// Bytes per chunk handed to a reader, and between progress reports of a reconstruction.
const CHUNK: u64 = 256 * 1024;
const TMP_PREFIX: &str = ".tmp-";

/// Where a reader's bytes come from.
#[derive(Debug)]
pub enum Source {
    /// A verified reconstruction.
    Cached(File),
    /// A reconstruction still being written.
    Building(File, watch::Receiver<Progress>),
}

/// What [`RebuiltCache::begin`] found.
#[derive(Debug)]
pub enum Begin {
    Read(Source),
    /// Nobody is reconstructing this layer: the caller must, through the [`Builder`], and
    /// reads through the source like everyone else.
    Build(Box<Builder>, Source),
}

/// The cache (see the module docs).
#[derive(Debug)]
pub struct RebuiltCache {
    dir: PathBuf,
    budget: u64,
    inflight: Mutex<HashMap<String, watch::Receiver<Progress>>>,
    started: AtomicU64,
}

fn key(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().as_str(), d.hex())
}

fn poisoned() -> io::Error {
    io::Error::other("rebuilt-layer cache lock poisoned")
}

impl RebuiltCache {
    /// Opens the cache in `dir`, removing reconstructions a crash left unfinished.
    pub fn open(dir: &Path, budget: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(RebuiltCache {
            dir: dir.to_path_buf(),
            budget,
            inflight: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        })
    }

    /// Reconstructions started since the cache was opened.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Bytes of verified reconstructions held.
    pub fn bytes(&self) -> io::Result<u64> {
        let mut total = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if !e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                total += e.metadata()?.len();
            }
        }
        Ok(total)
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(key(d))
    }

    fn tmp_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(format!("{TMP_PREFIX}{}", key(d)))
    }

    /// Finds the cached reconstruction of `d`, joins the one in progress, or starts one.
    pub fn begin(&self, d: &Digest) -> io::Result<Begin> {
        let mut inflight = self.inflight.lock().map_err(|_| poisoned())?;
        match File::open(self.path(d)) {
            Ok(f) => {
                // Recently read: evicted last.
                let _ = f.set_modified(SystemTime::now());
                return Ok(Begin::Read(Source::Cached(f)));
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        if let Some(rx) = inflight.get(&key(d)) {
            // A builder that died (panicked) without a verdict leaves a closed channel:
            // start over rather than have every later reader fail.
            if rx.has_changed().is_ok() || rx.borrow().done.is_some() {
                let f = File::open(self.tmp_path(d))?;
                return Ok(Begin::Read(Source::Building(f, rx.clone())));
            }
            inflight.remove(&key(d));
        }
        let tmp = self.tmp_path(d);
        let writer = File::create(&tmp)?;
        let reader = File::open(&tmp)?;
        let (tx, rx) = watch::channel(Progress::default());
        inflight.insert(key(d), rx.clone());
        self.started.fetch_add(1, Ordering::Relaxed);
        let builder = Builder {
            file: writer,
            tx,
            algorithm: d.algorithm(),
            hasher: DigestHasher::new(d.algorithm()),
            written: 0,
            reported: 0,
        };
        Ok(Begin::Build(
            Box::new(builder),
            Source::Building(reader, rx),
        ))
    }

    /// Ends the reconstruction of `d`: keeps it if `verified`, then tells its readers.
    pub fn finish(&self, d: &Digest, builder: Box<Builder>, outcome: Result<(), String>) {
        let kept = match self.inflight.lock() {
            Ok(mut inflight) => {
                inflight.remove(&key(d));
                match outcome {
                    Ok(()) => std::fs::rename(self.tmp_path(d), self.path(d)).is_ok(),
                    Err(_) => {
                        let _ = std::fs::remove_file(self.tmp_path(d));
                        false
                    }
                }
            }
            Err(_) => false,
        };
        if kept {
            if let Err(e) = self.evict() {
                tracing::warn!(error = %e, "rebuilt-layer cache eviction failed");
            }
        }
        // Readers learn the verdict last, so whoever sees it sees the cache settled.
        let written = builder.written;
        builder.tx.send_modify(|p| {
            p.ready = written;
            p.done = Some(outcome);
        });
    }

    /// Removes the least recently read reconstructions until the cache fits its budget.
    fn evict(&self) -> io::Result<()> {
        let _guard = self.inflight.lock().map_err(|_| poisoned())?;
        let mut entries = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let meta = e.metadata()?;
            entries.push((meta.modified()?, meta.len(), e.path()));
        }
        entries.sort();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        for (_, len, path) in entries {
            if total <= self.budget {
                break;
            }
            std::fs::remove_file(&path)?;
            total -= len;
        }
        Ok(())
    }

    /// Drops the cached reconstruction of `d` (its layer was deleted).
    pub fn remove(&self, d: &Digest) -> io::Result<()> {
        let _guard = self.inflight.lock().map_err(|_| poisoned())?;
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Writes a reconstruction, hashing it and reporting progress to its readers.
#[derive(Debug)]
pub struct Builder {
    file: File,
    tx: watch::Sender<Progress>,
    algorithm: Algorithm,
    hasher: DigestHasher,
    written: u64,
    reported: u64,
}

impl Builder {
    /// Flushes and reports what is written; returns the digest of everything written.
    pub fn complete(&mut self) -> io::Result<Digest> {
        self.file.flush()?;
        self.report();
        let hasher = std::mem::replace(&mut self.hasher, DigestHasher::new(self.algorithm));
        Ok(hasher.finish())
    }

    fn report(&mut self) {
        self.reported = self.written;
        let written = self.written;
        self.tx.send_modify(|p| p.ready = written);
    }
}

impl Write for Builder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        if self.written - self.reported >= CHUNK {
            self.report();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Streams bytes `start..end` of a reconstruction.
pub fn stream(source: Source, start: u64, end: u64) -> ByteStream {
    match source {
        Source::Cached(f) => fill::tail(Arc::new(f), None, start, end),
        Source::Building(f, rx) => fill::tail(Arc::new(f), Some(rx), start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builder_that_died_does_not_block_later_readers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RebuiltCache::open(dir.path(), 1 << 20).expect("open");
        let d = Digest::sha256(b"a layer");
        let Begin::Build(builder, _) = cache.begin(&d).expect("begin") else {
            panic!("the first reader builds");
        };
        assert!(matches!(
            cache.begin(&d).expect("join"),
            Begin::Read(Source::Building(..))
        ));
        drop(builder);
        assert!(
            matches!(cache.begin(&d).expect("again"), Begin::Build(..)),
            "a dead builder is replaced"
        );
        assert_eq!(cache.started(), 2);
    }
}
