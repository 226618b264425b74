//! Storage planning for distributed registries, after the MIS design.
//!
//! A set of edge registries, each with a storage budget S_r, a connection limit C_r and a
//! per-connection bandwidth b_r, plus a central registry (bandwidth b_c) that holds
//! everything, serve image pulls from servers. Each registry stores layers whole (fast to
//! serve) or as deduplicated files (less space, but a pull from it pays the layer's
//! reconstruction time tau_l). A [`Plan`] says what each registry stores and from where each
//! server pulls each layer; [`evaluate`] computes its request-weighted pull latency
//! T = sum over (n,i) of lambda(n,i) * max over layers l of i of t(l), and every constraint it
//! violates.
//!
//! Pure library: no I/O beyond (de)serialising the documented JSON formats, no async.

mod baselines;
mod error;
mod eval;
mod generate;
mod instance;
mod local;
mod lp;
mod metadata;
mod placement;
mod plan;
mod relaxation;
mod rng;
mod rounding;
mod routes;
mod solve;

pub use error::PlannerError;
pub use eval::{evaluate, Evaluation, Violation};
pub use generate::{generate, GenParams, Scale};
pub use instance::{
    Central, File, FileGroup, Image, Instance, Layer, Problem, Registry, Request, INSTANCE_FORMAT,
};
pub use metadata::{from_metadata, FileModel, MetaImage, MetaLayer, Metadata, METADATA_FORMAT};
pub use plan::{Granularity, Plan, RegistryPlan, Route, PLAN_FORMAT};
pub use solve::{solve, Report, SolveOptions, Strategy};
