//! File-level storage in the node's store: what stays whole, and why.

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::Digest;
use strata_store::{kept_whole, BlobStore, Granularity, LayeredBlobStore};

#[tokio::test]
async fn a_layer_that_cannot_be_rebuilt_stays_whole_with_its_reason_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LayeredBlobStore::open(dir.path(), Granularity::Layer)
        .await
        .expect("open");
    let data = vec![0x5a; 8192]; // not a tar, not compressed
    let d = Digest::sha256(&data);
    store.put(&d, Bytes::from(data.clone())).await.expect("put");
    assert!(!store.convert(&d).await.expect("convert"), "stays whole");

    let whole = kept_whole(dir.path()).expect("list");
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].0, d);
    assert!(!whole[0].1.trim().is_empty(), "a reason is recorded");

    // Still served whole, and not decomposed again (the record is left as it was).
    let mut read = Vec::new();
    let mut s = store.read(&d, 0, data.len() as u64).await.expect("read");
    while let Some(c) = s.next().await {
        read.extend_from_slice(&c.expect("chunk"));
    }
    assert_eq!(read, data);
    let marker = dir
        .path()
        .join("recipes/sha256")
        .join(&d.hex()[..2])
        .join(format!("{}.whole", d.hex()));
    let before = std::fs::metadata(&marker)
        .expect("marker")
        .modified()
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!store.convert(&d).await.expect("convert again"));
    let after = std::fs::metadata(&marker)
        .expect("marker")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "a known whole layer is not decomposed again");
}
