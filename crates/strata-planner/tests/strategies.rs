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
