//! Prints, per gzip file given, the correction record size and analysis/rebuild speed.
use std::time::Instant;

use strata_layer::gzip;
use strata_layer::rc::{RcDecoder, RcEncoder};

fn main() {
    for path in std::env::args().skip(1) {
        let blob = std::fs::read(&path).expect("read");
        let t = Instant::now();
        let mut plain = Vec::new();
        let mut enc = RcEncoder::default();
        let stats = gzip::analyze(&blob[..], &mut plain, &mut enc);
        let analyze_s = t.elapsed().as_secs_f64();
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                println!("{path}: {e}");
                continue;
            }
        };
        let record = enc.finish();
        let t = Instant::now();
        let mut out = Vec::with_capacity(blob.len());
        let r = gzip::rebuild(&mut RcDecoder::new(&record), &mut &plain[..], &mut out);
        let rebuild_s = t.elapsed().as_secs_f64();
        println!(
            "{path}: {} -> {} plain, blocks {} tokens {} record {} ({:.3}%) analyze {:.1} MB/s rebuild {:.1} MB/s exact {}",
            blob.len(),
            plain.len(),
            stats.blocks,
            stats.tokens,
            record.len(),
            record.len() as f64 * 100.0 / blob.len() as f64,
            plain.len() as f64 / 1e6 / analyze_s,
            plain.len() as f64 / 1e6 / rebuild_s,
            r.is_ok() && out == blob
        );
    }
}
