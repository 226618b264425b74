//! Content routing in a site: a node's provider record reaches the others through the
//! site's Kademlia, and a provider that dies stops being named within seconds (liveness,
//! not record expiry).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use strata_site::{join, Labels, Multiaddr, Peers, SiteConfig};

fn config(dir: &std::path::Path, name: &str, port: u16, bootstrap: Option<u16>) -> SiteConfig {
    let addr = |p: u16| -> Multiaddr { format!("/ip4/127.0.0.1/tcp/{p}").parse().unwrap() };
    SiteConfig {
        http_tls: false,
        listen: vec![addr(port)],
        bootstrap: bootstrap.map(addr).into_iter().collect(),
        psk: None,
        mdns: false,
        http_port: 1,
        http_url: None,
        labels: Labels::default(),
        identity_file: dir.join(format!("{name}.key")),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn provider_records_reach_the_site_and_a_dead_provider_is_dropped_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // A runs in a runtime of its own, so that dropping it kills A.
    let rt_a = tokio::runtime::Runtime::new().unwrap();
    let a: Peers = rt_a
        .block_on(join(config(tmp.path(), "a", pa, None)))
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (b, c) = rt.block_on(async {
        let b = join(config(tmp.path(), "b", pb, Some(pa))).await.unwrap();
        let c = join(config(tmp.path(), "c", pc, Some(pa))).await.unwrap();
        (b, c)
    });
    let blob = "sha256:".to_string() + &"ab".repeat(32);
    let other = "sha256:".to_string() + &"cd".repeat(32);
    rt.block_on(async {
        until("b and c see a", || async {
            b.live_peers().iter().any(|(id, _)| id == a.me())
                && c.live_peers().iter().any(|(id, _)| id == a.me())
        })
        .await;
        // A announces; C, which never talked to A about it, finds A through the DHT.
        a.provide(&blob);
        until("c finds a as the provider", || async {
            c.providers(&blob).await == Some(vec![a.me().clone()])
        })
        .await;
        assert_eq!(b.providers(&other).await, Some(Vec::new()), "nobody has it");
    });
    // A dies: its connections close and its record is no longer used, long before the
    // record would expire.
    let killed = Instant::now();
    drop(rt_a);
    rt.block_on(async {
        until("a dropped from the providers", || async {
            c.providers(&blob).await == Some(Vec::new())
        })
        .await;
    });
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "a dead provider dropped in {:?}",
        killed.elapsed()
    );
}
