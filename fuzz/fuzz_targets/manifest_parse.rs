//! Manifest parsing never panics, and what it accepts is self-consistent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_oci::manifest::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

fuzz_target!(|data: &[u8]| {
    let (selector, body) = data.split_first().map_or((0, data), |(s, b)| (*s, b));
    let content_type = match selector % 4 {
        0 => None,
        1 => Some(OCI_MANIFEST),
        2 => Some(OCI_INDEX),
        _ => Some(DOCKER_MANIFEST),
    };
    if let Ok(parsed) = manifest::parse(body, content_type) {
        assert!(body.len() <= manifest::MAX_MANIFEST_BYTES);
        if parsed.is_index() {
            assert!(parsed.blobs.is_empty());
        } else {
            assert!(parsed.manifests.is_empty());
            assert!(!parsed.blobs.is_empty(), "an image manifest always has its config");
        }
        for d in parsed.blobs.iter().chain(&parsed.manifests) {
            assert_eq!(d.to_string().parse::<strata_oci::Digest>().as_ref(), Ok(d));
        }
    }
});
