//! How a [`BlockPlan`] is written into the correction record: one symmetric function for
//! both directions (see [`crate::rc`]). Sizes and shapes are coded adaptively; table
//! descriptions verbatim; sequences code by code with adaptive trees.

use super::block::{self, BlockPlan, Seq, COMPRESSED, LIT_COMPRESSED, MAX_BLOCK};
use crate::rc::{Coder, Prob};
use crate::LayerError;

/// Longest table description or Huffman description a record may carry.
const MAX_DESCRIPTION: u64 = 1024;

/// Adaptive probabilities, kept for a whole stream.
#[derive(Debug, Clone)]
pub struct PlanModel {
    last: Prob,
    kind: [Prob; 4],
    lit_kind: [Prob; 4],
    lit_format: [[Prob; 4]; 4],
    nseq_bytes: [Prob; 4],
    modes: [Prob; 256],
    bytes: [Prob; 256],
    ll: [[Prob; 64]; 2],
    ml: [[Prob; 64]; 2],
    rep: [[Prob; 4]; 2],
    is_rep: [Prob; 2],
    of: [Prob; 32],
}

impl Default for PlanModel {
    fn default() -> Self {
        let p = Prob::default();
        PlanModel {
            last: p,
            kind: [p; 4],
            lit_kind: [p; 4],
            lit_format: [[p; 4]; 4],
            nseq_bytes: [p; 4],
            modes: [p; 256],
            bytes: [p; 256],
            ll: [[p; 64]; 2],
            ml: [[p; 64]; 2],
            rep: [[p; 4]; 2],
            is_rep: [p; 2],
            of: [p; 32],
        }
    }
}

fn bad(msg: &str) -> LayerError {
    LayerError::Recipe(format!("zstd record: {msg}"))
}

fn code_bytes<C: Coder>(
    c: &mut C,
    probs: &mut [Prob; 256],
    v: &mut Vec<u8>,
) -> Result<(), LayerError> {
    let n = c.count(v.len() as u64);
    if n > MAX_DESCRIPTION {
        return Err(bad("description too long"));
    }
    if !C::ENCODING {
        v.resize(n as usize, 0);
    }
    for b in v.iter_mut() {
        *b = c.tree(probs, 8, *b as u32) as u8;
    }
    Ok(())
}

/// The block's header fields: last flag, kind, decoded size.
pub fn code_head<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    p: &mut BlockPlan,
) -> Result<(), LayerError> {
    p.last = c.bit(&mut m.last, p.last);
    p.kind = c.tree(&mut m.kind, 2, p.kind as u32) as u8;
    p.regen = c.count(p.regen as u64) as u32;
    if p.kind > COMPRESSED || p.regen as usize > MAX_BLOCK || c.exhausted() {
        return Err(bad("bad block head"));
    }
    Ok(())
}

/// The rest of a compressed block's plan (the caller coded its head).
pub fn code_body<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    p: &mut BlockPlan,
) -> Result<(), LayerError> {
    p.lit_kind = c.tree(&mut m.lit_kind, 2, p.lit_kind as u32) as u8;
    p.lit_format = c.tree(
        &mut m.lit_format[p.lit_kind as usize],
        2,
        p.lit_format as u32,
    ) as u8;
    if p.lit_kind == LIT_COMPRESSED {
        code_bytes(c, &mut m.bytes, &mut p.huf)?;
    }
    p.nseq_bytes = c.tree(&mut m.nseq_bytes, 2, p.nseq_bytes as u32) as u8;
    let n = c.count(p.seqs.len() as u64);
    if n > MAX_BLOCK as u64 || c.exhausted() {
        return Err(bad("too many sequences"));
    }
    if n == 0 {
        return Ok(());
    }
    p.modes = c.tree(&mut m.modes, 8, p.modes as u32) as u8;
    for t in p.tables.iter_mut() {
        code_bytes(c, &mut m.bytes, t)?;
    }
    for s in p.last_states.iter_mut() {
        *s = c.direct(9, *s as u32) as u16;
    }
    if !C::ENCODING {
        p.seqs.resize(n as usize, Seq::default());
    }
    let mut prev_ll0 = 0usize;
    for s in p.seqs.iter_mut() {
        code_seq(c, m, s, prev_ll0)?;
        prev_ll0 = (s.ll == 0) as usize;
        if c.exhausted() {
            return Err(bad("record ends inside the sequences"));
        }
    }
    Ok(())
}

fn code_value<C: Coder>(
    c: &mut C,
    probs: &mut [Prob; 64],
    base: &[u32],
    bits: &[u8],
    v: u32,
    code: u8,
) -> Result<u32, LayerError> {
    let code = c.tree(probs, 6, code as u32) as usize;
    if code >= base.len() {
        return Err(bad("length code out of range"));
    }
    let extra = c.direct(bits[code] as u32, v.wrapping_sub(base[code]));
    Ok(base[code] + extra)
}

fn code_seq<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    s: &mut Seq,
    ctx: usize,
) -> Result<(), LayerError> {
    s.ll = code_value(
        c,
        &mut m.ll[ctx],
        &block::LL_BASE,
        &block::LL_BITS,
        s.ll,
        block::ll_code(s.ll),
    )?;
    let ctx = (s.ll == 0) as usize;
    let is_rep = c.bit(&mut m.is_rep[ctx], s.of <= 3);
    s.of = if is_rep {
        let r = c.tree(&mut m.rep[ctx], 2, s.of.wrapping_sub(1)) + 1;
        if r > 3 {
            return Err(bad("repeat offset index out of range"));
        }
        r
    } else {
        let code = c.tree(&mut m.of, 5, block::of_code(s.of.max(1)) as u32);
        if code < 2 {
            return Err(bad("offset code too small for a distance"));
        }
        (1 << code) + c.direct(code, s.of.wrapping_sub(1 << code))
    };
    s.ml = code_value(
        c,
        &mut m.ml[ctx],
        &block::ML_BASE,
        &block::ML_BITS,
        s.ml,
        block::ml_code(s.ml.max(3)),
    )?;
    Ok(())
}
