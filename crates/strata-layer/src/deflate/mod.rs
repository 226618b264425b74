//! Bit-exact DEFLATE re-encoding (RFC 1951), for any encoder.
//!
//! [`analyze`] inflates a stream and writes a *correction record*: everything besides the
//! decoded bytes that the stream's exact bits depend on. [`rebuild`] takes the decoded bytes
//! and the record and writes the original stream back, bit for bit.
//!
//! The record is one range-coded stream (see [`crate::rc`]) holding, per stream, the
//! encoder its tokens are replayed as (0 = none; zlib or Go levels, pgzip, see [`replay`],
//! [`go_fast`] and [`klauspost`]); per block: BFINAL and BTYPE; for stored blocks the
//! padding bits and LEN; the block's decoded length; its tokens, coded by the [`model`]
//! against the decoded data; for dynamic blocks, whether the header is the one zlib
//! ([`zlib_trees`]) or Go or klauspost ([`go_trees`]) builds for those tokens, else its bits
//! verbatim (about 60-90 bytes); after
//! the last block, the final padding bits. Literals cost almost nothing (the data holds
//! their values), so the record's size measures how predictable the encoder's choices are.
//! [`Format::V1`] records (no replay, headers before the tokens) are still read.
//!
//! Memory is bounded by one block plus the 32 KiB window, whatever the stream's length.

pub mod bits;
pub mod block;
pub mod go_fast;
pub mod go_trees;
pub mod huffman;
pub mod klauspost;
pub mod model;
pub mod replay;
pub mod zlib_trees;

use std::io::{Read, Write};

use bits::{BitReader, BitWriter};
use block::{BlockHead, BlockKind, Token};
use huffman::BlockFreqs;
use model::{TokenModel, Window};

use crate::rc::{Coder, SureProb};
use crate::LayerError;

/// Shape of an analysed stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeflateStats {
    pub blocks: u64,
    pub tokens: u64,
    pub plain_bytes: u64,
}

pub use crate::Format;

/// Reusable analysis and rebuild state (window, model, token buffer).
#[derive(Debug, Default)]
pub struct Codec {
    window: Window,
    model: TokenModel,
    tokens: Vec<Token>,
    format: Format,
    /// Whether a dynamic header differs from zlib's, from Go's, and from the form older
    /// klauspost/compress writes, for the block (format 2).
    header_miss: [SureProb; 3],
}

impl Codec {
    /// A codec for records of `format`.
    pub fn new(format: Format) -> Self {
        Codec {
            format,
            ..Codec::default()
        }
    }

    fn reset_stream(&mut self) {
        self.window.reset();
        self.model.start_stream(0);
    }
}

/// Inflates one DEFLATE stream from `r`, writing its bytes to `plain` and its correction
/// into `c`. Stops after the last block and its padding bits, leaving `r` byte-aligned.
pub fn analyze<R: Read, W: Write, C: Coder>(
    codec: &mut Codec,
    r: &mut BitReader<R>,
    plain: &mut W,
    c: &mut C,
) -> Result<DeflateStats, LayerError> {
    debug_assert!(C::ENCODING);
    codec.reset_stream();
    let mut stats = DeflateStats::default();
    loop {
        let head = block::read_head(r)?;
        let start = codec.window.slide();
        codec.tokens.clear();
        block::read_body(r, &head, codec.window.buf_mut(), &mut codec.tokens)?;
        let end = codec.window.bytes().len();
        if stats.blocks == 0 && codec.format.replays_deflate() {
            let replay = replay::detect(codec.window.bytes(), start, end, &codec.tokens);
            c.direct(5, replay);
            codec.model.start_stream(replay);
        }
        code_head(c, &head, (end - start) as u64, codec.format);
        if matches!(head.kind, BlockKind::Stored { .. }) {
            codec.model.stored_block(&codec.window, start, end);
        } else {
            codec
                .model
                .code_block(c, &mut codec.window, start, end, &mut codec.tokens)?;
        }
        if let (
            Format::V2 | Format::V3,
            BlockKind::Dynamic {
                header,
                header_bits,
            },
        ) = (codec.format, &head.kind)
        {
            code_dynamic_header(c, codec, start, Some((header, *header_bits)))?;
        }
        plain
            .write_all(&codec.window.bytes()[start..end])
            .map_err(LayerError::Io)?;
        stats.blocks += 1;
        stats.tokens += codec.tokens.len() as u64;
        stats.plain_bytes += (end - start) as u64;
        if head.last {
            break;
        }
    }
    let pad_bits = r.bits_to_boundary();
    let pad = r.bits(pad_bits)?;
    c.direct(pad_bits, pad);
    Ok(stats)
}

/// Codes the dynamic header of the block just coded (its tokens in `codec.tokens`, its bytes
/// from `start`): whether it is the one zlib builds for them, else whether it is Go's (Go
/// first for a stream replayed as Go; klauspost's form first for pgzip), else verbatim. The
/// encoder passes the actual header.
fn code_dynamic_header<C: Coder>(
    c: &mut C,
    codec: &mut Codec,
    start: usize,
    actual: Option<(&[u8], u64)>,
) -> Result<(Vec<u8>, u64), LayerError> {
    let order: &[usize] = if codec.model.replays_pgzip() {
        &[2, 1, 0]
    } else if codec.model.replays_go() {
        &[1, 0]
    } else {
        &[0, 1]
    };
    let data = codec.window.bytes();
    let freqs = BlockFreqs::count(&codec.tokens, data, start);
    // klauspost's writer may go on with a block over later chunks: the header was built for
    // the first one.
    let first_chunk_freqs = codec
        .model
        .replays_pgzip()
        .then(|| klauspost::first_chunk(&codec.tokens))
        .filter(|first| first.len() < codec.tokens.len())
        .map(|first| BlockFreqs::count(first, data, start));
    let go_freqs = first_chunk_freqs.as_ref().unwrap_or(&freqs);
    for &flavor in order {
        let predicted = match (flavor, &freqs, go_freqs) {
            (0, Some(f), _) => zlib_trees::dynamic_header(f),
            (1, _, Some(f)) => go_trees::dynamic_header(f, false),
            // klauspost/compress 1.17 (not 1.20) lists all codes in a block more may follow.
            (2, _, Some(f)) => go_trees::dynamic_header(f, true),
            _ => None,
        };
        let hit = actual.is_some_and(|(h, bits)| {
            predicted
                .as_ref()
                .is_some_and(|(ph, pbits)| ph == h && *pbits == bits)
        });
        if !c.sure_bit(&mut codec.header_miss[flavor], !hit) {
            return predicted
                .ok_or_else(|| LayerError::Mismatch("no predicted header for the block".into()));
        }
    }
    match actual {
        Some((header, bits)) => {
            code_header_bits(c, header, bits);
            Ok((header.to_vec(), bits))
        }
        None => read_header_bits(c),
    }
}

/// Codes a dynamic header's bits verbatim (their count, then the bits).
fn code_header_bits<C: Coder>(c: &mut C, header: &[u8], header_bits: u64) {
    c.count(header_bits);
    let mut left = header_bits;
    for &b in header {
        let n = left.min(8) as u32;
        c.direct(n, b as u32);
        left -= n as u64;
    }
}

/// Reads what [`code_header_bits`] wrote.
fn read_header_bits<C: Coder>(c: &mut C) -> Result<(Vec<u8>, u64), LayerError> {
    let header_bits = c.count(0);
    if header_bits > 20_000 {
        return Err(LayerError::Mismatch("dynamic header too long".into()));
    }
    let mut hw = BitWriter::default();
    let mut left = header_bits;
    while left > 0 {
        let n = left.min(8) as u32;
        hw.put(n, c.direct(n, 0));
        left -= n as u64;
    }
    Ok(hw.into_parts())
}

/// Codes BFINAL, BTYPE and what the block needs before its tokens: for format 1 a dynamic
/// header comes here; format 2 codes it after the tokens, which predict it.
fn code_head<C: Coder>(c: &mut C, head: &BlockHead, plain_len: u64, format: Format) {
    c.direct(1, head.last as u32);
    match &head.kind {
        BlockKind::Stored { pad_bits, pad, len } => {
            c.direct(2, 0);
            c.direct(*pad_bits, *pad);
            c.direct(16, *len as u32);
        }
        BlockKind::Fixed => {
            c.direct(2, 1);
            c.count(plain_len);
        }
        BlockKind::Dynamic {
            header,
            header_bits,
        } => {
            c.direct(2, 2);
            if format == Format::V1 {
                code_header_bits(c, header, *header_bits);
            }
            c.count(plain_len);
        }
    }
}

/// Rebuilds one DEFLATE stream: reads its decoded bytes from `plain` and the correction from
/// `c`, writes the compressed bytes to `out`. `w` carries bits across calls (a container
/// continues at the byte boundary the stream ends on).
pub fn rebuild<P: Read, W: Write, C: Coder>(
    codec: &mut Codec,
    c: &mut C,
    plain: &mut P,
    w: &mut BitWriter,
    out: &mut W,
) -> Result<DeflateStats, LayerError> {
    debug_assert!(!C::ENCODING);
    codec.reset_stream();
    let mut stats = DeflateStats::default();
    loop {
        if c.exhausted() {
            return Err(LayerError::Mismatch("correction record ends early".into()));
        }
        if stats.blocks == 0 && codec.format.replays_deflate() {
            let replay = c.direct(5, 0);
            if replay > replay::MAX_REPLAY {
                return Err(LayerError::Mismatch("unknown replay in correction".into()));
            }
            codec.model.start_stream(replay);
        }
        let last = c.direct(1, 0) == 1;
        let btype = c.direct(2, 0);
        let start = codec.window.slide();
        codec.tokens.clear();
        let (head, plain_len) = match btype {
            0 => {
                let pad_bits = (w.bits_to_boundary() + 5) % 8;
                let pad = c.direct(pad_bits, 0);
                let len = c.direct(16, 0) as u16;
                read_plain(plain, codec.window.buf_mut(), len as usize)?;
                let end = codec.window.bytes().len();
                codec.model.stored_block(&codec.window, start, end);
                let kind = BlockKind::Stored { pad_bits, pad, len };
                (stored_or_fixed(last, kind)?, len as usize)
            }
            1 => {
                let plain_len = rebuild_tokens(c, codec, plain, start)?;
                (stored_or_fixed(last, BlockKind::Fixed)?, plain_len)
            }
            // Format 2 codes the header after the tokens (predicted from them).
            2 if codec.format.replays_deflate() => {
                let plain_len = rebuild_tokens(c, codec, plain, start)?;
                let (header, header_bits) = code_dynamic_header(c, codec, start, None)?;
                (dynamic_head(last, header, header_bits)?, plain_len)
            }
            2 => {
                let (header, header_bits) = read_header_bits(c)?;
                let head = dynamic_head(last, header, header_bits)?;
                (head, rebuild_tokens(c, codec, plain, start)?)
            }
            _ => {
                return Err(LayerError::Mismatch(
                    "reserved block type in correction".into(),
                ))
            }
        };
        write_block(codec, w, &head, start)?;
        out.write_all(&w.take_bytes()).map_err(LayerError::Io)?;
        stats.blocks += 1;
        stats.tokens += codec.tokens.len() as u64;
        stats.plain_bytes += plain_len as u64;
        if last {
            break;
        }
    }
    let pad_bits = w.bits_to_boundary();
    let pad = c.direct(pad_bits, 0);
    w.put(pad_bits, pad);
    out.write_all(&w.take_bytes()).map_err(LayerError::Io)?;
    Ok(stats)
}

/// A stored or fixed block's head (their codes need nothing from the record).
fn stored_or_fixed(last: bool, kind: BlockKind) -> Result<BlockHead, LayerError> {
    let codes = match kind {
        BlockKind::Fixed => Some(block::fixed_codes()?),
        _ => None,
    };
    Ok(BlockHead { last, kind, codes })
}

/// Reads a coded block's decoded bytes (as many as the record says) and decodes its tokens
/// into `codec.tokens`; returns the byte count.
fn rebuild_tokens<C: Coder, P: Read>(
    c: &mut C,
    codec: &mut Codec,
    plain: &mut P,
    start: usize,
) -> Result<usize, LayerError> {
    let plain_len = read_plain_len(c)?;
    read_plain(plain, codec.window.buf_mut(), plain_len)?;
    let end = codec.window.bytes().len();
    codec
        .model
        .code_block(c, &mut codec.window, start, end, &mut codec.tokens)?;
    Ok(plain_len)
}

fn read_plain_len<C: Coder>(c: &mut C) -> Result<usize, LayerError> {
    let len = c.count(0);
    if len > block::MAX_BLOCK_PLAIN as u64 {
        return Err(LayerError::Mismatch(
            "block length in correction too large".into(),
        ));
    }
    Ok(len as usize)
}

fn dynamic_head(last: bool, header: Vec<u8>, header_bits: u64) -> Result<BlockHead, LayerError> {
    let codes = block::read_dynamic_codes(&mut BitReader::new(&header[..]))?;
    Ok(BlockHead {
        last,
        kind: BlockKind::Dynamic {
            header,
            header_bits,
        },
        codes: Some(codes),
    })
}

/// Writes a block's header and body: its tokens with its codes, or its bytes if stored.
fn write_block(
    codec: &Codec,
    w: &mut BitWriter,
    head: &BlockHead,
    start: usize,
) -> Result<(), LayerError> {
    block::write_head(w, head);
    let data = codec.window.bytes();
    let Some(codes) = head.codes.as_ref() else {
        w.put_bytes(&data[start..]);
        return Ok(());
    };
    let mut p = start;
    for &t in &codec.tokens {
        block::write_token(w, codes, t, data[p])?;
        p += if t == 0 {
            1
        } else {
            block::unpack(t).0 as usize
        };
    }
    block::write_end(w, codes)
}

fn read_plain<P: Read>(plain: &mut P, buf: &mut Vec<u8>, len: usize) -> Result<(), LayerError> {
    let start = buf.len();
    buf.resize(start + len, 0);
    plain
        .read_exact(&mut buf[start..])
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                LayerError::Mismatch("decoded data ends early".into())
            }
            _ => LayerError::Io(e),
        })
}
