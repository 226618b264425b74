//! One conformance suite for every FileStore implementation.

use std::io::{Read, Write};

use strata_layer::filestore::{FileStore, FsFileStore, MemFileStore};
use strata_layer::LayerError;

fn put(store: &dyn FileStore, data: &[u8]) -> strata_layer::filestore::Stored {
    let mut w = store.writer().expect("writer");
    for chunk in data.chunks(1000) {
        w.write_all(chunk).expect("write");
    }
    w.commit().expect("commit")
}

fn suite(store: &dyn FileStore) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let a = put(store, &data);
    assert!(a.new);
    assert_eq!(a.size, data.len() as u64);
    assert!(store.contains(&a.digest));
    let stored = store.stored_bytes(&a.digest).expect("stored");
    assert!(
        stored < data.len() as u64 / 10,
        "content is compressed: {stored}"
    );
    assert_eq!(store.list().expect("list"), vec![a.digest]);
    let again = put(store, &data);
    assert_eq!(again.digest, a.digest);
    assert!(!again.new, "same content is stored once");
    let mut back = Vec::new();
    store
        .open(&a.digest)
        .expect("open")
        .read_to_end(&mut back)
        .expect("read");
    assert_eq!(back, data);
    let empty = put(store, b"");
    let mut back = Vec::new();
    store
        .open(&empty.digest)
        .expect("open")
        .read_to_end(&mut back)
        .expect("read");
    assert!(back.is_empty());
    let mut listed = store.list().expect("list");
    listed.sort();
    let mut both = vec![a.digest, empty.digest];
    both.sort();
    assert_eq!(listed, both, "each content listed once");
    store.remove(&a.digest).expect("remove");
    assert!(!store.contains(&a.digest));
    assert_eq!(store.list().expect("list"), vec![empty.digest]);
    assert!(matches!(
        store.open(&a.digest).err(),
        Some(LayerError::MissingFile(_))
    ));
    store.remove(&a.digest).expect("removing twice is fine");
    // An uncommitted writer leaves nothing visible.
    let mut w = store.writer().expect("writer");
    w.write_all(b"abandoned").expect("write");
    drop(w);
    let probe = put(store, b"abandoned");
    assert!(probe.new);
}

#[test]
fn mem_store_conforms() {
    suite(&MemFileStore::default());
}

#[test]
fn fs_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsFileStore::open(dir.path()).expect("open");
    suite(&store);
    let tmp_left = std::fs::read_dir(dir.path().join("tmp"))
        .expect("tmp")
        .count();
    assert_eq!(tmp_left, 0, "temporary files are cleaned up");
    // A writer killed before its commit leaves its temporary file behind.
    std::fs::write(dir.path().join("tmp/.tmpKILLED"), b"partial").expect("write");
    assert_eq!(store.clear_temp().expect("clear"), 1);
    assert_eq!(store.clear_temp().expect("clear again"), 0);
    // Stray names in the file tree are not mistaken for files.
    let before = store.list().expect("list");
    std::fs::write(dir.path().join("files/zz-not-a-file"), b"x").expect("stray");
    assert_eq!(store.list().expect("list"), before);
}
