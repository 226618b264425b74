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

/// A plain tar of `files` (name, content): ustar headers, padding, two zero blocks.
fn tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn layer(seed: u8) -> Vec<u8> {
    let content = |n: usize| {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
            .collect()
    };
    tar(&[("a.bin", content(300_000)), ("b.txt", vec![seed; 5000])])
}

async fn read_all(
    store: &LayeredBlobStore,
    d: &Digest,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, String> {
    let mut s = store.read(d, start, end).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

async fn file_level_store(
    dir: &std::path::Path,
    budget: u64,
    layers: &[Vec<u8>],
) -> (LayeredBlobStore, Vec<Digest>) {
    let store = LayeredBlobStore::open_with_cache(dir, Granularity::File, budget)
        .await
        .expect("open");
    let mut digests = Vec::new();
    for l in layers {
        let d = Digest::sha256(l);
        store.put(&d, Bytes::from(l.clone())).await.expect("put");
        assert!(
            store.convert(&d).await.expect("convert"),
            "stored at file level"
        );
        digests.push(d);
    }
    (store, digests)
}

fn cached(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("rebuilt"))
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_share_one_reconstruction_and_later_reads_hit_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = layer(7);
    let (store, d) = file_level_store(dir.path(), 1 << 30, std::slice::from_ref(&data)).await;
    let reads = (0..6).map(|_| {
        let (store, d) = (store.clone(), d[0].clone());
        let len = data.len() as u64;
        tokio::spawn(async move { read_all(&store, &d, 0, len).await })
    });
    for r in futures_util::future::join_all(reads).await {
        assert!(
            r.expect("task").expect("read") == data,
            "every reader gets the exact layer"
        );
    }
    assert_eq!(
        store.reconstructions_started(),
        1,
        "six concurrent readers, one reconstruction"
    );
    assert_eq!(cached(dir.path()), vec![format!("sha256-{}", d[0].hex())]);
    let range = read_all(&store, &d[0], 1000, 200_000).await.expect("range");
    assert!(range == data[1000..200_000]);
    assert_eq!(store.reconstructions_started(), 1, "served from the cache");
    assert!(store.delete(&d[0]).await.expect("delete"));
    assert!(
        cached(dir.path()).is_empty(),
        "deleting the layer drops its reconstruction"
    );
}

#[tokio::test]
async fn the_cache_keeps_to_its_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (layer(3), layer(5));
    let (store, d) = file_level_store(dir.path(), a.len() as u64, &[a.clone(), b.clone()]).await;
    assert!(read_all(&store, &d[0], 0, a.len() as u64).await.expect("a") == a);
    assert!(read_all(&store, &d[1], 0, b.len() as u64).await.expect("b") == b);
    assert_eq!(
        cached(dir.path()),
        vec![format!("sha256-{}", d[1].hex())],
        "the older one is evicted"
    );
    assert!(
        read_all(&store, &d[0], 0, a.len() as u64)
            .await
            .expect("a again")
            == a
    );
    assert_eq!(store.reconstructions_started(), 3);

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, d) = file_level_store(dir.path(), 0, std::slice::from_ref(&a)).await;
    for _ in 0..2 {
        assert!(read_all(&store, &d[0], 0, a.len() as u64).await.expect("a") == a);
    }
    assert!(cached(dir.path()).is_empty(), "a budget of 0 keeps nothing");
    assert_eq!(store.reconstructions_started(), 2);
}

#[tokio::test]
async fn a_reconstruction_that_does_not_match_fails_its_readers_and_quarantines_the_recipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = layer(9);
    let (store, d) = file_level_store(dir.path(), 1 << 30, std::slice::from_ref(&data)).await;
    // Swap the content of the stored 5000-byte file for other bytes of the same length.
    let sha = Digest::sha256(&vec![9u8; 5000]);
    let stored = dir
        .path()
        .join("files/files")
        .join(&sha.hex()[..2])
        .join(format!("{}.zst", sha.hex()));
    std::fs::write(
        &stored,
        zstd::bulk::compress(&[1u8; 5000], 3).expect("zstd"),
    )
    .expect("tamper");

    let mut s = store.read(&d[0], 0, data.len() as u64).await.expect("read");
    let (mut got, mut failed) = (0usize, false);
    while let Some(c) = s.next().await {
        match c {
            Ok(b) => got += b.len(),
            Err(_) => failed = true,
        }
    }
    assert!(failed, "the read ends in an error");
    assert!(
        got < data.len(),
        "a reader never gets a complete wrong blob ({got} bytes)"
    );
    assert!(cached(dir.path()).is_empty(), "nothing wrong is cached");
    let recipe = dir
        .path()
        .join("recipes/sha256")
        .join(&d[0].hex()[..2])
        .join(format!("{}.quarantined", d[0].hex()));
    assert!(recipe.exists(), "the recipe is quarantined");
}

#[tokio::test]
async fn store_as_moves_a_layer_between_granularities_and_it_stays_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LayeredBlobStore::open(dir.path(), Granularity::File)
        .await
        .expect("open");
    let data = layer(11);
    let d = Digest::sha256(&data);
    store.put(&d, Bytes::from(data.clone())).await.expect("put");
    let len = data.len() as u64;

    let c = store
        .store_as(&d, Granularity::File)
        .await
        .expect("to file");
    assert_eq!((c.granularity, c.changed), (Granularity::File, true));
    assert!(read_all(&store, &d, 0, len).await.expect("read") == data);
    assert_eq!(store.layer_stats().await.expect("stats").file_level, 1);

    let c = store
        .store_as(&d, Granularity::Layer)
        .await
        .expect("to layer");
    assert_eq!((c.granularity, c.changed), (Granularity::Layer, true));
    let stats = store.layer_stats().await.expect("stats");
    assert_eq!((stats.file_level, stats.kept_whole), (0, 1));
    assert_eq!(
        cached(dir.path()),
        Vec::<String>::new(),
        "no reconstruction is kept beside the whole blob"
    );
    assert!(read_all(&store, &d, 0, len).await.expect("read") == data);
    assert!(
        !store.convert(&d).await.expect("convert"),
        "a file node restarting leaves a layer kept whole on request alone"
    );

    let c = store
        .store_as(&d, Granularity::File)
        .await
        .expect("back to file");
    assert_eq!((c.granularity, c.changed), (Granularity::File, true));
    assert!(read_all(&store, &d, 100, 7000).await.expect("range") == data[100..7000]);

    let missing = Digest::sha256(b"not stored");
    assert!(store.store_as(&missing, Granularity::File).await.is_err());
    let odd = vec![0x42u8; 8192];
    let od = Digest::sha256(&odd);
    store.put(&od, Bytes::from(odd)).await.expect("put");
    let c = store
        .store_as(&od, Granularity::File)
        .await
        .expect("not a layer");
    assert_eq!((c.granularity, c.changed), (Granularity::Layer, false));
    assert!(
        c.reason.is_some_and(|r| !r.is_empty()),
        "says why it stays whole"
    );
}

/// Stored files of the store under `dir`.
fn stored_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("files/files"))
        .expect("files dir")
        .map(|shard| {
            std::fs::read_dir(shard.expect("shard").path())
                .expect("shard")
                .count()
        })
        .sum()
}

#[tokio::test]
async fn collecting_files_removes_only_what_no_remaining_layer_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let one = tar(&[("shared.bin", shared.clone()), ("one.txt", vec![1; 9000])]);
    let two = tar(&[("shared.bin", shared), ("two.txt", vec![2; 9000])]);
    let (store, d) = file_level_store(dir.path(), 0, &[one, two.clone()]).await;
    assert_eq!(
        stored_files(dir.path()),
        3,
        "the shared file is stored once"
    );
    let nothing = store.collect_files().await.expect("collect");
    assert_eq!(nothing.files_removed, 0, "every file is in use");

    assert!(store.delete(&d[0]).await.expect("delete"));
    let once = store.collect_files().await.expect("collect");
    assert_eq!(once.files_removed, 1, "only the deleted layer's own file");
    assert!(once.bytes_freed > 0);
    assert_eq!(stored_files(dir.path()), 2);
    let len = two.len() as u64;
    assert!(read_all(&store, &d[1], 0, len).await.expect("read") == two);

    let c = store
        .store_as(&d[1], Granularity::Layer)
        .await
        .expect("to layer");
    assert!(c.changed);
    assert_eq!(
        store.collect_files().await.expect("collect").files_removed,
        2
    );
    assert_eq!(stored_files(dir.path()), 0);
    assert!(
        read_all(&store, &d[1], 0, len).await.expect("read") == two,
        "whole now"
    );
}

#[tokio::test]
async fn an_unreadable_recipe_stops_file_collection_before_anything_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = layer(5);
    let (store, d) = file_level_store(dir.path(), 0, std::slice::from_ref(&data)).await;
    assert!(store.delete(&d[0]).await.expect("delete"));
    let broken = Digest::sha256(b"some other layer");
    let path = dir
        .path()
        .join("recipes/sha256")
        .join(&broken.hex()[..2])
        .join(format!("{}.recipe", broken.hex()));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, b"\x10\0\0\0\0\0\0\0garbage").expect("write");
    let before = stored_files(dir.path());
    let err = store.collect_files().await.expect_err("refused");
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert_eq!(stored_files(dir.path()), before, "nothing removed");
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(
        store.collect_files().await.expect("collect").files_removed as usize,
        before
    );
}
