//! A node's upstream when it belongs to a site: blobs come in pieces from the peers of the
//! site and, for the pieces nobody holds, from the upstream once for the whole site.
//!
//! [`Site`] is the `strata_registry::Upstream` of such a node. For a blob the node lacks:
//!
//! 1. it asks the live peers who holds the blob whole (and its size), else the upstream for
//!    the size;
//! 2. `strata_edge::Schedule` decides, piece by piece, whom to ask: the nearest holder
//!    (within a per-peer limit), else the piece's owner (rendezvous over the live
//!    membership), which fetches the piece from the upstream once and serves whoever asks,
//!    or, for the pieces this node owns, the upstream itself;
//! 3. the pieces are written into a partial blob ([`crate::partial`]); a peer that dies
//!    mid-transfer (its connection drops or its pings stop) has its requests given up and
//!    asked of another source within seconds;
//! 4. the whole blob is checked against its digest before the registry sees a byte. On a
//!    mismatch every piece a peer sent is fetched again from the upstream and compared: a
//!    peer whose copy differs is excluded and the blob assembled again.
//!
//! Manifests come from the upstream; when it cannot be reached, from a peer that holds them.
//! The peers' side is [`Site::router`]: `/strata/v1/site/...`, answered only from what this
//! node holds or owns.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use strata_edge::{piece_count, piece_range, Action, Candidate, NodeId, Schedule, Source};
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::{Registry, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest};
use strata_store::BlobSource;
use tokio::sync::mpsc;

use crate::p2p::Peers;
use crate::partial::{Partial, Partials};
use crate::preheat::{preheat_node, PreheatRequest, Spread};
use crate::sign::{self, PeerClient, SiteKey};
use crate::upstream::HttpUpstream;

/// Pieces asked of one peer at once.
const PER_PEER: usize = 4;
/// The longest a peer may take to preheat (images of many GB over a slow uplink).
const PREHEAT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// The largest manifest taken from a peer: the registry's own limit.
const MAX_MANIFEST: usize = strata_oci::manifest::MAX_MANIFEST_BYTES;
/// How long a peer has to answer whether it holds a blob.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often in-flight requests are checked against the liveness of their peer.
const LIVENESS_CHECK: Duration = Duration::from_millis(500);
/// Failed piece requests after which a peer is not asked again for a blob (its pieces
/// come from elsewhere, the upstream at worst).
const PEER_FAILURES: usize = 2;
/// Failed piece requests after which a blob's fetch gives up.
const MAX_FAILURES: usize = 64;
/// Partial blobs unused this long are removed.
const PARTIAL_IDLE: Duration = Duration::from_secs(600);
/// Where a node asks a peer to preheat itself.
const PEER_PREHEAT: &str = "/strata/v1/site/peers/preheat";
/// The largest request body a peer sends (a preheat's image list).
const MAX_PEER_BODY: usize = 1 << 20;

/// A site's HTTP routes (see [`Site::routes`]).
#[derive(Debug)]
pub struct SiteRoutes {
    pub peers: Router,
    pub operator: Router,
}

/// What the site did since the node started.
#[derive(Debug, Default)]
struct Counters {
    upstream_bytes: AtomicU64,
    peer_bytes: AtomicU64,
    served_bytes: AtomicU64,
    peer_failures: AtomicU64,
    exclusions: AtomicU64,
    /// Provider lookups in the site's DHT, and the live holders they led to.
    lookups: AtomicU64,
    holders_found: AtomicU64,
    /// Images this node pulled to keep the site's replication factor.
    replicated: AtomicU64,
}

/// The upstream of a node in a site.
#[derive(Debug)]
pub struct Site {
    peers: Peers,
    upstream: HttpUpstream,
    partials: Arc<Partials>,
    local: Arc<dyn BlobSource>,
    client: PeerClient,
    counters: Arc<Counters>,
    /// The blobs this node announces to the site (provider records).
    announced: Arc<Mutex<Announced>>,
    /// Blob sizes the upstream gave after peers claimed another.
    sizes: Arc<Mutex<HashMap<Digest, u64>>>,
    /// Upstream piece fetches of this node, its own and those peers asked it for: a fetch
    /// takes `SITE_UPSTREAM_STREAMS / upstream_streams(live)` permits, so the site as a
    /// whole keeps about that many pieces in flight on its uplink, each arriving fast and
    /// in blob order (fair, first come first served).
    upstream_slots: Arc<tokio::sync::Semaphore>,
    /// Images (`REPO@DIGEST`) whose manifests this node took from the upstream or the site,
    /// or that it keeps as a replica: what it offers for replication.
    images: Arc<Mutex<ImageList>>,
}

/// The images a node offers, and the file that keeps them across restarts (one
/// `REPO@DIGEST` per line, appended; a line cut short by a crash is skipped when read).
#[derive(Debug, Default)]
struct ImageList {
    set: std::collections::BTreeSet<String>,
    file: Option<std::fs::File>,
}

impl ImageList {
    fn offer(&mut self, image: String) {
        if self.set.contains(&image) {
            return;
        }
        if let Some(f) = &mut self.file {
            use std::io::Write;
            if let Err(e) = writeln!(f, "{image}") {
                tracing::warn!(%image, error = %e, "image list not written: offered until a restart");
            }
        }
        self.set.insert(image);
    }

    /// Reads the images offered before from `path`, and appends every new one to it.
    fn keep_in(&mut self, path: &std::path::Path) -> std::io::Result<usize> {
        let mut read = 0;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if image_by_digest(line) {
                        read += usize::from(self.set.insert(line.to_string()));
                    } else {
                        tracing::warn!(file = %path.display(), "a line of the image list is not REPO@DIGEST: skipped");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Rewritten whole (skipped lines and duplicates dropped), then appended to.
        let tmp = path.with_extension("tmp");
        let mut text = String::new();
        for image in &self.set {
            text.push_str(image);
            text.push('\n');
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        self.file = Some(std::fs::OpenOptions::new().append(true).open(path)?);
        Ok(read)
    }
}

/// Whether a line of the image list is an image by digest.
fn image_by_digest(line: &str) -> bool {
    line.contains('@')
        && crate::preheat::parse_image(line)
            .is_ok_and(|(_, r)| matches!(r, strata_oci::Reference::Digest(_)))
}

#[derive(Debug, Default)]
struct Announced {
    digests: HashSet<String>,
    /// Whether a peer was live at the last announcement: records published while alone
    /// reach nobody, so they are published again when the first peer appears.
    had_peers: bool,
}

fn site_error(e: impl std::fmt::Display) -> UpstreamError {
    UpstreamError(e.to_string())
}

impl Site {
    /// A site node's upstream: `peers` as the membership sees them, `upstream` the
    /// registries it mirrors, `partials` where blobs are assembled, `local` the node's own
    /// store (what it serves to peers whole).
    pub fn new(
        peers: Peers,
        upstream: HttpUpstream,
        partials: Partials,
        local: Arc<dyn BlobSource>,
        client: PeerClient,
    ) -> Arc<Self> {
        let site = Arc::new(Site {
            peers,
            upstream,
            partials: Arc::new(partials),
            local,
            client,
            counters: Arc::new(Counters::default()),
            announced: Arc::default(),
            sizes: Arc::default(),
            upstream_slots: Arc::new(tokio::sync::Semaphore::new(
                strata_edge::pieces::SITE_UPSTREAM_STREAMS,
            )),
            images: Arc::default(),
        });
        let partials = Arc::downgrade(&site.partials);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PARTIAL_IDLE / 4).await;
                match partials.upgrade() {
                    Some(p) => p.expire(PARTIAL_IDLE),
                    None => return,
                }
            }
        });
        site
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Brings what this node announces to the site in line with `held`, the digests of every
    /// blob it holds: new ones are announced, gone ones withdrawn. The node calls it
    /// periodically (blobs pushed or collected); blobs this node assembles are announced
    /// as soon as they are verified.
    pub fn announce_held(&self, held: impl IntoIterator<Item = String>) {
        let held: HashSet<String> = held.into_iter().collect();
        let has_peers = !self.peers.live_peers().is_empty();
        let mut a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if has_peers && !a.had_peers {
            // Alone until now: what was announced reached nobody.
            a.digests.clear();
        }
        a.had_peers = has_peers;
        let gone: Vec<String> = a.digests.difference(&held).cloned().collect();
        for d in gone {
            self.peers.unprovide(&d);
            a.digests.remove(&d);
        }
        for d in held {
            if !a.digests.contains(&d) {
                self.peers.provide(&d);
                a.digests.insert(d);
            }
        }
    }

    /// A manifest of `repo` came in: the image is offered for replication.
    fn note_image(&self, repo: &RepoName, bytes: &[u8]) {
        let image = format!("{repo}@{}", Digest::sha256(bytes));
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        images.offer(image);
    }

    /// Keeps the images this node offers in `path` (created if missing): those it offered
    /// before a restart are offered again, so the site does not forget an image whose only
    /// record was on a node that restarted. Returns how many were read back.
    pub fn keep_image_list(&self, path: &std::path::Path) -> std::io::Result<usize> {
        let mut images = self.images.lock().unwrap_or_else(|p| p.into_inner());
        images.keep_in(path)
    }

    /// Keeps the site's replication factor from this node's side, for ever: every
    /// `every`, it gathers the images the live nodes offer and pulls (as a preheat, from the
    /// site) those `replicas` says this node keeps and it does not hold yet. A node that
    /// joins catches up at its first round.
    pub async fn replicate(
        self: Arc<Self>,
        registry: Registry,
        replicas: strata_edge::Replicas,
        every: Duration,
    ) {
        let mut held: HashSet<String> = HashSet::new();
        loop {
            let live = self.peers.live();
            let own: std::collections::BTreeSet<String> = self
                .images
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set
                .clone();
            let mut offered = own.clone();
            let asks = self.peers.live_peers().into_iter().map(|(_, url)| {
                let req = self.client.signed(
                    self.client
                        .get(format!("{url}/strata/v1/site/images"))
                        .timeout(ASK_TIMEOUT),
                );
                async move {
                    let resp = req.ok()?.send().await.ok()?;
                    if !resp.status().is_success() {
                        return None;
                    }
                    resp.json::<Vec<String>>().await.ok()
                }
            });
            for list in futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
            {
                offered.extend(list.into_iter().take(100_000));
            }
            for image in offered {
                if held.contains(&image)
                    || !strata_edge::keeps(self.peers.me(), &image, &live, replicas)
                {
                    continue;
                }
                match preheat_node(&registry, std::slice::from_ref(&image)).await {
                    Ok(report) => {
                        // Its own clients' images it holds already; others it now keeps.
                        if !own.contains(&image) {
                            self.counters.replicated.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%image, blobs = report.blobs, "replicated");
                            // A keeper offers it too: the image stays known to the site
                            // while any node that holds it is live.
                            self.images
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .offer(image.clone());
                        }
                        held.insert(image);
                    }
                    Err(e) => tracing::warn!(%image, error = %e, "not replicated"),
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    fn announce(&self, digest: &Digest) {
        let d = digest.to_string();
        let mut a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        if a.digests.insert(d.clone()) {
            self.peers.provide(&d);
        }
    }

    /// The live peers that hold `digest` whole, with the size each claims: those the DHT
    /// names as its providers, each asked to confirm (a record may be stale, or a lie).
    async fn holders(&self, repo: &RepoName, digest: &Digest) -> Vec<(NodeId, u64)> {
        let live = self.peers.live_peers();
        let asked = std::time::Instant::now();
        let providers = self.peers.providers(&digest.to_string()).await;
        tracing::debug!(
            %digest,
            providers = providers.as_ref().map(Vec::len),
            took_ms = asked.elapsed().as_millis() as u64,
            "provider lookup"
        );
        let candidates: Vec<(NodeId, String)> = match providers {
            Some(providers) => live
                .into_iter()
                .filter(|(id, _)| providers.contains(id))
                .collect(),
            // No DHT: every live peer is asked.
            None => live,
        };
        let asks = candidates.into_iter().map(|(id, url)| {
            let req = self.client.signed(
                self.client
                    .head(format!("{url}/strata/v1/site/blobs/{digest}"))
                    .query(&[("repo", repo.as_str())])
                    .timeout(ASK_TIMEOUT),
            );
            async move {
                let resp = req.ok()?.send().await.ok()?;
                if resp.status() != StatusCode::OK {
                    return None;
                }
                let size = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)?
                    .to_str()
                    .ok()?
                    .parse()
                    .ok()?;
                Some((id, size))
            }
        });
        let holders: Vec<(NodeId, u64)> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        self.counters
            .holders_found
            .fetch_add(holders.len() as u64, Ordering::Relaxed);
        holders
    }

    /// One piece from a peer: its bytes, exactly the piece's length.
    async fn piece_from_peer(
        client: PeerClient,
        url: String,
        repo: RepoName,
        digest: Digest,
        size: u64,
        piece: u64,
        len: u64,
    ) -> Result<Bytes, String> {
        // A peer that answers pings but trickles a piece (or waits on a stalled upstream)
        // is given up after 30 s plus 4 s per MiB.
        let deadline = Duration::from_secs(30) + Duration::from_millis(len * 4000 / (1 << 20));
        let req = client
            .get(format!("{url}/strata/v1/site/pieces/{digest}"))
            .timeout(deadline)
            .query(&[
                ("repo", repo.to_string()),
                ("size", size.to_string()),
                ("piece", piece.to_string()),
            ]);
        let resp = client
            .signed(req)?
            .send()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let why = resp.text().await.unwrap_or_default();
            return Err(format!("answered {status}: {}", why.trim()));
        }
        let mut body = resp.bytes_stream();
        let mut buf = BytesMut::with_capacity(len as usize);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| format!("broke off: {e}"))?
        {
            if (buf.len() + chunk.len()) as u64 > len {
                return Err(format!("sent more than the {len} bytes of piece {piece}"));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != len {
            return Err(format!(
                "sent {} of the {len} bytes of piece {piece}",
                buf.len()
            ));
        }
        Ok(buf.freeze())
    }

    /// Piece `piece` from the upstream into `partial`, once for the whole node.
    async fn piece_from_upstream(
        self: &Arc<Self>,
        partial: &Arc<Partial>,
        repo: &RepoName,
        digest: &Digest,
        piece: u64,
    ) -> Result<(), String> {
        let site = self.clone();
        let (repo, digest) = (repo.clone(), digest.clone());
        let size = partial.size();
        let range = piece_range(piece, size, partial.piece_size());
        partial
            .from_upstream(piece, async move {
                let streams = strata_edge::upstream_streams(site.peers.live().len());
                let weight = (strata_edge::pieces::SITE_UPSTREAM_STREAMS / streams).max(1);
                let asked = std::time::Instant::now();
                let _slot = site
                    .upstream_slots
                    .acquire_many(weight as u32)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::debug!(%digest, piece, waited_ms = asked.elapsed().as_millis() as u64, "upstream piece");
                let bytes = site
                    .upstream
                    .blob_range(&repo, &digest, range, size)
                    .await
                    .map_err(|e| e.to_string())?;
                site.counters
                    .upstream_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Ok(bytes)
            })
            .await
    }

    /// Assembles blob `digest` into `partial` from the site and the upstream, verified.
    async fn assemble(
        self: &Arc<Self>,
        partial: &Arc<Partial>,
        repo: &RepoName,
        digest: &Digest,
        holders: &[NodeId],
    ) -> Result<(), UpstreamError> {
        let size = partial.size();
        let piece_size = partial.piece_size();
        let me = self.peers.me().clone();
        let mut schedule = Schedule::new(
            me,
            &digest.to_string(),
            size,
            piece_size,
            PER_PEER,
            strata_edge::upstream_streams(self.peers.live().len()),
        );
        for piece in 0..partial.pieces() {
            if partial.has_from_upstream(piece) {
                schedule.have(piece, Source::Upstream);
            }
        }
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(u64, Source, Result<Option<Bytes>, String>)>();
        let mut running: HashMap<u64, (Source, tokio::task::JoinHandle<()>)> = HashMap::new();
        // Suspect pieces: the digest of the copy a peer sent, to compare with the upstream's.
        let mut first_copies: HashMap<u64, Digest> = HashMap::new();
        let mut failures = 0usize;
        let mut peer_failures: HashMap<NodeId, usize> = HashMap::new();
        let mut tick = tokio::time::interval(LIVENESS_CHECK);
        loop {
            let live = self.peers.live();
            let live_set: HashSet<&NodeId> = live.iter().collect();
            let holders_now = |_: u64| -> Vec<Candidate> {
                holders
                    .iter()
                    .filter(|h| live_set.contains(h))
                    .map(|h| Candidate {
                        id: h.clone(),
                        proximity: self.peers.proximity(h),
                        in_flight: 0,
                    })
                    .collect()
            };
            loop {
                match schedule.next(&live, holders_now) {
                    Action::Fetch { piece, from } => {
                        let task =
                            self.start_piece(partial, repo, digest, piece, &from, tx.clone());
                        running.insert(piece, (from, task));
                    }
                    Action::Wait => break,
                    Action::Verify => {
                        let actual = partial
                            .digest(digest.algorithm())
                            .await
                            .map_err(site_error)?;
                        if &actual == digest {
                            // The node stores it next: peers may ask for it from now on.
                            self.announce(digest);
                            return Ok(());
                        }
                        let again = schedule.mismatch();
                        if again.is_empty() {
                            return Err(UpstreamError(format!(
                                "sent blob bytes of digest {actual} for {digest}"
                            )));
                        }
                        tracing::warn!(%digest, suspects = again.len(), "assembled blob does not match its digest: checking the pieces peers sent against the upstream");
                        for piece in again {
                            let copy = partial.read_piece(piece).await.map_err(site_error)?;
                            first_copies.insert(piece, Digest::sha256(&copy));
                            partial.forget(piece);
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                Some((piece, from, outcome)) = rx.recv() => {
                    if !schedule.awaited(piece, &from) {
                        // A reply to a request given up: the piece is asked elsewhere.
                        continue;
                    }
                    running.remove(&piece);
                    match outcome {
                        Ok(bytes) => {
                            if let Some(bytes) = bytes {
                                self.counters.peer_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                partial.put_from_peer(piece, bytes).await.map_err(site_error)?;
                            }
                            let matches = match first_copies.remove(&piece) {
                                Some(first) => {
                                    let copy = partial.read_piece(piece).await.map_err(site_error)?;
                                    Digest::sha256(&copy) == first
                                }
                                None => true,
                            };
                            if let Some(liar) = schedule.arrived(piece, &from, matches) {
                                self.counters.exclusions.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(peer = %liar.as_str(), %digest, piece, "peer sent bytes that differ from the upstream's: excluded");
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            if let Source::Peer(id) = &from {
                                self.counters.peer_failures.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(peer = %id.as_str(), %digest, piece, error = %e, "piece not fetched from peer");
                                let n = peer_failures.entry(id.clone()).or_insert(0);
                                *n += 1;
                                if *n == PEER_FAILURES {
                                    tracing::warn!(peer = %id.as_str(), %digest, "peer failed {PEER_FAILURES} pieces: not asked again for this blob");
                                    schedule.exclude(id.clone());
                                }
                            } else {
                                tracing::info!(%digest, piece, error = %e, "piece not fetched from upstream");
                                if self.upstream.ranges_broken() {
                                    return Err(UpstreamError(format!("blob {digest}: the upstream does not serve ranges: {e}")));
                                }
                            }
                            schedule.failed(piece, &from);
                            if failures > MAX_FAILURES {
                                return Err(UpstreamError(format!("blob {digest}: {e}")));
                            }
                            if matches!(from, Source::Upstream) {
                                // Nobody else will fetch it: give the upstream a moment.
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    // A peer that died (connection dropped, pings stopped) answers nothing:
                    // its requests are asked of someone else.
                    let live = self.peers.live();
                    let dead: Vec<u64> = running
                        .iter()
                        .filter(|(_, (from, _))| matches!(from, Source::Peer(id) if !live.contains(id)))
                        .map(|(piece, _)| *piece)
                        .collect();
                    for piece in dead {
                        if let Some((from, task)) = running.remove(&piece) {
                            task.abort();
                            tracing::info!(%digest, piece, "peer died mid-transfer: asking another source");
                            schedule.failed(piece, &from);
                        }
                    }
                    if running.is_empty() {
                        failures += 1;
                        if failures > MAX_FAILURES {
                            return Err(UpstreamError(format!("blob {digest}: no source answers")));
                        }
                    }
                }
            }
        }
    }

    fn start_piece(
        self: &Arc<Self>,
        partial: &Arc<Partial>,
        repo: &RepoName,
        digest: &Digest,
        piece: u64,
        from: &Source,
        tx: mpsc::UnboundedSender<(u64, Source, Result<Option<Bytes>, String>)>,
    ) -> tokio::task::JoinHandle<()> {
        let site = self.clone();
        let partial = partial.clone();
        let (repo, digest, from) = (repo.clone(), digest.clone(), from.clone());
        tokio::spawn(async move {
            let outcome = match &from {
                Source::Upstream => site
                    .piece_from_upstream(&partial, &repo, &digest, piece)
                    .await
                    .map(|()| None),
                Source::Peer(id) => match site.peers.url(id) {
                    Some(url) => {
                        let (start, end) = piece_range(piece, partial.size(), partial.piece_size());
                        Site::piece_from_peer(
                            site.client.clone(),
                            url,
                            repo,
                            digest,
                            partial.size(),
                            piece,
                            end - start,
                        )
                        .await
                        .map(Some)
                    }
                    None => Err("no address".into()),
                },
            };
            let _ = tx.send((piece, from, outcome));
        })
    }

    /// The site's HTTP routes, to be served beside the registry's API: `peers`, the
    /// endpoints nodes ask each other (members only in a site with a key), and `operator`,
    /// the status and preheat endpoints (the node serves them as admin routes).
    pub fn routes(self: &Arc<Self>, registry: Registry) -> SiteRoutes {
        let state = SiteState {
            site: self.clone(),
            registry,
        };
        let peers = Router::new()
            .route(
                "/strata/v1/site/blobs/{digest}",
                get(blob_held).head(blob_held),
            )
            .route("/strata/v1/site/pieces/{digest}", get(piece))
            .route("/strata/v1/site/manifests/{*rest}", get(manifest))
            .route("/strata/v1/site/images", get(images))
            .route(PEER_PREHEAT, post(peer_preheat))
            .route_layer(axum::middleware::from_fn_with_state(
                self.client.key(),
                members_only,
            ))
            .with_state(state.clone());
        let operator = Router::new()
            .route("/strata/v1/site/status", get(status))
            .route("/strata/v1/site/preheat", post(preheat))
            .with_state(state);
        SiteRoutes { peers, operator }
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let c = &self.counters;
        vec![
            ("upstream_bytes", c.upstream_bytes.load(Ordering::Relaxed)),
            ("peer_bytes", c.peer_bytes.load(Ordering::Relaxed)),
            ("served_bytes", c.served_bytes.load(Ordering::Relaxed)),
            ("peer_failures", c.peer_failures.load(Ordering::Relaxed)),
            ("exclusions", c.exclusions.load(Ordering::Relaxed)),
            ("lookups", c.lookups.load(Ordering::Relaxed)),
            ("holders_found", c.holders_found.load(Ordering::Relaxed)),
            ("replicated", c.replicated.load(Ordering::Relaxed)),
            ("live_nodes", self.peers.live().len() as u64),
        ]
    }
}

#[async_trait]
impl Upstream for Site {
    fn serves(&self, repo: &RepoName) -> bool {
        self.upstream.serves(repo)
    }

    fn mirror_only(&self, repo: &RepoName) -> bool {
        self.upstream.mirror_only(repo)
    }

    fn local_name(&self, ns: &str, repo: &RepoName) -> Option<RepoName> {
        self.upstream.local_name(ns, repo)
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        let found = self.upstream.manifest(repo, reference).await?;
        if let Some(m) = &found {
            self.note_image(repo, &m.bytes);
        }
        Ok(found)
    }

    /// The upstream cannot be reached and the node knows nothing of `reference`: the live
    /// peers that hold it answer. Every answering peer must agree (a tag moved upstream may
    /// be known at two digests in the site: then none is taken), and a manifest is no larger
    /// than the registry accepts.
    async fn manifest_elsewhere(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Option<UpstreamManifest> {
        let asks = self.peers.live_peers().into_iter().map(|(id, url)| {
            let req = self.client.signed(
                self.client
                    .get(format!("{url}/strata/v1/site/manifests/{repo}/{reference}"))
                    .timeout(ASK_TIMEOUT * 5),
            );
            async move {
                let resp = req.ok()?.send().await.ok()?;
                if resp.status() != StatusCode::OK {
                    return None;
                }
                let media_type = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut body = resp.bytes_stream();
                let mut buf = BytesMut::new();
                while let Some(chunk) = body.try_next().await.ok()? {
                    if buf.len() + chunk.len() > MAX_MANIFEST {
                        tracing::warn!(peer = %id.as_str(), %repo, %reference, "peer sent a manifest over {MAX_MANIFEST} bytes");
                        return None;
                    }
                    buf.extend_from_slice(&chunk);
                }
                Some((id, UpstreamManifest { bytes: buf.freeze(), media_type }))
            }
        });
        let answers: Vec<(NodeId, UpstreamManifest)> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let (first_id, first) = answers.first()?;
        if answers.iter().any(|(_, m)| m.bytes != first.bytes) {
            tracing::warn!(%repo, %reference, answers = answers.len(), "peers disagree on the manifest: none taken");
            return None;
        }
        tracing::info!(%repo, %reference, peer = %first_id.as_str(), agreeing = answers.len(), "manifest from the site: the upstream cannot be reached");
        self.note_image(repo, &first.bytes);
        Some(first.clone())
    }

    /// The blob as it is assembled: the registry streams it to its clients while pieces
    /// arrive (the last byte once verified) and stores it once verified.
    async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
        // An upstream known not to serve ranges gives the whole blob; the registry verifies
        // it as for any upstream.
        if self.upstream.ranges_broken() {
            return self.upstream.blob(repo, digest).await;
        }
        // `Upstream` takes `&self`; the fetch's tasks need an owner: a handle on the same
        // peers, partials and counters.
        let site = Arc::new(self.share());
        let known = site
            .sizes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .copied();
        let holders = site.holders(repo, digest).await;
        // The size the upstream confirmed earlier, else the one most holders claim (the
        // digest decides in the end), else the upstream's.
        let mut claims: HashMap<u64, usize> = HashMap::new();
        for (_, s) in &holders {
            *claims.entry(*s).or_default() += 1;
        }
        let claimed = claims
            .into_iter()
            .max_by_key(|&(s, n)| (n, s))
            .map(|(s, _)| s);
        let size = match known.or(claimed) {
            Some(size) => size,
            None => match site.upstream.blob_size(repo, digest).await? {
                Some(size) => size,
                None => return Ok(None),
            },
        };
        // Holders that claim another size are not asked.
        let holders: Vec<NodeId> = holders
            .into_iter()
            .filter(|(_, s)| *s == size)
            .map(|(id, _)| id)
            .collect();
        let partial = site.partials.open(digest, size).map_err(site_error)?;
        partial.begin();
        let fill = partial.fill().keeping(Arc::new(RemoveWhenStored {
            partials: Arc::downgrade(&site.partials),
            digest: digest.clone(),
            size,
        }));
        let (repo, digest) = (repo.clone(), digest.clone());
        tokio::spawn(async move {
            let outcome = match site.assemble(&partial, &repo, &digest, &holders).await {
                Ok(()) => Ok(()),
                // An upstream that does not serve ranges still serves whole blobs.
                Err(e) if site.upstream.ranges_broken() => {
                    tracing::warn!(%digest, error = %e, "the upstream does not serve ranges: fetching the whole blob from it");
                    site.whole_into(&partial, &repo, &digest).await
                }
                Err(e) => {
                    if !holders.is_empty() {
                        // Perhaps the peers lied about the size: the upstream's decides
                        // from now on.
                        if let Ok(Some(real)) = site.upstream.blob_size(&repo, &digest).await {
                            if real != size {
                                tracing::warn!(%digest, claimed = size, real, "peers claimed a wrong blob size");
                                site.sizes
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(digest.clone(), real);
                            }
                        }
                    }
                    Err(e)
                }
            };
            if let Err(e) = &outcome {
                tracing::warn!(%digest, error = %e, "blob not assembled");
            }
            partial.end(outcome.map_err(|e| e.to_string()));
        });
        Ok(Some(UpstreamBlob::Filling(fill)))
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        Site::stats(self)
    }
}

impl Site {
    fn share(&self) -> Site {
        Site {
            peers: self.peers.clone(),
            upstream: self.upstream.clone(),
            partials: self.partials.clone(),
            local: self.local.clone(),
            client: self.client.clone(),
            counters: self.counters.clone(),
            announced: self.announced.clone(),
            sizes: self.sizes.clone(),
            images: self.images.clone(),
            upstream_slots: self.upstream_slots.clone(),
        }
    }

    /// The whole blob from the upstream into `partial`, piece by piece as it arrives (for
    /// an upstream that does not serve ranges), then verified.
    async fn whole_into(
        &self,
        partial: &Arc<Partial>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), UpstreamError> {
        let mut body = match self.upstream.blob(repo, digest).await? {
            Some(UpstreamBlob::Stream { body, .. }) => body,
            _ => {
                return Err(UpstreamError(format!(
                    "blob {digest}: gone from the upstream"
                )))
            }
        };
        let (size, piece_size) = (partial.size(), partial.piece_size());
        let mut piece = 0u64;
        let mut buf = BytesMut::new();
        loop {
            let chunk = body
                .try_next()
                .await
                .map_err(|e| UpstreamError(format!("blob {digest} broke off: {e}")))?;
            if let Some(chunk) = &chunk {
                self.counters
                    .upstream_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                buf.extend_from_slice(chunk);
            }
            while piece < partial.pieces() {
                let (start, end) = piece_range(piece, size, piece_size);
                let len = (end - start) as usize;
                if buf.len() < len {
                    break;
                }
                let bytes = buf.split_to(len).freeze();
                partial
                    .from_upstream(piece, async move { Ok(bytes) })
                    .await
                    .map_err(UpstreamError)?;
                piece += 1;
            }
            if chunk.is_none() {
                break;
            }
        }
        if piece < partial.pieces() || !buf.is_empty() {
            return Err(UpstreamError(format!(
                "blob {digest}: the upstream sent a body of another length than {size}"
            )));
        }
        let actual = partial
            .digest(digest.algorithm())
            .await
            .map_err(site_error)?;
        if &actual != digest {
            return Err(UpstreamError(format!(
                "sent blob bytes of digest {actual} for {digest}"
            )));
        }
        self.announce(digest);
        Ok(())
    }
}

/// Held by the fill a registry reads: once it lets go (the blob is stored, or its fetch
/// failed), a verified partial blob is removed, so a stored blob does not take its size
/// twice on disk.
struct RemoveWhenStored {
    partials: std::sync::Weak<Partials>,
    digest: Digest,
    size: u64,
}

impl Drop for RemoveWhenStored {
    fn drop(&mut self) {
        if let Some(p) = self.partials.upgrade() {
            p.remove_verified(&self.digest, self.size);
        }
    }
}

#[derive(Clone)]
struct SiteState {
    site: Arc<Site>,
    registry: Registry,
}

#[derive(serde::Deserialize)]
struct RepoQuery {
    repo: String,
}

#[derive(serde::Deserialize)]
struct PieceQuery {
    repo: String,
    size: u64,
    piece: u64,
}

fn bad(status: StatusCode, why: impl Into<String>) -> Response {
    (status, why.into()).into_response()
}

fn parse_names(repo: &str, digest: &str) -> Result<(RepoName, Digest), String> {
    let repo: RepoName = repo.parse().map_err(|e| format!("repository: {e}"))?;
    let digest: Digest = digest.parse().map_err(|e| format!("digest: {e}"))?;
    Ok((repo, digest))
}

/// Whether this node holds a blob whole (`Content-Length`: its size).
async fn blob_held(
    State(st): State<SiteState>,
    Path(digest): Path<String>,
    Query(q): Query<RepoQuery>,
) -> Response {
    let (repo, digest) = match parse_names(&q.repo, &digest) {
        Ok(x) => x,
        Err(why) => return bad(StatusCode::BAD_REQUEST, why),
    };
    match st.site.local.stat(&repo, &digest).await {
        Ok(Some(size)) => {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, size.into());
            (StatusCode::OK, h).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One piece of a blob: from the blob if this node holds it whole, else from the pieces it
/// fetched from the upstream, fetching this one now if need be (this node owns it).
async fn piece(
    State(st): State<SiteState>,
    Path(digest): Path<String>,
    Query(q): Query<PieceQuery>,
) -> Response {
    let (repo, digest) = match parse_names(&q.repo, &digest) {
        Ok(x) => x,
        Err(why) => return bad(StatusCode::BAD_REQUEST, why),
    };
    let site = &st.site;
    let piece_size = strata_edge::piece_size_for(q.size);
    if q.piece >= piece_count(q.size, piece_size) {
        return bad(
            StatusCode::BAD_REQUEST,
            format!("piece {} of a blob of {} bytes", q.piece, q.size),
        );
    }
    let (start, end) = piece_range(q.piece, q.size, piece_size);
    if let Ok(Some(size)) = site.local.stat(&repo, &digest).await {
        if size == q.size {
            return match site.local.read(&repo, &digest, start, end).await {
                Ok(stream) => {
                    site.counters
                        .served_bytes
                        .fetch_add(end - start, Ordering::Relaxed);
                    Body::from_stream(stream).into_response()
                }
                Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        }
    }
    if !site.upstream.serves(&repo) {
        return bad(StatusCode::NOT_FOUND, format!("no upstream serves {repo}"));
    }
    let partial = match site.partials.open(&digest, q.size) {
        Ok(p) => p,
        Err(e) => return bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Err(e) = site
        .piece_from_upstream(&partial, &repo, &digest, q.piece)
        .await
    {
        return bad(StatusCode::BAD_GATEWAY, e);
    }
    match partial.read_piece(q.piece).await {
        Ok(bytes) => {
            site.counters
                .served_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            bytes.into_response()
        }
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A manifest this node holds (never fetched upstream for the asking peer).
async fn manifest(State(st): State<SiteState>, Path(rest): Path<String>) -> Response {
    let Some((repo, reference)) = rest.rsplit_once('/') else {
        return bad(StatusCode::BAD_REQUEST, "expected REPOSITORY/REFERENCE");
    };
    let Ok(repo) = repo.parse::<RepoName>() else {
        return bad(StatusCode::BAD_REQUEST, "bad repository name");
    };
    let Ok(reference) = reference.parse::<Reference>() else {
        return bad(StatusCode::BAD_REQUEST, "bad reference");
    };
    match st.registry.manifest_local(&repo, &reference).await {
        Ok(m) => {
            let mut h = HeaderMap::new();
            if let Ok(v) = m.record.media_type.parse() {
                h.insert(header::CONTENT_TYPE, v);
            }
            (StatusCode::OK, h, m.bytes).into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Pulls images into this node and, with `spread: site`, then into every live peer (which
/// take the bytes from this node and each other, not the uplink). `200` with a report per
/// node when every node succeeded, `502` when one failed.
async fn preheat(
    State(st): State<SiteState>,
    axum::Json(req): axum::Json<PreheatRequest>,
) -> Response {
    let me = st.site.peers.me().as_str().to_string();
    let mut nodes = Vec::new();
    let mut failed = 0usize;
    match preheat_node(&st.registry, &req.images).await {
        Ok(r) => nodes.push(serde_json::json!({"id": me, "report": r})),
        Err(e) => {
            tracing::warn!(error = %e, "preheat failed");
            let body = serde_json::json!({"nodes": [{"id": me, "error": e}], "failed": 1});
            return (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response();
        }
    }
    if req.spread == Spread::Site {
        let ask = PreheatRequest {
            images: req.images.clone(),
            spread: Spread::Node,
        };
        let asks = st.site.peers.live_peers().into_iter().map(|(id, url)| {
            let client = &st.site.client;
            let req = client.signed(
                client
                    .post(format!("{url}{PEER_PREHEAT}"))
                    .json(&ask)
                    .timeout(PREHEAT_TIMEOUT),
            );
            async move {
                let outcome = match req.map(|r| r.send()) {
                    Err(e) => Err(e),
                    Ok(sent) => match sent.await {
                        Ok(resp) => {
                            let ok = resp.status().is_success();
                            let body: serde_json::Value = resp.json().await.unwrap_or_default();
                            match (ok, body["nodes"][0]["report"].clone()) {
                                (true, report) if !report.is_null() => Ok(report),
                                _ => Err(body["nodes"][0]["error"]
                                    .as_str()
                                    .unwrap_or("preheat failed")
                                    .to_string()),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                (id, outcome)
            }
        });
        for (id, outcome) in futures_util::future::join_all(asks).await {
            match outcome {
                Ok(report) => nodes.push(serde_json::json!({"id": id.as_str(), "report": report})),
                Err(e) => {
                    failed += 1;
                    nodes.push(serde_json::json!({"id": id.as_str(), "error": e}));
                }
            }
        }
    }
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    let body = serde_json::json!({"nodes": nodes, "failed": failed});
    (status, axum::Json(body)).into_response()
}

/// A peer's part of a preheat: this node only.
async fn peer_preheat(
    st: State<SiteState>,
    axum::Json(req): axum::Json<PreheatRequest>,
) -> Response {
    let req = PreheatRequest {
        spread: Spread::Node,
        ..req
    };
    preheat(st, axum::Json(req)).await
}

/// Lets through the requests a member of the site signed (every request in an open site).
async fn members_only(
    State(key): State<Option<Arc<SiteKey>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(key) = key else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_PEER_BODY).await else {
        return bad(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let value = parts
        .headers
        .get(sign::HEADER)
        .and_then(|v| v.to_str().ok());
    match key.verify(value, parts.method.as_str(), &path, &body, sign::unix_now()) {
        Ok(_node) => {
            next.run(axum::extract::Request::from_parts(parts, Body::from(body)))
                .await
        }
        Err(e) => {
            tracing::info!(reason = %e, path = parts.uri.path(), "site request refused");
            bad(
                StatusCode::UNAUTHORIZED,
                format!("members of the site only: {e}"),
            )
        }
    }
}

/// The images this node offers for replication (`REPO@DIGEST`), as a JSON array.
async fn images(State(st): State<SiteState>) -> Response {
    let list: Vec<String> = st
        .site
        .images
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set
        .iter()
        .cloned()
        .collect();
    axum::Json(list).into_response()
}

/// The site as this node sees it: its id, the live nodes, and its counters.
async fn status(State(st): State<SiteState>) -> Response {
    let site = &st.site;
    let peers: Vec<serde_json::Value> = site
        .peers
        .live_peers()
        .into_iter()
        .map(|(id, url)| serde_json::json!({"id": id.as_str(), "url": url}))
        .collect();
    let counters: serde_json::Map<String, serde_json::Value> = site
        .stats()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    axum::Json(serde_json::json!({
        "id": site.peers.me().as_str(),
        "peers": peers,
        "counters": counters,
    }))
    .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_image_list_survives_a_restart_and_skips_what_a_crash_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images");
        let a = format!("lib/app@{}", Digest::sha256(b"a"));
        let b = format!("docker.io/library/nginx@{}", Digest::sha256(b"b"));

        let mut first = ImageList::default();
        assert_eq!(
            first.keep_in(&path).unwrap(),
            0,
            "a new node offered nothing"
        );
        first.offer(a.clone());
        first.offer(b.clone());
        first.offer(a.clone());
        drop(first);
        // A crash while a line was appended, and a line someone edited in by hand.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            write!(f, "lib/app:latest\nlib/app@sha256:12").unwrap();
        }

        let mut again = ImageList::default();
        assert_eq!(again.keep_in(&path).unwrap(), 2);
        let want: std::collections::BTreeSet<String> = [a.clone(), b].into_iter().collect();
        assert_eq!(again.set, want);
        // Rewritten without the bad lines, and appended to from there.
        let c = format!("lib/db@{}", Digest::sha256(b"c"));
        again.offer(c.clone());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with(&format!("{c}\n")));
    }
}
