//! The zstd parser never panics on any input, and every stream it accepts rebuilds
//! bit-exactly from its decoded bytes and correction record. Inputs get the zstd magic put
//! in front, so the fuzzer spends its time inside frames.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::rc::{RcDecoder, RcEncoder};
use strata_layer::zst;

fuzz_target!(|data: &[u8]| {
    let mut blob = vec![0x28, 0xb5, 0x2f, 0xfd];
    blob.extend_from_slice(data);
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    if zst::analyze(&blob[..], &mut plain, &mut enc).is_ok() {
        let record = enc.finish();
        let mut out = Vec::new();
        zst::rebuild(&mut RcDecoder::new(&record), &mut &plain[..], &mut out)
            .expect("accepted streams rebuild");
        assert_eq!(out, blob);
    }
});
