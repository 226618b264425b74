//! Decomposes each blob given into one in-memory store; prints sizes and rebuild time.
use std::time::Instant;

use strata_layer::filestore::{FileStore, MemFileStore};
use strata_layer::layer;

fn main() {
    let store = MemFileStore::default();
    for path in std::env::args().skip(1) {
        let f = std::fs::File::open(&path).expect("open");
        let t = Instant::now();
        match layer::decompose(f, &store, Default::default()) {
            Ok(d) => {
                let secs = t.elapsed().as_secs_f64();
                let recipe = d.recipe.encode().expect("encode");
                let t = Instant::now();
                let mut sink = layer::HashSink::default();
                layer::rebuild(&d.recipe, &store, &mut sink).expect("rebuild");
                let r = t.elapsed().as_secs_f64();
                let new: u64 = d
                    .new_files
                    .iter()
                    .filter_map(|x| store.stored_bytes(x))
                    .sum();
                println!(
                    "{path}: {} -> tar {} recipe {} ({:.2}%, correction {}) new files {} decompose {secs:.2}s rebuild {r:.2}s ({:.0} MB/s of tar) exact {}",
                    d.compressed_bytes, d.tar_bytes, recipe.len(),
                    recipe.len() as f64 * 100.0 / d.compressed_bytes as f64, d.recipe.correction.len(), new,
                    d.tar_bytes as f64 / 1e6 / r, sink.digest() == d.blob_sha256
                );
            }
            Err(e) => println!("{path}: {e}"),
        }
    }
}
