//! Prints, per zstd file given, the correction record size and analysis/rebuild speed.
use std::time::Instant;

use strata_layer::rc::{RcDecoder, RcEncoder};
use strata_layer::zst;

fn main() {
    for path in std::env::args().skip(1) {
        let blob = std::fs::read(&path).expect("read");
        let t = Instant::now();
        let mut plain = Vec::new();
        let mut enc = RcEncoder::default();
        let stats = match zst::analyze(&blob[..], &mut plain, &mut enc) {
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
        let r = zst::rebuild(&mut RcDecoder::new(&record), &mut &plain[..], &mut out);
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
