//! The plan format (`strata-plan/v1`).
//!
//! Per registry: the layers it stores whole (`layers`, served in s_l / b_r) and the layers it
//! can rebuild from deduplicated files (`file_layers`, served in s_l / b_r + tau_l). The files
//! a registry stores are exactly the union of its file layers' files, so constraint 2 (a layer
//! is reassemblable only if all its files are there) holds by construction. Per pulled layer:
//! the source, a registry name or the central registry's name.

use serde::{Deserialize, Serialize};

pub const PLAN_FORMAT: &str = "strata-plan/v1";

/// How a registry stores its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// x_r = 0: whole layers only.
    Layer,
    /// x_r = 1: deduplicated files only.
    File,
    /// Some layers whole, others as files (mis-hybrid).
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryPlan {
    pub name: String,
    pub granularity: Granularity,
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default)]
    pub file_layers: Vec<String>,
}

/// z(r, n, i, l) = 1 for `source` = r.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub server: String,
    pub image: String,
    pub layer: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: String,
    pub strategy: String,
    pub registries: Vec<RegistryPlan>,
    pub routes: Vec<Route>,
}
