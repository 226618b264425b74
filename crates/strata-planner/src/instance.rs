//! The instance format (`strata-plan-instance/v1`) and its validated, indexed form.
//!
//! Units: bytes, bytes per second, seconds, requests per unit time. A file belongs to every
//! layer that lists it; identical files in different layers share one id (deduplicated).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::PlannerError;

pub const INSTANCE_FORMAT: &str = "strata-plan-instance/v1";

/// An edge registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub name: String,
    /// S_r
    pub storage_bytes: f64,
    /// C_r: how many (server, image, layer) pulls it may serve.
    pub connections: f64,
    /// b_r, per connection.
    pub bandwidth_bytes_per_s: f64,
}

/// The central registry, which holds everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Central {
    #[serde(default = "central_name")]
    pub name: String,
    pub bandwidth_bytes_per_s: f64,
}

fn central_name() -> String {
    "central".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub id: String,
    pub size: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    pub id: String,
    /// s_l, the layer blob as pulled.
    pub size: f64,
    /// tau_l: time to rebuild the layer from files at a file-level registry.
    pub tau_s: f64,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub layers: Vec<String>,
}

/// lambda(n, i)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub server: String,
    pub image: String,
    pub rate: f64,
}

/// A planning instance as stored in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub format: String,
    pub registries: Vec<Registry>,
    pub central: Central,
    pub servers: Vec<String>,
    pub files: Vec<File>,
    pub layers: Vec<Layer>,
    pub images: Vec<Image>,
    pub requests: Vec<Request>,
    /// Free-form provenance (generator, seed, source layouts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, String>,
}

/// Files that belong to exactly the same set of layers are interchangeable for planning:
/// one group with their summed size replaces them exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct FileGroup {
    pub size: f64,
    /// Layer indices, ascending.
    pub layers: Vec<usize>,
}

/// A validated instance with everything resolved to indices.
#[derive(Debug, Clone)]
pub struct Problem {
    pub instance: Instance,
    /// Per layer: file indices (deduplicated).
    pub layer_files: Vec<Vec<usize>>,
    /// Per image: layer indices, each once (an image may list a layer several times, as
    /// older Docker images list the empty layer; a client pulls such a blob once), in the
    /// order of their first listing.
    pub image_layers: Vec<Vec<usize>>,
    /// (server, image, rate) with rate > 0.
    pub demands: Vec<(usize, usize, f64)>,
    pub layer_index: HashMap<String, usize>,
    pub image_index: HashMap<String, usize>,
    pub server_index: HashMap<String, usize>,
    pub registry_index: HashMap<String, usize>,
    /// What looks wrong but leaves the model right (files no layer lists, layers whose
    /// files far outweigh them).
    pub warnings: Vec<String>,
}

/// A layer whose files (as stored) weigh more than this many times the layer is reported:
/// compressed files can outweigh a compressed layer a little, not by this much.
const FILES_OVER_LAYER: f64 = 2.0;

fn check_nonneg(
    what: &'static str,
    id: &str,
    field: &'static str,
    v: f64,
) -> Result<(), PlannerError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(PlannerError::Negative {
            what,
            id: id.to_string(),
            field,
            value: v,
        })
    }
}

fn check_positive(
    what: &'static str,
    id: &str,
    field: &'static str,
    v: f64,
) -> Result<(), PlannerError> {
    check_nonneg(what, id, field, v)?;
    if v > 0.0 {
        Ok(())
    } else {
        Err(PlannerError::NotPositive {
            what,
            id: id.to_string(),
            field,
        })
    }
}

fn index<'a>(
    what: &'static str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, usize>, PlannerError> {
    let mut map = HashMap::new();
    for (i, id) in ids.enumerate() {
        if map.insert(id.to_string(), i).is_some() {
            return Err(PlannerError::Duplicate {
                what,
                id: id.to_string(),
            });
        }
    }
    Ok(map)
}

pub(crate) fn resolve(
    map: &HashMap<String, usize>,
    owner: &str,
    what: &'static str,
    id: &str,
) -> Result<usize, PlannerError> {
    map.get(id).copied().ok_or_else(|| PlannerError::Unknown {
        owner: owner.to_string(),
        what,
        id: id.to_string(),
    })
}

impl Instance {
    /// Parse and validate an instance.
    pub fn from_json(text: &str) -> Result<Problem, PlannerError> {
        let instance: Instance = serde_json::from_str(text).map_err(|e| json_error(text, e))?;
        Problem::new(instance)
    }
}

/// A JSON error, named for what it is when the value is `NaN` or `Infinity` (which some
/// JSON writers emit and JSON does not allow): which field holds it.
pub(crate) fn json_error(text: &str, e: serde_json::Error) -> PlannerError {
    let (line, column) = (e.line(), e.column());
    let at = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + column.saturating_sub(1);
    let Some(rest) = text.get(at..) else {
        return PlannerError::Json(e);
    };
    let token = ["NaN", "-NaN", "Infinity", "-Infinity", "inf", "-inf", "nan"]
        .into_iter()
        .find(|t| rest.starts_with(t));
    let Some(token) = token else {
        return PlannerError::Json(e);
    };
    // The field: the last `"name":` before the value.
    let before = text[..at].trim_end();
    let field = before
        .strip_suffix(':')
        .map(str::trim_end)
        .and_then(|b| b.strip_suffix('"'))
        .and_then(|b| b.rfind('"').map(|q| b[q + 1..].to_string()))
        .unwrap_or_else(|| "a value".to_string());
    PlannerError::NotANumber {
        field: format!("{field:?}"),
        token,
        line,
        column,
    }
}

impl Problem {
    pub fn new(instance: Instance) -> Result<Problem, PlannerError> {
        if instance.format != INSTANCE_FORMAT {
            return Err(PlannerError::Format {
                found: instance.format.clone(),
                expected: INSTANCE_FORMAT,
            });
        }
        for r in &instance.registries {
            check_nonneg("registry", &r.name, "storage_bytes", r.storage_bytes)?;
            check_nonneg("registry", &r.name, "connections", r.connections)?;
            check_positive(
                "registry",
                &r.name,
                "bandwidth_bytes_per_s",
                r.bandwidth_bytes_per_s,
            )?;
        }
        check_positive(
            "central registry",
            &instance.central.name,
            "bandwidth_bytes_per_s",
            instance.central.bandwidth_bytes_per_s,
        )?;
        let registry_index = index(
            "registry",
            instance
                .registries
                .iter()
                .map(|r| r.name.as_str())
                .chain([instance.central.name.as_str()]),
        )?;
        let server_index = index("server", instance.servers.iter().map(String::as_str))?;
        let file_index = index("file", instance.files.iter().map(|f| f.id.as_str()))?;
        for f in &instance.files {
            check_nonneg("file", &f.id, "size", f.size)?;
        }
        let layer_index = index("layer", instance.layers.iter().map(|l| l.id.as_str()))?;
        let mut layer_files = Vec::with_capacity(instance.layers.len());
        for l in &instance.layers {
            check_nonneg("layer", &l.id, "size", l.size)?;
            check_nonneg("layer", &l.id, "tau_s", l.tau_s)?;
            let owner = format!("layer {:?}", l.id);
            let mut files = l
                .files
                .iter()
                .map(|f| resolve(&file_index, &owner, "file", f))
                .collect::<Result<Vec<_>, _>>()?;
            files.sort_unstable();
            files.dedup();
            layer_files.push(files);
        }
        let image_index = index("image", instance.images.iter().map(|i| i.name.as_str()))?;
        let mut image_layers = Vec::with_capacity(instance.images.len());
        for img in &instance.images {
            let owner = format!("image {:?}", img.name);
            let mut layers = Vec::with_capacity(img.layers.len());
            for l in &img.layers {
                let l = resolve(&layer_index, &owner, "layer", l)?;
                if !layers.contains(&l) {
                    layers.push(l);
                }
            }
            image_layers.push(layers);
        }
        let mut warnings = Vec::new();
        let mut listed = vec![false; instance.files.len()];
        for (l, files) in layer_files.iter().enumerate() {
            let layer = &instance.layers[l];
            let bytes: f64 = files.iter().map(|&f| instance.files[f].size).sum();
            for &f in files {
                listed[f] = true;
            }
            if layer.size > 0.0 && bytes > FILES_OVER_LAYER * layer.size {
                warnings.push(format!(
                    "layer {:?}: its files hold {bytes} bytes, {:.1}x its size of {} bytes \
                     (at file level it costs what its files do)",
                    layer.id,
                    bytes / layer.size,
                    layer.size
                ));
            }
        }
        let unlisted: Vec<&str> = instance
            .files
            .iter()
            .zip(&listed)
            .filter(|(_, l)| !**l)
            .map(|(f, _)| f.id.as_str())
            .collect();
        if let Some(first) = unlisted.first() {
            warnings.push(format!(
                "{} file(s) no layer lists (ignored), e.g. {first:?}",
                unlisted.len()
            ));
        }
        let mut demands = Vec::new();
        for r in &instance.requests {
            let owner = format!("request of {:?} by {:?}", r.image, r.server);
            check_nonneg("request", &owner, "rate", r.rate)?;
            let n = resolve(&server_index, &owner, "server", &r.server)?;
            let i = resolve(&image_index, &owner, "image", &r.image)?;
            if r.rate > 0.0 {
                demands.push((n, i, r.rate));
            }
        }
        Ok(Problem {
            instance,
            layer_files,
            image_layers,
            demands,
            layer_index,
            image_index,
            server_index,
            registry_index,
            warnings,
        })
    }

    pub fn registries(&self) -> &[Registry] {
        &self.instance.registries
    }

    pub fn layers(&self) -> &[Layer] {
        &self.instance.layers
    }

    pub fn file_size(&self, f: usize) -> f64 {
        self.instance.files[f].size
    }

    /// The exact size reduction: merge files with identical layer membership.
    pub fn file_groups(&self) -> Vec<FileGroup> {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.instance.files.len()];
        for (l, files) in self.layer_files.iter().enumerate() {
            for &f in files {
                members[f].push(l);
            }
        }
        let mut groups: BTreeMap<Vec<usize>, f64> = BTreeMap::new();
        for (f, layers) in members.into_iter().enumerate() {
            if !layers.is_empty() {
                *groups.entry(layers).or_insert(0.0) += self.file_size(f);
            }
        }
        groups
            .into_iter()
            .map(|(layers, size)| FileGroup { size, layers })
            .collect()
    }
}
