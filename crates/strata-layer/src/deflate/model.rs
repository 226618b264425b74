//! The match model: given the decoded bytes, how a DEFLATE encoder's token choices are coded
//! compactly. The decoded data already fixes every literal's value and, for a chosen
//! distance, the longest possible match, so a token costs only the decisions an encoder made:
//! literal or match, which earlier occurrence, and whether the match was cut short.
//!
//! Candidates are the earlier positions within 32 KiB whose next four bytes equal those at
//! the current position, most recent first (hash chains over every position), led by the
//! most recent three-byte occurrence when it is closer. A match is coded as the repeat of the
//! previous distance (long matches split into 258-byte pieces), else by walking the
//! candidates from the most recent with one stop-or-go decision each, else as an escape with
//! the raw distance. Each decision is an adaptive binary choice in contexts that capture what
//! makes encoders differ: where the candidate sat in its token (encoders that skip positions
//! inside matches never see those), whether its length beats the closer candidates, whether
//! it is the longest of all, runs of literals. A stream whose encoder behaves consistently
//! costs a fraction of a bit per token.

use super::block::{match_token, unpack, Token};
use super::go_fast::GoFast;
use super::klauspost::Pgzip;
use super::replay::{Replay, GO_BEST_SPEED, PGZIP_L5};
use crate::rc::{Coder, Prob, SureProb};
use crate::LayerError;

/// DEFLATE's window.
pub const WINDOW: usize = 32 * 1024;
const HASH_BITS: u32 = 16;
/// Chain links followed per position.
const MAX_WALK: usize = 128;
/// Candidates of the longest length kept once no longer one can exist.
const MAX_TIES_AT_MAX: usize = 4;
const MAX_MATCH: usize = 258;
/// Chain links searched for the most recent three-byte-only occurrence.
const FRONT_THREE_WALK: usize = 16;
/// Chain links searched for a longer match at the next position (lazy encoders).
const LAZY_WALK: usize = 64;
/// Token starts considered after the walk over every position failed.
const MAX_STARTS: usize = 32;
/// Positions before a replay's miss that the general model indexes to code it.
const MISS_HISTORY: usize = 512;
/// Matches shorter than this get the lazy-evaluation context (the next position checked).
const LAZY_UNTIL: u16 = 64;

/// Decoded bytes of the current block plus up to 32 KiB before it, with hash chains.
#[derive(Debug)]
pub struct Window {
    buf: Vec<u8>,
    /// Per 4-byte hash: the last inserted position + 1 (0 = none).
    head4: Vec<u32>,
    /// Per position: the previous position + 1 with the same 4-byte hash.
    prev4: Vec<u32>,
    /// Per 3-byte hash: the last inserted position + 1.
    head3: Vec<u32>,
    /// Per position: the previous position + 1 with the same 3-byte hash.
    prev3: Vec<u32>,
    inserted: usize,
    /// Per coded position: its offset inside the token covering it (0 = token start) in the
    /// low half, the bytes left to the token's end in the high half.
    token_off: Vec<u32>,
    /// Three-byte-only occurrences at the current position, most recent first.
    threes: Vec<Cand>,
    /// Chains over token starts only (literals and match starts), for matches beyond the
    /// walk over every position.
    heads: Vec<u32>,
    prevs: Vec<u32>,
    /// Bytes dropped from the front since the stream began (see [`Window::slide`]).
    dropped: u64,
    /// The stream position chain links count from: a link is position - `base` + 1, so a
    /// slide leaves the tables as they are (see [`Window::linked`]).
    base: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buf: Vec::new(),
            head4: vec![0; 1 << HASH_BITS],
            prev4: Vec::new(),
            head3: vec![0; 1 << HASH_BITS],
            prev3: Vec::new(),
            inserted: 0,
            token_off: Vec::new(),
            threes: Vec::new(),
            heads: vec![0; 1 << HASH_BITS],
            prevs: Vec::new(),
            dropped: 0,
            base: 0,
        }
    }
}

#[inline]
fn hash(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

#[inline]
fn load4(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn load3(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], 0])
}

/// A candidate: distance and the match length there (capped).
type Cand = (u16, u16);

impl Window {
    /// Forgets everything (a new DEFLATE stream has no history).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.prev4.clear();
        self.head4.fill(0);
        self.head3.fill(0);
        self.prev3.clear();
        self.inserted = 0;
        self.token_off.clear();
        self.heads.fill(0);
        self.prevs.clear();
        self.dropped = 0;
        self.base = 0;
    }

    /// Drops all but the last 32 KiB so the next block can be appended; returns the offset
    /// at which the next block starts. Links into the dropped bytes end their chains.
    pub fn slide(&mut self) -> usize {
        if self.buf.len() > 2 * WINDOW {
            let cut = self.buf.len() - WINDOW;
            self.buf.drain(..cut);
            self.prev4.drain(..cut.min(self.prev4.len()));
            self.prev3.drain(..cut.min(self.prev3.len()));
            self.token_off.drain(..cut.min(self.token_off.len()));
            self.prevs.drain(..cut.min(self.prevs.len()));
            self.inserted -= cut.min(self.inserted);
            self.dropped += cut as u64;
            if self.dropped - self.base > 1 << 31 {
                self.rebase();
            }
        }
        self.buf.len()
    }

    /// Counts links from the window's front again before they outgrow 32 bits; links into
    /// dropped bytes become chain ends.
    fn rebase(&mut self) {
        let delta = (self.dropped - self.base) as u32;
        let shift = |v: &mut u32| *v = v.saturating_sub(delta);
        for table in [
            &mut self.head4,
            &mut self.prev4,
            &mut self.head3,
            &mut self.prev3,
            &mut self.heads,
            &mut self.prevs,
        ] {
            table.iter_mut().for_each(shift);
        }
        self.base = self.dropped;
    }

    /// The chain link to window position `q`.
    #[inline]
    fn link_to(&self, q: usize) -> u32 {
        (self.dropped - self.base + q as u64 + 1) as u32
    }

    /// The window position a chain link points to: `None` at a chain's end, or when the
    /// position was dropped.
    #[inline]
    fn linked(&self, link: u32) -> Option<usize> {
        (u64::from(link) + self.base)
            .checked_sub(self.dropped + 1)
            .map(|q| q as usize)
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
        let last3 = p.min(self.buf.len().saturating_sub(2));
        let last4 = p.min(self.buf.len().saturating_sub(3));
        if self.prev4.len() < last3 {
            self.prev4.resize(last3, 0);
            self.prev3.resize(last3, 0);
        }
        while self.inserted < last3 {
            let q = self.inserted;
            let (h3, link) = (hash(load3(&self.buf, q)), self.link_to(q));
            self.prev3[q] = self.head3[h3];
            self.head3[h3] = link;
            if q < last4 {
                let h = hash(load4(&self.buf, q));
                self.prev4[q] = self.head4[h];
                self.head4[h] = link;
            }
            self.inserted += 1;
        }
    }

    /// Leaves positions below `p` out of the hash chains (those not yet inserted).
    fn skip_inserts_before(&mut self, p: usize) {
        self.inserted = self.inserted.max(p);
    }

    /// Records the token covering `p..p + len`.
    fn record_token(&mut self, p: usize, len: usize) {
        if p + 4 <= self.buf.len() {
            if self.prevs.len() <= p {
                self.prevs.resize(p + 1, 0);
            }
            let h = hash(load4(&self.buf, p));
            self.prevs[p] = self.heads[h];
            self.heads[h] = self.link_to(p);
        }
        self.token_off.truncate(p);
        self.token_off.resize(p, 0);
        self.token_off
            .extend((0..len as u32).map(|k| k | (len as u32 - 1 - k) << 16));
    }

    /// Class of an earlier position by where it sat in its token: the start, the second or
    /// third byte, the last or second-to-last byte, every third byte after that, the rest.
    /// Encoders that skip positions inside matches index some of these and not others.
    #[inline]
    fn class(&self, q: usize) -> usize {
        let Some(&v) = self.token_off.get(q) else {
            return CLASSES - 1;
        };
        let (off, rem) = (v & 0xffff, v >> 16);
        match (off, rem) {
            (0, _) => 0,
            (1, _) => 1,
            (2, _) => 2,
            (_, 0) => 3,
            (_, 1) => 4,
            (o, _) if o % 3 == 1 => 5,
            _ => 6,
        }
    }

    /// Occurrences of exactly `p`'s three bytes (not four), most recent first: at most
    /// `count`, over at most `links` chain links.
    #[allow(clippy::too_many_arguments)]
    fn three_candidates(
        &self,
        p: usize,
        max: usize,
        links: usize,
        count: usize,
        closer_than: usize,
        out: &mut Vec<Cand>,
    ) {
        out.clear();
        if max < 3 {
            return;
        }
        let key3 = load3(&self.buf, p);
        let mut link = self.head3[hash(key3)];
        let mut walked = 0;
        while walked < links && out.len() < count {
            let Some(q) = self.linked(link) else {
                break;
            };
            let dist = p - q;
            if dist > WINDOW || dist >= closer_than {
                break;
            }
            if load3(&self.buf, q) == key3 && self.match_len(dist, p, 4.min(max)) == 3 {
                out.push((dist as u16, 3));
            }
            link = self.prev3[q];
            walked += 1;
        }
    }

    /// Token starts at `p`'s four bytes with a distance above `beyond`, most recent first,
    /// with their match lengths.
    fn start_candidates(&self, p: usize, max: usize, beyond: u16, out: &mut Vec<Cand>) {
        out.clear();
        if max < 4 {
            return;
        }
        let key = load4(&self.buf, p);
        let mut link = self.heads[hash(key)];
        let mut walked = 0;
        while walked < MAX_WALK && out.len() < MAX_STARTS {
            let Some(q) = self.linked(link) else {
                break;
            };
            let dist = p - q;
            if dist > WINDOW {
                break;
            }
            if dist > beyond as usize && load4(&self.buf, q) == key {
                out.push((dist as u16, self.match_len(dist, p, max) as u16));
            }
            link = self.prevs.get(q).copied().unwrap_or(0);
            walked += 1;
        }
    }

    /// The longest match at `p` over at most `limit` chain links (inserting up to `p`).
    fn longest_at(&mut self, p: usize, max: usize, limit: usize) -> u16 {
        self.insert_upto(p);
        if max < 4 {
            return 0;
        }
        let key = load4(&self.buf, p);
        let mut link = self.head4[hash(key)];
        let (mut best, mut walked) = (0, 0);
        while walked < limit {
            let Some(q) = self.linked(link) else {
                break;
            };
            let dist = p - q;
            if dist > WINDOW {
                break;
            }
            if load4(&self.buf, q) == key {
                best = best.max(self.match_len(dist, p, max));
                if best == max {
                    break;
                }
            }
            link = self.prev4[q];
            walked += 1;
        }
        best as u16
    }

    /// Length of the match at distance `dist` from `p`, capped at `max`.
    #[inline]
    pub fn match_len(&self, dist: usize, p: usize, max: usize) -> usize {
        let from = p - dist;
        let a = &self.buf[from..from + max];
        let b = &self.buf[p..p + max];
        let mut n = 0;
        while n + 8 <= max {
            let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap_or([0; 8]));
            let y = u64::from_le_bytes(b[n..n + 8].try_into().unwrap_or([0; 8]));
            if x != y {
                return n + ((x ^ y).trailing_zeros() / 8) as usize;
            }
            n += 8;
        }
        while n < max && a[n] == b[n] {
            n += 1;
        }
        n
    }

    /// Candidates at `p` (see the module docs), most recent first, and the most recent
    /// three-byte-only occurrence.
    fn candidates(&mut self, p: usize, max: usize, out: &mut Vec<Cand>) -> Option<Cand> {
        out.clear();
        self.insert_upto(p);
        if max < 3 {
            return None;
        }
        if max >= 4 {
            self.walk4(p, max, out);
        }
        // The most recent three-byte-only occurrence, if closer than every longer one.
        let mut front = std::mem::take(&mut self.threes);
        let closer_than = out.first().map_or(WINDOW + 1, |c| c.0 as usize);
        self.three_candidates(p, max, FRONT_THREE_WALK, 1, closer_than, &mut front);
        let three = front.first().copied();
        self.threes = front;
        three
    }

    fn walk4(&self, p: usize, max: usize, out: &mut Vec<Cand>) {
        let key = load4(&self.buf, p);
        let mut link = self.head4[hash(key)];
        let mut walked = 0;
        let mut ties_at_max = 0;
        while walked < MAX_WALK {
            let Some(q) = self.linked(link) else {
                break;
            };
            let dist = p - q;
            if dist > WINDOW {
                break;
            }
            if load4(&self.buf, q) == key {
                let len = self.match_len(dist, p, max);
                out.push((dist as u16, len as u16));
                if len == max {
                    ties_at_max += 1;
                    if ties_at_max >= MAX_TIES_AT_MAX {
                        break;
                    }
                }
            }
            link = self.prev4[q];
            walked += 1;
        }
    }
}

fn len_bucket(len: u16) -> usize {
    match len {
        0 => 0,
        3 => 1,
        4 => 2,
        5..=6 => 3,
        7 => 4,
        8..=15 => 5,
        16..=63 => 6,
        64..=257 => 7,
        _ => 8,
    }
}
const LB: usize = 9;

fn run_bucket(run: u32) -> usize {
    match run {
        0 => 0,
        1..=3 => 1,
        4..=15 => 2,
        16..=63 => 3,
        _ => 4,
    }
}
const RB: usize = 5;

fn rank_bucket(i: usize) -> usize {
    match i {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=7 => 3,
        _ => 4,
    }
}

/// Contexts of the walk decision: class, length relation, global best, length, rank.
const WALK_CTX: usize = CLASSES * 3 * 2 * LB * 5;
/// Position classes (see `Window::class`).
const CLASSES: usize = 7;

/// Adaptive state of the match model; one per stream, in the same state on both sides.
#[derive(Debug)]
pub struct TokenModel {
    is_match: Vec<Prob>,
    is_rep: Vec<Prob>,
    stop: Vec<Prob>,
    stop_start: Vec<Prob>,
    is_longest: Vec<Prob>,
    short_len: Vec<Prob>,
    prev_len: u16,
    prev_dist: u16,
    literal_run: u32,
    next_longer: bool,
    cands: Vec<Cand>,
    starts: Vec<Cand>,
    more_threes: Vec<Cand>,
    /// The replay of this stream's encoder, if it is one we replay (see [`Replay`]).
    sim: Option<Replay>,
    /// Whether the replay's guess fails: by guessed kind and length, and the last outcome.
    sim_miss: Vec<SureProb>,
    last_hit: bool,
    /// The window's `dropped` the replay has followed.
    sim_dropped: u64,
    /// Go's BestSpeed replay, which guesses whole blocks.
    fast: Option<GoFast>,
    /// pgzip's replay, which guesses by stream position.
    pgzip: Option<Pgzip>,
    /// Whether a block differs from the BestSpeed replay's tokens, and from all literals.
    block_miss: [SureProb; 2],
    /// The replay's guesses and misses in the current block.
    block_guesses: u32,
    block_misses: u32,
}

impl Default for TokenModel {
    fn default() -> Self {
        TokenModel {
            is_match: vec![Prob::default(); LB * LB * CLASSES * 2 * RB * 2 * 2],
            is_rep: vec![Prob::default(); 3 * LB * 2],
            stop: vec![Prob::default(); WALK_CTX],
            stop_start: vec![Prob::default(); LB * 5 * 2 + CLASSES * 5],
            is_longest: vec![Prob::default(); 3 * LB],
            short_len: vec![Prob::default(); 256],
            prev_len: 0,
            prev_dist: 0,
            literal_run: 0,
            next_longer: false,
            cands: Vec::with_capacity(64),
            starts: Vec::with_capacity(MAX_STARTS),
            more_threes: Vec::with_capacity(MAX_STARTS),
            sim: None,
            sim_miss: vec![SureProb::default(); 2 * 2 * LB],
            last_hit: false,
            sim_dropped: 0,
            fast: None,
            pgzip: None,
            block_miss: [SureProb::default(); 2],
            block_guesses: 0,
            block_misses: 0,
        }
    }
}

/// How a match was found, for the length context.
#[derive(Clone, Copy)]
enum Via {
    Rep = 0,
    Walk = 1,
    Escape = 2,
}

impl TokenModel {
    /// Starts a stream (its window reset) with replay number `replay` (0: none).
    pub fn start_stream(&mut self, replay: u32) {
        self.sim = Replay::new(replay);
        self.fast = (replay == GO_BEST_SPEED).then(GoFast::default);
        self.pgzip = (replay == PGZIP_L5).then(Pgzip::default);
        self.sim_dropped = 0;
        self.last_hit = false;
    }

    /// Whether this stream is replayed as Go's encoder (whose blocks carry Go's headers).
    pub fn replays_go(&self) -> bool {
        self.fast.is_some() || self.sim.as_ref().is_some_and(|s| s.is_go())
    }

    /// Whether this stream is replayed as pgzip's (whose blocks carry klauspost's headers).
    pub fn replays_pgzip(&self) -> bool {
        self.pgzip.is_some()
    }

    /// Follows a stored block (`win.bytes()[start..end]`): Go's BestSpeed and pgzip encoded
    /// it all the same, and pgzip's sync flush is an empty one.
    pub fn stored_block(&mut self, win: &Window, start: usize, end: usize) {
        if let Some(fast) = self.fast.as_mut() {
            fast.encode(&win.bytes()[start..end]);
        }
        if let Some(pgzip) = self.pgzip.as_mut() {
            pgzip.advance(win.bytes(), start, end, win.dropped);
        }
    }

    /// With Go's BestSpeed replay: codes whether the block holds exactly the replay's tokens,
    /// else whether it holds only literals (Go's Huffman-only blocks). `true` if either
    /// settled the block's tokens.
    fn code_fast_block<C: Coder>(
        &mut self,
        c: &mut C,
        data: &[u8],
        tokens: &mut Vec<Token>,
    ) -> bool {
        let Some(fast) = self.fast.as_mut() else {
            return false;
        };
        let predicted = fast.encode(data);
        let same = C::ENCODING && *tokens == predicted;
        if !c.sure_bit(&mut self.block_miss[0], !same) {
            if !C::ENCODING {
                *tokens = predicted;
            }
        } else {
            let literal_only = C::ENCODING && tokens.iter().all(|&t| t == 0);
            if c.sure_bit(&mut self.block_miss[1], !literal_only) {
                return false;
            }
            if !C::ENCODING {
                tokens.clear();
                tokens.resize(data.len(), 0);
            }
        }
        if let Some(&last) = tokens.last() {
            self.literal_run = 0;
            self.note_token(last);
        }
        true
    }

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
        if let Some(sim) = self.sim.as_mut() {
            sim.slide((win.dropped - self.sim_dropped) as usize);
        }
        self.sim_dropped = win.dropped;
        if let Some(pgzip) = self.pgzip.as_mut() {
            pgzip.advance(win.bytes(), start, end, win.dropped);
        }
        if self.code_fast_block(c, &win.bytes()[start..end], tokens) {
            return Ok(());
        }
        // A BestSpeed replay that missed a whole block, or a token replay that missed more
        // than 5% of a block, is not this stream's encoder (its first block only looked
        // like it): the general model codes the rest of the stream on its own.
        self.fast = None;
        self.block_guesses = 0;
        self.block_misses = 0;
        let coded = self.code_tokens(c, win, start, end, tokens);
        if self.block_misses * 20 > self.block_guesses {
            self.sim = None;
            self.pgzip = None;
        }
        coded
    }

    fn code_tokens<C: Coder>(
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
            let len = if t == 0 { 1 } else { unpack(t).0 as usize };
            // With a replay the general model only codes its rare misses: it goes without
            // the token map (position classes, token-start chains) that costs a write per byte.
            if self.sim.is_none() && self.pgzip.is_none() {
                win.record_token(p, len);
            }
            p += len;
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
        let guess = match (self.sim.as_mut(), self.pgzip.as_mut()) {
            (None, None) => return self.code_general(c, win, p, end, actual),
            // Too close to the block's end for a match: a literal, coded with no bits (the
            // general model would first index the whole block to find that out).
            _ if end - p < 3 => {
                self.note_token(0);
                return Ok(0);
            }
            (Some(sim), _) => sim.predict(win.bytes(), p, end),
            (None, Some(pgzip)) => pgzip.guess(win.dropped + p as u64),
        };
        let ctx =
            ((guess != 0) as usize * 2 + self.last_hit as usize) * LB + len_bucket(unpack(guess).0);
        self.last_hit = !c.sure_bit(&mut self.sim_miss[ctx], actual != guess);
        self.block_guesses += 1;
        self.block_misses += u32::from(!self.last_hit);
        let t = if self.last_hit {
            self.note_token(guess);
            guess
        } else {
            // Only the recent positions are indexed for a miss, not all since the last one.
            win.skip_inserts_before(p.saturating_sub(MISS_HISTORY));
            self.code_general(c, win, p, end, actual)?
        };
        if let Some(sim) = self.sim.as_mut() {
            sim.follow(win.bytes(), p, guess, t);
        }
        Ok(t)
    }

    /// Codes a token with the general model (candidates from the hash chains).
    fn code_general<C: Coder>(
        &mut self,
        c: &mut C,
        win: &mut Window,
        p: usize,
        end: usize,
        actual: Token,
    ) -> Result<Token, LayerError> {
        let max = (end - p).min(MAX_MATCH);
        let mut cands = std::mem::take(&mut self.cands);
        let three = win.candidates(p, max, &mut cands);
        if let Some(t) = three {
            if cands.first().is_none_or(|c| c.0 > t.0) {
                cands.insert(0, t);
            }
        }
        let top = cands.iter().map(|x| x.1).max().unwrap_or(0);
        // Lazy encoders emit a literal when the next position has a longer match.
        self.next_longer = (3..LAZY_UNTIL).contains(&top) && p + 1 < end && {
            let next_max = (end - p - 1).min(MAX_MATCH);
            win.longest_at(p + 1, next_max, LAZY_WALK) > top
        };
        let result = self.code_with(c, win, p, max, &cands, actual);
        self.cands = cands;
        let t = result?;
        self.note_token(t);
        Ok(t)
    }

    /// The general model's memory of the last token.
    fn note_token(&mut self, t: Token) {
        if t == 0 {
            self.literal_run += 1;
            self.prev_len = 0;
        } else {
            self.literal_run = 0;
            (self.prev_len, self.prev_dist) = unpack(t);
        }
    }

    fn code_with<C: Coder>(
        &mut self,
        c: &mut C,
        win: &Window,
        p: usize,
        max: usize,
        cands: &[Cand],
        actual: Token,
    ) -> Result<Token, LayerError> {
        if max < 3 {
            return Ok(0);
        }
        let first = cands.first().map_or(0, |x| x.1);
        let first_class = cands.first().map_or(0, |x| win.class(p - x.0 as usize));
        let top = cands.iter().map(|x| x.1).max().unwrap_or(0);
        let rep_len = if self.prev_len > 0 && (self.prev_dist as usize) <= p {
            win.match_len(self.prev_dist as usize, p, max) as u16
        } else {
            0
        };
        let rep_ok = rep_len >= 3;
        let ctx = (((((len_bucket(first) * LB + len_bucket(top)) * CLASSES + first_class) * 2
            + (self.prev_len > 0) as usize)
            * RB
            + run_bucket(self.literal_run))
            * 2
            + rep_ok as usize)
            * 2
            + self.next_longer as usize;
        if !c.bit(&mut self.is_match[ctx], actual != 0) {
            return Ok(0);
        }
        let (alen, adist) = unpack(actual);
        let (dist, longest, via) = if rep_ok && {
            let prev = match self.prev_len {
                258 => 0,
                255 => 1,
                _ => 2,
            };
            let ctx = (prev * LB + len_bucket(rep_len)) * 2 + (rep_len >= top) as usize;
            c.bit(&mut self.is_rep[ctx], adist == self.prev_dist)
        } {
            (self.prev_dist as usize, rep_len, Via::Rep)
        } else {
            self.code_distance(c, win, p, max, cands, top, adist)?
        };
        let len_ctx = via as usize * LB + len_bucket(longest);
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
        // Only a damaged record can pick the position itself (a three-byte candidate once
        // the lazy check indexed it) or reach past the window.
        if dist == 0 || dist > WINDOW {
            return Err(LayerError::Mismatch("match distance out of range".into()));
        }
        Ok(match_token(len, dist as u16))
    }

    /// Codes the distance of a match that is not a repeat: walking the candidates from the
    /// most recent, one stop-or-go decision each, else raw.
    #[allow(clippy::too_many_arguments)]
    fn code_distance<C: Coder>(
        &mut self,
        c: &mut C,
        win: &Window,
        p: usize,
        max: usize,
        cands: &[Cand],
        top: u16,
        adist: u16,
    ) -> Result<(usize, u16, Via), LayerError> {
        let mut best_so_far = 0u16;
        let mut top_seen = false;
        for (i, &(d, len)) in cands.iter().enumerate() {
            let rel = match len.cmp(&best_so_far) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => 1,
                std::cmp::Ordering::Greater => 2,
            };
            best_so_far = best_so_far.max(len);
            let is_top = len == top && !top_seen;
            top_seen |= is_top;
            let ctx = (((win.class(p - d as usize) * 3 + rel) * 2 + is_top as usize) * LB
                + len_bucket(len))
                * 5
                + rank_bucket(i);
            if c.bit(&mut self.stop[ctx], d == adist) {
                return Ok((d as usize, len, Via::Walk));
            }
        }
        // Beyond the walk: earlier token starts only (encoders that index only those).
        let walked_to = cands.last().map_or(0, |x| x.0);
        let mut starts = std::mem::take(&mut self.starts);
        win.start_candidates(p, max, walked_to, &mut starts);
        let mut found = None;
        let front = win.threes.first().copied();
        let mut threes = std::mem::take(&mut self.more_threes);
        win.three_candidates(p, max, MAX_WALK, MAX_STARTS, WINDOW + 1, &mut threes);
        threes.retain(|&t| Some(t) != front);
        for (i, &(d, len)) in threes.iter().enumerate() {
            let ctx = LB * 5 * 2 + win.class(p - d as usize) * 5 + rank_bucket(i);
            if c.bit(&mut self.stop_start[ctx], d == adist) {
                found = Some((d as usize, len, Via::Walk));
                break;
            }
        }
        for (i, &(d, len)) in starts.iter().enumerate().take_while(|_| found.is_none()) {
            let ctx = (len_bucket(len) * 5 + rank_bucket(i)) * 2 + (len == top) as usize;
            if c.bit(&mut self.stop_start[ctx], d == adist) {
                found = Some((d as usize, len, Via::Walk));
                break;
            }
        }
        self.starts = starts;
        self.more_threes = threes;
        if let Some(f) = found {
            return Ok(f);
        }
        let d = c.direct(15, adist.wrapping_sub(1) as u32) as usize + 1;
        if d > p {
            return Err(LayerError::Mismatch(
                "match distance reaches before the data".into(),
            ));
        }
        Ok((d, win.match_len(d, p, max) as u16, Via::Escape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window fed `blocks` blocks of 40000 bytes of text with repeats.
    fn fed(blocks: usize) -> Window {
        let mut win = Window::default();
        let words = ["layer ", "blob ", "manifest ", "digest ", "sha256 ", "tar "];
        for b in 0..blocks {
            win.slide();
            let start = win.bytes().len();
            let mut i = b;
            while win.bytes().len() < start + 40_000 {
                win.buf_mut()
                    .extend_from_slice(words[i * 7 % words.len()].as_bytes());
                i += 1;
            }
            // The last 2000 positions are left for `chains`.
            let end = win.bytes().len() - if b + 1 == blocks { 2000 } else { 0 };
            let mut p = start;
            while p + 4 < end {
                let mut out = Vec::new();
                win.candidates(p, (end - p).min(MAX_MATCH), &mut out);
                win.record_token(p, 1);
                p += 1;
            }
        }
        win
    }

    /// At one position: the candidates, the three-byte one, token starts, the longest.
    type Found = (Vec<Cand>, Option<Cand>, Vec<Cand>, u16);

    /// Candidates at the positions `fed` left, in order as the model visits them.
    fn chains(win: &mut Window) -> Vec<Found> {
        let end = win.bytes().len();
        (end - 2000..end - 300)
            .map(|p| {
                win.record_token(p.saturating_sub(1), 1);
                let mut out = Vec::new();
                let three = win.candidates(p, MAX_MATCH, &mut out);
                let mut starts = Vec::new();
                win.start_candidates(p, MAX_MATCH, 0, &mut starts);
                (out, three, starts, win.longest_at(p, MAX_MATCH, 64))
            })
            .collect()
    }

    #[test]
    fn rebasing_the_chain_links_changes_no_candidate() {
        let mut win = fed(5);
        assert!(win.dropped > 0, "the window slid");
        let mut rebased = fed(5);
        rebased.rebase();
        assert_eq!(rebased.base, rebased.dropped);
        let (a, b) = (chains(&mut win), chains(&mut rebased));
        assert!(a.iter().any(|c| !c.0.is_empty()), "the data has matches");
        assert_eq!(a, b);
    }
}
