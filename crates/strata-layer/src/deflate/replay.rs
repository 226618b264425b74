//! A predictor that replays the match search of the two DEFLATE encoders most layers come
//! from: zlib's `deflate.c` (GNU gzip and pigz run the same algorithm) and Go's
//! `compress/flate` (Docker's and containerd's gzip) at levels 2-9. Both keep hash chains
//! over the positions they inserted and walk at most `chain` links, keeping the first
//! longest match, with `good`/`lazy`/`nice` from their level tables; levels 1-3 (Go: 2-3)
//! take each match found, the others evaluate lazily. They differ in details the replay
//! follows: zlib hashes three bytes into 15 bits, reaches 32768 - 262 bytes back, never
//! matches position 0 and drops length-3 matches farther than 4096; Go hashes four bytes
//! into 17 bits, reaches 32768 back, and takes a length-4 match only within 4096.
//!
//! It predicts the next token of a stream from the decoded bytes; the match model codes
//! only whether the prediction holds, so a stream one of these wrote costs almost nothing.
//! The prediction is a guess, never trusted: a token it gets wrong is coded in full, so the
//! replay may differ from the encoder where the data it needs lies beyond the current block.
//!
//! Positions are indices into the [`super::model::Window`]'s buffer; the window reports how
//! many bytes it dropped so the tables shift with it.

use super::block::{match_token, Token};

const MAX_MATCH: usize = 258;
/// Short matches farther than this are not taken (zlib: length 3 dropped by the lazy
/// encoder; Go: length 4 never accepted).
const FAR: usize = 4096;

/// Which encoder's search is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    Zlib,
    Go,
}

/// One row of an encoder's level table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    encoder: Encoder,
    good: usize,
    lazy: usize,
    nice: usize,
    chain: usize,
    /// Take every match found (no lazy evaluation).
    greedy: bool,
    /// Greedy levels insert the inside of a match only up to this length.
    insert_limit: usize,
}

const fn zlib(good: usize, lazy: usize, nice: usize, chain: usize, greedy: bool) -> Params {
    Params {
        encoder: Encoder::Zlib,
        good,
        lazy,
        nice,
        chain,
        greedy,
        insert_limit: lazy,
    }
}

const fn go(good: usize, lazy: usize, nice: usize, chain: usize, skip: usize) -> Params {
    Params {
        encoder: Encoder::Go,
        good,
        lazy,
        nice,
        chain,
        greedy: skip != usize::MAX,
        insert_limit: skip,
    }
}

/// Replays by number, as the correction record stores it: 1-9 zlib's levels 1-9, 10-17
/// Go's levels 2-9; 18 is Go's level 1, a different algorithm ([`GO_BEST_SPEED`]); 19 is pgzip
/// ([`PGZIP_L5`]).
const REPLAYS: [Params; 17] = [
    zlib(4, 4, 8, 4, true),
    zlib(4, 5, 16, 8, true),
    zlib(4, 6, 32, 32, true),
    zlib(4, 4, 16, 16, false),
    zlib(8, 16, 32, 32, false),
    zlib(8, 16, 128, 128, false),
    zlib(8, 32, 128, 256, false),
    zlib(32, 128, 258, 1024, false),
    zlib(32, 258, 258, 4096, false),
    go(4, 0, 16, 8, 5),
    go(4, 0, 32, 32, 6),
    go(4, 4, 16, 16, usize::MAX),
    go(8, 16, 32, 32, usize::MAX),
    go(8, 16, 128, 128, usize::MAX),
    go(8, 32, 128, 256, usize::MAX),
    go(32, 128, 258, 1024, usize::MAX),
    go(32, 258, 258, 4096, usize::MAX),
];

/// Go's BestSpeed, replayed a block at a time ([`super::go_fast::GoFast`]).
pub const GO_BEST_SPEED: u32 = REPLAYS.len() as u32 + 1;
/// klauspost/pgzip at its default level, replayed by stream position
/// ([`super::klauspost::Pgzip`]).
pub const PGZIP_L5: u32 = GO_BEST_SPEED + 1;
/// The largest replay number.
pub const MAX_REPLAY: u32 = PGZIP_L5;

impl Encoder {
    fn min_match(self) -> usize {
        match self {
            Encoder::Zlib => 3,
            Encoder::Go => 4,
        }
    }

    /// Bytes a position needs to be hashed.
    fn hashed(self) -> usize {
        self.min_match()
    }

    fn hash(self, b: &[u8], at: usize) -> usize {
        match self {
            Encoder::Zlib => {
                (((b[at] as usize) << 10) ^ ((b[at + 1] as usize) << 5) ^ b[at + 2] as usize)
                    & 0x7fff
            }
            Encoder::Go => {
                let v = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                (v.wrapping_mul(0x1e35_a7bd) >> (32 - 17)) as usize
            }
        }
    }

    fn hash_size(self) -> usize {
        match self {
            Encoder::Zlib => 1 << 15,
            Encoder::Go => 1 << 17,
        }
    }

    /// Whether a candidate at `dist` may be examined (`first`: the chain's head).
    fn reaches(self, dist: usize, first: bool) -> bool {
        match self {
            // zlib's MAX_DIST is 32768 - 262; its head is checked with <=, the chain with <.
            Encoder::Zlib => dist < 32506 || (first && dist == 32506),
            Encoder::Go => dist <= 32768,
        }
    }
}

/// A match already evaluated by the lazy step for the position after a literal.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: usize,
    len: usize,
    dist: usize,
}

/// The replayed encoder's tables and lazy state.
#[derive(Debug)]
pub struct Replay {
    params: Params,
    /// Per hash: the last inserted position + 1 (0 = none).
    head: Vec<u32>,
    /// Per position: the previous position + 1 with the same hash.
    prev: Vec<u32>,
    /// Positions below this are inserted (or skipped, as greedy levels do).
    inserted: usize,
    /// Bytes dropped from the front of the window since the stream began.
    dropped: u64,
    pending: Option<Pending>,
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

impl Replay {
    /// The replay numbered `id` (see [`MAX_REPLAY`]); `None` for 0 or an unknown number.
    pub fn new(id: u32) -> Option<Self> {
        let params = *REPLAYS.get((id as usize).checked_sub(1)?)?;
        Some(Replay {
            params,
            head: vec![0; params.encoder.hash_size()],
            prev: Vec::new(),
            inserted: 0,
            dropped: 0,
            pending: None,
        })
    }

    /// Whether this replays Go's encoder (whose blocks carry Go's Huffman headers).
    pub fn is_go(&self) -> bool {
        self.params.encoder == Encoder::Go
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

    /// Inserts every position below `upto` whose hashed bytes are known.
    fn insert_upto(&mut self, b: &[u8], upto: usize) {
        let e = self.params.encoder;
        let last = upto.min((b.len() + 1).saturating_sub(e.hashed()));
        if self.prev.len() < last {
            self.prev.resize(last, 0);
        }
        while self.inserted < last {
            let q = self.inserted;
            let h = e.hash(b, q);
            self.prev[q] = self.head[h];
            self.head[h] = q as u32 + 1;
            self.inserted += 1;
        }
    }

    /// The encoder's match search at `at` (after inserting `at`, as both do first): the
    /// first candidate longer than `best`, improved while longer ones follow within the
    /// chain budget. `None` if nothing beats `best` (or there was nothing to search).
    fn search(&mut self, b: &[u8], at: usize, end: usize, best: usize) -> Option<(usize, usize)> {
        let e = self.params.encoder;
        if at + e.min_match() > end {
            return None;
        }
        let mut cur = if self.inserted > at {
            self.prev.get(at).copied().unwrap_or(0)
        } else {
            self.insert_upto(b, at);
            let h = self.head[e.hash(b, at)];
            self.insert_upto(b, at + 1);
            h
        };
        let p = self.params;
        let max = (end - at).min(MAX_MATCH);
        if best >= max {
            return None;
        }
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
            // zlib's position 0 is its NIL: never a candidate, it ends the chain.
            let nil = e == Encoder::Zlib && self.dropped == 0 && q == 0;
            if nil || !e.reaches(dist, first) {
                break;
            }
            first = false;
            // The quick test both make: a longer match must agree at `best`.
            let len = if b[q + best] == b[at + best] {
                common_len(b, q, at, max)
            } else {
                0
            };
            let far_short = e == Encoder::Go && len <= e.min_match() && dist > FAR;
            if len > best && !far_short {
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

    /// A search as the lazy step uses it: zlib also drops a far length-3 match afterwards.
    fn lazy_search(
        &mut self,
        b: &[u8],
        at: usize,
        end: usize,
        best: usize,
    ) -> Option<(usize, usize)> {
        let zlib = self.params.encoder == Encoder::Zlib;
        self.search(b, at, end, best)
            .filter(|&(len, dist)| !(zlib && len == 3 && dist > FAR))
    }

    /// The token the encoder would write at `p` (the block's bytes end at `end`).
    pub fn predict(&mut self, b: &[u8], p: usize, end: usize) -> Token {
        let params = self.params;
        let min = params.encoder.min_match();
        if params.greedy {
            return match self.search(b, p, end, min - 1) {
                Some((len, dist)) => match_token(len as u16, dist as u16),
                None => 0,
            };
        }
        let here = match self.pending.take() {
            Some(e) if e.at == p => (e.len >= min).then_some((e.len, e.dist)),
            _ => self.lazy_search(b, p, end, min - 1),
        };
        let here_len = here.map_or(min - 1, |m| m.0);
        if here_len >= params.lazy {
            if let Some((len, dist)) = here {
                return match_token(len as u16, dist as u16);
            }
        }
        // zlib looks only for longer matches; Go searches afresh and compares.
        let from = match params.encoder {
            Encoder::Zlib => here_len,
            Encoder::Go => min - 1,
        };
        let next = self.lazy_search(b, p + 1, end, from);
        match (here, next) {
            (Some((len, dist)), next) if next.is_none_or(|n| n.0 <= len) => {
                match_token(len as u16, dist as u16)
            }
            (_, next) => {
                let (len, dist) = next.unwrap_or((min - 1, 0));
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
    /// lazy state starts over; greedy levels do not insert the inside of long matches.
    pub fn follow(&mut self, b: &[u8], p: usize, predicted: Token, actual: Token) {
        if actual != predicted || actual != 0 {
            self.pending = None;
        }
        if actual != 0 && self.params.greedy {
            let len = (actual >> 16) as usize;
            if len > self.params.insert_limit {
                self.insert_upto(b, p + 1);
                self.inserted = self.inserted.max(p + len);
            }
        }
    }
}

/// The replay that guesses most of a stream's first block (`tokens`, covering
/// `b[start..end]`, the window holding nothing before `start`), or 0 when none guesses at
/// least 95% (other encoders score 70-90%): wrong guesses would cost more than they save.
/// Ties go to the lower, cheaper level.
pub fn detect(b: &[u8], start: usize, end: usize, tokens: &[Token]) -> u32 {
    let mut best = (0, tokens.len() * 95 / 100);
    if super::go_fast::GoFast::default().encode(&b[start..end]) == tokens {
        best = (GO_BEST_SPEED, tokens.len());
    }
    let pgzip_hits = pgzip_hits(b, start, end, tokens);
    if pgzip_hits > best.1 {
        best = (PGZIP_L5, pgzip_hits);
    }
    for id in 1..GO_BEST_SPEED {
        let Some(mut replay) = Replay::new(id) else {
            continue;
        };
        let (mut p, mut hits) = (start, 0);
        for &t in tokens {
            if end - p >= 3 {
                let guess = replay.predict(b, p, end);
                hits += (guess == t) as usize;
                replay.follow(b, p, guess, t);
            }
            p += if t == 0 { 1 } else { (t >> 16) as usize };
        }
        if hits > best.1 {
            best = (id, hits);
        }
    }
    best.0
}

/// How many of `tokens` pgzip's replay guesses.
fn pgzip_hits(b: &[u8], start: usize, end: usize, tokens: &[Token]) -> usize {
    let mut pgzip = super::klauspost::Pgzip::default();
    pgzip.advance(b, start, end, 0);
    let (mut p, mut hits) = (start, 0);
    for &t in tokens {
        hits += (pgzip.guess(p as u64) == t) as usize;
        p += if t == 0 { 1 } else { (t >> 16) as usize };
    }
    hits
}
