//! Names, tags, references, digests and routes parse without panics and round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_oci::{Digest, Reference, RepoName, Route, Tag};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = s.parse::<RepoName>() {
        assert_eq!(n.as_str(), s);
        assert!(!s.contains("..") && !s.starts_with('/') && !s.contains("//"));
    }
    if let Ok(t) = s.parse::<Tag>() {
        assert_eq!(t.as_str(), s);
        assert!(t.as_str().len() <= 128);
    }
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
    if let Ok(r) = s.parse::<Reference>() {
        assert_eq!(r.to_string(), s);
    }
    let _ = Route::parse(s);
    if let Ok(Route::Manifest(name, reference)) = Route::parse(&format!("/v2/{s}/manifests/latest")) {
        assert_eq!(name.as_str(), s);
        assert_eq!(reference.to_string(), "latest");
    }
});
