//! Crashes, disconnects, full disks and large blobs against the real binary.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::{Algorithm, Digest, DigestHasher};
use support::http::{
    abandon_download, abandon_request, client, get_bytes, pattern, push_blob, start_upload,
    upload_offset,
};
use support::{missing_root, used_bytes, SmallDisk, StrataNode};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_push_loses_nothing_and_upload_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let node = StrataNode::start(&data_dir);
    let base = node.url("");
    let before = pattern(2 * MIB, 1);
    assert_eq!(push_blob(&base, "crash", before.clone()).await.0, 201);

    let data = pattern(16 * MIB, 2);
    let digest = Digest::sha256(&data);
    let url = start_upload(&base, "crash").await;
    let r = client()
        .patch(&url)
        .header("content-range", format!("0-{}", 4 * MIB - 1))
        .body(data[..4 * MIB].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // A second chunk trickles in while the node is killed.
    let trickle: Vec<Bytes> = data[4 * MIB..]
        .chunks(MIB)
        .map(Bytes::copy_from_slice)
        .collect();
    let slow = futures_util::stream::iter(trickle).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(c)
    });
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            client()
                .patch(&url)
                .body(reqwest::Body::wrap_stream(slow))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(450)).await;
    let port = node.port;
    node.kill();
    // The in-flight request dies with the node; how it ends does not matter here.
    let _ = in_flight.await;

    let node = StrataNode::start_on(&data_dir, port);
    let (status, body) = get_bytes(&format!(
        "{base}/v2/crash/blobs/{}",
        Digest::sha256(&before)
    ))
    .await;
    assert_eq!(
        (status, body == before),
        (200, true),
        "blob committed before the crash survives"
    );
    assert_eq!(
        client()
            .head(format!("{base}/v2/crash/blobs/{digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "the unfinished blob is not visible"
    );

    let offset = upload_offset(&url).await as usize;
    assert!(
        (4 * MIB..=data.len()).contains(&offset),
        "resumable offset {offset}"
    );
    let r = client()
        .patch(&url)
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client()
        .put(format!("{url}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, got) = get_bytes(&format!("{base}/v2/crash/blobs/{digest}")).await;
    assert_eq!(status, 200);
    assert!(got == data, "resumed blob is bit-exact");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_leave_the_node_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    let base = node.url("");

    // Mid-upload: the client promises 1 MiB, sends 100 KiB and goes away.
    let data = pattern(MIB, 3);
    let url = start_upload(&base, "dc").await;
    let path = url.trim_start_matches(&base).to_string();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        node.host(),
        data.len()
    );
    abandon_request(&node.host(), &head, &data[..100 * 1024]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let offset = upload_offset(&url).await as usize;
    assert!(offset <= 100 * 1024, "no more than was sent: {offset}");
    let r = client()
        .patch(&url)
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = Digest::sha256(&data);
    assert_eq!(
        client()
            .put(format!("{url}?digest={d}"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // A chunk refused before its body is read (out of order): the node reads the body away,
    // so the client gets the 416 instead of a broken pipe.
    let url2 = start_upload(&base, "dc").await;
    let r = client()
        .patch(&url2)
        .header("content-range", format!("5-{}", 5 + 32 * MIB - 1))
        .body(pattern(32 * MIB, 11))
        .send()
        .await
        .expect("the client reads the refusal, not a broken pipe");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-0");

    // Mid-download: read 64 KiB of a 32 MiB blob and hang up; the node keeps serving.
    let big = pattern(32 * MIB, 4);
    let bd = Digest::sha256(&big);
    assert_eq!(push_blob(&base, "dc", big.clone()).await.0, 201);
    for _ in 0..5 {
        abandon_download(&node.host(), &format!("/v2/dc/blobs/{bd}"), 64 * 1024);
    }
    let (status, got) = get_bytes(&format!("{base}/v2/dc/blobs/{bd}")).await;
    assert_eq!(status, 200);
    assert!(got == big);
    let (_, got) = get_bytes(&format!("{base}/v2/dc/blobs/{d}")).await;
    assert!(got == data, "resumed upload is bit-exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_gives_a_clear_error_and_keeps_serving() {
    if missing_root("full_disk_gives_a_clear_error_and_keeps_serving") {
        return;
    }
    let disk = SmallDisk::mount(48).expect("root can mount a tmpfs");
    let data_dir = disk.dir.path().join("data");
    let node = StrataNode::start(&data_dir);
    let base = node.url("");
    let small = pattern(MIB, 5);
    assert_eq!(push_blob(&base, "full", small.clone()).await.0, 201);
    let used_before = used_bytes(disk.dir.path());

    // Monolithic push larger than the disk.
    let (status, body) = push_blob(&base, "full", pattern(64 * MIB, 6)).await;
    assert_eq!(status, 507, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{body}"
    );
    assert!(
        used_bytes(disk.dir.path()) <= used_before + MIB as u64,
        "failed upload's data is removed"
    );

    // Chunked push: the full disk ends the session and frees what it wrote, so the disk
    // does not stay full until the upload expires; the client starts over.
    let url = start_upload(&base, "full").await;
    let r = client()
        .patch(&url)
        .body(pattern(64 * MIB, 7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        404,
        "session ended"
    );
    assert!(
        used_bytes(disk.dir.path()) <= used_before + MIB as u64,
        "the failed chunk's data is removed"
    );

    // Reads never stopped, and writes work again once there is room.
    let (status, got) =
        get_bytes(&format!("{base}/v2/full/blobs/{}", Digest::sha256(&small))).await;
    assert_eq!((status, got == small), (200, true));
    assert_eq!(push_blob(&base, "full", pattern(MIB, 8)).await.0, 201);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_blob_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    let base = node.url("");
    // Warm up every code path once, so the baseline includes the runtime's steady state.
    assert_eq!(push_blob(&base, "big", pattern(4 * MIB, 9)).await.0, 201);
    let rss_before = node.peak_rss();

    const TOTAL: usize = 1024 * MIB;
    let chunk = Bytes::from(pattern(MIB, 10));
    let hasher = Arc::new(Mutex::new(DigestHasher::new(Algorithm::Sha256)));
    let h = hasher.clone();
    let body = futures_util::stream::iter((0..TOTAL / MIB).map(move |i| {
        let mut c = chunk.to_vec();
        c[..8].copy_from_slice(&(i as u64).to_le_bytes());
        h.lock().unwrap().update(&c);
        Ok::<_, std::io::Error>(Bytes::from(c))
    }));
    let url = start_upload(&base, "big").await;
    let r = client()
        .patch(&url)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let digest = hasher.lock().unwrap().clone().finish();
    assert_eq!(
        client()
            .put(format!("{url}?digest={digest}"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    let resp = client()
        .get(format!("{base}/v2/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut got = DigestHasher::new(Algorithm::Sha256);
    let mut n = 0usize;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len();
        got.update(&c);
    }
    assert_eq!(n, TOTAL);
    assert_eq!(got.finish(), digest);
    let growth = node.peak_rss().saturating_sub(rss_before);
    eprintln!(
        "peak rss growth over a 1 GiB push and pull: {} MiB",
        growth / MIB as u64
    );
    assert!(
        growth < 64 * MIB as u64,
        "node memory grew by {} MiB",
        growth / MIB as u64
    );
}
