//! zstd streams rebuild bit-exactly from their decoded bytes and correction record: libzstd
//! at several levels and shapes (tiny frames with predefined tables, raw and RLE blocks,
//! several frames, bytes after the last frame), and damaged streams are refused.

mod common;

use std::io::Write;

use common::sample;
use strata_layer::rc::{RcDecoder, RcEncoder};
use strata_layer::{zst, LayerError};

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
