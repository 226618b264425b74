//! Damaged recipes and correction records give errors, never panics: the recipe decoder,
//! and a rebuild driven by arbitrary correction bytes over arbitrary decoded data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::filestore::MemFileStore;
use strata_layer::gzip;
use strata_layer::layer::{self, HashSink, LayerRecipe};
use strata_layer::rc::RcDecoder;

fuzz_target!(|data: &[u8]| {
    if let Ok(recipe) = LayerRecipe::decode(data) {
        let again = LayerRecipe::decode(&recipe.encode().expect("encode")).expect("re-decode");
        assert_eq!(again, recipe);
        let _ = layer::rebuild(&recipe, &MemFileStore::default(), &mut HashSink::default());
    }
    let split = data.len() / 2;
    let (correction, mut plain) = data.split_at(split);
    let mut out = Vec::new();
    let _ = gzip::rebuild(&mut RcDecoder::new(correction), &mut plain, &mut out);
});
