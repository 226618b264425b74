//! Strategies on a generated instance: feasible plans, the LP bound below them, mis-hybrid
//! never worse than mis, everything better than pulling from the central registry.

#![allow(clippy::unwrap_used)]

use strata_planner::{
    evaluate, generate, solve, GenParams, Problem, Scale, SolveOptions, Strategy,
};

#[test]
fn strategies_order_as_the_model_promises() {
    let mut g = GenParams::for_scale(Scale::Small);
    g.images = 12;
    g.layers = 24;
    g.unique_files = 6_000;
    g.file_refs = 60_000;
    let p = Problem::new(generate(&g, 5)).unwrap();
    let opts = SolveOptions {
        seed: 9,
        ..SolveOptions::default()
    };
    let run = |s: Strategy| {
        let (plan, report) = solve(&p, s, &opts).unwrap();
        let e = evaluate(&p, &plan).unwrap();
        assert!(e.feasible(), "{s:?}: {:?}", e.violations);
        report
    };
    let mis = run(Strategy::Mis);
    let hybrid = run(Strategy::MisHybrid);
    let docker = run(Strategy::Docker);
    let sps = run(Strategy::Sps);
    let gfr = run(Strategy::Gfr);
    assert!(sps.total_latency_s < docker.total_latency_s);
    assert!(gfr.total_latency_s < docker.total_latency_s);
    assert_eq!(sps.file_level_registries, 0, "sps stores whole layers only");
    assert_eq!(
        gfr.file_level_registries, 3,
        "gfr stores files on every registry"
    );
    let bound = mis.lp_bound_s.unwrap();
    assert!(
        bound <= mis.total_latency_s * (1.0 + 1e-6),
        "bound {bound} above mis {}",
        mis.total_latency_s
    );
    assert!(hybrid.lp_bound_s.unwrap() <= hybrid.total_latency_s * (1.0 + 1e-6));
    assert!(
        hybrid.total_latency_s <= mis.total_latency_s + 1e-6,
        "hybrid {} > mis {}",
        hybrid.total_latency_s,
        mis.total_latency_s
    );
    assert!(mis.total_latency_s < docker.total_latency_s);
    assert!(
        mis.rounds >= opts.trials,
        "every trial rounds each registry at least once"
    );
    let again = run(Strategy::Mis);
    assert_eq!(
        again.total_latency_s, mis.total_latency_s,
        "same seed, same plan"
    );
}

/// The paper's small case: mis within 5% of its LP bound, and so of `opt` (the bound is
/// below every plan); checked against `opt` itself on one seed, which also checks the bound.
#[test]
fn mis_is_within_five_percent_of_opt_on_the_small_case() {
    let opts = SolveOptions::default();
    for seed in 1..=3 {
        let p = Problem::new(generate(&GenParams::for_scale(Scale::Small), seed)).unwrap();
        let (_, mis) = solve(&p, Strategy::Mis, &opts).unwrap();
        let bound = mis.lp_bound_s.unwrap();
        assert!(mis.feasible);
        assert!(
            mis.total_latency_s <= 1.05 * bound,
            "seed {seed}: mis {} vs bound {bound}",
            mis.total_latency_s
        );
        if seed == 1 {
            let (_, opt) = solve(&p, Strategy::Opt, &opts).unwrap();
            assert!(opt.feasible);
            assert!(
                opt.total_latency_s >= bound * (1.0 - 1e-6),
                "bound above opt"
            );
            assert!(mis.total_latency_s <= 1.05 * opt.total_latency_s);
        }
    }
}

#[test]
fn opt_stopped_by_its_time_limit_is_no_worse_than_mis() {
    // Scarce storage, plenty of connections: the MIP cannot close its gap in a second, and
    // without mis's plan as its start its incumbent was once twice mis's T.
    let g = GenParams {
        storage_mb: Some(250.0),
        connections: Some(60.0),
        ..GenParams::for_scale(Scale::Small)
    };
    let p = Problem::new(generate(&g, 1)).unwrap();
    let opts = SolveOptions {
        seed: 1,
        time_limit_s: 1.0,
        ..SolveOptions::default()
    };
    let (_, mis) = solve(&p, Strategy::Mis, &opts).unwrap();
    let (plan, opt) = solve(&p, Strategy::Opt, &opts).unwrap();
    assert!(evaluate(&p, &plan).unwrap().feasible());
    assert!(opt.mip_gap.is_some());
    assert!(
        opt.total_latency_s <= mis.total_latency_s * (1.0 + 1e-9),
        "opt {} against mis {}",
        opt.total_latency_s,
        mis.total_latency_s
    );
}
