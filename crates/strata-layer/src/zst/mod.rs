//! Bit-exact zstd re-encoding (RFC 8878), for any encoder: the zstd CLI, libzstd at any
//! level, Go's klauspost/compress (what skopeo, podman and buildah write).
//!
//! [`analyze`] decodes a stream and writes a *correction record*; [`rebuild`] takes the
//! decoded bytes and the record and writes the original stream back, byte for byte.
//!
//! A zstd block is literals plus sequences (literal length, match length, offset), both
//! entropy coded with tables the block carries or repeats. Given the decoded bytes and the
//! sequences, everything else follows: the literals are the bytes no match covers, Huffman
//! and FSE coding are deterministic once the table and (for FSE) the state the decoder ends
//! in are known. So the record holds, per frame: the frame header verbatim, per block its
//! plan ([`block::BlockPlan`]: kind, sizes, header formats, table descriptions verbatim,
//! final FSE states, the sequences; coded by [`model`]), and the checksum when it is not the
//! one computed. After the last frame: whatever bytes follow it.
//!
//! The sequences cost most: for the encoders that write most zstd layers (klauspost/compress
//! at its default level, libzstd's level 3 as the zstd CLI and one-shot calls run it) the
//! record names the encoder, whose replay ([`replay`], [`klauspost`], [`libzstd`]) then
//! predicts the sequences position by position.
//!
//! Analysis re-encodes every block as soon as it is parsed and refuses a stream whose block
//! does not come back identical, so a record is only ever written for a stream it rebuilds.
//! Memory: the frame's window (at most [`MAX_WINDOW`]) twice, plus one block, plus the
//! model's hash tables (two chains of one 4-byte entry per window byte, at most 8 Mi each;
//! never allocated for a frame an encoder's replay predicts, whose tables take 1-3 MiB).

pub mod backbits;
pub mod block;
pub mod fse;
pub mod huf;
pub mod klauspost;
pub mod libzstd;
pub mod matcher;
pub mod model;
pub mod replay;

use std::io::{Read, Write};

use xxhash_rust::xxh64::Xxh64;

use crate::rc::Coder;
use crate::{trailing, Format, LayerError};
use block::{BlockPlan, Carry, COMPRESSED, MAX_BLOCK, RAW, RLE};
use matcher::{Matcher, Reps};
use model::{FrameState, PlanModel};

/// Largest window a stream may need (zstd `--long=27`).
pub const MAX_WINDOW: u64 = 128 << 20;
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn bad(msg: &str) -> LayerError {
    LayerError::Zstd(msg.into())
}

#[derive(Debug)]
/// What the frame header says (RFC 8878 3.1.1.1).
pub struct FrameHeader {
    pub checksum: bool,
    pub content_size: Option<u64>,
    pub window: u64,
}

/// Reads the frame header after the magic; returns its bytes and meaning.
fn read_header<R: Read>(r: &mut R) -> Result<(Vec<u8>, FrameHeader), LayerError> {
    let mut d = [0u8; 1];
    read_exact(r, &mut d)?;
    let d = d[0];
    if d & 0x08 != 0 {
        return Err(bad("reserved frame header bit set"));
    }
    if d & 3 != 0 {
        return Err(LayerError::Unsupported(
            "zstd frames with a dictionary".into(),
        ));
    }
    let single = d & 0x20 != 0;
    let fcs_bytes = match d >> 6 {
        0 => single as usize,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut rest = vec![0u8; (!single) as usize + fcs_bytes];
    read_exact(r, &mut rest)?;
    let fcs = &rest[(!single) as usize..];
    let content_size = match fcs.len() {
        0 => None,
        2 => Some(u16::from_le_bytes([fcs[0], fcs[1]]) as u64 + 256),
        _ => Some(fcs.iter().rev().fold(0u64, |a, &b| (a << 8) | b as u64)),
    };
    let window = if single {
        content_size.unwrap_or(0)
    } else {
        let exp = (rest[0] >> 3) as u64;
        let base = 1u64 << (10 + exp);
        base + (base / 8) * (rest[0] & 7) as u64
    };
    if window > MAX_WINDOW {
        return Err(LayerError::Limit(format!(
            "zstd window of {window} bytes is over the {MAX_WINDOW}-byte limit"
        )));
    }
    let mut bytes = vec![d];
    bytes.extend_from_slice(&rest);
    let checksum = d & 0x04 != 0;
    Ok((
        bytes,
        FrameHeader {
            checksum,
            content_size,
            window,
        },
    ))
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), LayerError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => LayerError::Truncated,
        _ => LayerError::Io(e),
    })
}

/// Reads up to `buf.len()` bytes, fewer only at the end.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, LayerError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::Io(e)),
        }
    }
    Ok(n)
}

/// Executes a block's sequences, appending its bytes to the frame's.
fn execute(
    plan: &BlockPlan,
    lits: &[u8],
    bytes: &mut Matcher,
    reps: &mut Reps,
) -> Result<(), LayerError> {
    let start = bytes.end();
    let mut lit = 0usize;
    for s in &plan.seqs {
        let end = lit + s.ll as usize;
        let run = lits
            .get(lit..end)
            .ok_or_else(|| bad("sequences use more literals than the block has"))?;
        bytes.extend(run);
        lit = end;
        let d = reps.resolve(s.of, s.ll)? as u64;
        let at = bytes.end();
        if !bytes.reaches(at, d) {
            return Err(bad("match offset reaches before the window"));
        }
        if at - start + s.ml as u64 > MAX_BLOCK as u64 {
            return Err(bad("block decodes to more than 128 KiB"));
        }
        for i in 0..s.ml as u64 {
            bytes.push(bytes.at(at + i - d));
        }
    }
    bytes.extend(&lits[lit..]);
    if bytes.end() - start > MAX_BLOCK as u64 {
        return Err(bad("block decodes to more than 128 KiB"));
    }
    Ok(())
}

fn block_header(plan: &BlockPlan, size: usize) -> [u8; 3] {
    let v = plan.last as u32 | (plan.kind as u32) << 1 | (size as u32) << 3;
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// What an analysis saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ZstdStats {
    pub plain_bytes: u64,
    pub sequences: u64,
    /// Sequences an encoder's replay guessed (each costs a fraction of a bit).
    pub replayed: u64,
}

/// Analyses a zstd blob: writes the decoded bytes to `plain` and the correction to `c`.
pub fn analyze<R: Read, W: Write, C: Coder>(
    input: R,
    plain: &mut W,
    c: &mut C,
) -> Result<ZstdStats, LayerError> {
    analyze_format(input, plain, c, Format::default())
}

/// [`analyze`] writing a record of the given format.
pub fn analyze_format<R: Read, W: Write, C: Coder>(
    mut input: R,
    plain: &mut W,
    c: &mut C,
    format: Format,
) -> Result<ZstdStats, LayerError> {
    debug_assert!(C::ENCODING);
    let mut magic = [0u8; 4];
    read_exact(&mut input, &mut magic)?;
    if magic != MAGIC {
        return Err(bad("not a zstd frame"));
    }
    let mut model = PlanModel::default();
    let mut stats = ZstdStats::default();
    loop {
        let (head, frame) = read_header(&mut input)?;
        c.count(head.len() as u64);
        c.verbatim(&head, head.len());
        analyze_frame(&mut input, &frame, plain, c, &mut model, format, &mut stats)?;
        let n = read_full(&mut input, &mut magic)?;
        let more = n == 4 && magic == MAGIC;
        c.direct(1, more as u32);
        if !more {
            let tail = trailing::collect(magic[..n].to_vec(), "zstd frame", |buf| {
                read_full(&mut input, buf)
            })?;
            trailing::code(c, &tail);
            return Ok(stats);
        }
    }
}

fn analyze_frame<R: Read, W: Write, C: Coder>(
    input: &mut R,
    frame: &FrameHeader,
    plain: &mut W,
    c: &mut C,
    model: &mut PlanModel,
    format: Format,
    stats: &mut ZstdStats,
) -> Result<(), LayerError> {
    let mut state = FrameState::new(frame, format);
    let mut exec_reps = Reps::default();
    let (mut carry, mut check) = (Carry::default(), Carry::default());
    let mut hash = Xxh64::new(0);
    let mut len = 0u64;
    let mut body = Vec::with_capacity(MAX_BLOCK);
    let mut index = 0u64;
    loop {
        let mut h = [0u8; 3];
        read_exact(input, &mut h)?;
        let v = u32::from_le_bytes([h[0], h[1], h[2], 0]);
        let size = (v >> 3) as usize;
        let mut plan = BlockPlan {
            last: v & 1 == 1,
            kind: ((v >> 1) & 3) as u8,
            ..BlockPlan::default()
        };
        if plan.kind > COMPRESSED {
            return Err(bad("reserved block type"));
        }
        if size > MAX_BLOCK {
            return Err(bad("block larger than 128 KiB"));
        }
        body.resize(if plan.kind == RLE { 1 } else { size }, 0);
        read_exact(input, &mut body)?;
        let start = state.bytes.end();
        match plan.kind {
            RAW => state.bytes.extend(&body),
            RLE => state.bytes.extend(&vec![body[0]; size]),
            _ => {
                let lits = block::parse_compressed(&body, &mut plan, &mut carry)?;
                execute(&plan, &lits, &mut state.bytes, &mut exec_reps)?;
            }
        }
        let end = state.bytes.end();
        plan.regen = (end - start) as u32;
        let block = state.bytes.from(start).to_vec();
        if plan.kind == COMPRESSED && block::encode_compressed(&plan, &block, &mut check)? != body {
            return Err(LayerError::Mismatch(format!(
                "zstd block {index} does not re-encode identically"
            )));
        }
        model::code_head(c, model, &mut plan)?;
        state.replay_block(start..end, plan.kind == COMPRESSED);
        if plan.kind == RLE && size == 0 {
            // An empty RLE block still carries its byte, which no decoded byte repeats.
            c.direct(8, body[0] as u32);
        }
        if plan.kind == COMPRESSED {
            model::code_body(c, model, &mut plan, &mut state, start..end)?;
        }
        hash.update(&block);
        plain.write_all(&block)?;
        len += block.len() as u64;
        stats.sequences += plan.seqs.len() as u64;
        state.bytes.trim();
        index += 1;
        if plan.last {
            break;
        }
    }
    if frame.content_size.is_some_and(|n| n != len) {
        return Err(bad(
            "frame decodes to a different size than its header says",
        ));
    }
    if frame.checksum {
        let mut sum = [0u8; 4];
        read_exact(input, &mut sum)?;
        let computed = (hash.digest() as u32).to_le_bytes();
        if c.direct(1, (sum == computed) as u32) == 0 {
            c.verbatim(&sum, 4);
        }
    }
    stats.plain_bytes += len;
    stats.replayed += state.replayed;
    Ok(())
}

/// Rebuilds a zstd blob from its decoded bytes (`plain`) and correction (`c`).
pub fn rebuild<P: Read, W: Write, C: Coder>(
    c: &mut C,
    plain: &mut P,
    out: &mut W,
) -> Result<(), LayerError> {
    rebuild_format(c, plain, out, Format::default())
}

/// [`rebuild`] from a record of the given format.
pub fn rebuild_format<P: Read, W: Write, C: Coder>(
    c: &mut C,
    plain: &mut P,
    out: &mut W,
    format: Format,
) -> Result<(), LayerError> {
    let mut model = PlanModel::default();
    let mut block = vec![0u8; MAX_BLOCK];
    loop {
        let hlen = c.count(0) as usize;
        if hlen > 14 || c.exhausted() {
            return Err(LayerError::Mismatch(
                "zstd frame header length in correction is wrong".into(),
            ));
        }
        let head = c.verbatim(&[], hlen);
        let (_, frame) = read_header(&mut head.as_slice())?;
        out.write_all(&MAGIC)?;
        out.write_all(&head)?;
        let (mut carry, mut hash) = (Carry::default(), Xxh64::new(0));
        let mut state = FrameState::new(&frame, format);
        loop {
            let mut plan = BlockPlan::default();
            model::code_head(c, &mut model, &mut plan)?;
            let data = &mut block[..plan.regen as usize];
            read_exact(plain, data).map_err(|_| {
                LayerError::Mismatch("decoded data ends inside a zstd block".into())
            })?;
            hash.update(data);
            let start = state.bytes.end();
            state.bytes.extend(data);
            let end = state.bytes.end();
            state.replay_block(start..end, plan.kind == COMPRESSED);
            match plan.kind {
                RAW => {
                    out.write_all(&block_header(&plan, data.len()))?;
                    out.write_all(data)?;
                }
                RLE => {
                    let byte = match data.first() {
                        Some(&b) => b,
                        None => c.direct(8, 0) as u8,
                    };
                    out.write_all(&block_header(&plan, data.len()))?;
                    out.write_all(&[byte])?;
                }
                _ => {
                    model::code_body(c, &mut model, &mut plan, &mut state, start..end)?;
                    let body = block::encode_compressed(&plan, data, &mut carry)?;
                    out.write_all(&block_header(&plan, body.len()))?;
                    out.write_all(&body)?;
                }
            }
            state.bytes.trim();
            if plan.last {
                break;
            }
        }
        if frame.checksum {
            let sum = if c.direct(1, 0) == 1 {
                (hash.digest() as u32).to_le_bytes().to_vec()
            } else {
                c.verbatim(&[], 4)
            };
            out.write_all(&sum)?;
        }
        if c.direct(1, 0) == 0 {
            break;
        }
    }
    trailing::rebuild(c, out)
}
