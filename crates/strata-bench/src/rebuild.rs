//! `strata-bench rebuild`: how fast strata rebuilds layers bit-exactly from the file store,
//! per compressor, beside the speed of the compressor itself producing the same stream from
//! the tar (what a registry that recompresses, and so changes the digest, would pay).
//!
//! For every layer of the corpus and each recompression of its tar, the layer is decomposed
//! once, then rebuilt `--runs` times on one thread into a hashing sink (the digest is checked
//! every time); the median time gives MB/s of tar. tau_l of each corpus layer as stored (pgzip)
//! is printed for planner instances.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Map, Value};
use strata_layer::filestore::FsFileStore;
use strata_layer::layer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// OCI image layout whose layers are measured.
    #[arg(long, default_value = "../shared/images/oci")]
    oci: PathBuf,
    /// Rebuilds per layer and compressor (the median counts).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these compressors, comma-separated as the report names them (`pgzip`: the corpus
    /// layers as stored); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// A compressor: name and the command that compresses stdin to stdout.
fn compressors(gogzip: &Path, gozstd: &Path) -> Vec<(&'static str, Command)> {
    let cmd = |prog: &Path, args: &[&str]| {
        let mut c = Command::new(prog);
        c.args(args);
        c
    };
    let py = "import sys, zlib\nc = zlib.compressobj(6, zlib.DEFLATED, 31)\nsys.stdout.buffer.write(c.compress(sys.stdin.buffer.read()) + c.flush())";
    vec![
        ("gzip-1", cmd(Path::new("gzip"), &["-1", "-n", "-c"])),
        ("gzip-6", cmd(Path::new("gzip"), &["-6", "-n", "-c"])),
        ("gzip-9", cmd(Path::new("gzip"), &["-9", "-n", "-c"])),
        ("pigz", cmd(Path::new("pigz"), &["-p", "1", "-c"])),
        ("python-zlib", cmd(Path::new("python3"), &["-c", py])),
        ("go-bestspeed", cmd(gogzip, &["1"])),
        ("go-default", cmd(gogzip, &["-1"])),
        ("zstd", cmd(Path::new("zstd"), &["-q", "-c", "-T1"])),
        ("klauspost-zstd", cmd(gozstd, &["default"])),
    ]
}

fn layers(oci: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for image in strata_oci::Layout::open(oci)?.images()? {
        for (_, path) in image.layers {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Decomposes `blob` and returns (tar bytes, median rebuild seconds, overhead bytes).
fn measure(blob: &Path, store: &FsFileStore, runs: usize) -> Result<(u64, f64, u64)> {
    let d = layer::decompose(std::fs::File::open(blob)?, store, Default::default())
        .with_context(|| format!("{} does not decompose", blob.display()))?;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        layer::verify(&d.recipe, store, &d.blob_sha256)
            .with_context(|| format!("rebuild of {} failed", blob.display()))?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok((d.tar_bytes, median(times), d.recipe.encode()?.len() as u64))
}

fn compress(mut cmd: Command, tar: &Path, out: &Path) -> Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdin(std::fs::File::open(tar)?)
        .stdout(std::fs::File::create(out)?)
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed");
    Ok(start.elapsed().as_secs_f64())
}

/// Builds `strata-layer/testdata/<name>` (a Go compressor) with the machine's Go.
fn go_build(dir: &Path, name: &str) -> Result<PathBuf> {
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strata-layer/testdata")
        .join(name);
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .status()?;
    ensure!(built.success(), "go build of {} failed", src.display());
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    let work = tempfile::tempdir()?;
    let gogzip = go_build(work.path(), "gogzip")?;
    let gozstd = go_build(work.path(), "gozstd")?;
    let store = FsFileStore::open(&work.path().join("store"))?;
    let mut per: Map<String, Value> = Map::new();
    let mut rebuild: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut native: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut overheads: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut taus = Map::new();
    for (i, blob) in layers(&args.oci)?.iter().enumerate() {
        let (tar_bytes, secs, overhead) = measure(blob, &store, args.runs)?;
        let mb = tar_bytes as f64 / 1e6;
        let name = blob
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        if args.wants("pgzip") {
            println!(
                "layer {i} {}: pgzip rebuild {:.1} MB/s, tau {secs:.3} s, overhead {overhead} B",
                &name[..12],
                mb / secs
            );
            taus.insert(format!("sha256:{name}"), json!(secs));
            rebuild.entry("pgzip").or_default().push(mb / secs);
            let pct = overhead as f64 * 100.0 / std::fs::metadata(blob)?.len() as f64;
            overheads.entry("pgzip").or_default().push(pct);
        }
        let tar = work.path().join("layer.tar");
        let gunzip = Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(std::fs::File::open(blob)?)
            .stdout(std::fs::File::create(&tar)?)
            .status()?;
        ensure!(gunzip.success(), "gunzip failed");
        let wanted = compressors(&gogzip, &gozstd)
            .into_iter()
            .filter(|(cname, _)| args.wants(cname));
        for (cname, cmd) in wanted {
            let out = work.path().join("variant.blob");
            let csecs = compress(cmd, &tar, &out)?;
            let (_, secs, overhead) = measure(&out, &store, args.runs)?;
            let pct = overhead as f64 * 100.0 / std::fs::metadata(&out)?.len() as f64;
            println!(
                "layer {i} {cname}: rebuild {:.1} MB/s vs {cname} compressing {:.1} MB/s, overhead {pct:.2}%",
                mb / secs,
                mb / csecs,
            );
            overheads.entry(cname).or_default().push(pct);
            rebuild.entry(cname).or_default().push(mb / secs);
            native.entry(cname).or_default().push(mb / csecs);
        }
    }
    println!("\nmedian MB/s of tar, strata exact rebuild vs the compressor itself:");
    for (cname, v) in &rebuild {
        let r = median(v.clone());
        let key = cname.replace('-', "_");
        per.insert(format!("{key}_rebuild_mb_s"), json!(r));
        if let Some(o) = overheads.get(cname) {
            per.insert(format!("{key}_overhead_pct"), json!(median(o.clone())));
        }
        match native.get(cname) {
            Some(n) => {
                let c = median(n.clone());
                per.insert(
                    format!("{}_compress_mb_s", cname.replace('-', "_")),
                    json!(c),
                );
                per.insert(format!("{}_ratio", cname.replace('-', "_")), json!(r / c));
                println!("  {cname:<14} {r:>7.1} vs {c:>7.1}  ({:.2}x)", r / c);
            }
            None => println!("  {cname:<14} {r:>7.1} (no compressor CLI to compare)"),
        }
    }
    per.insert("tau_s".into(), Value::Object(taus));
    println!("{}", Value::Object(per));
    Ok(())
}
