//! Gzip streams from several encoders rebuild bit-exactly from their decoded bytes and
//! correction record.

use std::io::Write;

mod common;

use common::sample;
use strata_layer::gzip;

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
