//! Hostile and broken layers get a clear error and leave the file store unchanged; odd but
//! legal tars (PAX and GNU long names, hard links, runtime devices, empty files) rebuild.

mod common;

use common::{gzip, tar, Entry};
use strata_layer::filestore::MemFileStore;
use strata_layer::layer::{self, HashSink};
use strata_layer::tar::Limits;
use strata_layer::LayerError;

fn refused(blob: &[u8], limits: Limits) -> (LayerError, MemFileStore) {
    let store = MemFileStore::default();
    let err = layer::decompose(blob, &store, limits).expect_err("layer must be refused");
    (err, store)
}

/// A file before the bad entry proves rollback: its content must not stay in the store.
fn after_a_file<'a>(bad: Entry<'a>) -> Vec<u8> {
    gzip(
        &tar(&[Entry::file("etc/ok", b"content that would be stored"), bad]),
        6,
    )
}

fn assert_hostile(blob: &[u8], needle: &str) {
    let (err, store) = refused(blob, Limits::default());
    let msg = err.to_string();
    assert!(matches!(err, LayerError::Hostile(_)), "{msg}");
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(store.is_empty(), "store must be unchanged after: {msg}");
}

#[test]
fn absolute_and_dotdot_names_are_refused() {
    assert_hostile(
        &after_a_file(Entry::file("/etc/passwd", b"x")),
        "absolute entry name",
    );
    assert_hostile(
        &after_a_file(Entry::file("a/../../etc/passwd", b"x")),
        "contains \"..\"",
    );
}

#[test]
fn links_pointing_outside_are_refused() {
    assert_hostile(
        &after_a_file(Entry::link("l", b'1', "../outside")),
        "points outside",
    );
    assert_hostile(
        &after_a_file(Entry::link("l", b'1', "etc/never-seen")),
        "unknown entry",
    );
    assert_hostile(
        &after_a_file(Entry::link("a/l", b'2', "../../etc/shadow")),
        "outside the root",
    );
}

#[test]
fn device_nodes_are_refused_except_runtime_devices() {
    let mut sda = Entry::link("dev/sda", b'4', "");
    sda.dev = (8, 0);
    assert_hostile(&after_a_file(sda), "device node");
    let mut mem = Entry::link("dev/mem", b'3', "");
    mem.dev = (1, 1);
    assert_hostile(&after_a_file(mem), "device node");
}

#[test]
fn duplicates_and_huge_records_are_refused() {
    assert_hostile(
        &after_a_file(Entry::file("etc/ok", b"again")),
        "duplicate entry",
    );
    let huge = vec![b'a'; 2 << 20];
    assert_hostile(
        &after_a_file(Entry {
            name: "././@PaxHeader",
            kind: b'x',
            link: "",
            data: &huge,
            dev: (0, 0),
        }),
        "record of",
    );
}

#[test]
fn limits_stop_bombs_and_entry_floods() {
    let zeros = vec![0u8; 4 << 20];
    let bomb = gzip(&tar(&[Entry::file("zeros", &zeros)]), 9);
    let (err, store) = refused(
        &bomb,
        Limits {
            max_tar_bytes: 1 << 20,
            ..Limits::default()
        },
    );
    assert!(matches!(err, LayerError::Limit(_)), "{err}");
    assert!(store.is_empty());
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let entries: Vec<Entry> = names.iter().map(|n| Entry::file(n, n.as_bytes())).collect();
    let flood = gzip(&tar(&entries), 6);
    let (err, store) = refused(
        &flood,
        Limits {
            max_entries: 10,
            ..Limits::default()
        },
    );
    assert!(
        err.to_string().contains("more than 10 tar entries"),
        "{err}"
    );
    assert!(store.is_empty());
}

#[test]
fn truncated_streams_are_refused() {
    let data = vec![7u8; 100_000];
    let t = tar(&[Entry::file("a", b"first file"), Entry::file("big", &data)]);
    let (err, store) = refused(&t[..t.len() / 2], Limits::default());
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(store.is_empty());
    let gz = gzip(&t, 6);
    let (err, store) = refused(&gz[..gz.len() - 20], Limits::default());
    assert!(
        matches!(err, LayerError::Truncated | LayerError::Io(_)),
        "{err}"
    );
    assert!(store.is_empty());
    let (err, _) = refused(
        b"definitely not a tar stream, far too short",
        Limits::default(),
    );
    assert!(
        err.to_string().contains("truncated") || err.to_string().contains("checksum"),
        "{err}"
    );
}

#[test]
fn legal_oddities_rebuild_exactly() {
    let long = "d/".repeat(60) + "long-name-file";
    let pax = format!(
        "{} path={long}\n",
        long.len() + 7 + (long.len() + 7).to_string().len()
    );
    let mut null = Entry::link("dev/null", b'3', "");
    null.dev = (1, 3);
    let entries = [
        Entry::file("etc/", b""),
        Entry::file("etc/empty", b""),
        Entry::file("etc/a", b"shared content"),
        Entry::file("etc/b", b"shared content"),
        Entry::link("etc/hard", b'1', "etc/a"),
        Entry::link("etc/abs", b'2', "/usr/bin/python3"),
        Entry::link("etc/rel", b'2', "../usr/lib"),
        Entry {
            name: "././@PaxHeader",
            kind: b'x',
            link: "",
            data: pax.as_bytes(),
            dev: (0, 0),
        },
        Entry::file("placeholder", b"pax-named content"),
        Entry {
            name: "././@LongLink",
            kind: b'L',
            link: "",
            data: b"gnu/long/name/that/is/long\0",
            dev: (0, 0),
        },
        Entry::file("short", b"gnu-named content"),
        null,
    ];
    let plain = tar(&entries);
    for blob in [plain.clone(), gzip(&plain, 1), gzip(&plain, 9)] {
        let store = MemFileStore::default();
        let d = layer::decompose(&blob[..], &store, Limits::default()).expect("decompose");
        assert_eq!(store.len(), 3, "three distinct contents");
        let recipe =
            layer::LayerRecipe::decode(&d.recipe.encode().expect("encode")).expect("decode");
        let mut sink = HashSink::default();
        layer::rebuild(&recipe, &store, &mut sink).expect("rebuild");
        assert_eq!(sink.digest(), d.blob_sha256);
    }
}

#[test]
fn damaged_recipes_fail_cleanly() {
    let store = MemFileStore::default();
    let blob = gzip(&tar(&[Entry::file("a", b"data data data data")]), 6);
    let d = layer::decompose(&blob[..], &store, Limits::default()).expect("decompose");
    let bytes = d.recipe.encode().expect("encode");
    for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            layer::LayerRecipe::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // A corrupted correction record never rebuilds something that passes as the original.
    let mut bad = d.recipe.clone();
    let mid = bad.correction.len() / 2;
    bad.correction[mid] ^= 0x55;
    let mut sink = HashSink::default();
    let rebuilt = layer::rebuild(&bad, &store, &mut sink).is_ok() && sink.digest() == d.blob_sha256;
    assert!(!rebuilt);
}

/// Found by the `recipe_decode` fuzz target: a correction record that decodes to a match
/// of distance 0 made the encoder's symbol lookup underflow. It must be an error.
#[test]
fn corrupt_correction_records_are_errors_not_panics() {
    let data: &[u8] = &[
        0x27, 0x02, 0xa1, 0x11, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x6f, 0x00,
        0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0xbf, 0x00, 0x00, 0x02,
        0xf4, 0x21, 0xeb, 0xeb, 0xeb, 0xeb, 0xeb, 0x7e, 0xeb, 0xeb, 0x00, 0x03,
    ];
    let (correction, mut plain) = data.split_at(data.len() / 2);
    let mut out = Vec::new();
    let rebuilt = strata_layer::gzip::rebuild(
        &mut strata_layer::rc::RcDecoder::new(correction),
        &mut plain,
        &mut out,
    );
    assert!(rebuilt.is_err(), "a damaged record rebuilt something");
}
