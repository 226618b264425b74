//! Gzip streams from several encoders rebuild bit-exactly from their decoded bytes and
//! correction record.

use std::io::Write;

mod common;

use common::sample;
use strata_layer::deflate::Format;
use strata_layer::gzip;
use strata_layer::rc::{RcDecoder, RcEncoder};

fn round_trip(blob: &[u8]) -> (Vec<u8>, usize) {
    common::round_trip(
        blob,
        |b, plain, enc| gzip::analyze(b, plain, enc).map(|_| ()),
        |dec, plain, out| gzip::rebuild(dec, &mut &plain[..], out),
    )
}

#[test]
fn flate2_levels_rebuild_exactly() {
    let data = sample(300_000, 7);
    for level in [0, 1, 6, 9] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(&data).expect("compress");
        let blob = e.finish().expect("finish");
        let (plain, record) = round_trip(&blob);
        assert_eq!(plain, data);
        eprintln!("level {level}: {} compressed, record {record}", blob.len());
    }
}

#[test]
fn multi_member_and_trailing_bytes_rebuild_exactly() {
    let mut blob = Vec::new();
    for seed in 1..4 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
        e.write_all(&sample(20_000, seed)).expect("compress");
        blob.extend(e.finish().expect("finish"));
    }
    blob.extend_from_slice(b"\0\0\0\0junk");
    round_trip(&blob);
}

#[test]
fn empty_input_rebuilds_exactly() {
    let e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    round_trip(&e.finish().expect("finish"));
}

/// `data` compressed by GNU gzip at `level`.
fn gnu_gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut cmd = std::process::Command::new("gzip");
    cmd.args([format!("-{level}").as_str(), "-n", "-c"]);
    common::pipe(cmd, data)
}

/// The record of `blob` in `format`, after checking it rebuilds exactly.
fn record_len(blob: &[u8], format: Format) -> usize {
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    gzip::analyze_format(blob, &mut plain, &mut enc, format).expect("analyze");
    let record = enc.finish();
    let mut out = Vec::new();
    gzip::rebuild_format(
        &mut RcDecoder::new(&record),
        &mut &plain[..],
        &mut out,
        format,
    )
    .expect("rebuild");
    assert!(out == blob, "{format:?} record rebuilds exactly");
    record.len()
}

#[test]
fn zlib_levels_are_replayed_so_their_tokens_and_headers_cost_almost_nothing() {
    if common::missing_tool("zlib_levels_are_replayed", "gzip") {
        return;
    }
    let data = sample(2_000_000, 11);
    for level in 1..=9 {
        let blob = gnu_gzip(&data, level);
        let (v1, v2) = (record_len(&blob, Format::V1), record_len(&blob, Format::V2));
        eprintln!(
            "gzip -{level}: {} compressed, record {v2} (general model alone: {v1})",
            blob.len()
        );
        assert!(
            v2 * 3 < v1,
            "gzip -{level}: replaying zlib cuts the record: {v2} vs {v1}"
        );
        assert!(
            v2 * 1000 < blob.len(),
            "gzip -{level}: tokens and headers as zlib writes them cost under 0.1%: {v2}"
        );
    }
}

#[test]
fn go_compress_gzip_is_replayed_at_every_level() {
    if common::missing_tool("go_compress_gzip_is_replayed", "go") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gogzip = common::go_build(dir.path(), "gogzip");
    let data = sample(2_000_000, 13);
    for level in [1, 2, 4, 6, 9, -1] {
        let mut cmd = std::process::Command::new(&gogzip);
        cmd.arg(level.to_string());
        let blob = common::pipe(cmd, &data);
        let (v1, v2) = (record_len(&blob, Format::V1), record_len(&blob, Format::V2));
        eprintln!(
            "Go level {level}: {} compressed, record {v2} (general model alone: {v1})",
            blob.len()
        );
        assert!(v2 < v1, "Go level {level}: {v2} vs {v1}");
        assert!(
            v2 * 1000 < blob.len(),
            "Go level {level}: tokens and headers as Go writes them cost under 0.1%: {v2}"
        );
    }
}

#[test]
fn pgzip_at_its_default_level_is_replayed_across_its_blocks() {
    if common::missing_tool("pgzip_is_replayed", "go") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gopgzip = common::go_build(dir.path(), "gopgzip");
    // 3 MB: pgzip's 1 MiB blocks (each primed with the last 16 KiB of the one before), and
    // 20000-byte blocks (every chunk ends a block; the block framing, about 6 bytes per
    // pgzip block, is then most of the record).
    let data = sample(3_000_000, 17);
    for (args, per_10k) in [(vec!["-1"], 10), (vec!["-1", "20000"], 25)] {
        let mut cmd = std::process::Command::new(&gopgzip);
        cmd.args(&args);
        let blob = common::pipe(cmd, &data);
        let (v1, v2) = (record_len(&blob, Format::V1), record_len(&blob, Format::V2));
        eprintln!(
            "pgzip {args:?}: {} compressed, record {v2} (general model alone: {v1})",
            blob.len()
        );
        assert!(v2 * 3 < v1, "pgzip {args:?}: {v2} vs {v1}");
        assert!(
            v2 * 10_000 < blob.len() * per_10k,
            "pgzip {args:?}: tokens and headers as pgzip writes them cost under {per_10k}/10000: {v2}"
        );
    }
    // Other levels are other encoders, not replayed: still exact.
    for level in ["1", "9"] {
        let mut cmd = std::process::Command::new(&gopgzip);
        cmd.arg(level);
        let blob = common::pipe(cmd, &data);
        let v2 = record_len(&blob, Format::V2);
        eprintln!(
            "pgzip level {level}: {} compressed, record {v2}",
            blob.len()
        );
    }
}

#[test]
fn a_damaged_pgzip_record_errors_or_rebuilds_other_bytes_and_never_panics() {
    if common::missing_tool("a_damaged_pgzip_record", "go") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let gopgzip = common::go_build(dir.path(), "gopgzip");
    let data = sample(300_000, 19);
    let mut cmd = std::process::Command::new(&gopgzip);
    cmd.args(["-1", "20000"]);
    let blob = common::pipe(cmd, &data);
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    gzip::analyze(&blob[..], &mut plain, &mut enc).expect("analyze");
    let record = enc.finish();
    // Every byte of the record flipped in turn (the replay's number, block framing, hits):
    // an error or other bytes, never a panic. The range coder's first byte and the last
    // four (its flush) may carry nothing.
    let mut unchanged = Vec::new();
    for at in 0..record.len() {
        let mut damaged = record.clone();
        damaged[at] ^= 0x5a;
        let mut out = Vec::new();
        match gzip::rebuild(&mut RcDecoder::new(&damaged), &mut &plain[..], &mut out) {
            Ok(()) if out == blob => unchanged.push(at),
            _ => {}
        }
    }
    eprintln!(
        "{} record bytes; flips that changed nothing: {unchanged:?}",
        record.len()
    );
    assert!(
        unchanged
            .iter()
            .all(|&at| at == 0 || at + 4 >= record.len()),
        "flips that changed nothing: {unchanged:?}"
    );
}

#[test]
fn a_non_zlib_stream_is_not_replayed_and_costs_no_more() {
    // flate2's default backend (miniz_oxide) is not zlib's algorithm.
    let blob = common::gzip(&sample(500_000, 3), 6);
    let (v1, v2) = (record_len(&blob, Format::V1), record_len(&blob, Format::V2));
    assert!(v2 <= v1 + 1, "{v2} vs {v1}");
}

#[test]
fn a_recipe_written_before_the_zlib_replay_still_rebuilds() {
    use strata_layer::filestore::MemFileStore;
    use strata_layer::layer::{self, LayerRecipe};
    let data = sample(100_000, 5);
    let blob = common::gzip(&common::tar(&[common::Entry::file("a.txt", &data)]), 6);
    let store = MemFileStore::default();
    let d = layer::decompose(&blob[..], &store, Default::default()).expect("decompose");
    assert_eq!(d.recipe.format, Format::V3);
    // The same layer as the previous version recorded it.
    let mut enc = RcEncoder::default();
    gzip::analyze_format(&blob[..], &mut std::io::sink(), &mut enc, Format::V1).expect("v1");
    let old = LayerRecipe {
        format: Format::V1,
        correction: enc.finish(),
        ..d.recipe.clone()
    };
    let bytes = old.encode().expect("encode");
    assert!(bytes.starts_with(b"STRATA-LAYER\x01"));
    let back = LayerRecipe::decode(&bytes).expect("decode");
    assert_eq!(back.format, Format::V1);
    layer::verify(&back, &store, &d.blob_sha256).expect("a format 1 recipe rebuilds exactly");

    let mut unknown = bytes.clone();
    unknown[12] = 7;
    let err = LayerRecipe::decode(&unknown).expect_err("unknown version");
    assert!(
        err.to_string().contains("unknown recipe version 7"),
        "{err}"
    );
}

#[test]
fn a_damaged_record_that_picks_the_position_itself_errors_and_never_panics() {
    // Found by the recipe_decode fuzz target: a three-byte candidate at distance 0 (the
    // position the lazy check had just indexed) chosen by garbage correction bytes.
    let data = include_bytes!("../testdata/fuzz/recipe_decode-zero-distance");
    let (correction, mut plain) = data.split_at(data.len() / 2);
    let err = gzip::rebuild(&mut RcDecoder::new(correction), &mut plain, &mut Vec::new())
        .expect_err("a damaged record");
    assert!(err.to_string().contains("distance out of range"), "{err}");
}
