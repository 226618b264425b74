//! What a placement plan (`strata plan solve`) says about one node: which layers it keeps
//! whole and which as files. Used by `strata serve --plan` and `strata store convert --plan`.

use std::collections::HashMap;
use std::path::Path;

use strata_oci::Digest;
use strata_store::{Granularity, Placement};

use crate::NodeError;

/// The layers the plan names for registry `name`, with their granularity: its `layers`
/// whole, its `file_layers` as files.
pub fn plan_layers(path: &Path, name: &str) -> Result<Vec<(Digest, Granularity)>, NodeError> {
    let bad = |why: String| NodeError::Plan {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let plan: strata_planner::Plan =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid: {e}")))?;
    let Some(mine) = plan.registries.iter().find(|r| r.name == name) else {
        return Err(bad(format!("no registry named {name}")));
    };
    let parse = |id: &String, g| -> Result<(Digest, Granularity), NodeError> {
        let d = id
            .parse()
            .map_err(|e| bad(format!("layer {id} is not a digest: {e}")))?;
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
pub fn from_plan(default: Granularity, path: &Path, name: &str) -> Result<Placement, NodeError> {
    let named: HashMap<Digest, Granularity> = plan_layers(path, name)?.into_iter().collect();
    Ok(Placement { default, named })
}
