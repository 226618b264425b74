//! What a placement plan (`strata plan solve`) says about one node: which layers it keeps
//! whole and which as files. Used by `strata serve --plan` and `strata store convert --plan`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use strata_oci::Digest;
use strata_store::{Granularity, Placement};

/// The layers the plan names for registry `name`, with their granularity: its `layers`
/// whole, its `file_layers` as files.
pub fn plan_layers(path: &Path, name: &str) -> Result<Vec<(Digest, Granularity)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan {}", path.display()))?;
    let plan: strata_planner::Plan =
        serde_json::from_str(&text).with_context(|| format!("invalid plan {}", path.display()))?;
    let Some(mine) = plan.registries.iter().find(|r| r.name == name) else {
        bail!("plan {} has no registry named {name}", path.display());
    };
    let parse = |id: &String, g| -> Result<(Digest, Granularity)> {
        let d = id
            .parse()
            .with_context(|| format!("layer {id} of the plan is not a digest"))?;
        Ok((d, g))
    };
    let whole = mine.layers.iter().map(|id| parse(id, Granularity::Layer));
    let files = mine
        .file_layers
        .iter()
        .map(|id| parse(id, Granularity::File));
    whole.chain(files).collect()
}

/// The placement of a node: the plan's layers for `name` where it names them, `default`
/// for the rest.
pub fn from_plan(default: Granularity, path: &Path, name: &str) -> Result<Placement> {
    let named: HashMap<Digest, Granularity> = plan_layers(path, name)?.into_iter().collect();
    Ok(Placement { default, named })
}
