//! Every backend implementation runs the shared conformance suite.

use std::sync::Arc;

use strata_store::{
    testsuite, BlobStore, FsBlobStore, Granularity, LayeredBlobStore, MemBlobStore, MemMetaStore,
    MetaStore, RedbMetaStore, StoreSource,
};

#[tokio::test]
async fn mem_blob_store_conforms() {
    testsuite::blob_store(Arc::new(MemBlobStore::new())).await;
}

#[tokio::test]
async fn fs_blob_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsBlobStore::open(dir.path()).await.expect("open");
    testsuite::blob_store(Arc::new(store)).await;
}

/// The store a node really uses, at both granularities (blobs that are not layers stay whole
/// at file granularity, and must behave exactly the same).
#[tokio::test]
async fn layered_blob_store_conforms() {
    for granularity in [Granularity::Layer, Granularity::File] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LayeredBlobStore::open(dir.path(), granularity)
            .await
            .expect("open");
        testsuite::blob_store(Arc::new(store)).await;
    }
}

/// Each blob store, seen as a read-only source, runs the source suite.
#[tokio::test]
async fn blob_stores_as_sources_conform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores: Vec<Arc<dyn BlobStore>> = vec![
        Arc::new(MemBlobStore::new()),
        Arc::new(
            FsBlobStore::open(dir.path().join("fs"))
                .await
                .expect("open"),
        ),
        Arc::new(
            LayeredBlobStore::open(&dir.path().join("layered"), Granularity::Layer)
                .await
                .expect("open"),
        ),
    ];
    let held = testsuite::source_blobs();
    for store in stores {
        for (_, data) in &held {
            let d = strata_oci::Digest::sha256(data);
            store.put(&d, data.clone()).await.expect("put");
        }
        testsuite::blob_source(&StoreSource(store), &held).await;
    }
}

#[test]
fn mem_meta_store_conforms() {
    testsuite::meta_store(&MemMetaStore::new());
}

#[test]
fn redb_meta_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    testsuite::meta_store(&RedbMetaStore::open(&dir.path().join("meta.redb")).expect("open"));
}

#[test]
fn redb_meta_store_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let repo = "r".parse().expect("name");
    let d = strata_oci::Digest::sha256(b"x");
    {
        let s = RedbMetaStore::open(&path).expect("open");
        s.link_blob(&repo, &d).expect("link");
    }
    let s = RedbMetaStore::open(&path).expect("reopen");
    assert!(s.blob_linked(&repo, &d).expect("query"));
}

/// Below the free-space reserve a metadata write is refused, but a removal goes through:
/// deleting is how an operator frees space.
#[test]
fn redb_meta_store_removes_but_does_not_add_below_the_reserve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.redb");
    let repo: strata_oci::RepoName = "r".parse().expect("name");
    let (kept, added) = (
        strata_oci::Digest::sha256(b"kept"),
        strata_oci::Digest::sha256(b"added"),
    );
    RedbMetaStore::open(&path)
        .expect("open")
        .link_blob(&repo, &kept)
        .expect("link");
    let full = strata_store::FreeSpace::with_reserve(dir.path(), u64::MAX / 2);
    let s = RedbMetaStore::open_with_space(&path, full).expect("reopen");
    assert!(matches!(
        s.link_blob(&repo, &added),
        Err(strata_store::StoreError::StorageFull)
    ));
    assert!(s
        .unlink_blob(&repo, &kept)
        .expect("a removal is not refused"));
    assert!(!s.blob_linked(&repo, &kept).expect("query"));
}
