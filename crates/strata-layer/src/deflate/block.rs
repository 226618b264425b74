//! Parsing DEFLATE blocks into what a rebuild needs: the block header exactly as written, the
//! decoded bytes, and the token sequence (literals and matches) the encoder chose.

use std::io::Read;

use super::bits::{BitReader, BitWriter};
use super::huffman::{self, Huffman, DIST_BASE, DIST_EXTRA, LEN_BASE, LEN_EXTRA};
use crate::LayerError;

/// Largest decoded size of one block we accept; real encoders stay far below (zlib and Go
/// emit blocks of at most a few hundred KiB).
pub const MAX_BLOCK_PLAIN: usize = 64 << 20;

/// A token packed in a `u32`: 0 is a literal (its byte is in the decoded data), otherwise
/// `len << 16 | dist`.
pub type Token = u32;

/// Packs a match.
#[inline]
pub fn match_token(len: u16, dist: u16) -> Token {
    ((len as u32) << 16) | dist as u32
}

/// The length and distance of a match token.
#[inline]
pub fn unpack(t: Token) -> (u16, u16) {
    ((t >> 16) as u16, t as u16)
}

/// How a block codes its content.
#[derive(Debug, Clone)]
pub enum BlockKind {
    /// Raw bytes: the value of the padding bits before LEN, and LEN.
    Stored { pad_bits: u32, pad: u32, len: u16 },
    /// The fixed Huffman codes.
    Fixed,
    /// Own codes; `header` holds the header's bits after BTYPE exactly as written.
    Dynamic { header: Vec<u8>, header_bits: u64 },
}

/// A parsed block header with the codes it uses.
#[derive(Debug, Clone)]
pub struct BlockHead {
    pub last: bool,
    pub kind: BlockKind,
    pub codes: Option<(Huffman, Huffman)>,
}

/// Reads BFINAL, BTYPE and the rest of the block header.
pub fn read_head<R: Read>(r: &mut BitReader<R>) -> Result<BlockHead, LayerError> {
    let last = r.bits(1)? == 1;
    match r.bits(2)? {
        0 => {
            let pad_bits = r.bits_to_boundary();
            let pad = r.bits(pad_bits)?;
            let len = r.bits(16)? as u16;
            let nlen = r.bits(16)? as u16;
            if nlen != !len {
                return Err(LayerError::Deflate(
                    "stored block length check fails".into(),
                ));
            }
            Ok(BlockHead {
                last,
                kind: BlockKind::Stored { pad_bits, pad, len },
                codes: None,
            })
        }
        1 => Ok(BlockHead {
            last,
            kind: BlockKind::Fixed,
            codes: Some(fixed_codes()?),
        }),
        2 => {
            r.start_recording();
            let codes = read_dynamic_codes(r);
            let (header, header_bits) = r.take_recording().into_parts();
            Ok(BlockHead {
                last,
                kind: BlockKind::Dynamic {
                    header,
                    header_bits,
                },
                codes: Some(codes?),
            })
        }
        _ => Err(LayerError::Deflate("reserved block type 3".into())),
    }
}

/// The fixed literal/length and distance codes.
pub fn fixed_codes() -> Result<(Huffman, Huffman), LayerError> {
    Ok((
        Huffman::new(&huffman::fixed_litlen_lengths())?,
        Huffman::new(&huffman::fixed_dist_lengths())?,
    ))
}

/// Reads a dynamic header's code lengths (after BTYPE) and builds the two codes.
pub fn read_dynamic_codes<R: Read>(r: &mut BitReader<R>) -> Result<(Huffman, Huffman), LayerError> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let hlit = r.bits(5)? as usize + 257;
    let hdist = r.bits(5)? as usize + 1;
    let hclen = r.bits(4)? as usize + 4;
    if hlit > 286 {
        return Err(LayerError::Deflate(
            "more than 286 literal/length codes".into(),
        ));
    }
    let mut cl = [0u8; 19];
    for &i in &ORDER[..hclen] {
        cl[i] = r.bits(3)? as u8;
    }
    let cl_code = Huffman::new(&cl)?;
    let mut lengths = vec![0u8; hlit + hdist];
    let mut i = 0;
    while i < lengths.len() {
        let sym = decode(r, &cl_code)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                let prev = *lengths[..i].last().ok_or_else(|| {
                    LayerError::Deflate("repeat code with no previous length".into())
                })?;
                (prev, 3 + r.bits(2)? as usize)
            }
            17 => (0, 3 + r.bits(3)? as usize),
            _ => (0, 11 + r.bits(7)? as usize),
        };
        if i + repeat > lengths.len() {
            return Err(LayerError::Deflate(
                "code lengths overrun the header".into(),
            ));
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err(LayerError::Deflate("no end-of-block code".into()));
    }
    Ok((
        Huffman::new(&lengths[..hlit])?,
        Huffman::new(&lengths[hlit..])?,
    ))
}

/// Decodes one symbol.
#[inline]
pub fn decode<R: Read>(r: &mut BitReader<R>, code: &Huffman) -> Result<u16, LayerError> {
    let bits = r.peek(code.max_len())?;
    let (sym, len) = code
        .lookup(bits)
        .ok_or_else(|| LayerError::Deflate("invalid huffman code".into()))?;
    r.consume(len)?;
    Ok(sym)
}

/// Decodes a block's content, appending its bytes to `window` (which holds up to 32 KiB of
/// earlier output for matches to reach back into) and its tokens to `tokens`.
pub fn read_body<R: Read>(
    r: &mut BitReader<R>,
    head: &BlockHead,
    window: &mut Vec<u8>,
    tokens: &mut Vec<Token>,
) -> Result<(), LayerError> {
    let start = window.len();
    if let BlockKind::Stored { len, .. } = head.kind {
        let len = len as usize;
        window.resize(start + len, 0);
        let mut got = 0;
        while got < len {
            let n = r.read_bytes(&mut window[start + got..])?;
            if n == 0 {
                return Err(LayerError::Truncated);
            }
            got += n;
        }
        return Ok(());
    }
    let Some((litlen, dist)) = head.codes.as_ref() else {
        return Err(LayerError::Deflate("block has no codes".into()));
    };
    loop {
        let sym = decode(r, litlen)? as usize;
        if sym < 256 {
            window.push(sym as u8);
            tokens.push(0);
        } else if sym == 256 {
            return Ok(());
        } else {
            let i = sym - 257;
            if i >= 29 {
                return Err(LayerError::Deflate("invalid length symbol".into()));
            }
            let len = LEN_BASE[i] as usize + r.bits(LEN_EXTRA[i] as u32)? as usize;
            if len > 258 {
                return Err(LayerError::Unsupported(
                    "length 258 coded with symbol 284".into(),
                ));
            }
            let dsym = decode(r, dist)? as usize;
            if dsym >= 30 {
                return Err(LayerError::Deflate("invalid distance symbol".into()));
            }
            let d = DIST_BASE[dsym] as usize + r.bits(DIST_EXTRA[dsym] as u32)? as usize;
            if d > window.len() {
                return Err(LayerError::Deflate(
                    "distance reaches before the stream start".into(),
                ));
            }
            let from = window.len() - d;
            for k in 0..len {
                let b = window[from + k];
                window.push(b);
            }
            tokens.push(match_token(len as u16, d as u16));
        }
        if window.len() - start > MAX_BLOCK_PLAIN {
            return Err(LayerError::Limit(
                "deflate block decodes to more than 64 MiB".into(),
            ));
        }
    }
}

/// Writes a block header: BFINAL, BTYPE and, for dynamic blocks, the recorded header bits.
pub fn write_head(w: &mut BitWriter, head: &BlockHead) {
    w.put(1, head.last as u32);
    match &head.kind {
        BlockKind::Stored { pad, len, .. } => {
            w.put(2, 0);
            w.put(w.bits_to_boundary(), *pad);
            w.put(16, *len as u32);
            w.put(16, !*len as u32);
        }
        BlockKind::Fixed => w.put(2, 1),
        BlockKind::Dynamic {
            header,
            header_bits,
        } => {
            w.put(2, 2);
            let mut left = *header_bits;
            for &b in header {
                let n = left.min(8) as u32;
                w.put(n, b as u32);
                left -= n as u64;
            }
        }
    }
}

/// Writes one token with the block's codes; `byte` is the literal's value.
#[inline]
pub fn write_token(
    w: &mut BitWriter,
    codes: &(Huffman, Huffman),
    t: Token,
    byte: u8,
) -> Result<(), LayerError> {
    let missing = || LayerError::Mismatch("token has no code in the block's huffman table".into());
    if t == 0 {
        let (c, l) = codes.0.code(byte as usize);
        if l == 0 {
            return Err(missing());
        }
        w.put(l, c);
        return Ok(());
    }
    let (len, dist) = unpack(t);
    // A damaged correction record can decode to any token: refuse what DEFLATE cannot code.
    if !(3..=258).contains(&len) || !(1..=32768).contains(&dist) {
        return Err(LayerError::Mismatch(format!(
            "match of length {len} at distance {dist} cannot be coded"
        )));
    }
    let (sym, extra) = huffman::length_symbol(len);
    let (c, l) = codes.0.code(sym);
    if l == 0 {
        return Err(missing());
    }
    w.put(l, c);
    w.put(LEN_EXTRA[sym - 257] as u32, extra);
    let (dsym, dextra) = huffman::distance_symbol(dist);
    let (c, l) = codes.1.code(dsym);
    if l == 0 {
        return Err(missing());
    }
    w.put(l, c);
    w.put(DIST_EXTRA[dsym] as u32, dextra);
    Ok(())
}

/// Writes the end-of-block code.
pub fn write_end(w: &mut BitWriter, codes: &(Huffman, Huffman)) -> Result<(), LayerError> {
    let (c, l) = codes.0.code(256);
    if l == 0 {
        return Err(LayerError::Mismatch(
            "block table lacks end-of-block".into(),
        ));
    }
    w.put(l, c);
    Ok(())
}
