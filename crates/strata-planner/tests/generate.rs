//! The workload generator: seeded, calibrated to the paper's counts, valid instances.

#![allow(clippy::unwrap_used)]

use strata_planner::{generate, GenParams, Problem, Scale};

#[test]
fn small_case_matches_the_papers_counts_and_is_reproducible() {
    let g = GenParams::for_scale(Scale::Small);
    let a = generate(&g, 7);
    assert_eq!(a, generate(&g, 7), "same seed, same instance");
    assert_ne!(a, generate(&g, 8), "another seed, another instance");
    assert_eq!(a.images.len(), 35);
    assert_eq!(a.layers.len(), 70);
    assert_eq!(a.files.len(), 37_656);
    assert_eq!(a.registries.len(), 3);
    assert_eq!(a.servers.len(), 3);
    let refs: usize = a.layers.iter().map(|l| l.files.len()).sum();
    assert!(
        (446_945..446_945 + 2_000).contains(&refs),
        "file references {refs}"
    );
    for r in &a.registries {
        assert!((250e6..=1600e6).contains(&r.storage_bytes));
        assert!((10.0..=60.0).contains(&r.connections));
    }
    let rates: Vec<f64> = a.requests.iter().map(|r| r.rate).collect();
    assert_eq!(
        rates.iter().cloned().fold(f64::MAX, f64::min),
        11.0,
        "rank 35 of 1-342 Zipf"
    );
    assert_eq!(rates.iter().cloned().fold(0.0, f64::max), 342.0);

    let total: f64 = a.layers.iter().map(|l| l.size).sum();
    let unique: f64 = a.files.iter().map(|f| f.size).sum();
    let ratio = total / unique;
    assert!(
        (2.0..=5.0).contains(&ratio),
        "byte dedup ratio {ratio}, the paper reports 2-5x"
    );
    let p = Problem::new(a).unwrap();
    let groups = p.file_groups().len();
    assert!(
        groups < 1_000,
        "packages make files travel together: {groups} groups"
    );
    assert!(
        p.image_layers.iter().all(|ls| ls.len() >= 2),
        "a base and an own layer each"
    );
}

#[test]
fn overrides_apply() {
    let mut g = GenParams::for_scale(Scale::Small);
    g.storage_mb = Some(500.0);
    g.connections = Some(20.0);
    let a = generate(&g, 1);
    assert!(a
        .registries
        .iter()
        .all(|r| r.storage_bytes == 500e6 && r.connections == 20.0));
}
