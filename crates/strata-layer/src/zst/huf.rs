//! Huffman-coded literals (RFC 8878 section 4.2): the weight description, the canonical
//! codes it implies, and the backward bit streams literals are packed into.

use super::backbits::BackBits;
use super::fse::{read_ncount, Table};
use crate::deflate::bits::BitWriter;
use crate::LayerError;

/// Longest code a zstd Huffman table may hold.
const MAX_BITS: u32 = 11;

/// A literal code table: per byte value its code length (0 = absent) and code, plus the
/// lookup table that decodes `max_bits` bits at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HufTable {
    max_bits: u32,
    nbits: [u8; 256],
    code: [u16; 256],
    /// Indexed by the next `max_bits` bits: (symbol, code length).
    lookup: Vec<(u8, u8)>,
}

fn bad(msg: &str) -> LayerError {
    LayerError::Zstd(msg.into())
}

impl HufTable {
    /// Parses a weight description at the front of `src`; returns the table and the bytes
    /// the description took.
    pub fn read(src: &[u8]) -> Result<(HufTable, usize), LayerError> {
        let head = *src
            .first()
            .ok_or_else(|| bad("huffman description is missing"))? as usize;
        let (weights, used) = if head >= 128 {
            let count = head - 127;
            let bytes = count.div_ceil(2);
            let body = src
                .get(1..1 + bytes)
                .ok_or_else(|| bad("huffman weights are truncated"))?;
            let w = (0..count)
                .map(|i| {
                    if i % 2 == 0 {
                        body[i / 2] >> 4
                    } else {
                        body[i / 2] & 15
                    }
                })
                .collect::<Vec<u8>>();
            (w, 1 + bytes)
        } else {
            let body = src
                .get(1..1 + head)
                .ok_or_else(|| bad("huffman weights are truncated"))?;
            (fse_weights(body)?, 1 + head)
        };
        Ok((HufTable::from_weights(&weights)?, used))
    }

    fn from_weights(given: &[u8]) -> Result<HufTable, LayerError> {
        if given.len() > 255 {
            return Err(bad("more than 255 huffman weights"));
        }
        let mut sum = 0u32;
        for &w in given {
            if w > MAX_BITS as u8 {
                return Err(bad("huffman weight too large"));
            }
            if w > 0 {
                sum += 1 << (w - 1);
            }
        }
        if sum == 0 {
            return Err(bad("huffman weights are all zero"));
        }
        let max_bits = 32 - sum.leading_zeros();
        let rest = (1u32 << max_bits) - sum;
        if max_bits > MAX_BITS || !rest.is_power_of_two() {
            return Err(bad("huffman weights do not form a complete code"));
        }
        let mut weights = given.to_vec();
        weights.push((rest.trailing_zeros() + 1) as u8);
        let mut t = HufTable {
            max_bits,
            nbits: [0; 256],
            code: [0; 256],
            lookup: vec![(0, 0); 1 << max_bits],
        };
        let mut start = 0usize;
        for w in 1..=max_bits as u8 {
            for (s, _) in weights.iter().enumerate().filter(|(_, &x)| x == w) {
                let span = 1usize << (w - 1);
                let nb = max_bits as u8 + 1 - w;
                t.nbits[s] = nb;
                t.code[s] = (start >> (w - 1)) as u16;
                t.lookup[start..start + span].fill((s as u8, nb));
                start += span;
            }
        }
        Ok(t)
    }

    /// Decodes `count` literals from one backward stream, which they must use up exactly.
    pub fn decode(&self, stream: &[u8], count: usize, out: &mut Vec<u8>) -> Result<(), LayerError> {
        let mut r = BackBits::new(stream)?;
        for _ in 0..count {
            let (s, nb) = self.lookup[r.peek(self.max_bits) as usize];
            r.skip(nb as u32);
            out.push(s);
        }
        if !r.is_exactly_used() {
            return Err(bad("huffman stream length does not match its literals"));
        }
        Ok(())
    }

    /// Encodes literals into one backward stream (the inverse of [`HufTable::decode`]).
    pub fn encode(&self, lits: &[u8]) -> Result<Vec<u8>, LayerError> {
        let mut w = BitWriter::default();
        for &s in lits.iter().rev() {
            let nb = self.nbits[s as usize];
            if nb == 0 {
                return Err(bad("literal has no huffman code"));
            }
            w.put(nb as u32, self.code[s as usize] as u32);
        }
        w.put(1, 1);
        Ok(w.into_parts().0)
    }
}

/// Weights compressed with FSE: two interleaved states over one backward stream.
fn fse_weights(body: &[u8]) -> Result<Vec<u8>, LayerError> {
    let (norm, log, used) = read_ncount(body, 6, 12)?;
    let table = Table::build(&norm, log)?;
    let mut r = BackBits::new(&body[used..])?;
    let mut states = [r.read(log) as usize, r.read(log) as usize];
    let mut out = Vec::new();
    let mut turn = 0;
    loop {
        if out.len() >= 255 {
            return Err(bad("too many huffman weights"));
        }
        let e = table.entries[states[turn]];
        out.push(e.symbol);
        states[turn] = e.base as usize + r.read(e.nbits as u32) as usize;
        if r.overflowed() {
            out.push(table.entries[states[1 - turn]].symbol);
            break;
        }
        turn = 1 - turn;
    }
    Ok(out)
}
