//! Blobs being assembled piece by piece: a file of the blob's size per digest, and which of
//! its pieces are present and where each came from.
//!
//! A partial blob is also a [`Fill`]: this node's clients stream its pieces in order as
//! they arrive, the last byte once the whole blob matched its digest. A piece that is
//! replaced by other bytes (a peer's copy found wrong) is taken back from them (a rewind),
//! and once verified a partial blob is sealed: nothing writes to it again.
//!
//! One partial blob serves two roles at once: the blob this node is assembling for its own
//! clients, and the pieces it owns for the site (fetched from the upstream once, however
//! many peers and local fetches ask at the same time). Only pieces fetched from the
//! upstream are served to peers before the blob is verified: a piece that came from a peer
//! is vouched for by nobody until the whole blob matches its digest, and passing it on
//! would let one liar's bytes spread and be blamed on this node.
//!
//! The digest of the present prefix is computed as the prefix grows (a task per partial
//! blob), so the check once the last piece is in reads only what the running hash has not
//! reached yet, instead of the whole blob at the moment every node of a rollout wants its
//! CPU for the same check.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_edge::{piece_count, piece_range, piece_size_for};
use strata_oci::{Algorithm, Digest, DigestHasher};
use strata_store::fill::{Fill, Progress};
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Fetching,
    /// Present; `upstream` if fetched from the upstream by this node.
    Have {
        upstream: bool,
    },
}

/// One blob being assembled.
#[derive(Debug)]
pub struct Partial {
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    piece_size: u64,
    slots: Mutex<Vec<Slot>>,
    changed: Notify,
    last_used: Mutex<Instant>,
    /// What readers of the blob see: the present prefix, rewinds, the verdict.
    progress: watch::Sender<Progress>,
    /// The running digest of the present prefix.
    prefix: Arc<tokio::sync::Mutex<Prefix>>,
    /// Rewinds so far: a running digest that saw fewer covers bytes that changed since.
    rewinds: Arc<AtomicU64>,
}

/// The digest of a blob's first `upto` bytes, as they were after `rewinds` rewinds.
#[derive(Debug)]
struct Prefix {
    hasher: DigestHasher,
    upto: u64,
    rewinds: u64,
}

/// The most a running digest reads at a time (the final check waits for at most that).
const HASH_STEP: u64 = 16 << 20;

impl Prefix {
    /// Extends the digest over the file up to `to` (at most [`HASH_STEP`] bytes), starting
    /// again from the blob's first byte if bytes it covered were rewound.
    async fn extend(&mut self, file: &Arc<File>, to: u64, rewinds: &AtomicU64) -> io::Result<()> {
        let seen = rewinds.load(Ordering::SeqCst);
        if seen != self.rewinds {
            *self = Prefix {
                hasher: DigestHasher::new(self.hasher.algorithm()),
                upto: 0,
                rewinds: seen,
            };
        }
        let (from, to) = (self.upto, to.min(self.upto + HASH_STEP));
        if to <= from {
            return Ok(());
        }
        let file = file.clone();
        let algorithm = self.hasher.algorithm();
        let mut hasher = std::mem::replace(&mut self.hasher, DigestHasher::new(algorithm));
        // Until the read is back, the digest covers nothing.
        self.upto = 0;
        let read = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; (to - from).min(1 << 20) as usize];
            let mut at = from;
            while at < to {
                let n = ((to - at) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..n], at)?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Ok::<_, io::Error>(hasher)
        })
        .await
        .map_err(io::Error::other)?;
        // A failed read, or a rewind meanwhile, leaves the digest to start again from the
        // first byte.
        let hasher = read?;
        if rewinds.load(Ordering::SeqCst) == seen {
            self.hasher = hasher;
            self.upto = to;
        }
        Ok(())
    }
}

/// Keeps the running digest of `partial`'s present prefix up to date until the blob is
/// done or dropped.
async fn hash_as_it_arrives(
    file: Arc<File>,
    prefix: Arc<tokio::sync::Mutex<Prefix>>,
    rewinds: Arc<AtomicU64>,
    mut progress: watch::Receiver<Progress>,
) {
    loop {
        let (ready, done) = {
            let p = progress.borrow_and_update();
            (p.ready, p.done.is_some())
        };
        if done {
            return;
        }
        let behind = {
            let mut prefix = prefix.lock().await;
            if prefix.extend(&file, ready, &rewinds).await.is_err() {
                return;
            }
            prefix.upto < ready
        };
        if !behind && progress.changed().await.is_err() {
            return;
        }
    }
}

impl Partial {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn piece_size(&self) -> u64 {
        self.piece_size
    }

    pub fn pieces(&self) -> u64 {
        piece_count(self.size, self.piece_size)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Whether piece `index` is present and was fetched from the upstream by this node.
    pub fn has_from_upstream(&self, index: u64) -> bool {
        self.slots().get(index as usize) == Some(&Slot::Have { upstream: true })
    }

    /// Piece `index` is to be fetched again (its copy is in doubt).
    pub fn forget(&self, index: u64) {
        if self.sealed() {
            return;
        }
        let forgotten = {
            let mut slots = self.slots();
            match slots.get_mut(index as usize) {
                Some(slot @ Slot::Have { .. }) => {
                    *slot = Slot::Missing;
                    true
                }
                _ => false,
            }
        };
        if forgotten {
            let at = index * self.piece_size;
            self.rewind(at);
        }
    }

    /// Bytes from `at` on were wrong: readers are taken back, the running digest too.
    fn rewind(&self, at: u64) {
        self.rewinds.fetch_add(1, Ordering::SeqCst);
        self.progress.send_modify(|p| p.rewind(at));
    }

    /// Whether the blob matched its digest (nothing is written to it any more).
    fn sealed(&self) -> bool {
        matches!(self.progress.borrow().done, Some(Ok(())))
    }

    /// Tells readers how far the pieces present from the start reach.
    fn advance(&self) {
        // Sent under the slots' lock: a piece claimed for rewriting after this count cannot
        // be counted present again by a stale report.
        let slots = self.slots();
        let lead = slots
            .iter()
            .take_while(|s| matches!(s, Slot::Have { .. }))
            .count() as u64;
        let ready = (lead * self.piece_size).min(self.size);
        self.progress.send_if_modified(|p| {
            let moved = p.ready != ready;
            p.ready = ready;
            moved
        });
    }

    /// The blob as its readers stream it.
    pub fn fill(self: &Arc<Self>) -> Fill {
        Fill::new(self.size, self.file.clone(), self.progress.subscribe())
    }

    /// A new fetch of the blob begins: a failed verdict is forgotten.
    pub fn begin(&self) {
        self.progress.send_if_modified(|p| {
            let failed = matches!(p.done, Some(Err(_)));
            if failed {
                p.done = None;
            }
            failed
        });
    }

    /// The whole blob matched its digest (sealed), or its fetch failed.
    pub fn end(&self, outcome: Result<(), String>) {
        if outcome.is_ok() {
            self.advance();
        }
        self.progress.send_modify(|p| {
            if !matches!(p.done, Some(Ok(()))) {
                p.done = Some(outcome);
            }
        });
    }

    /// Writes `bytes` as piece `index`, which held `had`: a piece that was present is only
    /// rewritten (and taken back from readers) if its bytes differ.
    async fn replace(&self, index: u64, bytes: Bytes, had: bool) -> io::Result<()> {
        if had {
            if self.read_piece(index).await? == bytes {
                return Ok(());
            }
            let at = index * self.piece_size;
            self.rewind(at);
        }
        self.write(index, bytes).await
    }

    async fn write(&self, index: u64, bytes: Bytes) -> io::Result<()> {
        let (start, end) = piece_range(index, self.size, self.piece_size);
        if bytes.len() as u64 != end - start {
            return Err(io::Error::other(format!(
                "piece {index} has {} bytes, not {}",
                bytes.len(),
                end - start
            )));
        }
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&bytes, start)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Stores piece `index`, which came from a peer, unless an upstream copy is there or on
    /// its way (that one wins: a peer's bytes are never labelled as the upstream's).
    pub async fn put_from_peer(&self, index: u64, bytes: Bytes) -> io::Result<()> {
        self.touch();
        if self.sealed() {
            return Ok(());
        }
        let had = {
            let mut slots = self.slots();
            match slots.get_mut(index as usize) {
                Some(slot @ (Slot::Missing | Slot::Have { upstream: false })) => {
                    let had = *slot != Slot::Missing;
                    // Claimed while it is written: an upstream fetch waits for the end.
                    *slot = Slot::Fetching;
                    had
                }
                _ => return Ok(()),
            }
        };
        let written = self.replace(index, bytes, had).await;
        if let Some(slot) = self.slots().get_mut(index as usize) {
            *slot = match written {
                Ok(()) => Slot::Have { upstream: false },
                Err(_) => Slot::Missing,
            };
        }
        if written.is_err() && had {
            let at = index * self.piece_size;
            self.rewind(at);
        }
        self.advance();
        self.changed.notify_waiters();
        written
    }

    /// Piece `index` fetched from the upstream by `fetch`, once however many ask at the same
    /// time (the fetch runs in a task of its own, so a caller that goes away does not cancel
    /// it for the others). Returns once the piece is present, or with the fetch's error.
    pub async fn from_upstream<F>(self: &Arc<Self>, index: u64, fetch: F) -> Result<(), String>
    where
        F: Future<Output = Result<Bytes, String>> + Send + 'static,
    {
        self.touch();
        let mut fetch = Some(fetch);
        loop {
            let notified = self.changed.notified();
            let sealed = self.sealed();
            let start_it = {
                let mut slots = self.slots();
                let Some(slot) = slots.get_mut(index as usize) else {
                    return Err(format!("piece {index} is past the end of the blob"));
                };
                match *slot {
                    Slot::Have { upstream: true } => return Ok(()),
                    // Verified: whatever its source, the piece is the upstream's.
                    Slot::Have { upstream: false } if sealed => {
                        *slot = Slot::Have { upstream: true };
                        return Ok(());
                    }
                    Slot::Fetching => None,
                    // A peer's copy is not what the upstream would send: fetch it.
                    Slot::Missing => {
                        *slot = Slot::Fetching;
                        Some(false)
                    }
                    Slot::Have { upstream: false } => {
                        *slot = Slot::Fetching;
                        Some(true)
                    }
                }
            };
            if let Some(had) = start_it {
                let Some(fetch) = fetch.take() else {
                    return Err(format!("piece {index}: the upstream fetch failed"));
                };
                let me = self.clone();
                let task = tokio::spawn(async move {
                    let outcome = match fetch.await {
                        Ok(bytes) => match piece_range(index, me.size, me.piece_size) {
                            (start, end) if bytes.len() as u64 != end - start => Err(format!(
                                "piece {index} has {} bytes, not {}",
                                bytes.len(),
                                end - start
                            )),
                            _ => me
                                .replace(index, bytes, had)
                                .await
                                .map_err(|e| e.to_string()),
                        },
                        Err(e) => Err(e),
                    };
                    if outcome.is_err() && had {
                        let at = index * me.piece_size;
                        me.rewind(at);
                    }
                    let slot = match outcome {
                        Ok(()) => Slot::Have { upstream: true },
                        Err(_) => Slot::Missing,
                    };
                    if let Some(s) = me.slots().get_mut(index as usize) {
                        *s = slot;
                    }
                    me.advance();
                    me.changed.notify_waiters();
                    outcome
                });
                return task.await.map_err(|e| e.to_string())?;
            }
            // Another request is fetching it: wait for its end, then look again (if it
            // failed, this request tries once itself).
            notified.await;
        }
    }

    /// The bytes of piece `index`, as stored.
    pub async fn read_piece(&self, index: u64) -> io::Result<Bytes> {
        self.touch();
        let (start, end) = piece_range(index, self.size, self.piece_size);
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; (end - start) as usize];
            file.read_exact_at(&mut buf, start)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The digest (by `algorithm`) of the whole file: the running digest of the present
    /// prefix carried on to the end.
    pub async fn digest(&self, algorithm: Algorithm) -> io::Result<Digest> {
        self.touch();
        let mut prefix = self.prefix.lock().await;
        if prefix.hasher.algorithm() != algorithm {
            *prefix = Prefix {
                hasher: DigestHasher::new(algorithm),
                upto: 0,
                rewinds: self.rewinds.load(Ordering::SeqCst),
            };
        }
        while prefix.upto < self.size {
            prefix.extend(&self.file, self.size, &self.rewinds).await?;
        }
        let digest = std::mem::replace(&mut prefix.hasher, DigestHasher::new(algorithm)).finish();
        // Taken: a later check (after pieces were fetched again) starts from the first byte.
        prefix.upto = 0;
        Ok(digest)
    }
}

/// The largest blob assembled from a site (1 TiB): a claimed size above it is refused.
const MAX_BLOB: u64 = 1 << 40;

/// The partial blobs of a node, under one directory.
#[derive(Debug)]
pub struct Partials {
    dir: PathBuf,
    open: Mutex<HashMap<(Digest, u64), Arc<Partial>>>,
}

impl Partials {
    /// Partial blobs under `dir`; what an earlier run left there is removed (which pieces
    /// were present is not known after a restart).
    pub fn new(dir: PathBuf) -> io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Partials {
            dir,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Digest, u64), Arc<Partial>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partial blob of `digest` of `size` bytes, created empty if there is none. Blobs
    /// are keyed by size too: a peer that claims another size gets a file of its own and
    /// cannot truncate this one.
    pub fn open(&self, digest: &Digest, size: u64) -> io::Result<Arc<Partial>> {
        if size > MAX_BLOB {
            return Err(io::Error::other(format!(
                "a blob of {size} bytes is larger than the {MAX_BLOB} a site assembles"
            )));
        }
        let mut open = self.lock();
        if let Some(p) = open.get(&(digest.clone(), size)) {
            p.touch();
            return Ok(p.clone());
        }
        let path = self.dir.join(format!("{}-{size}", digest.hex()));
        let file = strata_store::fill::scratch_file(&path)?;
        file.set_len(size)?;
        let piece_size = piece_size_for(size);
        let file = Arc::new(file);
        let progress = watch::channel(Progress::default()).0;
        let prefix = Arc::new(tokio::sync::Mutex::new(Prefix {
            hasher: DigestHasher::new(digest.algorithm()),
            upto: 0,
            rewinds: 0,
        }));
        let rewinds = Arc::new(AtomicU64::new(0));
        tokio::spawn(hash_as_it_arrives(
            file.clone(),
            prefix.clone(),
            rewinds.clone(),
            progress.subscribe(),
        ));
        let partial = Arc::new(Partial {
            path,
            file,
            size,
            piece_size,
            slots: Mutex::new(vec![Slot::Missing; piece_count(size, piece_size) as usize]),
            changed: Notify::new(),
            last_used: Mutex::new(Instant::now()),
            progress,
            prefix,
            rewinds,
        });
        open.insert((digest.clone(), size), partial.clone());
        Ok(partial)
    }

    /// Removes the partial blob of `digest` if it matched its digest (the node stored it;
    /// readers and piece requests still holding it keep their file).
    pub fn remove_verified(&self, digest: &Digest, size: u64) {
        let mut open = self.lock();
        let key = (digest.clone(), size);
        if open.get(&key).is_some_and(|p| p.sealed()) {
            if let Some(p) = open.remove(&key) {
                let _ = std::fs::remove_file(&p.path);
            }
        }
    }

    /// Removes partial blobs unused for `idle` (their file goes once no reader holds it).
    pub fn expire(&self, idle: Duration) {
        let mut open = self.lock();
        open.retain(|_, p| {
            // Still held by a fetch in progress: kept whatever its age.
            let keep = Arc::strong_count(p) > 1
                || p.last_used
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed()
                    < idle;
            if !keep {
                let _ = std::fs::remove_file(&p.path);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn digest() -> Digest {
        Digest::sha256(b"partial")
    }

    #[tokio::test]
    async fn an_upstream_piece_is_fetched_once_however_many_ask() {
        let dir = tempfile::tempdir().expect("tmp");
        let partials = Partials::new(dir.path().join("p")).expect("partials");
        let size = 3 * (1 << 20) + 5;
        let p = partials.open(&digest(), size).expect("open");
        assert_eq!(p.pieces(), 4);
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..8 {
            let (p, fetches) = (p.clone(), fetches.clone());
            waiters.push(tokio::spawn(async move {
                p.from_upstream(3, async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Bytes::from_static(b"12345"))
                })
                .await
            }));
        }
        for w in waiters {
            w.await.expect("join").expect("piece");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(p.has_from_upstream(3));
        assert_eq!(
            p.read_piece(3).await.expect("read"),
            Bytes::from_static(b"12345")
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_is_tried_again_and_a_wrong_length_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let partials = Partials::new(dir.path().join("p")).expect("partials");
        let p = partials.open(&digest(), 10).expect("open");
        let e = p
            .from_upstream(0, async { Err("down".to_string()) })
            .await
            .expect_err("failed");
        assert_eq!(e, "down");
        assert!(!p.has_from_upstream(0));
        let e = p
            .from_upstream(0, async { Ok(Bytes::from_static(b"short")) })
            .await
            .expect_err("wrong length");
        assert!(e.contains("not 10"), "{e}");
        p.from_upstream(0, async { Ok(Bytes::from_static(b"0123456789")) })
            .await
            .expect("third time");
        assert_eq!(
            p.digest(Algorithm::Sha256).await.expect("hash"),
            Digest::sha256(b"0123456789")
        );
    }

    #[tokio::test]
    async fn peer_pieces_are_not_taken_for_upstream_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let partials = Partials::new(dir.path().join("p")).expect("partials");
        let p = partials.open(&digest(), 4).expect("open");
        p.put_from_peer(0, Bytes::from_static(b"evil"))
            .await
            .expect("put");
        assert!(!p.has_from_upstream(0), "not served to peers");
        p.from_upstream(0, async { Ok(Bytes::from_static(b"good")) })
            .await
            .expect("refetched");
        assert_eq!(
            p.read_piece(0).await.expect("read"),
            Bytes::from_static(b"good")
        );
        p.put_from_peer(0, Bytes::from_static(b"evil"))
            .await
            .expect("ignored");
        assert!(
            p.has_from_upstream(0),
            "an upstream copy is never replaced by a peer's"
        );
        assert_eq!(
            p.read_piece(0).await.expect("read"),
            Bytes::from_static(b"good")
        );
        assert!(
            partials.open(&digest(), 1 << 50).is_err(),
            "absurd sizes refused"
        );
        partials.expire(Duration::ZERO);
        assert_eq!(
            std::fs::read_dir(dir.path().join("p"))
                .expect("dir")
                .count(),
            1,
            "a partial still held is kept"
        );
        drop(p);
        partials.expire(Duration::ZERO);
        assert_eq!(
            std::fs::read_dir(dir.path().join("p"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn the_digest_runs_as_the_prefix_grows_and_starts_again_after_a_rewind() {
        let dir = tempfile::tempdir().expect("tmp");
        let partials = Partials::new(dir.path().join("p")).expect("partials");
        let mib = 1usize << 20;
        let data: Vec<u8> = (0..20 * mib).map(|i| (i % 251) as u8).collect();
        let p = partials
            .open(&Digest::sha256(&data), data.len() as u64)
            .expect("open");
        let piece = |i: usize| Bytes::copy_from_slice(&data[i * mib..(i + 1) * mib]);
        for i in 0..10 {
            p.put_from_peer(i, piece(i as usize)).await.expect("put");
        }
        // The running digest reaches the present prefix without being asked.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.prefix.lock().await.upto < 10 * mib as u64 {
            assert!(
                Instant::now() < deadline,
                "the running digest never caught up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Piece 3 is replaced by other bytes, then by the right ones again: both rewinds.
        let mut wrong = piece(3).to_vec();
        wrong[0] ^= 1;
        p.put_from_peer(3, Bytes::from(wrong.clone()))
            .await
            .expect("put");
        let good = piece(3);
        p.from_upstream(3, async move { Ok(good) })
            .await
            .expect("upstream copy");
        for i in 10..20 {
            p.put_from_peer(i, piece(i as usize)).await.expect("put");
        }
        assert_eq!(
            p.digest(Algorithm::Sha256).await.expect("hash"),
            Digest::sha256(&data)
        );
        // Asked again, the digest is the same (read from the first byte).
        assert_eq!(
            p.digest(Algorithm::Sha256).await.expect("hash"),
            Digest::sha256(&data)
        );
        // A wrong piece left in place shows in the digest.
        let q = partials
            .open(&Digest::sha256(b"other"), data.len() as u64)
            .expect("open");
        for i in 0..20 {
            let bytes = if i == 3 {
                Bytes::from(wrong.clone())
            } else {
                piece(i)
            };
            q.put_from_peer(i as u64, bytes).await.expect("put");
        }
        assert_ne!(
            q.digest(Algorithm::Sha256).await.expect("hash"),
            Digest::sha256(&data)
        );
    }

    async fn read_all(s: strata_store::ByteStream) -> io::Result<Vec<u8>> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = s.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn readers_follow_pieces_in_order_and_lose_nothing_but_replaced_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        let partials = Partials::new(dir.path().join("p")).expect("partials");
        let mib = 1usize << 20;
        let data: Vec<u8> = (0..3 * mib).map(|i| (i % 241) as u8).collect();
        let p = partials
            .open(&Digest::sha256(&data), data.len() as u64)
            .expect("open");
        assert_eq!(p.pieces(), 3);
        let piece = |i: usize| Bytes::copy_from_slice(&data[i * mib..(i + 1) * mib]);
        let fill = p.fill();
        // Piece 1 alone is not a prefix: nothing is readable yet.
        p.put_from_peer(1, piece(1)).await.expect("put");
        let mut early = fill.stream(0, data.len() as u64);
        let waited = tokio::time::timeout(Duration::from_millis(100), async {
            use futures_util::TryStreamExt;
            early.try_next().await
        })
        .await;
        assert!(waited.is_err(), "no byte before piece 0 is present");
        // Piece 0 from a peer, wrong: a reader takes it, then the upstream's copy replaces it.
        let mut wrong = piece(0).to_vec();
        wrong[7] ^= 1;
        p.put_from_peer(0, Bytes::from(wrong)).await.expect("put");
        let mut passed = fill.stream(0, data.len() as u64);
        {
            use futures_util::TryStreamExt;
            passed
                .try_next()
                .await
                .expect("read")
                .expect("a chunk of piece 0");
        }
        // The same bytes again change nothing; other bytes take piece 0 back.
        p.put_from_peer(1, piece(1)).await.expect("same bytes");
        let behind = fill.stream(0, data.len() as u64);
        let good = piece(0);
        p.from_upstream(0, async move { Ok(good) })
            .await
            .expect("upstream copy");
        let last = piece(2);
        p.from_upstream(2, async move { Ok(last) })
            .await
            .expect("piece 2");
        assert_eq!(
            p.digest(Algorithm::Sha256).await.expect("hash"),
            Digest::sha256(&data)
        );
        p.end(Ok(()));
        assert!(read_all(passed).await.is_err(), "it sent replaced bytes");
        assert!(read_all(early).await.expect("whole") == data);
        assert!(read_all(behind).await.expect("whole") == data);
        // Sealed: a peer's bytes no longer land.
        p.put_from_peer(2, Bytes::from(vec![0u8; mib]))
            .await
            .expect("ignored");
        assert!(
            read_all(fill.stream(0, data.len() as u64))
                .await
                .expect("whole")
                == data
        );
        let d = Digest::sha256(&data);
        partials.remove_verified(&d, data.len() as u64);
        assert_eq!(
            std::fs::read_dir(dir.path().join("p"))
                .expect("dir")
                .count(),
            0
        );
        assert!(
            read_all(fill.stream(0, 10))
                .await
                .expect("open readers keep the file")
                == data[..10]
        );
    }
}
