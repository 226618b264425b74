//! Prints, per zstd file given, the correction record size and analysis/rebuild speed
//! (record format 3; `STRATA_RECORD_FORMAT=2` for the format without encoder replays).
use std::time::Instant;

use strata_layer::rc::{RcDecoder, RcEncoder};
use strata_layer::{zst, Format};

fn main() {
    let format = match std::env::var("STRATA_RECORD_FORMAT").as_deref() {
        Ok("2") => Format::V2,
        _ => Format::V3,
    };
    for path in std::env::args().skip(1) {
        let blob = std::fs::read(&path).expect("read");
        let t = Instant::now();
        let mut plain = Vec::new();
        let mut enc = RcEncoder::default();
        let stats = match zst::analyze_format(&blob[..], &mut plain, &mut enc, format) {
            Ok(s) => s,
            Err(e) => {
                println!("{path}: {e}");
                continue;
            }
        };
        let analyze_s = t.elapsed().as_secs_f64();
        let record = enc.finish();
        let t = Instant::now();
        let mut out = Vec::with_capacity(blob.len());
        let r = zst::rebuild_format(
            &mut RcDecoder::new(&record),
            &mut &plain[..],
            &mut out,
            format,
        );
        let rebuild_s = t.elapsed().as_secs_f64();
        println!(
            "{path}: {} -> {} plain, record {} ({:.3}%) analyze {:.1} MB/s rebuild {:.1} MB/s exact {} replayed {} of {}",
            blob.len(),
            plain.len(),
            record.len(),
            record.len() as f64 * 100.0 / blob.len() as f64,
            plain.len() as f64 / 1e6 / analyze_s,
            plain.len() as f64 / 1e6 / rebuild_s,
            r.is_ok() && out == blob,
            stats.replayed,
            stats.sequences
        );
    }
}
