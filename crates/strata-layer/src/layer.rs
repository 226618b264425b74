//! Whole layers: detect the compressor, split the tar into the file store, record what
//! rebuilds the exact blob, and prove it by rebuilding before anything is kept.
//!
//! Recipe encoding (`STRATA-LAYER\x03`): compressor byte, correction record (length +
//! bytes), op count, ops (tag 0 = metadata with its length, tag 1 = file with sha256 and
//! size; lengths as LEB128), then the metadata bytes zstd-compressed (length + bytes).
//! The last magic byte is the correction record's [`Format`]: recipes written with
//! `\x01` (gzip records without the encoder replay) and `\x02` (zstd records without it)
//! still decode and rebuild.

use std::io::{BufRead, BufReader, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::deflate::Format;
use crate::filestore::{FileDigest, FileStore};
use crate::rc::{RcDecoder, RcEncoder};
use crate::tar::{Limits, Op, TarBuilder, TarRecipe, TarSplitter};
use crate::{gzip, LayerError};

/// The magic without its format byte.
const MAGIC_STEM: &[u8] = b"STRATA-LAYER";

/// The compression a layer blob uses, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    Gzip,
    Zstd,
    /// An uncompressed tar.
    None,
}

impl Compressor {
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Zstd => "zstd",
            Compressor::None => "none",
        }
    }

    /// The compressor of a blob that starts with `head` (at least 4 bytes when available).
    pub fn detect(head: &[u8]) -> Compressor {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compressor::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compressor::Zstd
        } else {
            Compressor::None
        }
    }
}

/// Everything that rebuilds one layer blob from the file store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecipe {
    pub compressor: Compressor,
    /// Version of `correction`.
    pub format: Format,
    pub correction: Vec<u8>,
    pub tar: TarRecipe,
}

/// The outcome of a successful decomposition.
#[derive(Debug)]
pub struct Decomposed {
    pub recipe: LayerRecipe,
    pub blob_sha256: FileDigest,
    pub compressed_bytes: u64,
    pub tar_bytes: u64,
    /// Files this layer added to the store (the rest were already there).
    pub new_files: Vec<FileDigest>,
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// A `Write` that hashes and counts.
#[derive(Default, Debug)]
pub struct HashSink {
    hasher: Sha256,
    pub len: u64,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl HashSink {
    pub fn digest(self) -> FileDigest {
        self.hasher.finalize().into()
    }
}

/// Splits `blob` into `store` and returns its recipe, after rebuilding the blob from the
/// recipe and checking its sha256. On any failure every file this call added is removed
/// again and the error says why.
pub fn decompose(
    blob: impl Read,
    store: &dyn FileStore,
    limits: Limits,
) -> Result<Decomposed, LayerError> {
    let mut input = BufReader::with_capacity(
        1 << 16,
        Hashing {
            inner: blob,
            hasher: Sha256::new(),
            len: 0,
        },
    );
    let compressor = Compressor::detect(input.fill_buf()?);
    let mut splitter = TarSplitter::new(store, limits);
    let mut enc = RcEncoder::default();
    let analysed = match compressor {
        Compressor::Gzip => gzip::analyze(&mut input, &mut splitter, &mut enc).map(|_| ()),
        Compressor::None => std::io::copy(&mut input, &mut splitter)
            .map(|_| ())
            .map_err(LayerError::Io),
        Compressor::Zstd => crate::zst::analyze(&mut input, &mut splitter, &mut enc).map(|_| ()),
    };
    // The splitter's own refusal is the root cause when it has one; otherwise the decoder's.
    let refused = splitter.refused();
    let (tar, added) = match (analysed, splitter.finish()) {
        (Ok(()), Ok(done)) => done,
        (Err(e), Ok((_, added))) => return Err(rollback(store, &added, e)),
        (Err(e), Err((own, added))) => {
            return Err(rollback(store, &added, if refused { own } else { e }))
        }
        (Ok(()), Err((own, added))) => return Err(rollback(store, &added, own)),
    };
    // Drain what the decoder did not need (a trailing part is kept by the codec; for plain
    // tars everything was consumed).
    std::io::copy(&mut input, &mut std::io::sink())?;
    let hashing = input.into_inner();
    let blob_sha256: FileDigest = hashing.hasher.finalize().into();
    let recipe = LayerRecipe {
        compressor,
        format: Format::default(),
        correction: enc.finish(),
        tar,
    };
    let tar_bytes = recipe.tar.tar_bytes();
    match verify(&recipe, store, &blob_sha256) {
        Ok(len) if len == hashing.len => {}
        Ok(_) => return Err(rollback(store, &added, differs())),
        Err(e) => return Err(rollback(store, &added, e)),
    }
    Ok(Decomposed {
        recipe,
        blob_sha256,
        compressed_bytes: hashing.len,
        tar_bytes,
        new_files: added,
    })
}

fn rollback(store: &dyn FileStore, added: &[FileDigest], e: LayerError) -> LayerError {
    for d in added {
        // Best effort: a file that cannot be removed is only unreferenced space.
        let _ = store.remove(d);
    }
    e
}

fn differs() -> LayerError {
    LayerError::Mismatch("rebuilt blob differs from the original".into())
}

/// Rebuilds the blob a recipe describes into a hashing sink and checks it against
/// `blob_sha256`; returns its length.
pub fn verify(
    recipe: &LayerRecipe,
    store: &dyn FileStore,
    blob_sha256: &FileDigest,
) -> Result<u64, LayerError> {
    let mut sink = HashSink::default();
    rebuild(recipe, store, &mut sink)?;
    let len = sink.len;
    if sink.digest() != *blob_sha256 {
        return Err(differs());
    }
    Ok(len)
}

/// Writes the exact blob a recipe describes.
pub fn rebuild(
    recipe: &LayerRecipe,
    store: &dyn FileStore,
    out: &mut dyn Write,
) -> Result<(), LayerError> {
    let mut tar = BufReader::with_capacity(1 << 16, TarBuilder::new(&recipe.tar, store));
    match recipe.compressor {
        Compressor::Gzip => {
            let mut dec = RcDecoder::new(&recipe.correction);
            let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
            gzip::rebuild_format(&mut dec, &mut tar, &mut out, recipe.format)?;
            out.flush()?;
            if dec.overrun() {
                return Err(LayerError::Mismatch("correction record ends early".into()));
            }
        }
        Compressor::None => {
            std::io::copy(&mut tar, out)?;
        }
        Compressor::Zstd => {
            let mut dec = RcDecoder::new(&recipe.correction);
            let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
            crate::zst::rebuild_format(&mut dec, &mut tar, &mut out, recipe.format)?;
            out.flush()?;
            if dec.overrun() {
                return Err(LayerError::Mismatch("correction record ends early".into()));
            }
        }
    }
    let mut rest = [0u8; 1];
    if tar.read(&mut rest)? != 0 {
        return Err(LayerError::Mismatch(
            "tar data left over after the rebuild".into(),
        ));
    }
    Ok(())
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_uvarint(b: &mut &[u8]) -> Result<u64, LayerError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b
            .split_first()
            .ok_or_else(|| LayerError::Recipe("truncated number".into()))?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(LayerError::Recipe("number too long".into()))
}

fn take<'a>(b: &mut &'a [u8], n: u64) -> Result<&'a [u8], LayerError> {
    if n > b.len() as u64 {
        return Err(LayerError::Recipe("truncated recipe".into()));
    }
    let (head, rest) = b.split_at(n as usize);
    *b = rest;
    Ok(head)
}

impl LayerRecipe {
    /// The recipe's bytes (what a node stores beside the files).
    pub fn encode(&self) -> Result<Vec<u8>, LayerError> {
        let mut out = MAGIC_STEM.to_vec();
        out.push(match self.format {
            Format::V1 => 1,
            Format::V2 => 2,
            Format::V3 => 3,
        });
        out.push(match self.compressor {
            Compressor::None => 0,
            Compressor::Gzip => 1,
            Compressor::Zstd => 2,
        });
        put_uvarint(&mut out, self.correction.len() as u64);
        out.extend_from_slice(&self.correction);
        put_uvarint(&mut out, self.tar.ops.len() as u64);
        for op in &self.tar.ops {
            match op {
                Op::Meta(n) => {
                    out.push(0);
                    put_uvarint(&mut out, *n);
                }
                Op::File { digest, size } => {
                    out.push(1);
                    out.extend_from_slice(digest);
                    put_uvarint(&mut out, *size);
                }
            }
        }
        let meta = zstd::bulk::compress(&self.tar.meta, 19)?;
        put_uvarint(&mut out, meta.len() as u64);
        out.extend_from_slice(&meta);
        Ok(out)
    }

    /// Parses [`LayerRecipe::encode`]'s output; a damaged recipe gives an error, never a panic.
    pub fn decode(mut b: &[u8]) -> Result<Self, LayerError> {
        if take(&mut b, MAGIC_STEM.len() as u64)? != MAGIC_STEM {
            return Err(LayerError::Recipe("not a strata layer recipe".into()));
        }
        let format = match take(&mut b, 1)?[0] {
            1 => Format::V1,
            2 => Format::V2,
            3 => Format::V3,
            v => return Err(LayerError::Recipe(format!("unknown recipe version {v}"))),
        };
        let compressor = match take(&mut b, 1)?[0] {
            0 => Compressor::None,
            1 => Compressor::Gzip,
            2 => Compressor::Zstd,
            c => return Err(LayerError::Recipe(format!("unknown compressor {c}"))),
        };
        let n = get_uvarint(&mut b)?;
        let correction = take(&mut b, n)?.to_vec();
        let count = get_uvarint(&mut b)?;
        if count > b.len() as u64 {
            return Err(LayerError::Recipe("more ops than bytes".into()));
        }
        let mut ops = Vec::with_capacity(count as usize);
        let mut meta_len = 0u64;
        for _ in 0..count {
            match take(&mut b, 1)?[0] {
                0 => {
                    let n = get_uvarint(&mut b)?;
                    meta_len = meta_len.saturating_add(n);
                    ops.push(Op::Meta(n));
                }
                1 => {
                    let digest: FileDigest = take(&mut b, 32)?
                        .try_into()
                        .map_err(|_| LayerError::Recipe("digest".into()))?;
                    ops.push(Op::File {
                        digest,
                        size: get_uvarint(&mut b)?,
                    });
                }
                t => return Err(LayerError::Recipe(format!("unknown op {t}"))),
            }
        }
        let n = get_uvarint(&mut b)?;
        let packed = take(&mut b, n)?;
        if meta_len > 1 << 32 {
            return Err(LayerError::Recipe("metadata too large".into()));
        }
        let meta = zstd::bulk::decompress(packed, meta_len as usize)
            .map_err(|e| LayerError::Recipe(format!("metadata: {e}")))?;
        if meta.len() as u64 != meta_len || !b.is_empty() {
            return Err(LayerError::Recipe(
                "metadata length does not match its ops".into(),
            ));
        }
        Ok(LayerRecipe {
            compressor,
            format,
            correction,
            tar: TarRecipe { ops, meta },
        })
    }
}
