//! How a [`BlockPlan`] is written into the correction record: one symmetric function for
//! both directions (see [`crate::rc`]). Sizes and shapes are coded adaptively, table
//! descriptions verbatim. Sequences are coded against the frame's decoded bytes, which
//! both sides hold ([`Matcher`]): a literal length as one decision per position where a
//! match could start ("does it start here?"), an offset as a repeat offset, one of the two
//! matches a hash-table encoder would find, a rank in a hash chain, or (rarely) explicitly;
//! a match length as how far short of the longest possible match it stops (almost always
//! not at all). The record's size therefore measures how far an encoder strays from these
//! guesses. A frame one of the replayed encoders wrote ([`super::replay`]) is coded against
//! that encoder's own sequences instead: one bit per sequence, its fields only on a miss.

use std::ops::Range;

use super::block::{self, BlockPlan, Seq, COMPRESSED, LIT_COMPRESSED, MAX_BLOCK, MAX_ML};
use super::matcher::{Matcher, Reps};
use super::replay::{is_hit, next_guess, ReplayProbs, Replays};
use super::FrameHeader;
use crate::rc::{Coder, Prob};
use crate::{Format, LayerError};

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
    min_match: [Prob; 8],
    ll: [Prob; 64],
    ll_escape: [Prob; 3],
    starts: [[Prob; 8]; 3],
    is_rep: [[Prob; 2]; 2],
    rep: [[Prob; 4]; 2],
    quick: [[Prob; 4]; 3],
    long_match: Prob,
    longest: [Prob; 2],
    listed: Prob,
    rank: [Prob; 32],
    of: [Prob; 32],
    full_length: [Prob; 2],
    short_by: [Prob; 32],
    replayed_frame: ReplayProbs,
    replayed: [Prob; 2],
    explicit_rep: [Prob; 2],
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
            min_match: [p; 8],
            ll: [p; 64],
            ll_escape: [p; 3],
            starts: [[p; 8]; 3],
            is_rep: [[p; 2]; 2],
            rep: [[p; 4]; 2],
            quick: [[p; 4]; 3],
            long_match: p,
            longest: [p; 2],
            listed: p,
            rank: [p; 32],
            of: [p; 32],
            full_length: [p; 2],
            short_by: [p; 32],
            replayed_frame: ReplayProbs::default(),
            replayed: [p; 2],
            explicit_rep: [p; 2],
        }
    }
}

/// What the sequence model sees of a frame: its bytes and repeat offsets.
#[derive(Debug)]
pub struct FrameState {
    pub bytes: Matcher,
    pub reps: Reps,
    candidates: Vec<(u64, usize)>,
    quick: Vec<(u64, usize)>,
    matchable: Vec<bool>,
    replays: Replays,
    /// Sequences coded as the replay's guess.
    pub replayed: u64,
}

impl FrameState {
    /// The state of a frame with this header, for a record of this format.
    pub fn new(frame: &FrameHeader, format: Format) -> Self {
        FrameState {
            bytes: Matcher::new(frame.window),
            reps: Reps::default(),
            candidates: Vec::new(),
            quick: Vec::new(),
            matchable: Vec::new(),
            replays: Replays::new(frame, format.replays_zstd()),
            replayed: 0,
        }
    }

    /// Runs the encoders' replays over the block the frame's bytes end with (every block of
    /// a frame, whatever its kind, in order; `compressed`: the stream holds it compressed).
    pub fn replay_block(&mut self, block: Range<u64>, compressed: bool) {
        let (buf, base) = self.bytes.held();
        self.replays.run(buf, base, block, compressed);
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
///
/// `frame` holds the frame's bytes through this block, which spans `block`; its repeat
/// offsets are those before the block and move as the sequences are coded.
pub fn code_body<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    p: &mut BlockPlan,
    frame: &mut FrameState,
    block: Range<u64>,
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
    code_seqs(c, m, &mut p.seqs, frame, block)
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

/// Codes a number of any size: its bit length adaptively, then the bits below the top one.
fn code_gamma<C: Coder>(c: &mut C, probs: &mut [Prob; 32], v: u64) -> u64 {
    let v = v.min(u32::MAX as u64 - 1) + 1;
    let len = if C::ENCODING {
        64 - v.leading_zeros()
    } else {
        0
    };
    let len = c.tree(probs, 5, len.saturating_sub(1)) + 1;
    let rest = c.direct(
        len - 1,
        if C::ENCODING {
            (v - (1u64 << (len - 1))) as u32
        } else {
            0
        },
    );
    ((1u64 << (len - 1)) | rest as u64) - 1
}

/// Codes a block's sequences against the frame's bytes (see the module docs).
fn code_seqs<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    seqs: &mut [Seq],
    frame: &mut FrameState,
    block: Range<u64>,
) -> Result<(), LayerError> {
    let was_chosen = frame.replays.chosen();
    if frame
        .replays
        .decide(c, &mut m.replayed_frame, seqs, block.start)
    {
        if !was_chosen {
            frame.bytes.stop_chains();
        }
        return code_replayed_seqs(c, m, seqs, frame, block);
    }
    let min_seen = seqs
        .iter()
        .filter(|s| s.of > 3)
        .map(|s| s.ml)
        .min()
        .unwrap_or(4);
    let min = c.tree(&mut m.min_match, 3, min_seen.clamp(3, 10) - 3) as usize + 3;
    let mut p = block.start;
    let mut prev_run = 0usize;
    for s in seqs.iter_mut() {
        let q = code_literal_length(c, m, s, frame, p, &block, min, prev_run.min(2))?;
        if q >= block.end {
            return Err(bad("literal length runs past the block"));
        }
        prev_run = (q - p) as usize;
        let d = code_offset(c, m, s, frame, q, &block, min)?;
        p = code_match_length(c, m, s, frame, q, d, &block)?;
    }
    Ok(())
}

/// Codes a match length as how far short of the longest match `d` back from `q` it stops;
/// returns where the match ends.
fn code_match_length<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    s: &mut Seq,
    frame: &FrameState,
    q: u64,
    d: u64,
    block: &Range<u64>,
) -> Result<u64, LayerError> {
    let longest = frame.bytes.match_len(q, d, block.end, MAX_ML as usize);
    let full = c.bit(
        &mut m.full_length[(s.ll == 0) as usize],
        s.ml as usize == longest,
    );
    s.ml = if full {
        longest as u32
    } else {
        let short = code_gamma(
            c,
            &mut m.short_by,
            longest.saturating_sub(s.ml as usize) as u64,
        );
        longest.saturating_sub(short as usize) as u32
    };
    if s.ml < 3 {
        return Err(bad("match shorter than three bytes"));
    }
    let end = q + s.ml as u64;
    if c.exhausted() || end > block.end {
        return Err(bad("sequences run past the block"));
    }
    Ok(end)
}

/// Codes a block's sequences against the replay's guesses: per sequence, whether it is the
/// guess at its position; if not, its fields explicitly.
fn code_replayed_seqs<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    seqs: &mut [Seq],
    frame: &mut FrameState,
    block: Range<u64>,
) -> Result<(), LayerError> {
    let (mut p, mut cursor, mut last_hit) = (block.start, 0, true);
    for s in seqs.iter_mut() {
        let guess = next_guess(frame.replays.guesses(), &mut cursor, p);
        let hit = match guess {
            Some(g) if g.at < block.end => {
                let hit = c.bit(&mut m.replayed[last_hit as usize], is_hit(s, p, guess));
                if hit {
                    *s = Seq {
                        ll: (g.at - p) as u32,
                        ml: g.ml,
                        of: g.of,
                    };
                }
                hit
            }
            _ => false,
        };
        last_hit = hit;
        frame.replayed += hit as u64;
        if !hit {
            s.ll = code_explicit_ll(c, m, s.ll)?;
            let ll0 = (s.ll == 0) as usize;
            if c.bit(&mut m.explicit_rep[ll0], s.of <= 3) {
                s.of = code_rep_index(c, &mut m.rep[ll0], s.of)?;
            } else {
                s.of = code_explicit_offset(c, m, s.of)?;
            }
        }
        let q = p + s.ll as u64;
        if q >= block.end {
            return Err(bad("literal length runs past the block"));
        }
        let d = frame.reps.resolve(s.of, s.ll)? as u64;
        if !frame.bytes.reaches(q, d) {
            return Err(bad("offset reaches before the window"));
        }
        p = if hit {
            q + s.ml as u64
        } else {
            code_match_length(c, m, s, frame, q, d, &block)?
        };
        if s.ml < 3 || c.exhausted() || p > block.end {
            return Err(bad("sequences run past the block"));
        }
    }
    Ok(())
}

/// Codes a literal length by its code and extra bits.
fn code_explicit_ll<C: Coder>(c: &mut C, m: &mut PlanModel, ll: u32) -> Result<u32, LayerError> {
    code_value(
        c,
        &mut m.ll,
        &block::LL_BASE,
        &block::LL_BITS,
        ll,
        block::ll_code(ll),
    )
}

/// Codes an offset value of 1-3 (a repeat offset).
fn code_rep_index<C: Coder>(c: &mut C, probs: &mut [Prob; 4], of: u32) -> Result<u32, LayerError> {
    let of = c.tree(probs, 2, of.wrapping_sub(1)) + 1;
    if of > 3 {
        return Err(bad("repeat offset index out of range"));
    }
    Ok(of)
}

/// Codes an offset value above 3 by its offset code and extra bits.
fn code_explicit_offset<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    of: u32,
) -> Result<u32, LayerError> {
    let code = c.tree(&mut m.of, 5, block::of_code(of.max(1)) as u32);
    if code < 2 {
        return Err(bad("offset code too small for a distance"));
    }
    Ok((1 << code) + c.direct(code, of.wrapping_sub(1 << code)))
}

/// Codes a sequence's literal length; returns where its match starts.
#[allow(clippy::too_many_arguments)]
fn code_literal_length<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    s: &mut Seq,
    frame: &mut FrameState,
    p: u64,
    block: &Range<u64>,
    min: usize,
    ctx: usize,
) -> Result<u64, LayerError> {
    let (bytes, reps, seen) = (&mut frame.bytes, &frame.reps, &mut frame.matchable);
    // Positions are asked about in order on both sides: the chains only grow forwards.
    seen.clear();
    if C::ENCODING {
        for r in p..=p + s.ll as u64 {
            seen.push(bytes.matchable(r, block.end, reps, min));
        }
    }
    if c.bit(&mut m.ll_escape[ctx], seen.last() == Some(&false)) {
        s.ll = code_explicit_ll(c, m, s.ll)?;
        return Ok(p + s.ll as u64);
    }
    // One decision per position where a match could start: does it start here?
    let mut r = p;
    loop {
        if r >= block.end {
            return Err(bad("literal length runs past the block"));
        }
        let i = (r - p) as usize;
        let here = if C::ENCODING {
            seen[i]
        } else {
            bytes.matchable(r, block.end, reps, min)
        };
        if here {
            let run = (64 - (r - p).leading_zeros()).min(7) as usize;
            if c.bit(&mut m.starts[ctx][run], i + 1 == seen.len()) {
                break;
            }
        }
        r += 1;
    }
    s.ll = (r - p) as u32;
    Ok(p + s.ll as u64)
}

/// Codes a sequence's offset value; returns the distance it names (repeat offsets moved).
fn code_offset<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    s: &mut Seq,
    frame: &mut FrameState,
    q: u64,
    block: &Range<u64>,
    min: usize,
) -> Result<u64, LayerError> {
    let ll0 = (s.ll == 0) as usize;
    let rep0 = frame.reps.peek(1, s.ll) as u64;
    let rep0_fits = (frame.bytes.match_len(q, rep0, block.end, 3) >= 3) as usize;
    if c.bit(&mut m.is_rep[ll0][rep0_fits], s.of <= 3) {
        s.of = code_rep_index(c, &mut m.rep[ll0], s.of)?;
    } else {
        let want = (s.of as u64).wrapping_sub(3);
        let quick = &mut frame.quick;
        frame.bytes.quick(q, block.end, min, quick);
        let hit = if C::ENCODING {
            quick.iter().position(|&(d, _)| d == want).unwrap_or(2)
        } else {
            2
        };
        let pick = c.tree(&mut m.quick[quick.len()], 2, hit as u32) as usize;
        if pick < 2 {
            let d = quick
                .get(pick)
                .ok_or_else(|| bad("quick candidate out of range"))?
                .0;
            s.of = (d + 3) as u32;
        } else {
            s.of = code_chain_offset(c, m, s, frame, q, block, want)?;
        }
    }
    let d = frame.reps.resolve(s.of, s.ll)? as u64;
    if !frame.bytes.reaches(q, d) {
        return Err(bad("offset reaches before the window"));
    }
    Ok(d)
}

/// Codes an offset value that is neither a repeat offset nor a quick candidate: a hash
/// chain's longest or ranked candidate, else the value itself.
fn code_chain_offset<C: Coder>(
    c: &mut C,
    m: &mut PlanModel,
    s: &Seq,
    frame: &mut FrameState,
    q: u64,
    block: &Range<u64>,
    want: u64,
) -> Result<u32, LayerError> {
    let long = c.bit(&mut m.long_match, s.ml >= 8);
    let list = &mut frame.candidates;
    frame.bytes.candidates(q, block.end, long, list);
    let best = list.iter().map(|&(_, len)| len).max().unwrap_or(0);
    let longest = list.iter().position(|&(_, len)| len == best);
    let at = if C::ENCODING {
        list.iter().position(|&(d, _)| d == want)
    } else {
        None
    };
    let mut chosen = None;
    if let Some(l) = longest {
        if c.bit(&mut m.longest[(list.len() > 1) as usize], at == Some(l)) {
            chosen = Some(l);
        }
    }
    if chosen.is_none() && c.bit(&mut m.listed, at.is_some()) {
        let rank = code_gamma(c, &mut m.rank, at.unwrap_or(0) as u64) as usize;
        chosen = Some(rank);
    }
    Ok(match chosen {
        Some(i) => {
            let d = list
                .get(i)
                .ok_or_else(|| bad("candidate rank out of range"))?
                .0;
            (d + 3) as u32
        }
        None => code_explicit_offset(c, m, s.of)?,
    })
}
