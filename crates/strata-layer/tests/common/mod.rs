//! Helpers shared by strata-layer's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether a missing prerequisite may skip a test. CI sets STRATA_REQUIRE_TOOLS=1, which
/// turns every skip into a failure so a green run cannot hide an untested compressor.
pub fn missing_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return false;
    }
    if std::env::var("STRATA_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{test}: required prerequisite missing: {tool} (run scripts/install-test-deps)");
    }
    eprintln!("SKIPPED: {test}: {tool} is not installed (run scripts/install-test-deps)");
    true
}

/// The shared image corpus (`../shared/images/oci` beside the project root).
pub fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("STRATA_CORPUS") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/oci")
}

/// One tar entry for hand-built archives.
pub struct Entry<'a> {
    pub name: &'a str,
    pub kind: u8,
    pub link: &'a str,
    pub data: &'a [u8],
    pub dev: (u32, u32),
}

impl<'a> Entry<'a> {
    pub fn file(name: &'a str, data: &'a [u8]) -> Self {
        Entry {
            name,
            kind: b'0',
            link: "",
            data,
            dev: (0, 0),
        }
    }
    pub fn link(name: &'a str, kind: u8, link: &'a str) -> Self {
        Entry {
            name,
            kind,
            link,
            data: b"",
            dev: (0, 0),
        }
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

/// A ustar header block for `e` (data length in the size field).
pub fn header(e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..e.name.len()].copy_from_slice(e.name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], e.data.len() as u64);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = e.kind;
    h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], e.dev.0 as u64);
    octal(&mut h[337..345], e.dev.1 as u64);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A tar of `entries`, with the two end-of-archive blocks.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&header(e));
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// gzip of `data` with flate2 (zlib-compatible) at `level`.
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Text-like bytes with repeats at many distances, seeded.
pub fn sample(len: usize, seed: u64) -> Vec<u8> {
    let words: Vec<&[u8]> = vec![
        b"layer ",
        b"registry ",
        b"strata ",
        b"\0\0\0\0",
        b"file\n",
        b"0123456789",
    ];
    let mut s = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if s.is_multiple_of(7) {
            out.push((s >> 24) as u8);
        } else {
            out.extend_from_slice(words[(s >> 32) as usize % words.len()]);
        }
    }
    out.truncate(len);
    out
}

/// A codec's two directions, as the round-trip tests call them.
pub type Analyze = fn(
    &[u8],
    &mut Vec<u8>,
    &mut strata_layer::rc::RcEncoder,
) -> Result<(), strata_layer::LayerError>;
pub type Rebuild = fn(
    &mut strata_layer::rc::RcDecoder,
    &[u8],
    &mut Vec<u8>,
) -> Result<(), strata_layer::LayerError>;

/// Analyses `blob`, rebuilds it from the decoded bytes and record, checks it is identical;
/// returns (decoded, correction size).
pub fn round_trip(blob: &[u8], analyze: Analyze, rebuild: Rebuild) -> (Vec<u8>, usize) {
    let mut plain = Vec::new();
    let mut enc = strata_layer::rc::RcEncoder::default();
    analyze(blob, &mut plain, &mut enc).expect("analyze");
    let record = enc.finish();
    let mut dec = strata_layer::rc::RcDecoder::new(&record);
    let mut out = Vec::new();
    rebuild(&mut dec, &plain, &mut out).expect("rebuild");
    assert!(
        out == blob,
        "rebuild differs: {} vs {} bytes",
        out.len(),
        blob.len()
    );
    (plain, record.len())
}

/// Builds the Go program `testdata/<name>` with the machine's Go into `dir`.
pub fn go_build(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("go build");
    assert!(built.success(), "building testdata/{name} failed");
    out
}

/// `data` piped through `cmd` (a compressor writing to stdout).
pub fn pipe(mut cmd: std::process::Command, data: &[u8]) -> Vec<u8> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("compressor");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let writer =
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).expect("write"));
    let out = child.wait_with_output().expect("compressor output");
    writer.join().expect("writer");
    assert!(out.status.success());
    out.stdout
}
