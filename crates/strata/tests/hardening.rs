//! A hostile user against the real binary: full disks, connection floods, oversized
//! manifests, collections that could remove pushes in flight (issue 19).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_oci::{Digest, RepoName};
use strata_store::{FreeSpace, MetaStore, RedbMetaStore, StoreError};
use support::http::{client, pattern, push_blob, put_manifest, OCI_MANIFEST};
use support::{missing_root, missing_tool, SmallDisk, StrataNode};

const MIB: usize = 1024 * 1024;

/// Fill the filesystem holding `dir` with one file of zeros until it is full.
fn fill_disk(dir: &Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let zeros = vec![0u8; 64 * 1024];
    while f.write_all(&zeros).is_ok() {}
    let _ = f.sync_all();
    filler
}

/// Push a config and one layer to `repo`, then a manifest tagged `tag`; returns the manifest.
async fn push_image(base: &str, repo: &str, tag: &str) -> Vec<u8> {
    support::http::push_image(base, repo, tag, b"{}", &pattern(200 * 1024, 42)).await
}

async fn get_manifest(base: &str, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let r = client()
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_corrupts_a_stored_manifest_and_writes_resume_without_restart() {
    if missing_root(
        "a_full_disk_never_corrupts_a_stored_manifest_and_writes_resume_without_restart",
    ) {
        return;
    }
    let disk = SmallDisk::mount(64).expect("root can mount a tmpfs");
    let data_dir = disk.dir.path().join("data");
    let node = StrataNode::start(&data_dir);
    let base = node.url("");
    let manifest = push_image(&base, "app", "base").await;
    let digest = Digest::sha256(&manifest);
    let hex = digest.hex();
    let stored = data_dir.join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(std::fs::read(&stored).unwrap(), manifest);

    let filler = fill_disk(disk.dir.path());
    // The same manifest under a new tag: refused with 507, and the stored bytes stay.
    assert_eq!(put_manifest(&base, "app", "again", &manifest).await, 507);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        manifest,
        "stored manifest intact"
    );
    assert_eq!(
        get_manifest(&base, "app", "base").await,
        (200, manifest.clone())
    );
    let head = client()
        .head(format!("{base}/v2/app/manifests/base"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        manifest.len().to_string()
    );
    // Every kind of write answers 507 while full, none 500.
    let post = client()
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 507, "{}", post.text().await.unwrap());
    assert_eq!(push_blob(&base, "app", pattern(MIB, 3)).await.0, 507);

    // Room again: writes succeed at once, without a restart.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(put_manifest(&base, "app", "again", &manifest).await, 201);
    assert_eq!(push_blob(&base, "app", pattern(MIB, 4)).await.0, 201);
    let del = client()
        .delete(format!("{base}/v2/app/manifests/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 202);
    assert_eq!(put_manifest(&base, "app", "again", &manifest).await, 201);

    // And after a restart everything committed is there, byte for byte.
    let data_dir = node.kill();
    let node = StrataNode::start(&data_dir);
    let base = node.url("");
    for tag in ["base", "again"] {
        assert_eq!(
            get_manifest(&base, "app", tag).await,
            (200, manifest.clone()),
            "{tag}"
        );
    }
    drop(node);
}

#[test]
fn the_metadata_database_accepts_writes_again_once_a_full_disk_has_room() {
    if missing_root("the_metadata_database_accepts_writes_again_once_a_full_disk_has_room") {
        return;
    }
    let disk = SmallDisk::mount(16).expect("root can mount a tmpfs");
    let path = disk.dir.path().join("meta.redb");
    // No reserve: the database itself must run into the full disk.
    let meta =
        RedbMetaStore::open_with_space(&path, FreeSpace::with_reserve(disk.dir.path(), 0)).unwrap();
    let repo: RepoName = "full/meta".parse().unwrap();
    let committed = Digest::sha256(b"committed before the disk filled");
    meta.link_blob(&repo, &committed).unwrap();
    let filler = fill_disk(disk.dir.path());
    let mut failed = None;
    for i in 0..100_000u32 {
        match meta.link_blob(&repo, &Digest::sha256(&i.to_le_bytes())) {
            Ok(()) => continue,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let failed = failed.expect("the database ran out of space");
    assert!(
        matches!(failed, StoreError::StorageFull),
        "a full disk is reported as such: {failed}"
    );
    std::fs::remove_file(filler).unwrap();
    let after = Digest::sha256(b"written once there is room");
    meta.link_blob(&repo, &after)
        .expect("writes work again without reopening by hand");
    assert!(
        meta.blob_linked(&repo, &committed).unwrap(),
        "nothing committed is lost"
    );
    assert!(meta.blob_linked(&repo, &after).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_connections_does_not_keep_a_client_out() {
    if missing_tool(
        "a_flood_of_half_open_connections_does_not_keep_a_client_out",
        "prlimit",
    ) {
        return;
    }
    // This process holds the flood: let it open more files than the node may.
    rlimit::increase_nofile_limit(8192).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(2);
    let node = StrataNode::start_under(
        &["prlimit", "--nofile=1024:1024", "--"],
        &tmp.path().join("data"),
        0,
        &["--idle-timeout", "2s"],
    );
    let host = node.host();
    let rss_before = support::proc_status_kib(node.pid(), "VmRSS:");
    let addr: std::net::SocketAddr = host.parse().unwrap();
    let mut flood = Vec::new();
    let mut refused = 0;
    // A connect may wait out a full accept queue (the kernel retries the SYN after 1 s) while
    // the node churns through the flood on a loaded machine; a node that stopped accepting
    // refuses them all.
    while flood.len() < 1500 && refused < 20 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            refused += 1;
            continue;
        };
        // A request head that never ends.
        let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n");
        flood.push(s);
    }
    assert!(
        flood.len() > 1024,
        "more half-open connections than the node has files"
    );

    let started = Instant::now();
    let r = client()
        .get(node.url("/v2/"))
        .timeout(idle + Duration::from_secs(1))
        .send()
        .await
        .expect("a legitimate client is served during the flood");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() <= idle + Duration::from_secs(1));

    // The half-open connections are closed: by the idle timeout, or to make room.
    let deadline = Instant::now() + idle + Duration::from_secs(2);
    let mut closed = 0;
    for s in &mut flood {
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match s.read(&mut buf) {
                Ok(0) => break closed += 1,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break closed += 1,
                Err(_) => break,
            }
        }
    }
    assert_eq!(closed, flood.len(), "every half-open connection was closed");
    let rss_after = support::proc_status_kib(node.pid(), "VmRSS:");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} KiB -> {rss_after} KiB"
    );
    // Still serving once the flood is gone.
    drop(flood);
    let r = client().get(node.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_answered_413_not_a_broken_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    let big = vec![b' '; strata_oci::manifest::MAX_MANIFEST_BYTES + MIB];
    let r = client()
        .put(node.url("/v2/app/manifests/big"))
        .header("content-type", OCI_MANIFEST)
        .body(big.clone())
        .send()
        .await
        .expect("the client reads the answer");
    assert_eq!(r.status(), 413);
    // Without a declared length (chunked), the same.
    let stream = futures_util::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = client()
        .put(node.url("/v2/app/manifests/big"))
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("the client reads the answer");
    assert_eq!(r.status(), 413);
}

#[test]
fn gc_refuses_a_grace_that_could_remove_pushes_in_flight_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let gc = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["gc", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    for args in [
        &["--grace", "0s"][..],
        &["--upload-ttl", "1s"],
        &["--grace", "5m"],
    ] {
        let out = gc(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("minimum is 600s"), "{args:?}: {err}");
    }
    let out = gc(&["--grace", "0s", "--upload-ttl", "0s", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serve = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--gc-grace", "1s", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !serve.status.success(),
        "a node refuses a periodic gc grace under the minimum"
    );
    assert!(String::from_utf8_lossy(&serve.stderr).contains("minimum is 600s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_stall_their_body_do_not_keep_a_client_out() {
    let tmp = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(2);
    let node = StrataNode::start_with(
        &tmp.path().join("data"),
        0,
        &["--idle-timeout", "2s", "--max-connections", "64"],
    );
    let addr: std::net::SocketAddr = node.host().parse().unwrap();
    // Each holds a request in progress: its head promises a body that never comes (the node
    // drains a failed upload's body for up to 30 s before answering).
    let mut flood = Vec::new();
    for _ in 0..200 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            continue;
        };
        let _ = s.write_all(
            b"PATCH /v2/x/blobs/uploads/none HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nabc",
        );
        flood.push(s);
    }
    let started = Instant::now();
    let deadline = started + idle + Duration::from_secs(1);
    let served = loop {
        let attempt = client()
            .get(node.url("/v2/"))
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        match attempt {
            Ok(r) => break r.status(),
            // Refused while every connection is busy and moving: a client retries.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no answer within the idle timeout + 1 s: {e}"),
        }
    };
    assert_eq!(served, 200);
    assert!(Instant::now() <= deadline + Duration::from_millis(500));
    drop(flood);
}
