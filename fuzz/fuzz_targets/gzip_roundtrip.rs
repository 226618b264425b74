//! The DEFLATE/gzip parser never panics on any input, and every stream it accepts rebuilds
//! bit-exactly from its decoded bytes and correction record.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::gzip;
use strata_layer::rc::{RcDecoder, RcEncoder};

fuzz_target!(|data: &[u8]| {
    let mut plain = Vec::new();
    let mut enc = RcEncoder::default();
    if gzip::analyze(data, &mut plain, &mut enc).is_ok() {
        let record = enc.finish();
        let mut out = Vec::new();
        gzip::rebuild(&mut RcDecoder::new(&record), &mut &plain[..], &mut out).expect("accepted streams rebuild");
        assert_eq!(out, data);
    }
});
