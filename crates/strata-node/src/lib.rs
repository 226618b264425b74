//! A strata node's wiring: everything `strata serve` does between parsing its flags and
//! serving requests, as a library, so that the binary only parses flags and a test or a
//! simulator can run a node in process.
//!
//! [`run`] opens the data directory (`strata_registry::open_node`), applies the placement
//! plan (and re-reads it on SIGHUP), starts periodic garbage collection, raises the
//! open-file limit, mirrors its upstreams (`strata_site::HttpUpstream`) if it has any, and
//! serves the API (`strata_registry::server`) until SIGINT or SIGTERM.

mod auth;
mod placement;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_registry::http::ExtraRoutes;
use strata_registry::server::ServerLimits;
use strata_registry::{GcOptions, Registry};
use strata_site::partial::Partials;
use strata_site::sign::{PeerClient, PeerTls, SiteKey};
use strata_site::{HttpUpstream, Labels, Multiaddr, Site, SiteConfig, UpstreamRoute};
use strata_store::StoreSource;
use strata_store::{BlobStore, Granularity, LayeredBlobStore, Placement, StoreError};

pub use auth::AuthSettings;
pub use placement::{from_plan, plan_layers};

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open data directory {dir}: {source}")]
    Open { dir: PathBuf, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("plan {path}: {why}")]
    Plan { path: PathBuf, why: String },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("site: {0}")]
    Site(String),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("{0}")]
    Tls(String),
    #[error("cannot prepare the mirror spool {dir}: {source}")]
    Spool {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub gc_interval: Option<Duration>,
    pub gc_grace: Duration,
    pub granularity: Granularity,
    pub rebuilt_cache_bytes: u64,
    /// A placement plan and this node's name in it.
    pub plan: Option<(PathBuf, String)>,
    pub idle_timeout: Duration,
    /// `None`: derived from the open-file limit.
    pub max_connections: Option<usize>,
    /// Upstream registries to mirror (none: the node serves only what is pushed to it).
    pub upstreams: Vec<UpstreamRoute>,
    /// Logins for upstreams that ask for one (none: anonymous).
    pub upstream_credentials: strata_site::Credentials,
    /// How long a tag resolved upstream is served before it is resolved again.
    pub tag_ttl: Duration,
    /// The bound on mirrored content and the policy that picks what leaves (`lru`, `fifo`);
    /// `None`: unbounded.
    pub cache: Option<(u64, String)>,
    /// The site this node shares content with (`None`: it is alone).
    pub site: Option<SiteSettings>,
    /// Who may do what (nothing set: everyone everything).
    pub auth: AuthSettings,
    /// TLS on the API (`None`: plain HTTP).
    pub tls: Option<strata_registry::tls::TlsFiles>,
    /// Where `/metrics` and the admin API are served to whoever reaches the address (plain
    /// HTTP; `None`: only to administrators on the API's listener).
    pub admin_listen: Option<SocketAddr>,
}

/// How a node joins its site.
#[derive(Debug, Clone)]
pub struct SiteSettings {
    /// Where to listen for site peers (libp2p multiaddresses).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial.
    pub peers: Vec<Multiaddr>,
    /// The site's pre-shared key file (0600); `None`: an open site.
    pub key_file: Option<PathBuf>,
    pub mdns: bool,
    /// This node's HTTP URL as peers reach it (`None`: the address they see it at, with the
    /// port it listens on).
    pub advertise: Option<String>,
    pub labels: Labels,
    /// How many nodes keep a copy of each image the site holds.
    pub replicas: strata_edge::Replicas,
    /// CA certificates (PEM) that sign the peers' TLS certificates, beside the system's.
    pub ca_file: Option<PathBuf>,
}

/// How often a node in a site with a replication factor looks for images to keep.
const REPLICATE_EVERY: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn spawn_periodic_gc(registry: Registry, config: &NodeConfig) {
    let Some(every) = config.gc_interval else {
        return;
    };
    let opts = GcOptions {
        grace: config.gc_grace,
        ..GcOptions::default()
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match registry.gc(opts).await {
                Ok(report) => tracing::info!(?report, "periodic garbage collection done"),
                Err(e) => tracing::error!(error = %e, "periodic garbage collection failed"),
            }
        }
    });
}

/// The node's placement: its plan where the plan names a layer, its granularity elsewhere.
fn placement(config: &NodeConfig) -> Result<Placement, NodeError> {
    match &config.plan {
        Some((path, name)) => from_plan(config.granularity, path, name),
        None => Ok(Placement::uniform(config.granularity)),
    }
}

/// On SIGHUP, re-reads the plan and moves the stored layers to where it puts them. A plan
/// that cannot be read leaves the current placement in force.
fn reload_plan_on_hangup(blobs: LayeredBlobStore, config: &NodeConfig) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if config.plan.is_none() {
            return;
        }
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            return;
        };
        let config = config.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match placement(&config) {
                    Ok(p) => {
                        tracing::info!(named = p.named.len(), "plan reloaded");
                        blobs.set_placement(p);
                        strata_registry::spawn_apply_placement(blobs.clone());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "plan not reloaded; the previous one stays in force")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (blobs, config);
}

/// Raises the open-file limit to its hard limit and derives the connection limit from it
/// (unless configured).
fn server_limits(config: &NodeConfig) -> ServerLimits {
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let derived = ServerLimits::for_open_files(open_files, config.idle_timeout);
    ServerLimits {
        max_connections: config.max_connections.unwrap_or(derived.max_connections),
        ..derived
    }
}

/// Run a node until SIGINT or SIGTERM. Prints `strata listening on http://ADDR` on stdout
/// once it accepts connections (scripts that asked for port 0 learn the port from it).
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    // Files first: a typo in a policy fails the start before anything opens.
    let auth = auth::load(&config.auth)?;
    let tls = match &config.tls {
        Some(files) => {
            Some(strata_registry::tls::acceptor(files).map_err(|e| NodeError::Tls(e.to_string()))?)
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (registry, blobs) = strata_registry::open_node(
        &config.data_dir,
        placement(&config)?,
        config.rebuilt_cache_bytes,
    )
    .await
    .map_err(|source| NodeError::Open {
        dir: config.data_dir.clone(),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(NodeError::Serve)?;
    let admin_listener = match config.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Listen { addr, source })?,
        ),
        None => None,
    };
    let mut site_routes = None;
    let registry = if config.upstreams.is_empty() {
        if config.site.is_some() {
            return Err(NodeError::Site(
                "a site shares what its nodes mirror: give --upstream too".into(),
            ));
        }
        registry
    } else {
        tracing::info!(
            upstreams = ?config.upstreams,
            logins_for = ?config.upstream_credentials.hosts(),
            tag_ttl_s = config.tag_ttl.as_secs(),
            "mirroring"
        );
        let upstream = HttpUpstream::new(config.upstreams.clone())
            .with_credentials(config.upstream_credentials.clone());
        // Blobs arriving from a plain upstream, read by clients while they arrive.
        let spool = config.data_dir.join("mirror-spool");
        match &config.site {
            None => registry
                .with_mirror(Arc::new(upstream), config.tag_ttl, spool.clone())
                .map_err(|source| NodeError::Spool {
                    dir: spool.clone(),
                    source,
                })?,
            Some(settings) => {
                let site = join_site(&config, settings, bound.port(), upstream, &blobs).await?;
                let registry = registry
                    .with_mirror(site.clone(), config.tag_ttl, spool.clone())
                    .map_err(|source| NodeError::Spool {
                        dir: spool.clone(),
                        source,
                    })?;
                site_routes = Some(site.routes(registry.clone()));
                if settings.replicas != strata_edge::Replicas::OnDemand {
                    tracing::info!(replicas = ?settings.replicas, "keeping the site's replication factor");
                    tokio::spawn(site.clone().replicate(
                        registry.clone(),
                        settings.replicas,
                        REPLICATE_EVERY,
                    ));
                }
                registry
            }
        }
    };
    let registry = match &config.cache {
        Some((max, policy)) if !config.upstreams.is_empty() => {
            let chosen = strata_edge::cache::policy_named(policy)
                .ok_or_else(|| NodeError::Site(format!("unknown cache policy {policy:?}")))?;
            tracing::info!(
                max_bytes = max,
                policy = chosen.name(),
                "mirrored content bounded"
            );
            let registry = registry.with_cache_bound(*max, chosen);
            // A bound lowered since the last run: evict now, not at the next fetch.
            let r = registry.clone();
            tokio::spawn(async move {
                if let Err(e) = r.enforce_cache_bound().await {
                    tracing::warn!(error = %e, "mirror cache bound not enforced");
                }
            });
            registry
        }
        _ => registry,
    };
    spawn_periodic_gc(registry.clone(), &config);
    reload_plan_on_hangup(blobs, &config);
    println!("strata listening on {scheme}://{bound}");
    if let Some(l) = &admin_listener {
        let addr = l.local_addr().map_err(NodeError::Serve)?;
        println!("strata admin listening on http://{addr}");
    }
    let limits = server_limits(&config);
    tracing::info!(
        listen = %bound,
        data_dir = %config.data_dir.display(),
        granularity = ?config.granularity,
        plan = ?config.plan,
        max_connections = limits.max_connections,
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "strata node serving"
    );
    let extra = match site_routes {
        Some(routes) => ExtraRoutes {
            api: routes.peers,
            admin: routes.operator,
        },
        None => ExtraRoutes::default(),
    };
    let apps = strata_registry::http::node_apps(registry, auth, extra);
    let stop = tokio::sync::watch::channel(false);
    if let Some(listener) = admin_listener {
        let mut stopped = stop.1.clone();
        let app = apps.admin;
        tokio::spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let admin_limits = ServerLimits {
                max_connections: 64,
                ..limits
            };
            if let Err(e) =
                strata_registry::server::serve(listener, app, admin_limits, None, until).await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    strata_registry::server::serve(listener, apps.api, limits, tls, shutdown_signal())
        .await
        .map_err(NodeError::Serve)?;
    let _ = stop.0.send(true);
    tracing::info!("strata node stopped");
    Ok(())
}

/// Joins the site: its peers (libp2p), and the upstream that fetches from them.
async fn join_site(
    config: &NodeConfig,
    settings: &SiteSettings,
    http_port: u16,
    upstream: HttpUpstream,
    blobs: &LayeredBlobStore,
) -> Result<Arc<Site>, NodeError> {
    let site_dir = config.data_dir.join("site");
    let psk = match &settings.key_file {
        Some(path) => {
            Some(strata_site::read_psk(path).map_err(|e| NodeError::Site(e.to_string()))?)
        }
        None if config.auth.enabled() => {
            return Err(NodeError::Site(
                "a node that signs callers in needs --site-key: an open site serves every \
                 image it holds to whoever reaches its port"
                    .into(),
            ))
        }
        None => {
            tracing::warn!("no site key: any node that reaches this one can join its site and read what it holds");
            None
        }
    };
    let key = psk.as_ref().map(|k| SiteKey::derive(&k.to_string()));
    let peers = strata_site::join(SiteConfig {
        listen: settings.listen.clone(),
        bootstrap: settings.peers.clone(),
        psk,
        mdns: settings.mdns,
        http_port,
        http_url: settings.advertise.clone(),
        http_tls: config.tls.is_some(),
        labels: settings.labels.clone(),
        identity_file: site_dir.join("identity.key"),
    })
    .await
    .map_err(|e| NodeError::Site(e.to_string()))?;
    tracing::info!(peer_id = %peers.me().as_str(), listen = ?settings.listen, bootstrap = ?settings.peers, mdns = settings.mdns, "joined the site");
    let partials = Partials::new(site_dir.join("partial"))
        .map_err(|e| NodeError::Site(format!("partial blobs: {e}")))?;
    let local = Arc::new(StoreSource(Arc::new(blobs.clone())));
    let tls = PeerTls {
        roots_pem: match &settings.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| NodeError::Site(format!("site CA {}: {e}", path.display())))?,
            ),
            None => None,
        },
        // Peers that ask for client certificates (--tls-client-ca) see this node's own.
        identity_pem: match &config.tls {
            Some(files) => {
                let mut pem = std::fs::read(&files.cert)
                    .map_err(|e| NodeError::Tls(format!("{}: {e}", files.cert.display())))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(&files.key)
                        .map_err(|e| NodeError::Tls(format!("{}: {e}", files.key.display())))?,
                );
                Some(pem)
            }
            None => None,
        },
    };
    let client =
        PeerClient::new(key.map(Arc::new), peers.me().as_str(), &tls).map_err(NodeError::Site)?;
    let site = Site::new(peers, upstream, partials, local, client);
    let offered = site
        .keep_image_list(&site_dir.join("images"))
        .map_err(|e| NodeError::Site(format!("image list: {e}")))?;
    if offered > 0 {
        tracing::info!(
            images = offered,
            "offering the images this node offered before it restarted"
        );
    }
    // What the node holds is announced to the site (provider records), and kept in line
    // with pushes and collections.
    let (announcer, store) = (Arc::downgrade(&site), blobs.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            every.tick().await;
            let Some(site) = announcer.upgrade() else {
                return;
            };
            match store.list().await {
                Ok(blobs) => site.announce_held(blobs.into_iter().map(|b| b.digest.to_string())),
                Err(e) => tracing::warn!(error = %e, "cannot list blobs to announce to the site"),
            }
        }
    });
    Ok(site)
}

/// How often a node in a site checks what it holds against what it announces.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);
