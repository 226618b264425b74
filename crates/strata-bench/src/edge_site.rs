//! `strata-bench edge-site`: EdgePier's experiments on a site built from network namespaces
//! (issue 15). An upstream host runs the CNCF registry preloaded with the image behind a
//! `tc` `tbf` uplink limit; N node hosts sit on a bridge. The baseline is every node's client
//! pulling from the upstream directly; strata is every node's client pulling through its
//! local node, the nodes forming one site. Clients are real (containerd's `ctr`, configured by
//! the `hosts.toml` that `strata mirror-config` writes, or skopeo) and run inside the nodes'
//! namespaces. Uplink bytes are counted on the upstream's interface, not by strata.
//!
//! Every configuration gets a fresh testbed; everything is removed at the end, on failure
//! and on Ctrl-C.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::ValueEnum;
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use strata_plot::{Chart, Series};
use strata_testbed::{Host, Teardown, Testbed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every node starts the pull at the same instant (a rollout).
    Concurrent,
    /// Node 1 pulls, then node 2, ... (EdgePier's sequential start).
    Sequential,
    /// Both, one after the other.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    Strata,
    Baseline,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// `ctr images pull` (fetch and unpack, as the kubelet has containerd do).
    Ctr,
    /// `ctr content fetch` (fetch only, no unpack).
    CtrFetch,
    /// `skopeo copy` into an OCI layout.
    Skopeo,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes of the site.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Uplink limits in Mbit/s, comma separated (EdgePier: 500,100,50,20).
    #[arg(long, value_delimiter = ',', default_value = "20")]
    uplink_mbit: Vec<u32>,
    /// An image of the corpus (ignored with --image-mb).
    #[arg(long, default_value = "base")]
    image: String,
    /// A synthetic image of this many MB of random bytes instead of a corpus image.
    #[arg(long)]
    image_mb: Option<u64>,
    /// Layers of the synthetic image.
    #[arg(long, default_value_t = 1)]
    layers: u32,
    #[arg(long, value_enum, default_value = "concurrent")]
    mode: Mode,
    #[arg(long, value_enum, default_value = "both")]
    system: System,
    #[arg(long, value_enum, default_value = "ctr")]
    client: Client,
    /// Runs of each configuration; figures are the median run's.
    #[arg(long, default_value_t = 1)]
    runs: u32,
    /// Where the CSV, the SVG figures, the JSON line and the testbed's logs go.
    #[arg(long, default_value = "target/edge-site")]
    out: PathBuf,
    #[arg(long, default_value = "../shared/images/oci")]
    corpus: PathBuf,
    /// Seed of the synthetic image's bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The image under test: an OCI layout, its tag there, and its size.
struct Image {
    layout: PathBuf,
    tag: String,
    repo: String,
    bytes: u64,
}

/// One run of one configuration.
#[derive(Debug, Clone)]
struct RunResult {
    system: &'static str,
    mode: &'static str,
    uplink_mbit: u32,
    per_node_s: Vec<f64>,
    distribution_s: f64,
    uplink_bytes: u64,
    lan_bytes: u64,
    peer_bytes: u64,
}

const SITE_KEY: &str = "/key/swarm/psk/1.0.0/\n/base16/\n";

pub fn run(args: Args) -> Result<()> {
    if let Some(why) = strata_testbed::unavailable() {
        bail!("edge-site builds a testbed of network namespaces: {why}");
    }
    for tool in ["docker-registry", "skopeo", "curl"] {
        ensure!(which(tool), "edge-site needs {tool} on PATH");
    }
    if args.client != Client::Skopeo {
        ensure!(
            which("ctr") && which("containerd"),
            "--client ctr needs containerd and ctr"
        );
    }
    ensure!((1..=200).contains(&args.nodes), "--nodes must be 1 to 200");
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(
        args.uplink_mbit.iter().all(|&m| (1..=10_000).contains(&m)),
        "--uplink-mbit values must be 1 to 10000"
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let current = install_ctrl_c()?;
    let image = prepare_image(&args, &out)?;
    let strata = crate::targets::strata_binary()?;
    eprintln!(
        "edge-site: {} ({} bytes), {} nodes, client {:?}",
        image.tag, image.bytes, args.nodes, args.client
    );
    let modes: &[Mode] = match args.mode {
        Mode::Both => &[Mode::Concurrent, Mode::Sequential],
        Mode::Concurrent => &[Mode::Concurrent],
        Mode::Sequential => &[Mode::Sequential],
    };
    let systems: &[System] = match args.system {
        System::Both => &[System::Baseline, System::Strata],
        System::Strata => &[System::Strata],
        System::Baseline => &[System::Baseline],
    };
    let csv_path = out.join("edge-site.csv");
    let mut csv = std::fs::File::create(&csv_path)?;
    writeln!(
        csv,
        "system,mode,nodes,uplink_mbit,image,image_bytes,run,node,pull_s,distribution_s,uplink_bytes,lan_bytes"
    )?;
    let mut results: Vec<(RunResult, Vec<f64>)> = Vec::new();
    for &mbit in &args.uplink_mbit {
        for &mode in modes {
            for &system in systems {
                let mut runs = Vec::new();
                for k in 0..args.runs {
                    let dir = out.join(format!(
                        "run-{}-{}-{mbit}-{}",
                        name(system),
                        mode_name(mode),
                        k + 1
                    ));
                    let _ = std::fs::remove_dir_all(&dir);
                    std::fs::create_dir_all(&dir)?;
                    let r = one_run(&args, &image, &strata, &dir, system, mode, mbit, &current)
                        .with_context(|| {
                            format!(
                                "{} {} at {mbit} Mbit/s, run {} (logs in {})",
                                name(system),
                                mode_name(mode),
                                k + 1,
                                dir.display()
                            )
                        })?;
                    drop_run_data(&dir)?;
                    for (i, s) in r.per_node_s.iter().enumerate() {
                        writeln!(
                            csv,
                            "{},{},{},{},{},{},{},{},{:.3},{:.3},{},{}",
                            r.system,
                            r.mode,
                            args.nodes,
                            mbit,
                            image.tag,
                            image.bytes,
                            k + 1,
                            i + 1,
                            s,
                            r.distribution_s,
                            r.uplink_bytes,
                            r.lan_bytes
                        )?;
                    }
                    eprintln!(
                        "  {:8} {:10} {mbit:>4} Mbit/s run {}: distribution {:.1} s (limit {:.1} s), per node {:?}, uplink {:.3}x the image",
                        r.system,
                        r.mode,
                        k + 1,
                        r.distribution_s,
                        limit_s(image.bytes, mbit),
                        r.per_node_s.iter().map(|s| (s * 10.0).round() / 10.0).collect::<Vec<_>>(),
                        r.uplink_bytes as f64 / image.bytes as f64
                    );
                    runs.push(r);
                }
                runs.sort_by(|a, b| a.distribution_s.total_cmp(&b.distribution_s));
                let all: Vec<f64> = runs.iter().map(|r| r.distribution_s).collect();
                results.push((runs[runs.len() / 2].clone(), all));
            }
        }
    }
    csv.flush()?;
    write_figures(&args, &image, &out, &results)?;
    let object = |r: &RunResult, all: &[f64]| {
        json!({
            "system": r.system,
            "mode": r.mode,
            "nodes": args.nodes,
            "uplink_mbit": r.uplink_mbit,
            "image": image.tag,
            "image_bytes": image.bytes,
            "client": format!("{:?}", args.client).to_lowercase(),
            "limit_s": round3(limit_s(image.bytes, r.uplink_mbit)),
            "distribution_s": round3(r.distribution_s),
            "distribution_over_limit": round3(r.distribution_s / limit_s(image.bytes, r.uplink_mbit)),
            "runs_distribution_s": all.iter().map(|&s| round3(s)).collect::<Vec<_>>(),
            "per_node_s": r.per_node_s.iter().map(|&s| round3(s)).collect::<Vec<_>>(),
            "uplink_bytes": r.uplink_bytes,
            "uplink_over_image": round3(r.uplink_bytes as f64 / image.bytes as f64),
            "lan_bytes": r.lan_bytes,
            "peer_bytes": r.peer_bytes,
        })
    };
    let mut configs = Vec::new();
    for &mbit in &args.uplink_mbit {
        for &mode in modes {
            let mut c = serde_json::Map::new();
            c.insert("mode".into(), json!(mode_name(mode)));
            c.insert("uplink_mbit".into(), json!(mbit));
            for (r, all) in &results {
                if r.uplink_mbit == mbit && r.mode == mode_name(mode) {
                    c.insert(r.system.into(), object(r, all));
                }
            }
            if let (Some(s), Some(b)) = (c.get("strata"), c.get("baseline")) {
                let ratio = b["distribution_s"].as_f64().unwrap_or(0.0)
                    / s["distribution_s"].as_f64().unwrap_or(1.0);
                c.insert("baseline_over_strata".into(), json!(round3(ratio)));
            }
            configs.push(Value::Object(c));
        }
    }
    let mut line = json!({
        "bench": "edge-site",
        "nodes": args.nodes,
        "image": image.tag,
        "image_bytes": image.bytes,
        "csv": csv_path,
    });
    if configs.len() == 1 {
        if let (Some(l), Some(c)) = (line.as_object_mut(), configs[0].as_object()) {
            for (k, v) in c {
                l.insert(k.clone(), v.clone());
            }
        }
    } else {
        line["configs"] = Value::Array(configs);
    }
    println!("{line}");
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn name(s: System) -> &'static str {
    match s {
        System::Strata => "strata",
        _ => "baseline",
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Sequential => "sequential",
        _ => "concurrent",
    }
}

/// Seconds the image takes over the uplink at its nominal rate: the physical limit of a
/// concurrent rollout, whatever the number of nodes.
fn limit_s(bytes: u64, mbit: u32) -> f64 {
    bytes as f64 * 8.0 / (f64::from(mbit) * 1e6)
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The testbed being used, torn down by Ctrl-C.
type Current = Arc<Mutex<Option<Teardown>>>;

fn install_ctrl_c() -> Result<Current> {
    let current: Current = Arc::new(Mutex::new(None));
    let handle = current.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("edge-site: interrupted, removing the testbed");
                if let Some(t) = handle.lock().ok().and_then(|g| g.clone()) {
                    t.run();
                }
                std::process::exit(130);
            }
        });
    });
    Ok(current)
}

/// The image to distribute: a corpus image, or a synthetic one written as an OCI layout.
/// Removes what a finished run stored (the nodes' data, the upstream's, containerd's
/// content), keeping the logs: a 1 GB image on 6 nodes leaves about 14 GB otherwise. A
/// failed run keeps everything, to be looked at.
fn drop_run_data(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("containerd-") {
            for sub in ["root", "state"] {
                let _ = std::fs::remove_dir_all(path.join(sub));
            }
        } else if name.starts_with("node-") || name == "upstream" {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn prepare_image(args: &Args, out: &Path) -> Result<Image> {
    let (layout, tag) = match args.image_mb {
        None => (
            args.corpus
                .canonicalize()
                .with_context(|| format!("corpus {} not found", args.corpus.display()))?,
            args.image.clone(),
        ),
        Some(mb) => {
            ensure!((1..=16_384).contains(&mb), "--image-mb must be 1 to 16384");
            ensure!((1..=64).contains(&args.layers), "--layers must be 1 to 64");
            let tag = format!("random-{mb}mb-{}l", args.layers);
            let layout = out.join(format!("{tag}-seed{}", args.seed));
            if !layout.join("index.json").exists() {
                eprintln!("edge-site: writing synthetic image {tag}");
                write_synthetic(&layout, &tag, mb * 1_000_000, args.layers, args.seed)?;
            }
            (layout, tag)
        }
    };
    let oci = strata_oci::Layout::open(&layout)?;
    let manifest = oci.resolve(&tag)?;
    let m: Value = serde_json::from_slice(&oci.read_blob(&manifest)?)?;
    ensure!(
        m["layers"].is_array(),
        "{tag} is not a single-platform image manifest"
    );
    let mut bytes = m["config"]["size"].as_u64().unwrap_or(0);
    for l in m["layers"].as_array().into_iter().flatten() {
        bytes += l["size"].as_u64().unwrap_or(0);
    }
    Ok(Image {
        layout,
        repo: format!("library/{tag}"),
        tag,
        bytes,
    })
}

/// An OCI layout holding one image of `layers` uncompressed tar layers, each one file of
/// seeded random bytes, `total` bytes in all. Streams: memory stays at one buffer.
fn write_synthetic(layout: &Path, tag: &str, total: u64, layers: u32, seed: u64) -> Result<()> {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut descriptors = Vec::new();
    let per_layer = total / u64::from(layers);
    for i in 0..layers {
        let tmp = layout.join(format!("layer-{i}.tmp"));
        let file = std::fs::File::create(&tmp)?;
        let mut hashing = HashingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        {
            let mut builder = tar::Builder::new(&mut hashing);
            let mut header = tar::Header::new_ustar();
            header.set_size(per_layer);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            let reader = RandomReader {
                rng: &mut rng,
                left: per_layer,
            };
            builder.append_data(&mut header, format!("data/part-{i}"), reader)?;
            builder.finish()?;
        }
        hashing.inner.flush()?;
        let digest = hex::encode(hashing.hasher.finalize());
        std::fs::rename(&tmp, blobs.join(&digest))?;
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{digest}"),
            "size": hashing.bytes,
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": descriptors.iter().map(|d| d["digest"].clone()).collect::<Vec<_>>()},
        "config": {},
    }))?;
    let config_digest = hex::encode(Sha256::digest(&config));
    std::fs::write(blobs.join(&config_digest), &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": descriptors,
    }))?;
    let manifest_digest = hex::encode(Sha256::digest(&manifest));
    std::fs::write(blobs.join(&manifest_digest), &manifest)?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }))?,
    )?;
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct RandomReader<'a> {
    rng: &'a mut rand::rngs::StdRng,
    left: u64,
}

impl std::io::Read for RandomReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.rng.fill_bytes(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// How a node's client pulls, and how the run checks it got the image.
struct Puller {
    client: Client,
    /// containerd's socket on each node (ctr clients).
    sockets: Vec<String>,
    /// hosts.toml directory on each node (strata with ctr).
    hosts_dirs: Vec<Option<PathBuf>>,
    /// Where each node's client pulls from: the upstream or its node.
    registry: Vec<String>,
    upstream: String,
    repo: String,
    manifest: String,
    dir: PathBuf,
}

impl Puller {
    fn pull(&self, host: &Host, i: usize) -> Result<f64> {
        let started = Instant::now();
        match self.client {
            Client::Ctr | Client::CtrFetch => {
                // containerd names the image by its registry; with strata the hosts.toml
                // sends the pull to the local node.
                let image = format!("{}/{}:v1", self.upstream, self.repo);
                let mut cmd = host.command("ctr");
                cmd.args(["--address", &self.sockets[i]]);
                if self.client == Client::Ctr {
                    cmd.args(["images", "pull", "--snapshotter", "overlayfs"]);
                } else {
                    cmd.args(["content", "fetch"]);
                }
                match &self.hosts_dirs[i] {
                    Some(d) => {
                        cmd.arg("--hosts-dir").arg(d);
                    }
                    None => {
                        cmd.arg("--plain-http");
                    }
                }
                cmd.arg(&image);
                strata_testbed::run(&mut cmd)?;
                let seconds = started.elapsed().as_secs_f64();
                let list = host.run("ctr", &["--address", &self.sockets[i], "images", "ls"])?;
                ensure!(
                    list.contains(&self.manifest),
                    "node {}'s containerd does not hold {}: {list}",
                    i + 1,
                    self.manifest
                );
                Ok(seconds)
            }
            Client::Skopeo => {
                let out = self.dir.join(format!("pulled-{}", i + 1));
                let _ = std::fs::remove_dir_all(&out);
                host.run(
                    "skopeo",
                    &[
                        "--insecure-policy",
                        "copy",
                        "--src-tls-verify=false",
                        &format!("docker://{}/{}:v1", self.registry[i], self.repo),
                        &format!("oci:{}:x", out.display()),
                    ],
                )?;
                let seconds = started.elapsed().as_secs_f64();
                let index = std::fs::read_to_string(out.join("index.json"))?;
                ensure!(
                    index.contains(&self.manifest),
                    "node {} got another manifest: {index}",
                    i + 1
                );
                std::fs::remove_dir_all(&out)?;
                Ok(seconds)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    args: &Args,
    image: &Image,
    strata: &Path,
    dir: &Path,
    system: System,
    mode: Mode,
    mbit: u32,
    current: &Current,
) -> Result<RunResult> {
    let mut names = vec!["up".to_string()];
    names.extend((1..=args.nodes).map(|i| format!("n{i}")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let bed = Testbed::new(&names)?;
    if let Ok(mut c) = current.lock() {
        *c = Some(bed.teardown_handle());
    }
    let (up, nodes) = (&bed.hosts[0], &bed.hosts[1..]);
    bed.start_registry(up, &dir.join("upstream"))?;
    let upstream = format!("{}:5000", up.ip);
    up.run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:{}", image.layout.display(), image.tag),
            &format!("docker://{upstream}/{}:v1", image.repo),
        ],
    )?;
    // skopeo may write the manifest anew (the synthetic images' own bytes differ from what
    // it pushes): the clients must end with the manifest the upstream serves.
    let head = up.run(
        "curl",
        &[
            "-sfI",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{upstream}/v2/{}/manifests/v1", image.repo),
        ],
    )?;
    let served = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .ok_or_else(|| anyhow!("the upstream names no digest for {}:v1: {head}", image.repo))?;
    bed.limit(up, mbit)?;

    let mut puller = Puller {
        client: args.client,
        sockets: Vec::new(),
        hosts_dirs: vec![None; nodes.len()],
        registry: vec![upstream.clone(); nodes.len()],
        upstream: upstream.clone(),
        repo: image.repo.clone(),
        manifest: served,
        dir: dir.to_path_buf(),
    };
    if args.client != Client::Skopeo {
        for (i, h) in nodes.iter().enumerate() {
            puller
                .sockets
                .push(bed.start_containerd(h, &dir.join(format!("containerd-{}", i + 1)))?);
        }
    }
    if system == System::Strata {
        let key = dir.join("site.key");
        std::fs::write(&key, format!("{SITE_KEY}{}\n", "e5".repeat(32)))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let peers: Vec<String> = nodes
            .iter()
            .map(|h| format!("/ip4/{}/tcp/7946", h.ip))
            .collect();
        for (i, h) in nodes.iter().enumerate() {
            let hosts = dir.join(format!("certs.d-{}", i + 1));
            let printed = strata_testbed::run(
                std::process::Command::new(strata)
                    .args(["mirror-config", "containerd", "--node"])
                    .arg(format!("http://{}:5000", h.ip))
                    .arg("--upstream")
                    .arg(format!("{upstream}=http://{upstream}"))
                    .arg("--dir")
                    .arg(&hosts),
            )?;
            let mut flags: Vec<String> = printed.split_whitespace().map(String::from).collect();
            flags.extend([
                "--site-listen".into(),
                peers[i].clone(),
                "--site-key".into(),
                key.to_string_lossy().into_owned(),
            ]);
            for (j, p) in peers.iter().enumerate() {
                if j != i {
                    flags.extend(["--site-peer".into(), p.clone()]);
                }
            }
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            bed.start_node(h, strata, dir, &flags)?;
            puller.hosts_dirs[i] = Some(hosts);
            puller.registry[i] = format!("{}:5000", h.ip);
        }
        wait_for_site(nodes)?;
        if args.client == Client::Skopeo {
            // skopeo names the upstream's repository as the node does (what containerd's
            // `?ns=` gives it): `<upstream host>-<port>/<repo>`.
            puller.repo = format!("{}/{}", upstream.replace(':', "-"), image.repo);
        }
    }

    let up_before = up.tx_bytes()?;
    let lan_before: u64 = nodes.iter().map(|h| h.tx_bytes().unwrap_or(0)).sum();
    let t0 = Instant::now();
    let per_node_s = match mode {
        Mode::Sequential => {
            let mut v = Vec::new();
            for (i, h) in nodes.iter().enumerate() {
                v.push(puller.pull(h, i)?);
            }
            v
        }
        _ => {
            let barrier = Arc::new(Barrier::new(nodes.len()));
            let puller = &puller;
            std::thread::scope(|s| {
                let handles: Vec<_> = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let barrier = barrier.clone();
                        s.spawn(move || {
                            barrier.wait();
                            puller.pull(h, i)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| bail!("a pull thread panicked")))
                    .collect::<Result<Vec<f64>>>()
            })?
        }
    };
    let distribution_s = t0.elapsed().as_secs_f64();
    // Let the counters settle (the last ACKs and FINs).
    std::thread::sleep(Duration::from_millis(200));
    let uplink_bytes = up.tx_bytes()? - up_before;
    let lan_after: u64 = nodes.iter().map(|h| h.tx_bytes().unwrap_or(0)).sum();
    let mut peer_bytes = 0;
    if system == System::Strata {
        for h in nodes {
            let (code, body) = h.curl(&format!(
                "http://{}/strata/v1/site/status",
                strata_testbed::ADMIN_LISTEN
            ));
            if code == 200 {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                peer_bytes += v["counters"]["peer_bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    drop(bed);
    if let Ok(mut c) = current.lock() {
        *c = None;
    }
    Ok(RunResult {
        system: name(system),
        mode: mode_name(mode),
        uplink_mbit: mbit,
        per_node_s,
        distribution_s,
        uplink_bytes,
        lan_bytes: lan_after.saturating_sub(lan_before),
        peer_bytes,
    })
}

/// Waits until every node sees every other one.
fn wait_for_site(nodes: &[Host]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for h in nodes {
        loop {
            let (code, body) = h.curl(&format!(
                "http://{}/strata/v1/site/status",
                strata_testbed::ADMIN_LISTEN
            ));
            let seen = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["peers"].as_array().map(Vec::len))
                .unwrap_or(0);
            if code == 200 && seen + 1 == nodes.len() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "node {} sees {seen} of {} peers after 30 s",
                h.ip,
                nodes.len() - 1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// EdgePier's figures from this run's results: per-node pull times of a sequential start,
/// and the distribution time and uplink bytes of a concurrent start against the uplink limit.
fn write_figures(
    args: &Args,
    image: &Image,
    out: &Path,
    results: &[(RunResult, Vec<f64>)],
) -> Result<()> {
    let paper = "EdgePier (Becker et al., 2021) reports provisioning times up to 65% below its baseline registry at 20 Mbit/s; its per-figure values are not in our sources, so only that figure is quoted";
    let title_image = format!(
        "{} ({:.1} MB), {} nodes",
        image.tag,
        image.bytes as f64 / 1e6,
        args.nodes
    );
    let mut charts = Vec::new();
    // Sequential: pull time per node, one line per system and limit.
    let seq: Vec<&RunResult> = results
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.mode == "sequential")
        .collect();
    if !seq.is_empty() {
        charts.push((
            "fig-sequential",
            Chart {
                title: format!("sequential start: pull time per node, {title_image}"),
                x_label: "node (in start order)".into(),
                y_label: "pull time (s)".into(),
                series: seq
                    .iter()
                    .map(|r| Series {
                        name: format!("{} {} Mbit/s", r.system, r.uplink_mbit),
                        points: r
                            .per_node_s
                            .iter()
                            .enumerate()
                            .map(|(i, &s)| ((i + 1) as f64, s))
                            .collect(),
                    })
                    .collect(),
                notes: vec![paper.into()],
            },
        ));
    }
    let conc: Vec<&RunResult> = results
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.mode == "concurrent")
        .collect();
    if !conc.is_empty() {
        let by_system = |system: &str, f: &dyn Fn(&RunResult) -> f64| -> Series {
            Series {
                name: system.into(),
                points: conc
                    .iter()
                    .filter(|r| r.system == system)
                    .map(|r| (f64::from(r.uplink_mbit), f(r)))
                    .collect(),
            }
        };
        let mut limits: Vec<u32> = conc.iter().map(|r| r.uplink_mbit).collect();
        limits.sort_unstable();
        limits.dedup();
        let mut series = vec![
            by_system("baseline", &|r| r.distribution_s),
            by_system("strata", &|r| r.distribution_s),
        ];
        series.push(Series {
            name: "image / uplink".into(),
            points: limits
                .iter()
                .map(|&m| (f64::from(m), limit_s(image.bytes, m)))
                .collect(),
        });
        series.retain(|s| !s.points.is_empty());
        charts.push((
            "fig-concurrent",
            Chart {
                title: format!("concurrent start: distribution time, {title_image}"),
                x_label: "uplink (Mbit/s)".into(),
                y_label: "until the last node holds the image (s)".into(),
                series,
                notes: vec![paper.into()],
            },
        ));
        let mut series = vec![
            by_system("baseline", &|r| r.uplink_bytes as f64 / image.bytes as f64),
            by_system("strata", &|r| r.uplink_bytes as f64 / image.bytes as f64),
        ];
        series.retain(|s| !s.points.is_empty());
        charts.push((
            "fig-uplink",
            Chart {
                title: format!("concurrent start: uplink bytes over image bytes, {title_image}"),
                x_label: "uplink (Mbit/s)".into(),
                y_label: "uplink bytes / image bytes".into(),
                series,
                notes: vec!["counted on the upstream's interface (TCP/IP framing included)".into()],
            },
        ));
    }
    for (stem, chart) in charts {
        let path = out.join(format!("{stem}.svg"));
        std::fs::write(&path, chart.to_svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("edge-site: wrote {}", path.display());
    }
    Ok(())
}
