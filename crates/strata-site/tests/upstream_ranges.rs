//! A node in a site takes pieces from the upstream by `Range`. An upstream that answers a
//! range request with the whole blob, or with another range, must not fail the pull: the
//! node notices and takes the whole blob from it instead, once.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use strata_oci::{Digest, RepoName};
use strata_registry::{Upstream, UpstreamBlob};
use strata_site::partial::Partials;
use strata_site::{join, HttpUpstream, Labels, Site, SiteConfig, UpstreamRoute};
use strata_store::{MemBlobStore, StoreSource};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Lie {
    /// 200 and the whole blob for any range.
    WholeForRange,
    /// 206 with the first bytes of the blob whatever range was asked.
    AnotherRange,
}

#[derive(Clone)]
struct Upstream1 {
    blob: Arc<Vec<u8>>,
    lie: Lie,
    ranged: Arc<AtomicUsize>,
    whole: Arc<AtomicUsize>,
}

async fn blob(
    State(u): State<Upstream1>,
    method: Method,
    Path(_rest): Path<String>,
    headers: HeaderMap,
) -> Response {
    let len = u.blob.len();
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        if method == Method::GET {
            u.whole.fetch_add(1, Ordering::SeqCst);
        }
        return (StatusCode::OK, u.blob.as_ref().clone()).into_response();
    };
    u.ranged.fetch_add(1, Ordering::SeqCst);
    match u.lie {
        Lie::WholeForRange => (StatusCode::OK, u.blob.as_ref().clone()).into_response(),
        Lie::AnotherRange => {
            let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
            let n: usize = b.parse::<usize>().unwrap() + 1 - a.parse::<usize>().unwrap();
            (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, format!("bytes 0-{}/{len}", n - 1))],
                u.blob[..n].to_vec(),
            )
                .into_response()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_does_not_serve_ranges_still_gives_whole_blobs() {
    for lie in [Lie::WholeForRange, Lie::AnotherRange] {
        // Three pieces and a bit (pieces are at least 1 MiB).
        let bytes: Vec<u8> = (0..(3 << 20) + 4321u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let digest = Digest::sha256(&bytes);
        let up = Upstream1 {
            blob: Arc::new(bytes.clone()),
            lie,
            ranged: Arc::default(),
            whole: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v2/{*rest}", axum::routing::get(blob))
            .with_state(up.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let tmp = tempfile::tempdir().unwrap();
        let peers = join(SiteConfig {
            http_tls: false,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: Vec::new(),
            psk: None,
            mdns: false,
            http_port: 1,
            http_url: None,
            labels: Labels::default(),
            identity_file: tmp.path().join("identity.key"),
        })
        .await
        .unwrap();
        let upstream = HttpUpstream::new(vec![UpstreamRoute {
            namespace: None,
            url,
        }]);
        let site = Site::new(
            peers,
            upstream,
            Partials::new(tmp.path().join("partial")).unwrap(),
            Arc::new(StoreSource(Arc::new(MemBlobStore::new()))),
            strata_site::sign::PeerClient::new(None, "test", &Default::default()).unwrap(),
        );
        let repo: RepoName = "library/app".parse().unwrap();
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            site.blob(&repo, &digest),
        )
        .await
        .unwrap_or_else(|_| panic!("{lie:?}: no answer within 20 s"))
        .unwrap()
        .unwrap();
        let stream = match stream {
            UpstreamBlob::Filling(fill) => fill.stream(0, fill.size()),
            UpstreamBlob::Stream { body, .. } => body,
        };
        let got: Vec<u8> = stream
            .try_fold(Vec::new(), |mut v, b| async move {
                v.extend_from_slice(&b);
                Ok(v)
            })
            .await
            .unwrap();
        assert!(got == bytes, "{lie:?}: the blob's bytes");
        assert!(
            up.ranged.load(Ordering::SeqCst) >= 1,
            "{lie:?}: pieces were asked first"
        );
        assert_eq!(
            up.whole.load(Ordering::SeqCst),
            1,
            "{lie:?}: then the whole blob, once"
        );
    }
}
