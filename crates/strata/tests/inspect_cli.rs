//! `strata inspect`: the command contract scripts depend on, on the real corpus.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::{corpus_dir, missing_tool};

/// Runs `strata inspect ARGS`; returns (success, stdout lines as JSON).
fn inspect(args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.success(), lines)
}

fn smallest_layer() -> std::path::PathBuf {
    // c6e01d…: the curl layer, 7.3 MB of pgzip.
    corpus_dir()
        .join("blobs/sha256/c6e01d35b66381a75e66fe7e56252449026d020fe319f6e2689e2fc517b055e4")
}

#[test]
fn rebuild_reports_each_blob_and_why_one_stays_whole() {
    let test = "rebuild_reports_each_blob_and_why_one_stays_whole";
    if missing_tool(test, "zstd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = smallest_layer();
    let tar = dir.path().join("layer.tar");
    let zst = dir.path().join("layer.tar.zst");
    let gz = std::fs::read(&layer).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2_free_gunzip(&gz), &mut plain).unwrap();
    std::fs::write(&tar, &plain).unwrap();
    assert!(Command::new("zstd")
        .args(["-q", "-f"])
        .arg(&tar)
        .arg("-o")
        .arg(&zst)
        .status()
        .unwrap()
        .success());
    let hostile = dir.path().join("hostile.tar");
    let mut h = plain[..512].to_vec();
    h[..100].fill(0);
    h[..11].copy_from_slice(b"/etc/passwd");
    fix_checksum(&mut h);
    h.resize(512 * 3, 0);
    std::fs::write(&hostile, &h).unwrap();

    let args: Vec<&str> = [&layer, &tar, &zst, &hostile]
        .iter()
        .map(|p| p.to_str().unwrap())
        .collect();
    let (ok, lines) = inspect(&[&["rebuild"], &args[..]].concat());
    assert!(ok);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        for key in [
            "blob_sha256",
            "compressor",
            "file_level",
            "reason",
            "compressed_bytes",
            "tar_bytes",
            "overhead_bytes",
            "rebuild_s",
        ] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
    }
    let (g, t, z, x) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(
        g["blob_sha256"],
        "c6e01d35b66381a75e66fe7e56252449026d020fe319f6e2689e2fc517b055e4"
    );
    assert_eq!(
        (g["compressor"].as_str(), g["file_level"].as_bool()),
        (Some("gzip"), Some(true))
    );
    assert_eq!(g["tar_bytes"].as_u64(), Some(plain.len() as u64));
    assert!(g["overhead_bytes"].as_u64().unwrap() < g["compressed_bytes"].as_u64().unwrap() / 10);
    assert_eq!(
        (t["compressor"].as_str(), t["file_level"].as_bool()),
        (Some("none"), Some(true))
    );
    assert_eq!(
        (z["compressor"].as_str(), z["file_level"].as_bool()),
        (Some("zstd"), Some(true)),
        "{z}"
    );
    assert!(z["reason"].is_null(), "{z}");
    assert_eq!(x["file_level"].as_bool(), Some(false));
    assert!(
        x["reason"]
            .as_str()
            .unwrap()
            .contains("absolute entry name"),
        "{x}"
    );
}

#[test]
fn dedup_on_the_corpus_halves_the_bytes() {
    let (ok, lines) = inspect(&["dedup", "--oci", corpus_dir().to_str().unwrap()]);
    assert!(ok);
    let last = lines.last().unwrap();
    assert_eq!(last["layers"], 6);
    assert_eq!(last["images"], 6);
    assert_eq!(
        last["file_level_layers"], 6,
        "every corpus layer is stored at file level: {lines:?}"
    );
    // The corpus README measured 189.0 MB of unique file contents.
    let unique = last["unique_file_bytes"].as_f64().unwrap();
    assert!(
        (unique - 189.0e6).abs() < 0.5e6,
        "unique file bytes {unique}"
    );
    let (layer, file) = (
        last["layer_level_bytes"].as_f64().unwrap(),
        last["file_level_bytes"].as_f64().unwrap(),
    );
    assert_eq!(layer, 162_626_112.0);
    assert!(
        file <= 0.55 * layer,
        "file level {file} is more than 55% of layer level {layer}"
    );
    assert!((last["dedup_ratio"].as_f64().unwrap() - layer / file).abs() < 1e-9);
    for l in &lines[..6] {
        assert!(l["tau_s"].as_f64().unwrap() > 0.0);
    }
}

/// Decompresses a gzip stream with strata's own analyser (no extra dev-dependency).
fn flate2_free_gunzip(gz: &[u8]) -> std::io::Cursor<Vec<u8>> {
    let mut plain = Vec::new();
    let mut enc = strata_layer::rc::RcEncoder::default();
    strata_layer::gzip::analyze(gz, &mut plain, &mut enc).unwrap();
    std::io::Cursor::new(plain)
}

fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u64 = h[..512].iter().map(|&b| b as u64).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[tokio::test]
async fn whole_lists_the_layers_a_node_keeps_whole_with_why() {
    use strata_store::{BlobStore, Granularity, LayeredBlobStore};
    let dir = tempfile::tempdir().unwrap();
    let data = vec![0x5a; 8192];
    let d = strata_oci::Digest::sha256(&data);
    {
        let store = LayeredBlobStore::open(dir.path(), Granularity::Layer)
            .await
            .unwrap();
        store.put(&d, data.into()).await.unwrap();
        assert!(!store.convert(&d).await.unwrap());
    }
    let (ok, lines) = inspect(&["whole", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(ok);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["layer"], d.to_string());
    assert!(lines[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(lines[1]["kept_whole"], 1);

    let (ok, _) = inspect(&["whole", "--data-dir", "/nonexistent/strata-data"]);
    assert!(!ok, "a missing data directory is an error");
}

/// Issue 17's command contract: `strata inspect chunks` on a corpus layer, a disk-like blob
/// (data, then a hole of zeros, then the data again) and the layer once more; each rebuilt
/// exactly, the repeat adding nothing, the zeros stored by neither chunker.
#[test]
fn chunks_reports_each_blob_and_the_store_they_share() {
    let dir = tempfile::tempdir().unwrap();
    let layer = smallest_layer();
    let layer_bytes = std::fs::read(&layer).unwrap();
    let disk = dir.path().join("disk.img");
    let mut d = layer_bytes[..1 << 20].to_vec();
    d.extend(std::iter::repeat_n(0u8, 4 << 20));
    d.extend_from_slice(&layer_bytes[..1 << 20]);
    std::fs::write(&disk, &d).unwrap();
    let blobs = [
        layer.to_str().unwrap(),
        disk.to_str().unwrap(),
        layer.to_str().unwrap(),
    ];
    for (chunker, kb) in [("fastcdc", "64"), ("fixed", "4")] {
        let mut args = vec!["chunks", "--chunker", chunker, "--chunk-kb", kb];
        args.extend(blobs);
        let (ok, lines) = inspect(&args);
        assert!(ok, "{chunker}");
        assert_eq!(lines.len(), 4, "{chunker}: three blobs and a summary");
        for (line, path) in lines.iter().zip(blobs) {
            let digest = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
            };
            assert_eq!(line["blob_sha256"], digest.as_str(), "{chunker}");
            assert_eq!(line["exact"], true, "{chunker}");
            assert!(line["chunks"].as_u64().unwrap() > 0);
        }
        assert_eq!(lines[0]["bytes"], layer_bytes.len() as u64);
        assert_eq!(
            lines[2]["new_chunk_bytes"], 0,
            "{chunker}: the repeat adds nothing"
        );
        // The disk: its second copy of the data is shared with its first at fixed,
        // 1 MiB-aligned chunks, and near-all with FastCDC; its zeros are not stored.
        let disk_new = lines[1]["new_chunk_bytes"].as_u64().unwrap();
        assert!(
            disk_new < (3 << 20) / 2,
            "{chunker}: the disk added {disk_new} B"
        );
        assert!(lines[1]["zero_chunks"].as_u64().unwrap() > 0, "{chunker}");
        let s = &lines[3];
        assert_eq!(s["blobs"], 3);
        let whole = 2 * layer_bytes.len() as u64 + d.len() as u64;
        assert_eq!(s["whole_bytes"], whole);
        let level = s["chunk_level_bytes"].as_u64().unwrap();
        assert_eq!(
            level,
            s["chunk_store_bytes"].as_u64().unwrap() + s["recipe_bytes"].as_u64().unwrap()
        );
        let ratio = s["dedup_ratio"].as_f64().unwrap();
        assert!((ratio - whole as f64 / level as f64).abs() < 1e-9);
        assert!(ratio > 2.0, "{chunker}: {ratio}");
    }
    // Absurd sizes and unknown chunkers are refused.
    for args in [
        vec!["chunks", "--chunk-kb", "0", blobs[0]],
        vec![
            "chunks",
            "--chunker",
            "fixed",
            "--chunk-kb",
            "1000000",
            blobs[0],
        ],
        vec!["chunks", "--chunker", "rabin", blobs[0]],
    ] {
        assert!(!inspect(&args).0, "{args:?}");
    }
}
