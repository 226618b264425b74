//! `strata-bench registry`: strata against the CNCF registry on the same machine.
//!
//! Figures: blob GET throughput of one large blob with 1 and N concurrent clients; manifest
//! GET requests per second and p99 latency under wrk; push throughput of the shared corpus
//! with skopeo (its blob cache cleared first, so every push is cold), each push to a freshly
//! started registry, strata's and the CNCF registry's interleaved, beside the same push to a
//! registry that stores nothing ([`crate::discard`]): the client's own ceiling.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use strata_oci::{Algorithm, Digest, DigestHasher};

use crate::discard;
use crate::targets::{start_cncf, start_strata, Target, Tls};
use crate::wrk;

const MIB: usize = 1024 * 1024;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SKOPEO_CACHE: &str = "/var/lib/containers/cache/blob-info-cache-v1.boltdb";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the blob served in the GET benchmarks, in MiB.
    #[arg(long, default_value_t = 1024)]
    blob_mib: usize,
    /// Concurrent clients of the parallel blob GET benchmark.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Downloads per blob GET figure; the figure is their median.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Duration of each wrk run, in seconds.
    #[arg(long, default_value_t = 10)]
    wrk_seconds: u32,
    /// OCI image layout pushed in the push benchmark.
    #[arg(long, default_value = "../shared/images/oci")]
    corpus: PathBuf,
    /// Cold corpus pushes per registry; the push figure is their median.
    #[arg(long, default_value_t = 3)]
    push_runs: usize,
    /// Directory for the registries' data (default: the system temp directory).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Both registries serve TLS (a certificate of a CA the bench makes; clients trust
    /// it). The push ceiling's discard registry stays plain HTTP.
    #[arg(long)]
    tls: bool,
}

/// Chunk `i` of the synthetic blob: a fixed pseudo-random MiB stamped with its index.
fn chunk(base: &[u8], i: usize) -> Bytes {
    let mut c = base.to_vec();
    c[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Bytes::from(c)
}

fn base_chunk() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn blob_digest(base: &[u8], chunks: usize) -> Digest {
    let mut h = DigestHasher::new(Algorithm::Sha256);
    for i in 0..chunks {
        h.update(&chunk(base, i));
    }
    h.finish()
}

async fn push_big_blob(
    http: &reqwest::Client,
    t: &Target,
    base: &[u8],
    chunks: usize,
    d: &Digest,
) -> Result<()> {
    let url = start_upload(http, t).await?;
    let base = Bytes::copy_from_slice(base);
    let body = futures_util::stream::iter(
        (0..chunks).map(move |i| Ok::<_, std::io::Error>(chunk(&base, i))),
    );
    let r = http
        .patch(&url)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    let loc = r
        .headers()
        .get("location")
        .context("no upload location")?
        .to_str()?
        .to_string();
    let url = if loc.starts_with("http") {
        loc
    } else {
        t.url(&loc)
    };
    let r = http.put(with_digest(&url, d)).send().await?;
    if r.status() != 201 {
        bail!("{}: blob push answered {}", t.name, r.status());
    }
    Ok(())
}

/// Open an upload session; returns its absolute URL.
async fn start_upload(http: &reqwest::Client, t: &Target) -> Result<String> {
    let r = http.post(t.url("/v2/bench/blobs/uploads/")).send().await?;
    let loc = r
        .headers()
        .get("location")
        .context("no upload location")?
        .to_str()?
        .to_string();
    Ok(if loc.starts_with("http") {
        loc
    } else {
        t.url(&loc)
    })
}

fn with_digest(url: &str, d: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={d}")
}

/// POST then PUT with the body: the CNCF registry does not take a monolithic POST.
async fn push_small(http: &reqwest::Client, t: &Target, data: &[u8]) -> Result<Digest> {
    let d = Digest::sha256(data);
    let url = start_upload(http, t).await?;
    let r = http
        .put(with_digest(&url, &d))
        .body(data.to_vec())
        .send()
        .await?;
    if r.status() != 201 {
        bail!("{}: small blob push answered {}", t.name, r.status());
    }
    Ok(d)
}

/// A manifest to hammer with wrk (realistic size: a config and 12 layers).
async fn push_manifest(http: &reqwest::Client, t: &Target) -> Result<()> {
    let config_bytes = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let config = push_small(http, t, config_bytes).await?;
    let mut layers = Vec::new();
    for i in 0..12u8 {
        let data = vec![i; 1000 + i as usize];
        let d = push_small(http, t, &data).await?;
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": data.len()}));
    }
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_bytes.len()},
        "layers": layers});
    let r = http
        .put(t.url("/v2/bench/manifests/bench"))
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&m)?)
        .send()
        .await?;
    if r.status() != 201 {
        bail!("{}: manifest push answered {}", t.name, r.status());
    }
    Ok(())
}

async fn download(http: reqwest::Client, url: String) -> Result<usize> {
    let resp = http.get(&url).send().await?;
    if resp.status() != 200 {
        bail!("GET {url} answered {}", resp.status());
    }
    let mut n = 0;
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        n += c?.len();
    }
    Ok(n)
}

/// MB/s (10^6 bytes) of `clients` concurrent downloads of the same blob.
async fn blob_get(
    http: &reqwest::Client,
    t: &Target,
    d: &Digest,
    clients: usize,
    expected: usize,
) -> Result<f64> {
    let url = t.url(&format!("/v2/bench/blobs/{d}"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(download(http.clone(), url.clone())))
        .collect();
    let mut total = 0;
    for task in tasks {
        let n = task.await??;
        if n != expected {
            bail!("{}: short download {n} of {expected}", t.name);
        }
        total += n;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn corpus_bytes(corpus: &Path) -> Result<u64> {
    Ok(strata_oci::Layout::open(corpus)?.blob_files()?.1)
}

fn corpus_tags(corpus: &Path) -> Result<Vec<String>> {
    let tags = strata_oci::Layout::open(corpus)?.tags()?;
    ensure!(!tags.is_empty(), "{}: no tagged image", corpus.display());
    Ok(tags.into_iter().map(|(t, _)| t).collect())
}

/// MB/s of pushing every corpus image with skopeo, cold, to the registry `name` at `host`
/// (over TLS when `cert_dir` holds the CA to trust).
fn push_corpus(name: &str, host: &str, corpus: &Path, cert_dir: Option<&Path>) -> Result<f64> {
    let _ = std::fs::remove_file(SKOPEO_CACHE);
    let bytes = corpus_bytes(corpus)?;
    let started = Instant::now();
    for tag in corpus_tags(corpus)? {
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"]);
        match cert_dir {
            Some(dir) => cmd.arg("--dest-cert-dir").arg(dir),
            None => cmd.arg("--dest-tls-verify=false"),
        };
        let out = cmd
            .arg(format!("oci:{}:{tag}", corpus.display()))
            .arg(format!("docker://{host}/corpus/{tag}:v1"))
            .output()
            .context("cannot run skopeo")?;
        if !out.status.success() {
            bail!(
                "{name}: skopeo push of {tag} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// One figure measured on both registries.
struct Figure {
    key: &'static str,
    unit: &'static str,
    strata: f64,
    cncf: f64,
    higher_is_better: bool,
}

impl Figure {
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.strata / self.cncf
        } else {
            self.cncf / self.strata
        }
    }
}

/// Median MB/s of `repeats` runs of [`blob_get`].
async fn median_blob_get(
    http: &reqwest::Client,
    t: &Target,
    d: &Digest,
    clients: usize,
    expected: usize,
    repeats: usize,
) -> Result<f64> {
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        runs.push(blob_get(http, t, d, clients, expected).await?);
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[runs.len() / 2])
}

/// [`push_corpus`] off the async workers (the discard registry runs on them).
async fn push_to(
    name: &'static str,
    host: String,
    corpus: PathBuf,
    cert_dir: Option<PathBuf>,
) -> Result<f64> {
    eprintln!("[{name}] pushing the corpus with skopeo");
    tokio::task::spawn_blocking(move || push_corpus(name, &host, &corpus, cert_dir.as_deref()))
        .await?
}

/// Median push MB/s of strata, the CNCF registry and the discard registry, over `push_runs`
/// rounds; every push goes to a registry started empty for it.
async fn push_figures(args: &Args, scratch: &Path, tls: Option<&Tls>) -> Result<[f64; 3]> {
    let mut runs: [Vec<f64>; 3] = Default::default();
    let cert_dir = tls.map(|t| t.dir.path().to_path_buf());
    for _ in 0..args.push_runs.max(1) {
        let corpus = args.corpus.clone();
        let t = start_strata(scratch, tls)?;
        runs[0].push(push_to(t.name, t.host.clone(), corpus.clone(), cert_dir.clone()).await?);
        drop(t);
        let t = start_cncf(scratch, tls)?;
        runs[1].push(push_to(t.name, t.host.clone(), corpus.clone(), cert_dir.clone()).await?);
        drop(t);
        runs[2].push(push_to("discard", discard::start().await?, corpus, None).await?);
    }
    Ok(runs.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }))
}

async fn measure(
    args: &Args,
    t: &Target,
    tls: Option<&Tls>,
    base: &[u8],
    d: &Digest,
) -> Result<[f64; 4]> {
    let http = match tls {
        Some(tls) => tls.client()?,
        None => reqwest::Client::new(),
    };
    let size = args.blob_mib * MIB;
    eprintln!(
        "[{}] pushing the {} MiB blob and a manifest",
        t.name, args.blob_mib
    );
    push_big_blob(&http, t, base, args.blob_mib, d).await?;
    push_manifest(&http, t).await?;
    blob_get(&http, t, d, 1, size).await?; // warm the page cache
    eprintln!("[{}] blob GET, 1 client", t.name);
    let get1 = median_blob_get(&http, t, d, 1, size, args.repeats).await?;
    eprintln!("[{}] blob GET, {} clients", t.name, args.clients);
    let get_n = median_blob_get(&http, t, d, args.clients, size, args.repeats).await?;
    eprintln!(
        "[{}] manifest GET with wrk for {} s",
        t.name, args.wrk_seconds
    );
    let w = wrk::run(
        &t.url("/v2/bench/manifests/bench"),
        OCI_MANIFEST,
        16,
        args.wrk_seconds,
    )?;
    Ok([get1, get_n, w.requests_per_s, w.p99_s * 1e3])
}

pub async fn run(args: Args) -> Result<()> {
    let scratch = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let base = base_chunk();
    let digest = blob_digest(&base, args.blob_mib);
    // One registry at a time, so they never compete for the two cores.
    let tls = if args.tls {
        Some(Tls::new(&scratch)?)
    } else {
        None
    };
    let s = {
        let t = start_strata(&scratch, tls.as_ref())?;
        measure(&args, &t, tls.as_ref(), &base, &digest).await?
    };
    let c = {
        let t = start_cncf(&scratch, tls.as_ref())?;
        measure(&args, &t, tls.as_ref(), &base, &digest).await?
    };
    let push = push_figures(&args, &scratch, tls.as_ref()).await?;
    let figures = [
        Figure {
            key: "blob_get_1_client_mb_s",
            unit: "MB/s",
            strata: s[0],
            cncf: c[0],
            higher_is_better: true,
        },
        Figure {
            key: "blob_get_n_clients_mb_s",
            unit: "MB/s",
            strata: s[1],
            cncf: c[1],
            higher_is_better: true,
        },
        Figure {
            key: "manifest_get_req_s",
            unit: "req/s",
            strata: s[2],
            cncf: c[2],
            higher_is_better: true,
        },
        Figure {
            key: "manifest_get_p99_ms",
            unit: "ms",
            strata: s[3],
            cncf: c[3],
            higher_is_better: false,
        },
        Figure {
            key: "push_corpus_mb_s",
            unit: "MB/s",
            strata: push[0],
            cncf: push[1],
            higher_is_better: true,
        },
    ];
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "figure", "strata", "cncf", "ratio"
    );
    let mut out = Map::new();
    out.insert("blob_mib".into(), json!(args.blob_mib));
    out.insert("clients".into(), json!(args.clients));
    out.insert("tls".into(), json!(args.tls));
    for f in &figures {
        println!(
            "{:<28} {:>12.2} {:>12.2} {:>7.2}x  ({})",
            f.key,
            f.strata,
            f.cncf,
            f.ratio(),
            f.unit
        );
        let stem = f.key.rsplit_once('_').map(|(a, _)| a).unwrap_or(f.key);
        let stem = stem
            .strip_suffix("_mb")
            .or_else(|| stem.strip_suffix("_req"))
            .unwrap_or(stem);
        out.insert(format!("strata_{}", f.key), json!(f.strata));
        out.insert(format!("cncf_{}", f.key), json!(f.cncf));
        out.insert(format!("{stem}_ratio"), json!(f.ratio()));
    }
    println!(
        "{}",
        if args.tls {
            "both over TLS (HTTP/1.1 for the GETs; the push ceiling's discard registry plain)"
        } else {
            "both over plain HTTP"
        }
    );
    println!(
        "push ceiling: {:.2} MB/s to a registry that stores nothing (skopeo alone), so at most \
         {:.2}x over cncf on the push figure; strata reaches {:.0}% of it",
        push[2],
        push[2] / push[1],
        push[0] / push[2] * 100.0
    );
    out.insert("discard_push_corpus_mb_s".into(), json!(push[2]));
    out.insert(
        "push_corpus_ceiling_over_cncf".into(),
        json!(push[2] / push[1]),
    );
    println!("{}", Value::Object(out));
    Ok(())
}
