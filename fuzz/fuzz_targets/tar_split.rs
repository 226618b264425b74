//! The tar splitter never panics, and every stream it accepts rebuilds exactly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::filestore::MemFileStore;
use strata_layer::layer::{self, HashSink};

fuzz_target!(|data: &[u8]| {
    let store = MemFileStore::default();
    match layer::decompose(data, &store, Default::default()) {
        Ok(d) => {
            let mut sink = HashSink::default();
            layer::rebuild(&d.recipe, &store, &mut sink).expect("accepted layers rebuild");
            assert_eq!(sink.digest(), d.blob_sha256);
        }
        Err(_) => assert!(store.is_empty(), "a refused layer leaves the store unchanged"),
    }
});
