//! zstd streams rebuild bit-exactly from their decoded bytes and correction record: libzstd
//! at several levels and shapes (tiny frames with predefined tables, raw and RLE blocks,
//! several frames, bytes after the last frame), klauspost/compress (Go) at every level, its
//! default encoder replayed; damaged streams and records are refused.

mod common;

use std::io::Write;

use common::sample;
use strata_layer::rc::{RcDecoder, RcEncoder};
use strata_layer::{zst, Format, LayerError};

fn round_trip(blob: &[u8]) -> (Vec<u8>, usize) {
    common::round_trip(
        blob,
        |b, plain, enc| zst::analyze(b, plain, enc).map(|_| ()),
        |dec, plain, out| zst::rebuild(dec, &mut &plain[..], out),
    )
}

fn compress(data: &[u8], level: i32, checksum: bool, pledged: bool) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).expect("encoder");
    e.include_checksum(checksum).expect("checksum");
    if pledged {
        e.set_pledged_src_size(Some(data.len() as u64))
            .expect("pledge");
    }
    e.include_contentsize(pledged).expect("content size");
    e.write_all(data).expect("compress");
    e.finish().expect("finish")
}

#[test]
fn libzstd_levels_rebuild_exactly() {
    let data = sample(700_000, 3);
    for level in [1, 3, 7, 12, 19] {
        let blob = compress(&data, level, true, true);
        let (plain, _) = round_trip(&blob);
        assert_eq!(plain, data, "level {level} decoded");
    }
}

#[test]
fn small_odd_and_incompressible_frames_rebuild_exactly() {
    let mut noise = Vec::new();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        noise.push(s as u8);
    }
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"a".to_vec(),
        sample(100, 1),
        sample(3000, 2),
        vec![0u8; 400_000],
        noise,
    ];
    for data in &cases {
        for (checksum, pledged) in [(true, true), (false, false)] {
            let (plain, _) = round_trip(&compress(data, 3, checksum, pledged));
            assert_eq!(&plain, data);
        }
    }
}

#[test]
fn several_frames_and_trailing_bytes_rebuild_exactly() {
    let mut blob = compress(&sample(200_000, 4), 5, true, true);
    blob.extend_from_slice(&compress(&sample(50_000, 5), 1, false, false));
    blob.extend_from_slice(b"trailing garbage");
    let (plain, _) = round_trip(&blob);
    assert_eq!(plain.len(), 250_000);
}

#[test]
fn damaged_streams_are_refused() {
    let blob = compress(&sample(200_000, 6), 3, true, true);
    let analyse = |b: &[u8]| zst::analyze(b, &mut Vec::new(), &mut RcEncoder::default());
    assert!(matches!(
        analyse(&blob[..blob.len() / 2]),
        Err(LayerError::Truncated)
    ));
    let mut flipped = blob.clone();
    let mid = blob.len() / 2;
    flipped[mid] ^= 0x55;
    assert!(analyse(&flipped).is_err(), "a flipped byte went unnoticed");
    assert!(analyse(b"\x28\xb5\x2f\xfd").is_err());
}

#[test]
fn a_damaged_record_is_an_error_not_a_panic() {
    let blob = compress(&sample(100_000, 8), 3, true, true);
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    zst::analyze(&blob[..], &mut plain, &mut enc).expect("analyze");
    let record = enc.finish();
    for cut in [0, 1, record.len() / 3, record.len() / 2] {
        let mut damaged = record.clone();
        damaged.truncate(cut);
        damaged.extend(std::iter::repeat_n(0xa5u8, 40));
        let mut out = Vec::new();
        let rebuilt = zst::rebuild(&mut RcDecoder::new(&damaged), &mut &plain[..], &mut out);
        assert!(
            rebuilt.is_err() || out != blob,
            "damaged record at {cut} rebuilt the blob"
        );
    }
}

#[test]
fn an_empty_rle_block_keeps_its_byte() {
    // Found by the fuzzer: an RLE block of size 0 carries a byte no decoded byte repeats.
    let blob = [
        0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x01, 0x03, 0x00, 0x00, 0x01, 0, 0, 0, 0,
    ];
    let (plain, _) = round_trip(&blob);
    assert!(plain.is_empty());
}

/// Analyses `blob` into a record of `format`, checks it rebuilds exactly; returns its size
/// and what the analysis saw.
fn record_len(blob: &[u8], format: Format) -> (usize, zst::ZstdStats) {
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    let stats = zst::analyze_format(blob, &mut plain, &mut enc, format).expect("analyze");
    let record = enc.finish();
    let mut out = Vec::new();
    zst::rebuild_format(
        &mut RcDecoder::new(&record),
        &mut &plain[..],
        &mut out,
        format,
    )
    .expect("rebuild");
    assert!(out == blob, "{format:?} record rebuilds exactly");
    (record.len(), stats)
}

/// The first `len` bytes of the largest layer's tar in the shared corpus, if it is there.
fn corpus_tar(len: usize) -> Option<Vec<u8>> {
    let blobs = common::corpus_dir().join("blobs/sha256");
    let largest = std::fs::read_dir(&blobs)
        .ok()?
        .filter_map(|e| e.ok())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))?;
    let file = std::fs::File::open(largest.path()).ok()?;
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::GzDecoder::new(file), len as u64),
        &mut tar,
    )
    .ok()?;
    Some(tar)
}

fn klauspost(gozstd: &std::path::Path, level: &str, data: &[u8]) -> Vec<u8> {
    let mut cmd = std::process::Command::new(gozstd);
    cmd.arg(level);
    common::pipe(cmd, data)
}

#[test]
fn klauspost_zstd_at_its_default_level_is_replayed() {
    if common::missing_tool("klauspost_zstd_is_replayed", "go") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gozstd = common::go_build(dir.path(), "gozstd");
    // Streamed 128 KiB blocks with history (3 MB), one block written without history (the
    // writer's single-block path, under 128 KiB), the sizes around one block; text-like
    // samples, and slices of a real layer's tar (where the details of the history-less
    // variant show).
    let mut inputs: Vec<Vec<u8>> = [3_000_000, 100_000, 131_072, 131_073, 20]
        .iter()
        .map(|&len| sample(len, 21))
        .collect();
    match corpus_tar(6_000_000) {
        Some(tar) => {
            inputs.push(tar.clone());
            inputs.extend(tar.chunks(100_000).skip(5).step_by(5).map(|c| c.to_vec()));
        }
        None => eprintln!("SKIPPED part: no corpus at {:?}", common::corpus_dir()),
    }
    for data in &inputs {
        let len = data.len();
        let blob = klauspost(&gozstd, "default", data);
        let ((v2, _), (v3, stats)) = (record_len(&blob, Format::V2), record_len(&blob, Format::V3));
        eprintln!(
            "klauspost default, {len} bytes: {} compressed, record {v3} (general model: {v2}), \
             {} of {} sequences replayed",
            blob.len(),
            stats.replayed,
            stats.sequences
        );
        assert_eq!(
            stats.replayed, stats.sequences,
            "{len} bytes: every sequence replayed"
        );
        if len > 1000 {
            assert!(v3 * 5 < v2, "{len} bytes: {v3} vs {v2}");
            assert!(v3 * 100 < blob.len(), "{len} bytes: record under 1%: {v3}");
        }
    }
    // Other levels are other encoders, not replayed: still exact, and no dearer.
    let data = sample(1_000_000, 22);
    for level in ["fastest", "better", "best"] {
        let blob = klauspost(&gozstd, level, &data);
        let ((v2, _), (v3, stats)) = (record_len(&blob, Format::V2), record_len(&blob, Format::V3));
        eprintln!(
            "klauspost {level}: {} compressed, record {v3} (general model: {v2})",
            blob.len()
        );
        assert_eq!(stats.replayed, 0, "{level} is not replayed");
        assert!(v3 <= v2 + 2, "{level}: {v3} vs {v2}");
    }
}

/// Flips every byte of `blob`'s record in turn (the replay choice, hits, misses): each is
/// an error or other bytes, never a panic. The range coder's first byte and its last four
/// (its flush) may carry nothing.
fn every_damaged_record_fails(blob: &[u8]) {
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    zst::analyze(blob, &mut plain, &mut enc).expect("analyze");
    let record = enc.finish();
    let mut unchanged = Vec::new();
    for at in 0..record.len() {
        let mut damaged = record.clone();
        damaged[at] ^= 0x5a;
        let mut out = Vec::new();
        let rebuilt = zst::rebuild(&mut RcDecoder::new(&damaged), &mut &plain[..], &mut out);
        if rebuilt.is_ok() && out == blob {
            unchanged.push(at);
        }
    }
    assert!(
        unchanged
            .iter()
            .all(|&at| at == 0 || at + 4 >= record.len()),
        "flipping bytes {unchanged:?} of {} changed nothing",
        record.len()
    );
}

#[test]
fn a_damaged_replayed_record_errors_or_rebuilds_other_bytes_and_never_panics() {
    every_damaged_record_fails(&zstd::bulk::compress(&sample(400_000, 24), 3).expect("zstd"));
    if common::missing_tool("a_damaged_klauspost_record", "go") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gozstd = common::go_build(dir.path(), "gozstd");
    every_damaged_record_fails(&klauspost(&gozstd, "default", &sample(400_000, 23)));
}

#[test]
fn a_zstd_recipe_of_the_format_before_the_replay_still_rebuilds() {
    use strata_layer::filestore::MemFileStore;
    use strata_layer::layer::{self, LayerRecipe};
    let tar = common::tar(&[common::Entry::file("a.txt", &sample(300_000, 9))]);
    let blob = compress(&tar, 3, true, false);
    let store = MemFileStore::default();
    let d = layer::decompose(&blob[..], &store, Default::default()).expect("decompose");
    assert_eq!(d.recipe.format, Format::V3);
    let mut enc = RcEncoder::default();
    zst::analyze_format(&blob[..], &mut std::io::sink(), &mut enc, Format::V2).expect("v2");
    let old = LayerRecipe {
        format: Format::V2,
        correction: enc.finish(),
        ..d.recipe.clone()
    };
    assert_ne!(
        old.correction, d.recipe.correction,
        "format 3 records differ"
    );
    let bytes = old.encode().expect("encode");
    assert!(bytes.starts_with(b"STRATA-LAYER\x02"));
    let back = LayerRecipe::decode(&bytes).expect("decode");
    assert_eq!(back.format, Format::V2);
    layer::verify(&back, &store, &d.blob_sha256).expect("a format 2 recipe rebuilds exactly");
}

/// `data` through the zstd CLI at its default level with `args`, from stdin.
fn zstd_cli(args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut cmd = std::process::Command::new("zstd");
    cmd.args(["-q", "-c"]).args(args);
    common::pipe(cmd, data)
}

#[test]
fn the_zstd_cli_and_libzstd_at_level_3_are_replayed() {
    if common::missing_tool("zstd_cli_is_replayed", "zstd") {
        return;
    }
    // The CLI cuts 18 MB into three 8 MiB jobs (threads; the default); one-shot library
    // calls see one window; one-thread streaming refills an input buffer of window + block
    // bytes (the CLI's --single-thread, a binding's stream encoder, here zstd 1.5.7's);
    // known small sizes take other parameters (and the CLI no threads).
    let big = sample(18_000_000, 31);
    let small = sample(200_000, 32);
    let tiny = sample(9_000, 33);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("cli -T1", zstd_cli(&["-T1"], &big)),
        ("cli -T2", zstd_cli(&["-T2"], &big)),
        ("cli --single-thread", zstd_cli(&["--single-thread"], &big)),
        ("one-shot", zstd::bulk::compress(&big, 3).expect("compress")),
        ("stream", compress(&big, 3, true, false)),
        (
            "one-shot 200 KB",
            zstd::bulk::compress(&small, 3).expect("compress"),
        ),
        (
            "one-shot 9 KB",
            zstd::bulk::compress(&tiny, 3).expect("compress"),
        ),
    ];
    if let Some(tar) = corpus_tar(20_000_000) {
        cases.push(("cli, corpus tar", zstd_cli(&[], &tar)));
    }
    for (name, blob) in &cases {
        let ((v2, _), (v3, stats)) = (record_len(blob, Format::V2), record_len(blob, Format::V3));
        eprintln!(
            "{name}: {} compressed, record {v3} (general model: {v2}), {} of {} sequences replayed",
            blob.len(),
            stats.replayed,
            stats.sequences
        );
        assert_eq!(
            stats.replayed, stats.sequences,
            "{name}: every sequence replayed"
        );
        assert!(v3 * 5 < v2, "{name}: {v3} vs {v2}");
    }
}
