//! A predictor that replays the match search of zlib's `deflate.c` (and GNU gzip's, the
//! same algorithm): 15-bit hash of three bytes, hash chains over the positions the encoder
//! inserted, a chain walk of at most `max_chain` links that keeps the first longest match,
//! `good`/`lazy`/`nice` as in zlib's configuration table, `deflate_fast` for levels 1-3
//! and lazy evaluation (`deflate_slow`, with its TOO_FAR rule) for 4-9.
//!
//! It predicts the next token of a stream from the decoded bytes; the match model codes
//! only whether the prediction holds, so a stream zlib wrote costs almost nothing. The
//! prediction is a guess, never trusted: a token it gets wrong is coded in full, so the
//! simulation may differ from zlib where the data it needs lies beyond the current block.
//!
//! Positions are indices into the [`super::model::Window`]'s buffer; the window reports how
//! many bytes it dropped so the tables shift with it.

use super::block::{match_token, Token};

/// zlib's `MAX_DIST`: the window less the minimum lookahead (32768 - 262).
const MAX_DIST: usize = 32 * 1024 - 262;
/// Length-3 matches farther than this are dropped by the lazy encoder.
const TOO_FAR: usize = 4096;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 15;

/// One row of zlib's configuration table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
    /// `deflate_fast` (no lazy evaluation; long matches not inserted).
    fast: bool,
}

const fn row(good: usize, lazy: usize, nice: usize, chain: usize, fast: bool) -> Params {
    Params {
        good,
        lazy,
        nice,
        chain,
        fast,
    }
}

/// zlib's (and GNU gzip's) levels 1-9.
pub const LEVELS: [Params; 9] = [
    row(4, 4, 8, 4, true),
    row(4, 5, 16, 8, true),
    row(4, 6, 32, 32, true),
    row(4, 4, 16, 16, false),
    row(8, 16, 32, 32, false),
    row(8, 16, 128, 128, false),
    row(8, 32, 128, 256, false),
    row(32, 128, 258, 1024, false),
    row(32, 258, 258, 4096, false),
];

/// A match already evaluated by the lazy step for the position after a literal.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: usize,
    len: usize,
    dist: usize,
}

/// The simulated encoder's tables and lazy state.
#[derive(Debug)]
pub struct ZlibSim {
    params: Params,
    /// Per hash: the last inserted position + 1 (0 = none).
    head: Vec<u32>,
    /// Per position: the previous position + 1 with the same hash.
    prev: Vec<u32>,
    /// Positions below this are inserted (or skipped, as `deflate_fast` does).
    inserted: usize,
    /// Bytes dropped from the front of the window since the stream began.
    dropped: u64,
    pending: Option<Pending>,
}

#[inline]
fn hash(b: &[u8], at: usize) -> usize {
    (((b[at] as usize) << 10) ^ ((b[at + 1] as usize) << 5) ^ b[at + 2] as usize)
        & ((1 << HASH_BITS) - 1)
}

#[inline]
fn common_len(b: &[u8], from: usize, at: usize, max: usize) -> usize {
    let mut n = 0;
    while n + 8 <= max {
        let x = u64::from_le_bytes(b[from + n..from + n + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[at + n..at + n + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return n + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && b[from + n] == b[at + n] {
        n += 1;
    }
    n
}

impl ZlibSim {
    /// A simulator of zlib level `level` (1-9).
    pub fn new(level: u32) -> Option<Self> {
        let params = *LEVELS.get((level as usize).checked_sub(1)?)?;
        Some(ZlibSim {
            params,
            head: vec![0; 1 << HASH_BITS],
            prev: Vec::new(),
            inserted: 0,
            dropped: 0,
            pending: None,
        })
    }

    /// Follows the window dropping `cut` bytes from its front.
    pub fn slide(&mut self, cut: usize) {
        if cut == 0 {
            return;
        }
        let shift = |v: &mut u32| {
            *v = if *v as usize > cut {
                *v - cut as u32
            } else {
                0
            }
        };
        self.head.iter_mut().for_each(shift);
        self.prev.drain(..cut.min(self.prev.len()));
        self.prev.iter_mut().for_each(shift);
        self.inserted = self.inserted.saturating_sub(cut);
        self.dropped += cut as u64;
        self.pending = None;
    }

    /// Inserts every position below `upto` whose three bytes are known.
    fn insert_upto(&mut self, b: &[u8], upto: usize) {
        let last = upto.min(b.len().saturating_sub(2));
        if self.prev.len() < last {
            self.prev.resize(last, 0);
        }
        while self.inserted < last {
            let q = self.inserted;
            let h = hash(b, q);
            self.prev[q] = self.head[h];
            self.head[h] = q as u32 + 1;
            self.inserted += 1;
        }
    }

    /// zlib's `longest_match` at `at` (after inserting `at`, as `INSERT_STRING` does): the
    /// first candidate longer than `best`, improved while longer ones follow within the
    /// chain budget. `None` if nothing beats `best` (or there was nothing to search).
    fn search(&mut self, b: &[u8], at: usize, end: usize, best: usize) -> Option<(usize, usize)> {
        if at + 3 > end {
            return None;
        }
        let mut cur = if self.inserted > at {
            self.prev.get(at).copied().unwrap_or(0)
        } else {
            self.insert_upto(b, at);
            let h = self.head[hash(b, at)];
            self.insert_upto(b, at + 1);
            h
        };
        let p = self.params;
        let max = (end - at).min(MAX_MATCH);
        let nice = p.nice.min(end - at);
        let mut chain = if best >= p.good {
            p.chain >> 2
        } else {
            p.chain
        };
        let (mut best, mut found) = (best, None);
        let mut first = true;
        while cur != 0 && chain > 0 {
            let q = cur as usize - 1;
            let dist = at - q;
            // Position 0 of a stream is zlib's NIL: never a candidate, it ends the chain.
            let nil = self.dropped == 0 && q == 0;
            if nil || dist > MAX_DIST || (!first && dist == MAX_DIST) {
                break;
            }
            first = false;
            // zlib's quick test: a longer match must agree at `best` (and so do its bytes).
            let len = if best < max && b[q + best] == b[at + best] {
                common_len(b, q, at, max)
            } else {
                0
            };
            if len > best {
                best = len;
                found = Some((len, dist));
                if len >= nice || len >= max {
                    break;
                }
            }
            cur = self.prev[q];
            chain -= 1;
        }
        found
    }

    /// The token zlib would write at `p` (the block's bytes end at `end`).
    pub fn predict(&mut self, b: &[u8], p: usize, end: usize) -> Token {
        let p_ = self.params;
        if p_.fast {
            return match self.search(b, p, end, 2) {
                Some((len, dist)) => match_token(len as u16, dist as u16),
                None => 0,
            };
        }
        let here = match self.pending.take() {
            Some(e) if e.at == p => (e.len >= 3).then_some((e.len, e.dist)),
            _ => self
                .search(b, p, end, 2)
                .filter(|&(len, dist)| !(len == 3 && dist > TOO_FAR)),
        };
        let here_len = here.map_or(2, |m| m.0);
        if here_len >= p_.lazy {
            if let Some((len, dist)) = here {
                return match_token(len as u16, dist as u16);
            }
        }
        let next = self
            .search(b, p + 1, end, here_len)
            .filter(|&(len, dist)| !(len == 3 && dist > TOO_FAR));
        match (here, next) {
            (Some((len, dist)), None) => match_token(len as u16, dist as u16),
            (_, next) => {
                let (len, dist) = next.unwrap_or((2, 0));
                self.pending = Some(Pending {
                    at: p + 1,
                    len,
                    dist,
                });
                0
            }
        }
    }

    /// Follows the token the stream really has at `p`: after a wrong guess or a match the
    /// lazy state starts over; `deflate_fast` does not insert the inside of long matches.
    pub fn follow(&mut self, b: &[u8], p: usize, predicted: Token, actual: Token) {
        if actual != predicted || actual != 0 {
            self.pending = None;
        }
        if actual != 0 && self.params.fast {
            let len = (actual >> 16) as usize;
            if len > self.params.lazy {
                self.insert_upto(b, p + 1);
                self.inserted = self.inserted.max(p + len);
            }
        }
    }
}

/// The zlib level whose replay guesses most of a stream's first block (`tokens`, covering
/// `b[start..end]`, the window holding nothing before `start`), or 0 when no level guesses
/// at least 95% (other encoders score 70-90%): that stream's encoder is not zlib's
/// algorithm, and wrong guesses would cost more than they save. Ties go to the lower,
/// cheaper level.
pub fn detect_level(b: &[u8], start: usize, end: usize, tokens: &[Token]) -> u32 {
    let mut best = (0, tokens.len() * 95 / 100);
    for level in 1..=LEVELS.len() as u32 {
        let Some(mut sim) = ZlibSim::new(level) else {
            continue;
        };
        let (mut p, mut hits) = (start, 0);
        for &t in tokens {
            if end - p >= 3 {
                let guess = sim.predict(b, p, end);
                hits += (guess == t) as usize;
                sim.follow(b, p, guess, t);
            }
            p += if t == 0 { 1 } else { (t >> 16) as usize };
        }
        if hits > best.1 {
            best = (level, hits);
        }
    }
    best.0
}
