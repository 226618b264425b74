//! Node configuration: flags override `STRATA_*` environment variables, which override the
//! optional TOML file, which overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use strata_node::{NodeConfig, SiteSettings};
use strata_site::{Labels, Multiaddr, UpstreamRoute};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which mirrored blobs leave a full cache first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicyArg {
    /// Least recently pulled first.
    Lru,
    /// First stored first.
    Fifo,
}

/// How the node stores layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GranularityArg {
    /// Whole blobs, as pushed.
    Layer,
    /// Deduplicated files plus a recipe; layers rebuilt bit-exactly on pull.
    File,
}

impl From<GranularityArg> for strata_store::Granularity {
    fn from(g: GranularityArg) -> Self {
        match g {
            GranularityArg::Layer => strata_store::Granularity::Layer,
            GranularityArg::File => strata_store::Granularity::File,
        }
    }
}

/// `strata serve` flags; each has a `STRATA_*` environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve `/metrics` and the admin API (gc, convert, site status and preheat) on this
    /// address, plain HTTP, to whoever reaches it: bind it to loopback or a management
    /// network. Without it they are served on --listen to --admin-users only.
    #[arg(long, env = "STRATA_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory holding blobs and metadata [default: ./strata-data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "STRATA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run garbage collection this often (e.g. "6h"); off unless set.
    #[arg(long, env = "STRATA_GC_INTERVAL", value_parser = humantime::parse_duration)]
    pub gc_interval: Option<Duration>,
    /// Unreferenced blobs younger than this survive garbage collection [default: 1h].
    #[arg(long, env = "STRATA_GC_GRACE", value_parser = humantime::parse_duration)]
    pub gc_grace: Option<Duration>,
    /// Layer storage: whole layers, or deduplicated files rebuilt on pull [default: layer].
    #[arg(long, env = "STRATA_GRANULARITY")]
    pub granularity: Option<GranularityArg>,
    /// Disk kept for verified reconstructions of file-level layers, in MiB (least recently
    /// read evicted; 0 keeps none) [default: 1024].
    #[arg(long, env = "STRATA_REBUILT_CACHE_MB")]
    pub rebuilt_cache_mb: Option<u64>,
    /// A placement plan (`strata plan solve`): the layers it names for `--plan-registry`
    /// are stored as it says, the rest at `--granularity`. Re-read on SIGHUP.
    #[arg(long, env = "STRATA_PLAN", requires = "plan_registry")]
    pub plan: Option<PathBuf>,
    /// This node's registry name in the plan.
    #[arg(long, env = "STRATA_PLAN_REGISTRY")]
    pub plan_registry: Option<String>,
    /// A connection that has not sent its request head, or sits idle between requests, is
    /// closed after this long [default: 30s].
    #[arg(long, env = "STRATA_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Connections open at once; at the limit the oldest idle one makes room [default: from
    /// the open-file limit, which the node raises to its hard limit].
    #[arg(long, env = "STRATA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// An upstream registry to mirror: `URL` for every repository not pushed here, or
    /// `NAMESPACE=URL` for the repositories containerd asks for with `?ns=NAMESPACE`
    /// (stored here as `NAMESPACE/...`). Repeatable; the environment takes a comma list.
    #[arg(long = "upstream", env = "STRATA_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<UpstreamRoute>,
    /// Logins for upstreams: a Docker `config.json` (`docker login`'s file, a Kubernetes
    /// `.dockerconfigjson` secret) that only its owner can read. The same JSON may come in
    /// the environment variable STRATA_UPSTREAM_AUTH instead [default: anonymous].
    #[arg(long, env = "STRATA_UPSTREAM_CREDENTIALS")]
    pub upstream_credentials: Option<PathBuf>,
    /// How long a tag resolved upstream is served before it is resolved again [default: 60s].
    #[arg(long, env = "STRATA_UPSTREAM_TAG_TTL", value_parser = humantime::parse_duration)]
    pub upstream_tag_ttl: Option<Duration>,
    /// The most mirrored content the node keeps, in GB (10^9 bytes; fractions allowed);
    /// pushed content is never evicted and not counted [default: unbounded].
    #[arg(long, env = "STRATA_CACHE_MAX_GB")]
    pub cache_max_gb: Option<f64>,
    /// Which mirrored blobs leave first: least recently pulled, or first stored [default:
    /// lru].
    #[arg(long, env = "STRATA_CACHE_POLICY")]
    pub cache_policy: Option<CachePolicyArg>,
    /// Join a site: listen for its peers on this libp2p address (e.g.
    /// `/ip4/0.0.0.0/tcp/7946`). Repeatable. Without it the node is alone.
    #[arg(
        long = "site-listen",
        env = "STRATA_SITE_LISTEN",
        value_delimiter = ','
    )]
    pub site_listen: Vec<Multiaddr>,
    /// A peer of the site to dial (e.g. `/ip4/10.0.0.2/tcp/7946`). Repeatable.
    #[arg(long = "site-peer", env = "STRATA_SITE_PEERS", value_delimiter = ',')]
    pub site_peer: Vec<Multiaddr>,
    /// The site's pre-shared key (libp2p swarm key format, mode 0600): nodes without it
    /// cannot connect. Without it the site is open to any node that reaches this one.
    #[arg(long, env = "STRATA_SITE_KEY")]
    pub site_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign the TLS certificates of the site's nodes (peers whose
    /// API speaks TLS are asked by https, this node showing its own --tls-cert) [default:
    /// the system's roots only].
    #[arg(long, env = "STRATA_SITE_CA")]
    pub site_ca: Option<PathBuf>,
    /// Find site peers by mDNS on the LAN.
    #[arg(long, env = "STRATA_SITE_MDNS")]
    pub site_mdns: bool,
    /// This node's HTTP URL as its peers reach it [default: the address they see it at,
    /// with --listen's port].
    #[arg(long, env = "STRATA_SITE_ADVERTISE")]
    pub site_advertise: Option<String>,
    /// Where this node sits: `site=S,zone=Z,rack=R` (peers nearest first).
    #[arg(long, env = "STRATA_LABELS")]
    pub labels: Option<String>,
    /// How many nodes of the site keep a copy of every image the site holds: `on-demand`
    /// (only nodes whose clients pulled it), a number, or `all` [default: on-demand].
    #[arg(long, env = "STRATA_SITE_REPLICAS")]
    pub site_replicas: Option<strata_edge::Replicas>,
    /// Users and bcrypt password hashes (`htpasswd -B`), mode 0600: with it, callers sign
    /// in (Basic) [default: no users; every caller may do everything].
    #[arg(long, env = "STRATA_HTPASSWD")]
    pub htpasswd: Option<PathBuf>,
    /// Who may pull, push and delete where (TOML: groups and rules by repository pattern)
    /// [default: every signed-in user everything, anonymous callers nothing].
    #[arg(long, env = "STRATA_ACCESS_POLICY")]
    pub access_policy: Option<PathBuf>,
    /// Anonymous callers may pull every repository.
    #[arg(long, env = "STRATA_ANONYMOUS_PULL")]
    pub anonymous_pull: bool,
    /// Users who may call `/metrics` and the admin API (`/strata/v1/gc`, `convert`).
    #[arg(long, env = "STRATA_ADMIN_USERS", value_delimiter = ',')]
    pub admin_users: Vec<String>,
    /// Where clients get tokens (`https://HOST/strata/v1/token` for the node's own
    /// endpoint): with it, the node challenges for Bearer tokens.
    #[arg(long, env = "STRATA_TOKEN_REALM")]
    pub token_realm: Option<String>,
    /// This registry's name in tokens [default: strata].
    #[arg(long, env = "STRATA_TOKEN_SERVICE")]
    pub token_service: Option<String>,
    /// ES256 private key (PKCS#8 PEM, mode 0600) with which the node's own token endpoint
    /// signs.
    #[arg(long, env = "STRATA_TOKEN_KEY")]
    pub token_key: Option<PathBuf>,
    /// A token server whose tokens are accepted: `ISSUER=PUBLIC_KEY.pem` (ES256 or RS256).
    /// Repeatable.
    #[arg(
        long = "token-trust",
        env = "STRATA_TOKEN_TRUST",
        value_delimiter = ','
    )]
    pub token_trust: Vec<String>,
    /// TLS certificate chain (PEM): with it and --tls-key the API speaks HTTPS (HTTP/2 and
    /// HTTP/1.1); both files are re-read when they change.
    #[arg(long, env = "STRATA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, mode 0600).
    #[arg(long, env = "STRATA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must present a certificate it signed (mutual TLS).
    #[arg(long, env = "STRATA_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Parses `site=S,zone=Z,rack=R` (any of them).
fn parse_labels(s: &str) -> Result<Labels> {
    let mut l = Labels::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("label {part:?} is not KEY=VALUE"))?;
        match k.trim() {
            "site" => l.site = v.trim().to_string(),
            "zone" => l.zone = v.trim().to_string(),
            "rack" => l.rack = v.trim().to_string(),
            other => anyhow::bail!("unknown label {other:?}: site, zone and rack are known"),
        }
    }
    Ok(l)
}

/// The configuration file: every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    #[serde(default, with = "opt_duration")]
    gc_interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    gc_grace: Option<Duration>,
    granularity: Option<GranularityArg>,
    rebuilt_cache_mb: Option<u64>,
    plan: Option<PathBuf>,
    plan_registry: Option<String>,
    #[serde(default, with = "opt_duration")]
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    #[serde(default)]
    upstream: Vec<String>,
    upstream_credentials: Option<PathBuf>,
    #[serde(default, with = "opt_duration")]
    upstream_tag_ttl: Option<Duration>,
    cache_max_gb: Option<f64>,
    cache_policy: Option<CachePolicyArg>,
    #[serde(default)]
    site_listen: Vec<String>,
    #[serde(default)]
    site_peers: Vec<String>,
    site_key: Option<PathBuf>,
    site_ca: Option<PathBuf>,
    site_mdns: Option<bool>,
    site_advertise: Option<String>,
    labels: Option<String>,
    site_replicas: Option<String>,
    htpasswd: Option<PathBuf>,
    access_policy: Option<PathBuf>,
    anonymous_pull: Option<bool>,
    #[serde(default)]
    admin_users: Vec<String>,
    token_realm: Option<String>,
    token_service: Option<String>,
    token_key: Option<PathBuf>,
    #[serde(default)]
    token_trust: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

fn multiaddrs(list: &[String], key: &str) -> Result<Vec<Multiaddr>> {
    list.iter()
        .map(|s| {
            s.parse()
                .with_context(|| format!("{key} {s:?} in the config file is not a multiaddress"))
        })
        .collect()
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What `strata serve` runs with: how to log, and the node's configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub log_format: LogFormat,
    pub node: NodeConfig,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

impl ServeArgs {
    pub fn resolve(self) -> Result<ServeConfig> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let gc_grace = self
            .gc_grace
            .or(file.gc_grace)
            .unwrap_or(Duration::from_secs(3600));
        if gc_grace < strata_registry::MIN_GC_GRACE {
            anyhow::bail!(
                "a gc grace period of {}s could remove pushes in progress; the minimum is {}s",
                gc_grace.as_secs(),
                strata_registry::MIN_GC_GRACE.as_secs()
            );
        }
        let log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text);
        let site_listen = if self.site_listen.is_empty() {
            multiaddrs(&file.site_listen, "site_listen")?
        } else {
            self.site_listen
        };
        let site_peers = if self.site_peer.is_empty() {
            multiaddrs(&file.site_peers, "site_peers")?
        } else {
            self.site_peer
        };
        let site = if site_listen.is_empty() {
            if !site_peers.is_empty() {
                anyhow::bail!("--site-peer is given without --site-listen");
            }
            None
        } else {
            Some(SiteSettings {
                listen: site_listen,
                peers: site_peers,
                key_file: self.site_key.or(file.site_key),
                ca_file: self.site_ca.or(file.site_ca),
                mdns: self.site_mdns || file.site_mdns.unwrap_or(false),
                advertise: self.site_advertise.or(file.site_advertise),
                labels: parse_labels(self.labels.or(file.labels).as_deref().unwrap_or(""))?,
                replicas: match (self.site_replicas, file.site_replicas) {
                    (Some(r), _) => r,
                    (None, Some(s)) => s.parse().map_err(anyhow::Error::msg)?,
                    (None, None) => strata_edge::Replicas::OnDemand,
                },
            })
        };
        let token_trust = if self.token_trust.is_empty() {
            file.token_trust.clone()
        } else {
            self.token_trust.clone()
        };
        let auth = strata_node::AuthSettings {
            htpasswd: self.htpasswd.or(file.htpasswd),
            policy: self.access_policy.or(file.access_policy),
            anonymous_pull: self.anonymous_pull || file.anonymous_pull.unwrap_or(false),
            admins: if self.admin_users.is_empty() {
                file.admin_users.clone()
            } else {
                self.admin_users.clone()
            },
            token_realm: self.token_realm.or(file.token_realm),
            token_service: self
                .token_service
                .or(file.token_service)
                .unwrap_or_else(|| "strata".into()),
            token_key: self.token_key.or(file.token_key),
            token_trust: token_trust
                .iter()
                .map(|t| {
                    t.split_once('=')
                        .map(|(i, f)| (i.to_string(), PathBuf::from(f)))
                        .with_context(|| format!("--token-trust {t:?} is not ISSUER=FILE"))
                })
                .collect::<Result<_>>()?,
        };
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
            self.tls_client_ca.or(file.tls_client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => {
                check_private(&key)?;
                Some(strata_registry::tls::TlsFiles {
                    cert,
                    key,
                    client_ca,
                })
            }
            (None, None, None) => None,
            _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
        };
        let node = NodeConfig {
            tls,
            admin_listen: self.admin_listen.or(file.admin_listen),
            auth,
            site,
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("strata-data")),
            gc_interval: self.gc_interval.or(file.gc_interval),
            gc_grace,
            granularity: self
                .granularity
                .or(file.granularity)
                .unwrap_or(GranularityArg::Layer)
                .into(),
            rebuilt_cache_bytes: self
                .rebuilt_cache_mb
                .or(file.rebuilt_cache_mb)
                .map_or(strata_store::DEFAULT_REBUILT_CACHE_BYTES, |mb| mb << 20),
            plan: match (
                self.plan.or(file.plan),
                self.plan_registry.or(file.plan_registry),
            ) {
                (Some(plan), Some(name)) => Some((plan, name)),
                (None, None) => None,
                (Some(_), None) => {
                    anyhow::bail!("a plan needs this node's name in it (--plan-registry)")
                }
                (None, Some(_)) => anyhow::bail!("--plan-registry is given without --plan"),
            },
            idle_timeout: self
                .idle_timeout
                .or(file.idle_timeout)
                .unwrap_or(Duration::from_secs(30)),
            max_connections: self.max_connections.or(file.max_connections),
            upstreams: if self.upstream.is_empty() {
                file.upstream
                    .iter()
                    .map(|s| s.parse().map_err(anyhow::Error::msg))
                    .collect::<Result<_>>()
                    .context("invalid upstream in the config file")?
            } else {
                self.upstream
            },
            upstream_credentials: upstream_credentials(
                self.upstream_credentials.or(file.upstream_credentials),
                std::env::var("STRATA_UPSTREAM_AUTH").ok(),
            )?,
            tag_ttl: self
                .upstream_tag_ttl
                .or(file.upstream_tag_ttl)
                .unwrap_or(Duration::from_secs(60)),
            cache: match self.cache_max_gb.or(file.cache_max_gb) {
                None => None,
                Some(gb) if !gb.is_finite() || gb < 0.0 => {
                    anyhow::bail!("--cache-max-gb {gb} is not a size in GB")
                }
                Some(gb) => {
                    let policy = match self.cache_policy.or(file.cache_policy) {
                        Some(CachePolicyArg::Fifo) => "fifo",
                        Some(CachePolicyArg::Lru) | None => "lru",
                    };
                    Some(((gb * 1e9) as u64, policy.to_string()))
                }
            },
        };
        Ok(ServeConfig { log_format, node })
    }
}

/// A key file: refused if others may read it.
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is open to others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// Upstream logins from a file or, without one, from STRATA_UPSTREAM_AUTH; both at once is
/// an error rather than a silent choice.
fn upstream_credentials(
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<strata_site::Credentials> {
    Ok(match (file, env.filter(|e| !e.trim().is_empty())) {
        (Some(_), Some(_)) => anyhow::bail!(
            "upstream credentials come from a file (--upstream-credentials) or from \
             STRATA_UPSTREAM_AUTH, not both"
        ),
        (Some(path), None) => strata_site::Credentials::from_file(&path)?,
        (None, Some(json)) => strata_site::Credentials::from_json(&json, "STRATA_UPSTREAM_AUTH")?,
        (None, None) => strata_site::Credentials::none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>, listen: Option<&str>) -> ServeArgs {
        ServeArgs {
            config,
            listen: listen.map(|l| l.parse().expect("addr")),
            admin_listen: None,
            data_dir: None,
            log_format: None,
            gc_interval: None,
            gc_grace: None,
            granularity: None,
            rebuilt_cache_mb: None,
            plan: None,
            plan_registry: None,
            idle_timeout: None,
            max_connections: None,
            upstream: Vec::new(),
            upstream_credentials: None,
            upstream_tag_ttl: None,
            cache_max_gb: None,
            cache_policy: None,
            site_listen: Vec::new(),
            site_peer: Vec::new(),
            site_key: None,
            site_ca: None,
            site_mdns: false,
            site_advertise: None,
            labels: None,
            site_replicas: None,
            htpasswd: None,
            access_policy: None,
            anonymous_pull: false,
            admin_users: Vec::new(),
            token_realm: None,
            token_service: None,
            token_key: None,
            token_trust: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }

    #[test]
    fn a_site_is_configured_from_flags_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "upstream = [\"http://up:5000\"]\nsite_listen = [\"/ip4/0.0.0.0/tcp/7946\"]\n\
             site_peers = [\"/ip4/10.0.0.2/tcp/7946\"]\nlabels = \"site=s1,rack=r2\"\n",
        )
        .expect("write");
        let c = args(Some(path.clone()), None).resolve().expect("resolves");
        let site = c.node.site.expect("a site");
        assert_eq!(site.listen[0].to_string(), "/ip4/0.0.0.0/tcp/7946");
        assert_eq!(site.peers.len(), 1);
        assert_eq!(site.labels, Labels::new("s1", "", "r2"));
        assert!(args(None, None)
            .resolve()
            .expect("alone")
            .node
            .site
            .is_none());
        let mut peer_only = args(None, None);
        peer_only.site_peer = vec!["/ip4/10.0.0.2/tcp/7946".parse().expect("addr")];
        assert!(peer_only.resolve().is_err(), "a peer without listening");
        let mut bad = args(Some(path), None);
        bad.labels = Some("planet=earth".into());
        let e = bad.resolve().expect_err("unknown label");
        assert!(format!("{e:#}").contains("planet"), "{e:#}");
    }

    #[test]
    fn the_mirror_cache_bound_comes_from_flags_or_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "cache_max_gb = 0.5\ncache_policy = \"fifo\"\n").expect("write");
        let c = args(Some(path.clone()), None).resolve().expect("resolves");
        assert_eq!(c.node.cache, Some((500_000_000, "fifo".to_string())));
        let mut a = args(Some(path), None);
        a.cache_max_gb = Some(2.0);
        a.cache_policy = Some(CachePolicyArg::Lru);
        let c = a.resolve().expect("resolves");
        assert_eq!(c.node.cache, Some((2_000_000_000, "lru".to_string())));
        let mut a = args(None, None);
        a.cache_max_gb = Some(-1.0);
        assert!(a.resolve().is_err(), "a negative size is refused");
        assert_eq!(
            args(None, None).resolve().expect("resolves").node.cache,
            None
        );
    }

    #[test]
    fn defaults_apply_without_config() {
        let c = args(None, None).resolve().expect("resolves");
        assert_eq!(c.node.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.node.data_dir, PathBuf::from("strata-data"));
        assert_eq!(c.node.gc_interval, None);
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/strata\"\ngc_interval = \"6h\"\n",
        )
        .expect("write");
        let c = args(Some(path.clone()), None).resolve().expect("resolves");
        assert_eq!(c.node.listen.to_string(), "127.0.0.1:6000");
        assert_eq!(c.node.data_dir, PathBuf::from("/srv/strata"));
        assert_eq!(c.node.gc_interval, Some(Duration::from_secs(6 * 3600)));
        let c = args(Some(path), Some("0.0.0.0:7000"))
            .resolve()
            .expect("resolves");
        assert_eq!(
            c.node.listen.to_string(),
            "0.0.0.0:7000",
            "flag wins over file"
        );
    }

    #[test]
    fn unknown_keys_are_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").expect("write");
        let err = args(Some(path), None)
            .resolve()
            .expect_err("typo is rejected");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn a_plan_comes_with_this_nodes_name_in_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "plan = \"/etc/strata/plan.json\"\n").expect("write");
        let err = args(Some(path.clone()), None)
            .resolve()
            .expect_err("name missing");
        assert!(format!("{err:#}").contains("--plan-registry"), "{err:#}");
        let mut with_name = args(Some(path), None);
        with_name.plan_registry = Some("edge-1".into());
        let c = with_name.resolve().expect("resolves");
        assert_eq!(
            c.node.plan,
            Some((PathBuf::from("/etc/strata/plan.json"), "edge-1".to_string()))
        );
    }
}
