//! Filesystem uploads under a starved blocking pool: a client that stalls mid-body must not
//! hold one of the threads that every file operation of the node needs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::Digest;
use strata_store::{BlobStore, ByteStream, FsBlobStore};

fn stalled_after(first: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(first)]).chain(futures_util::stream::pending()))
}

#[test]
fn a_stalled_upload_does_not_hold_a_blocking_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(FsBlobStore::open(dir.path()).await.expect("open"));
        store.upload_start("slow").await.expect("start");
        let slow = store.clone();
        let stalled = tokio::spawn(async move {
            let first = Bytes::from(vec![7u8; 600 * 1024]);
            slow.upload_append("slow", stalled_after(first)).await
        });
        // The first batch is written; the client then sends nothing more.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let quick = async {
            store.upload_start("quick").await.expect("start");
            let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(
                b"quick upload",
            ))]));
            store.upload_append("quick", body).await.expect("append");
            let d = Digest::sha256(b"quick upload");
            store.upload_commit("quick", &d).await.expect("commit");
            store.stat(&d).await.expect("stat").is_some()
        };
        let finished = tokio::time::timeout(Duration::from_secs(10), quick).await;
        assert_eq!(
            finished.ok(),
            Some(true),
            "another upload completes while one client stalls (one blocking thread)"
        );
        assert!(
            !stalled.is_finished(),
            "the stalled upload is still waiting"
        );
        stalled.abort();
        assert_eq!(
            store.upload_size("slow").await.expect("size"),
            Some(600 * 1024),
            "what the stalled client sent is on disk"
        );
    });
}
