//! The match model: given the decoded bytes, how a DEFLATE encoder's token choices are coded
//! compactly. The decoded data already fixes every literal's value and, for a chosen
//! distance, the longest possible match, so a token costs only the decisions an encoder made:
//! literal or match, which earlier occurrence, and whether the match was cut short. Each
//! decision is coded with adaptive probabilities in contexts that capture how encoders
//! behave (the most recent occurrence, the longest one, runs of literals), so a stream whose
//! encoder behaves predictably costs a small fraction of a bit per token.
//!
//! Candidates are the earlier positions within 32 KiB whose next three bytes equal those at
//! the current position, most recent first, found through hash chains over every position.

use super::block::{match_token, unpack, Token};
use crate::rc::{Coder, Prob};
use crate::LayerError;

/// DEFLATE's window.
pub const WINDOW: usize = 32 * 1024;
const HASH_BITS: u32 = 16;
/// Candidates considered per position; a match further down the chain is coded raw.
const MAX_CANDIDATES: usize = 32;
/// Chain links followed per position (hash collisions included).
const MAX_WALK: usize = 256;
const MAX_MATCH: usize = 258;

/// Decoded bytes of the current block plus up to 32 KiB before it, with hash chains.
#[derive(Debug)]
pub struct Window {
    buf: Vec<u8>,
    /// Per hash: the last inserted position + 1 (0 = none).
    head: Vec<u32>,
    /// Per position: the previous position + 1 with the same hash.
    prev: Vec<u32>,
    inserted: usize,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buf: Vec::new(),
            head: vec![0; 1 << HASH_BITS],
            prev: Vec::new(),
            inserted: 0,
        }
    }
}

#[inline]
fn hash3(b: &[u8]) -> usize {
    let v = (b[0] as u32) | (b[1] as u32) << 8 | (b[2] as u32) << 16;
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

impl Window {
    /// Forgets everything (a new DEFLATE stream has no history).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.prev.clear();
        self.head.fill(0);
        self.inserted = 0;
    }

    /// Drops all but the last 32 KiB so the next block can be appended; returns the offset
    /// at which the next block starts.
    pub fn slide(&mut self) -> usize {
        if self.buf.len() > WINDOW {
            let cut = self.buf.len() - WINDOW;
            self.buf.drain(..cut);
            self.prev.drain(..cut.min(self.prev.len()));
            let shift = |v: &mut u32| {
                *v = if *v as usize > cut {
                    *v - cut as u32
                } else {
                    0
                }
            };
            self.head.iter_mut().for_each(shift);
            self.prev.iter_mut().for_each(shift);
            self.inserted -= cut.min(self.inserted);
        }
        self.buf.len()
    }

    /// The bytes (history and current block).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends decoded bytes.
    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn insert_upto(&mut self, p: usize) {
        let last = p.min(self.buf.len().saturating_sub(2));
        if self.prev.len() < last {
            self.prev.resize(last, 0);
        }
        while self.inserted < last {
            let q = self.inserted;
            let h = hash3(&self.buf[q..]);
            self.prev[q] = self.head[h];
            self.head[h] = q as u32 + 1;
            self.inserted += 1;
        }
    }

    #[inline]
    fn match_len(&self, from: usize, p: usize, max: usize) -> usize {
        let a = &self.buf[from..from + max];
        let b = &self.buf[p..p + max];
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    /// Earlier occurrences of the 3 bytes at `p`, most recent first, with their match
    /// lengths capped at `max`.
    fn candidates(&mut self, p: usize, max: usize, out: &mut Vec<(u16, u16)>) {
        out.clear();
        self.insert_upto(p);
        if max < 3 {
            return;
        }
        let key = &self.buf[p..p + 3];
        let mut link = self.head[hash3(key)];
        let mut walked = 0;
        while link != 0 && walked < MAX_WALK && out.len() < MAX_CANDIDATES {
            let q = link as usize - 1;
            let dist = p - q;
            if dist > WINDOW {
                break;
            }
            if self.buf[q..q + 3] == self.buf[p..p + 3] {
                out.push((dist as u16, self.match_len(q, p, max) as u16));
            }
            link = self.prev[q];
            walked += 1;
        }
    }
}

fn len_bucket(len: u16) -> usize {
    match len {
        0 => 0,
        3 => 1,
        4 => 2,
        5..=7 => 3,
        8..=15 => 4,
        16..=63 => 5,
        _ => 6,
    }
}

fn run_bucket(run: u32) -> usize {
    match run {
        0 => 0,
        1..=3 => 1,
        4..=15 => 2,
        _ => 3,
    }
}

const ESCAPE: u32 = 63;

/// Adaptive state of the match model; one per stream, in the same state on both sides.
#[derive(Debug)]
pub struct TokenModel {
    is_match: Vec<Prob>,
    is_first: Vec<Prob>,
    is_best: Vec<Prob>,
    rank: Vec<Prob>,
    is_longest: Vec<Prob>,
    short_len: Vec<Prob>,
    after_match: bool,
    literal_run: u32,
    cands: Vec<(u16, u16)>,
}

impl Default for TokenModel {
    fn default() -> Self {
        TokenModel {
            is_match: vec![Prob::default(); 7 * 7 * 2 * 4],
            is_first: vec![Prob::default(); 2 * 7],
            is_best: vec![Prob::default(); 7],
            rank: vec![Prob::default(); 64],
            is_longest: vec![Prob::default(); 2 * 7],
            short_len: vec![Prob::default(); 256],
            after_match: false,
            literal_run: 0,
            cands: Vec::with_capacity(MAX_CANDIDATES),
        }
    }
}

impl TokenModel {
    /// Codes the tokens of the block occupying `win.bytes()[start..end]`. Encoding reads
    /// `tokens`; decoding fills it.
    pub fn code_block<C: Coder>(
        &mut self,
        c: &mut C,
        win: &mut Window,
        start: usize,
        end: usize,
        tokens: &mut Vec<Token>,
    ) -> Result<(), LayerError> {
        let mut p = start;
        let mut i = 0;
        while p < end {
            let actual = if C::ENCODING { tokens[i] } else { 0 };
            let t = self.code_token(c, win, p, end, actual)?;
            if !C::ENCODING {
                tokens.push(t);
            }
            i += 1;
            p += if t == 0 { 1 } else { unpack(t).0 as usize };
        }
        if p != end {
            return Err(LayerError::Mismatch("tokens overrun the block".into()));
        }
        Ok(())
    }

    fn code_token<C: Coder>(
        &mut self,
        c: &mut C,
        win: &mut Window,
        p: usize,
        end: usize,
        actual: Token,
    ) -> Result<Token, LayerError> {
        let max = (end - p).min(MAX_MATCH);
        let mut cands = std::mem::take(&mut self.cands);
        win.candidates(p, max, &mut cands);
        let result = self.code_with(c, win, p, max, &cands, actual);
        self.cands = cands;
        let t = result?;
        if t == 0 {
            self.literal_run += 1;
            self.after_match = false;
        } else {
            self.literal_run = 0;
            self.after_match = true;
        }
        Ok(t)
    }

    fn code_with<C: Coder>(
        &mut self,
        c: &mut C,
        win: &Window,
        p: usize,
        max: usize,
        cands: &[(u16, u16)],
        actual: Token,
    ) -> Result<Token, LayerError> {
        if max < 3 {
            return Ok(0);
        }
        let c0 = cands.first().map_or(0, |x| x.1);
        let (best_idx, best) =
            cands.iter().enumerate().fold(
                (0, 0u16),
                |acc, (i, x)| if x.1 > acc.1 { (i, x.1) } else { acc },
            );
        let ctx = ((len_bucket(c0) * 7 + len_bucket(best)) * 2 + self.after_match as usize) * 4
            + run_bucket(self.literal_run);
        if !c.bit(&mut self.is_match[ctx], actual != 0) {
            return Ok(0);
        }
        let (alen, adist) = unpack(actual);
        // which candidate
        let actual_k = if C::ENCODING {
            cands
                .iter()
                .position(|x| x.0 == adist)
                .map_or(ESCAPE, |k| k as u32)
        } else {
            0
        };
        let first_ctx = (best_idx == 0) as usize * 7 + len_bucket(c0);
        let k = if c.bit(&mut self.is_first[first_ctx], actual_k == 0) {
            0
        } else if best_idx != 0
            && c.bit(
                &mut self.is_best[len_bucket(best)],
                actual_k == best_idx as u32,
            )
        {
            best_idx as u32
        } else {
            c.tree(&mut self.rank, 6, actual_k)
        };
        let (dist, longest) = if k == ESCAPE {
            let d = c.direct(15, adist.wrapping_sub(1) as u32) as usize + 1;
            if d > p {
                return Err(LayerError::Mismatch(
                    "match distance reaches before the data".into(),
                ));
            }
            (d, win.match_len(p - d, p, max) as u16)
        } else {
            let &(d, l) = cands
                .get(k as usize)
                .ok_or_else(|| LayerError::Mismatch("match names a missing candidate".into()))?;
            (d as usize, l)
        };
        let len_ctx = (k == 0) as usize * 7 + len_bucket(longest);
        let len = if c.bit(&mut self.is_longest[len_ctx], alen == longest) {
            longest
        } else {
            c.tree(&mut self.short_len, 8, alen.wrapping_sub(3) as u32) as u16 + 3
        };
        if len < 3 || len > longest {
            return Err(LayerError::Mismatch(
                "match longer than the data allows".into(),
            ));
        }
        Ok(match_token(len, dist as u16))
    }
}
