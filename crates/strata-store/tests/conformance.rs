//! Every backend implementation runs the shared conformance suite.

use std::sync::Arc;

use strata_store::{testsuite, FsBlobStore, MemBlobStore, MemMetaStore, MetaStore, RedbMetaStore};

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
