//! The peers of a site: who they are, where their HTTP API is, whether they are alive.
//!
//! rust-libp2p carries only this: nodes find each other by static bootstrap addresses and
//! by mDNS on the LAN, connect over TCP inside a private network (the site's pre-shared
//! key: a node without it cannot complete a connection) with Noise and yamux, tell each
//! other their HTTP address and labels (identify's agent string) and ping each other every
//! second. What is heard feeds `strata_edge::Membership`, so a dead node stops being used
//! when its connection drops or its pings stop (seconds), never when some record expires.
//!
//! Content routing is Kademlia in server mode on the site's own protocol
//! (`/strata/site/kad/1`): a node announces the digests of the blobs it holds as provider
//! records, and a node missing a blob asks the DHT who provides it, then keeps only the
//! providers that are live. Records are tuned to a site (republished every few minutes,
//! expiring after a quarter of an hour, not the defaults of 12 h / 48 h), and only records
//! sent by identified site members about themselves are stored.
//! Bytes never move over libp2p: they move over the nodes' OCI HTTP API.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use libp2p::core::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, identity, kad, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
    Transport,
};
use strata_edge::{Labels, Membership, NodeId, Proximity};
use tokio::sync::{mpsc, oneshot};

/// The prefix of a strata node's identify agent string.
const AGENT: &str = "strata/";
/// How often peers are pinged, and how long a node is live without being heard from.
const PING_EVERY: Duration = Duration::from_secs(1);
const LIVENESS: Duration = Duration::from_secs(3);
/// How often static bootstrap addresses are dialled while not connected.
const REDIAL_EVERY: Duration = Duration::from_secs(2);
/// The site's DHT protocol (not the public IPFS one: a site's records stay in the site).
const KAD_PROTOCOL: &str = "/strata/site/kad/1";
/// Provider records: republished by their provider this often, dropped by others after
/// this long without a republish (a site's churn, not the internet's).
const PROVIDER_REPUBLISH: Duration = Duration::from_secs(180);
const PROVIDER_TTL: Duration = Duration::from_secs(900);
/// The longest a provider lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds of the record store: blobs this node announces, providers kept per blob.
const MAX_PROVIDED: usize = 1_000_000;
const MAX_PROVIDERS_PER_BLOB: usize = 1024;

/// Why the site could not start.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("site key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("site identity {path}: {why}")]
    Identity { path: PathBuf, why: String },
    #[error("site transport: {0}")]
    Transport(String),
    #[error("cannot listen for site peers on {addr}: {why}")]
    Listen { addr: Multiaddr, why: String },
}

/// How a node joins its site.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Where to listen for peers, e.g. `/ip4/0.0.0.0/tcp/7946`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial (and redial while not connected).
    pub bootstrap: Vec<Multiaddr>,
    /// The site's pre-shared key (`None`: an open site, for tests and trusted LANs).
    pub psk: Option<PreSharedKey>,
    /// Find peers by mDNS on the LAN.
    pub mdns: bool,
    /// This node's HTTP API as peers reach it: the port (peers use the address they see
    /// this node at), or a whole URL.
    pub http_port: u16,
    pub http_url: Option<String>,
    /// The API speaks TLS on `http_port` (peers ask it by `https://`).
    pub http_tls: bool,
    pub labels: Labels,
    /// Where the node's peer identity (an ed25519 key) is kept across restarts.
    pub identity_file: PathBuf,
}

/// Reads a site key file: libp2p's swarm key format (`/key/swarm/psk/1.0.0/`, `/base16/`,
/// 64 hex digits), which must not be readable by others.
pub fn read_psk(path: &Path) -> Result<PreSharedKey, SiteError> {
    let err = |why: String| SiteError::Key {
        path: path.to_path_buf(),
        why,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is readable by others (mode {:o}): chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    text.parse::<PreSharedKey>()
        .map_err(|e| err(format!("not a swarm key: {e}")))
}

fn load_identity(path: &Path) -> Result<identity::Keypair, SiteError> {
    let err = |why: String| SiteError::Identity {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            identity::Keypair::from_protobuf_encoding(&bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_private(path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What this node tells its peers about itself, in identify's agent string.
fn agent(config: &SiteConfig) -> String {
    let l = &config.labels;
    let http = match &config.http_url {
        Some(url) => format!("http={url}"),
        None if config.http_tls => format!("https=:{}", config.http_port),
        None => format!("http=:{}", config.http_port),
    };
    format!(
        "{AGENT}{} {http} site={} zone={} rack={}",
        env!("CARGO_PKG_VERSION"),
        l.site,
        l.zone,
        l.rack
    )
}

/// A peer's HTTP URL and labels from its agent string and the address it was seen at.
fn parse_agent(agent: &str, seen_at: Option<IpAddr>) -> Option<(String, Labels)> {
    let rest = agent.strip_prefix(AGENT)?;
    let mut fields = HashMap::new();
    for part in rest.split_whitespace().skip(1) {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k, v);
        }
    }
    let (scheme, http) = match fields.get("https") {
        Some(port) => ("https", *port),
        None => ("http", *fields.get("http")?),
    };
    let url = match http.strip_prefix(':') {
        Some(port) => {
            let port: u16 = port.parse().ok()?;
            match seen_at? {
                IpAddr::V4(ip) => format!("{scheme}://{ip}:{port}"),
                IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{port}"),
            }
        }
        None if http.starts_with("http://") || http.starts_with("https://") => {
            http.trim_end_matches('/').to_string()
        }
        None => return None,
    };
    let get = |k: &str| fields.get(k).copied().unwrap_or_default();
    Some((url, Labels::new(get("site"), get("zone"), get("rack"))))
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

#[derive(Debug)]
struct PeersInner {
    membership: Membership,
    http: HashMap<NodeId, String>,
}

/// What the rest of the node asks of the libp2p task's DHT.
#[derive(Debug)]
enum DhtCommand {
    Provide(kad::RecordKey),
    Unprovide(kad::RecordKey),
    Providers(kad::RecordKey, oneshot::Sender<HashSet<PeerId>>),
}

/// The DHT key of a blob: its digest's text, `sha256:<hex>`.
fn blob_key(digest: &str) -> kad::RecordKey {
    kad::RecordKey::new(&digest.as_bytes())
}

/// The site as this node sees it: shared between the libp2p task that hears peers and the
/// code that fetches from them.
#[derive(Debug, Clone)]
pub struct Peers {
    me: NodeId,
    labels: Labels,
    epoch: Instant,
    inner: Arc<Mutex<PeersInner>>,
    /// The libp2p task's DHT (`None` for a membership without a swarm).
    dht: Option<mpsc::UnboundedSender<DhtCommand>>,
}

impl Peers {
    /// A site of one (this node), to which peers are added as they are heard.
    pub fn new(me: NodeId, labels: Labels) -> Self {
        Peers {
            me,
            labels,
            epoch: Instant::now(),
            inner: Arc::new(Mutex::new(PeersInner {
                membership: Membership::new(LIVENESS.as_millis() as u64),
                http: HashMap::new(),
            })),
            dht: None,
        }
    }

    /// Announces to the site that this node holds blob `digest` (a provider record, kept
    /// republished while this node runs and until [`Peers::unprovide`]).
    pub fn provide(&self, digest: &str) {
        if let Some(dht) = &self.dht {
            let _ = dht.send(DhtCommand::Provide(blob_key(digest)));
        }
    }

    /// Stops announcing blob `digest` (others drop the record when it expires; they check
    /// with this node before using it anyway).
    pub fn unprovide(&self, digest: &str) {
        if let Some(dht) = &self.dht {
            let _ = dht.send(DhtCommand::Unprovide(blob_key(digest)));
        }
    }

    /// The live peers that announce blob `digest`, or `None` when this membership has no
    /// DHT (the caller then asks every live peer).
    pub async fn providers(&self, digest: &str) -> Option<Vec<NodeId>> {
        let dht = self.dht.as_ref()?;
        let (tx, rx) = oneshot::channel();
        if dht
            .send(DhtCommand::Providers(blob_key(digest), tx))
            .is_err()
        {
            return None;
        }
        // The task answers within LOOKUP_TIMEOUT (the query's own timeout); a little more
        // here covers a busy task.
        let found = tokio::time::timeout(LOOKUP_TIMEOUT * 2, rx)
            .await
            .ok()?
            .ok()?;
        let live: HashSet<NodeId> = self.live().into_iter().collect();
        Some(
            found
                .into_iter()
                .map(|p| NodeId(p.to_string()))
                .filter(|id| *id != self.me && live.contains(id))
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeersInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        // Never 0: the membership reads a last-heard time of 0 as "failed".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// `id` (HTTP API at `url`) was heard from now.
    pub fn heard(&self, id: NodeId, url: String, labels: Labels) {
        let now = self.now_ms();
        let mut inner = self.lock();
        inner.membership.heard(id.clone(), labels, now);
        inner.http.insert(id, url);
    }

    /// `id` answered a ping: still alive (if it was ever identified).
    fn pinged(&self, id: &NodeId) {
        let now = self.now_ms();
        let mut inner = self.lock();
        if let Some(labels) = inner.membership.labels(id).cloned() {
            inner.membership.heard(id.clone(), labels, now);
        }
    }

    /// `id` failed (its connection closed, a ping or a request failed): dead until heard
    /// from again.
    pub fn failed(&self, id: &NodeId) {
        self.lock().membership.failed(id);
    }

    /// The live nodes of the site, this one included, in id order.
    pub fn live(&self) -> Vec<NodeId> {
        let now = self.now_ms();
        let mut live = self.lock().membership.live(now);
        if !live.contains(&self.me) {
            live.push(self.me.clone());
            live.sort();
        }
        live
    }

    /// The live peers (not this node) with their HTTP URLs.
    pub fn live_peers(&self) -> Vec<(NodeId, String)> {
        let now = self.now_ms();
        let inner = self.lock();
        inner
            .membership
            .live(now)
            .into_iter()
            .filter(|id| *id != self.me)
            .filter_map(|id| inner.http.get(&id).cloned().map(|url| (id, url)))
            .collect()
    }

    pub fn url(&self, id: &NodeId) -> Option<String> {
        self.lock().http.get(id).cloned()
    }

    pub fn proximity(&self, id: &NodeId) -> Proximity {
        self.lock()
            .membership
            .labels(id)
            .map_or(Proximity::Elsewhere, |l| self.labels.proximity(l))
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: libp2p::swarm::behaviour::toggle::Toggle<mdns::tokio::Behaviour>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

fn kademlia(peer_id: PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    config
        .set_query_timeout(LOOKUP_TIMEOUT)
        .set_provider_record_ttl(Some(PROVIDER_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
        // Values are not used by a site: none is stored; provider records are checked.
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_record_ttl(Some(PROVIDER_TTL))
        .set_publication_interval(None)
        .set_replication_interval(None);
    let store = kad::store::MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: MAX_PROVIDERS_PER_BLOB,
            max_provided_keys: MAX_PROVIDED,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// Joins the site: listens, dials the bootstrap peers, and keeps [`Peers`] up to date in a
/// task of its own for as long as the process runs.
pub async fn join(config: SiteConfig) -> Result<Peers, SiteError> {
    let key = load_identity(&config.identity_file)?;
    let me = NodeId(key.public().to_peer_id().to_string());
    let psk = config.psk;
    let transport_error = |e: &dyn std::fmt::Display| SiteError::Transport(e.to_string());
    let agent = agent(&config);
    let use_mdns = config.mdns;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let base = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let transport = base
                .and_then(move |socket, _| async move {
                    match psk {
                        Some(psk) => PnetConfig::new(psk)
                            .handshake(socket)
                            .await
                            .map(futures_util::future::Either::Left)
                            .map_err(std::io::Error::other),
                        None => Ok(futures_util::future::Either::Right(socket)),
                    }
                })
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(Duration::from_secs(10));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(transport)
        })
        .map_err(|e| transport_error(&e))?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mdns = if use_mdns {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    peer_id,
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new("/strata/site/1".into(), key.public())
                        .with_agent_version(agent.clone()),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_EVERY)
                        .with_timeout(LIVENESS),
                ),
                mdns: mdns.into(),
                kad: kademlia(peer_id),
            })
        })
        .map_err(|e| transport_error(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SiteError::Listen {
                addr: addr.clone(),
                why: e.to_string(),
            })?;
    }
    let (dht_tx, mut dht_rx) = mpsc::unbounded_channel();
    let mut peers = Peers::new(me, config.labels.clone());
    peers.dht = Some(dht_tx);
    let task_peers = peers.clone();
    let bootstrap = config.bootstrap.clone();
    tokio::spawn(async move {
        let peers = task_peers;
        let mut state = TaskState::default();
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        loop {
            tokio::select! {
                _ = redial.tick() => {
                    if swarm.connected_peers().count() < bootstrap.len() {
                        for addr in &bootstrap {
                            // A dial to a connected peer is refused cheaply by the swarm.
                            let _ = swarm.dial(addr.clone());
                        }
                    }
                }
                Some(command) = dht_rx.recv() => {
                    on_command(&mut swarm, &mut state, command);
                }
                event = swarm.select_next_some() => {
                    on_event(&mut swarm, &peers, &mut state, event);
                }
            }
        }
    });
    Ok(peers)
}

/// What the libp2p task remembers between events.
#[derive(Default)]
struct TaskState {
    /// Where each connected peer was seen (its HTTP API is on that address).
    seen_at: HashMap<PeerId, IpAddr>,
    /// Provider lookups in progress: what was found so far, and who waits for it.
    lookups: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
}

fn on_command(swarm: &mut libp2p::Swarm<Behaviour>, state: &mut TaskState, command: DhtCommand) {
    let kad = &mut swarm.behaviour_mut().kad;
    match command {
        DhtCommand::Provide(key) => {
            if let Err(e) = kad.start_providing(key) {
                tracing::warn!(error = %e, "cannot announce a blob to the site");
            }
        }
        DhtCommand::Unprovide(key) => kad.stop_providing(&key),
        DhtCommand::Providers(key, reply) => {
            let id = kad.get_providers(key);
            state.lookups.insert(id, (HashSet::new(), reply));
        }
    }
}

fn on_kad(
    swarm: &mut libp2p::Swarm<Behaviour>,
    peers: &Peers,
    state: &mut TaskState,
    event: kad::Event,
) {
    match event {
        kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetProviders(result),
            step,
            ..
        } => {
            let mut done = step.last;
            match result {
                Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                    if let Some((found, _)) = state.lookups.get_mut(&id) {
                        found.extend(providers);
                    }
                }
                Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
                Err(e) => {
                    tracing::debug!(error = %e, "provider lookup ended early");
                    done = true;
                }
            }
            if done {
                if let Some((found, reply)) = state.lookups.remove(&id) {
                    let _ = reply.send(found);
                }
            }
        }
        kad::Event::InboundRequest {
            request:
                kad::InboundRequest::AddProvider {
                    record: Some(record),
                },
        } => {
            // Only a site member announcing itself is believed (a record naming another
            // node, or from a peer that never identified as a strata node, is dropped).
            let member = peers.url(&NodeId(record.provider.to_string())).is_some();
            if member {
                use kad::store::RecordStore as _;
                if let Err(e) = swarm.behaviour_mut().kad.store_mut().add_provider(record) {
                    tracing::debug!(error = %e, "provider record not stored");
                }
            } else {
                tracing::debug!(provider = %record.provider, "provider record from a non-member dropped");
            }
        }
        _ => {}
    }
}

fn on_event(
    swarm: &mut libp2p::Swarm<Behaviour>,
    peers: &Peers,
    state: &mut TaskState,
    event: SwarmEvent<BehaviourEvent>,
) {
    let seen_at = &mut state.seen_at;
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            tracing::info!(%address, peer_id = %peers.me().as_str(), "listening for site peers");
        }
        SwarmEvent::ConnectionEstablished {
            peer_id, endpoint, ..
        } => {
            if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                seen_at.insert(peer_id, ip);
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            tracing::info!(peer = %peer_id, "site peer disconnected");
            peers.failed(&NodeId(peer_id.to_string()));
            // Its routing entry too: lookups do not wait on a dead node (identify adds it
            // back when it reconnects).
            swarm.behaviour_mut().kad.remove_peer(&peer_id);
        }
        SwarmEvent::IncomingConnectionError {
            error,
            send_back_addr,
            ..
        } => {
            tracing::debug!(%send_back_addr, %error, "site connection refused");
        }
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            ..
        })) if peer_id.to_string() == peers.me().as_str() => {}
        SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => match parse_agent(&info.agent_version, seen_at.get(&peer_id).copied()) {
            Some((url, labels)) => {
                let id = NodeId(peer_id.to_string());
                if peers.url(&id).as_deref() != Some(url.as_str()) {
                    tracing::info!(peer = %peer_id, %url, "site peer joined");
                }
                peers.heard(id, url, labels);
                for addr in info.listen_addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            None => {
                tracing::warn!(peer = %peer_id, agent = %info.agent_version, "not a strata node: disconnecting");
                let _ = swarm.disconnect_peer_id(peer_id);
            }
        },
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
            let id = NodeId(peer.to_string());
            match result {
                Ok(_) => peers.pinged(&id),
                Err(e) => {
                    tracing::info!(%peer, error = %e, "site peer missed a ping");
                    peers.failed(&id);
                }
            }
        }
        SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => on_kad(swarm, peers, state, event),
        SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
            for (peer_id, addr) in found {
                if !swarm.is_connected(&peer_id) {
                    let _ = swarm.dial(addr);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_strings_carry_the_http_address_and_labels() {
        let config = SiteConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            psk: None,
            mdns: false,
            http_port: 5000,
            http_url: None,
            http_tls: false,
            labels: Labels::new("s1", "z1", "r1"),
            identity_file: PathBuf::new(),
        };
        let a = agent(&config);
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let (url, labels) = parse_agent(&a, Some(ip)).expect("parsed");
        assert_eq!(url, "http://10.0.0.2:5000");
        assert_eq!(labels, Labels::new("s1", "z1", "r1"));
        let explicit = SiteConfig {
            http_url: Some("https://node-a.example:443/".into()),
            ..config.clone()
        };
        let (url, _) = parse_agent(&agent(&explicit), None).expect("parsed");
        assert_eq!(url, "https://node-a.example:443");
        let tls = SiteConfig {
            http_tls: true,
            ..explicit.clone()
        };
        let tls = SiteConfig {
            http_url: None,
            ..tls
        };
        let (url, _) = parse_agent(&agent(&tls), Some(ip)).expect("parsed");
        assert_eq!(url, "https://10.0.0.2:5000");
        assert!(parse_agent("go-ipfs/0.4", Some(ip)).is_none());
        assert!(parse_agent("strata/0.1.0 http=ftp://x", Some(ip)).is_none());
        assert!(parse_agent("strata/0.1.0 http=:5000", None).is_none());
    }

    #[test]
    fn a_site_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("site.key");
        let key = "/key/swarm/psk/1.0.0/\n/base16/\n".to_string() + &"ab".repeat(32) + "\n";
        std::fs::write(&path, key).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = read_psk(&path).expect_err("0644 refused");
            assert!(e.to_string().contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        read_psk(&path).expect("0600 accepted");
        std::fs::write(&path, "nonsense").expect("write");
        assert!(read_psk(&path).is_err());
    }
}
