//! Prometheus metrics of a node: requests, latency and bytes, by route and status.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry as PromRegistry;
use strata_oci::{Route, RouteError};

use crate::http::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// The node's metric families and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    received: Counter,
    sent: Counter,
    layers: Family<LayerLabels, Gauge>,
    reconstructions: Gauge,
    rebuilt_cache: Gauge,
    mirror: Family<MirrorLabels, Gauge>,
    site: Family<MirrorLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LayerLabels {
    storage: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = PromRegistry::with_prefix("strata");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let received = Counter::default();
        let sent = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route and method",
            latency.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Blob and manifest bytes received",
            received.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Blob and manifest bytes sent",
            sent.clone(),
        );
        let layers = Family::<LayerLabels, Gauge>::default();
        let (reconstructions, rebuilt_cache) = (Gauge::default(), Gauge::default());
        registry.register(
            "layers",
            "Layers held at file level, or kept whole because they cannot be rebuilt exactly",
            layers.clone(),
        );
        registry.register(
            "layer_reconstructions",
            "Reconstructions of file-level layers started since the node started",
            reconstructions.clone(),
        );
        registry.register(
            "rebuilt_cache_bytes",
            "Bytes of verified layer reconstructions kept in the cache",
            rebuilt_cache.clone(),
        );
        let mirror = Family::<MirrorLabels, Gauge>::default();
        registry.register(
            "mirror",
            "Since the node started: bytes from the upstream (upstream_bytes), blob fetches \
             started (fetches), requests that joined a fetch in flight (coalesced), failed \
             fetches (failures); with a cache bound, its size (cache_max_bytes), bytes of \
             mirrored blobs held (cache_bytes), blobs and bytes evicted (evictions, \
             evicted_bytes)",
            mirror.clone(),
        );
        let site = Family::<MirrorLabels, Gauge>::default();
        registry.register(
            "site",
            "Since the node started, for a node in a site: bytes it fetched from the upstream \
             (upstream_bytes), bytes from peers (peer_bytes), bytes served to peers \
             (served_bytes), failed piece requests to peers (peer_failures), peers excluded \
             for wrong bytes (exclusions); live_nodes: the live nodes it sees, itself included",
            site.clone(),
        );
        Metrics {
            registry,
            mirror,
            site,
            requests,
            latency,
            received,
            sent,
            layers,
            reconstructions,
            rebuilt_cache,
        }
    }

    /// Sets the store's layer figures (read at each scrape).
    pub fn set_layer_stats(&self, s: &strata_store::LayerStats) {
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        for (storage, v) in [("file_level", s.file_level), ("kept_whole", s.kept_whole)] {
            self.layers
                .get_or_create(&LayerLabels { storage })
                .set(gauge(v));
        }
        self.reconstructions.set(gauge(s.reconstructions));
        self.rebuilt_cache.set(gauge(s.rebuilt_cache_bytes));
    }

    /// Sets the mirror's figures (read at each scrape).
    pub fn set_mirror_stats(&self, s: &crate::services::MirrorStats) {
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        for (what, v) in [
            ("upstream_bytes", s.upstream_bytes),
            ("fetches", s.fetches),
            ("coalesced", s.coalesced),
            ("failures", s.failures),
        ] {
            self.mirror
                .get_or_create(&MirrorLabels { what })
                .set(gauge(v));
        }
    }

    /// Sets the cache bound's figures (read at each scrape).
    pub fn set_cache_stats(&self, s: &crate::services::CacheStats) {
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        for (what, v) in [
            ("cache_max_bytes", s.max_bytes),
            ("cache_bytes", s.bytes),
            ("evictions", s.evictions),
            ("evicted_bytes", s.evicted_bytes),
        ] {
            self.mirror
                .get_or_create(&MirrorLabels { what })
                .set(gauge(v));
        }
    }

    /// Sets the upstream's own figures (a site's; read at each scrape).
    pub fn set_upstream_stats(&self, stats: &[(&'static str, u64)]) {
        for &(what, v) in stats {
            self.site
                .get_or_create(&MirrorLabels { what })
                .set(v.min(i64::MAX as u64) as i64);
        }
    }

    pub fn bytes_received(&self, n: usize) {
        self.received.inc_by(n as u64);
    }

    pub fn bytes_sent(&self, n: usize) {
        self.sent.inc_by(n as u64);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// The route of a request as the metrics middleware parsed it, kept in the request's
/// extensions so the dispatcher does not parse the path again.
#[derive(Debug, Clone)]
pub struct ParsedRoute(pub Result<Route, RouteError>);

/// A low-cardinality name for a parsed route.
fn route_label(parsed: &Result<Route, RouteError>, path: &str) -> &'static str {
    match parsed {
        Ok(Route::Base) => "base",
        Ok(Route::Catalog) => "catalog",
        Ok(Route::Tags(_)) => "tags",
        Ok(Route::Manifest(..)) => "manifest",
        Ok(Route::Blob(..)) => "blob",
        Ok(Route::UploadStart(_) | Route::Upload(..)) => "upload",
        Ok(Route::Referrers(..)) => "referrers",
        Err(_) if path == "/metrics" => "metrics",
        Err(_) if path.starts_with("/strata/") => "admin",
        Err(_) => "other",
    }
}

/// Middleware: count and time every request, and set the API version header.
pub async fn track(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let parsed = Route::parse(req.uri().path());
    let route = route_label(&parsed, req.uri().path());
    req.extensions_mut().insert(ParsedRoute(parsed));
    let method = req.method().to_string();
    let started = Instant::now();
    let mut resp = next.run(req).await;
    st.metrics
        .latency
        .get_or_create(&RouteLabels {
            route,
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// `GET /metrics`.
pub async fn render(State(st): State<AppState>) -> Response {
    match st.registry.layer_stats().await {
        Ok(stats) => st.metrics.set_layer_stats(&stats),
        Err(e) => tracing::warn!(error = %e, "cannot read layer figures for /metrics"),
    }
    if let Some(stats) = st.registry.mirror_stats() {
        st.metrics.set_mirror_stats(&stats);
    }
    if let Some(stats) = st.registry.cache_stats() {
        st.metrics.set_cache_stats(&stats);
    }
    st.metrics.set_upstream_stats(&st.registry.upstream_stats());
    let mut resp = st.metrics.encode().into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
