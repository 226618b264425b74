//! A replay of klauspost/compress's DEFLATE encoder at level 5 as klauspost/pgzip drives it:
//! the default of pgzip, which containers/image (skopeo, podman, buildah) and umoci write
//! layers with. Learned from the Go module's `flate/level5.go` and pgzip's `gzip.go`; the
//! code is this project's.
//!
//! pgzip cuts the input into blocks of 1 MiB, compresses each on its own (a fresh encoder
//! that first encodes the previous block's last 16 KiB and discards those tokens) and ends
//! each with a sync flush, an empty stored block in the stream. The encoder takes each block
//! 65535 bytes at a time ("chunks"); per chunk it keeps two hash tables (4-byte and 7-byte
//! hashes, the latter with the previous entry too), probes positions further apart the longer
//! no match is found, tries to improve a short match from its end and extends matches
//! backwards. A chunk without matches is stored, one whose tokens remove less than 1/16 is
//! written as literals, and a final chunk under 128 bytes is never searched.
//!
//! The replay encodes each chunk as the block holding it arrives (a chunk never spans
//! DEFLATE blocks: the writer may continue a block over several chunks, not split one) and
//! guesses the token at each position from the result.

use std::collections::VecDeque;

use super::block::{match_token, Token};

const TABLE_BITS: u32 = 15;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const MAX_MATCH_OFFSET: i32 = 1 << 15;
const MAX_STORE_BLOCK: i32 = 65535;
const ALLOC_HISTORY: usize = MAX_STORE_BLOCK as usize * 5;
const BUFFER_RESET: i32 = i32::MAX - ALLOC_HISTORY as i32 - MAX_STORE_BLOCK - 1;
const INPUT_MARGIN: i32 = 12 - 1;
const MIN_NON_LITERAL_BLOCK: usize = 1 + 1 + INPUT_MARGIN as usize;
/// The bytes of the previous pgzip block a new one is primed with.
const PGZIP_TAIL: u64 = 16384;
/// A final chunk shorter than this is written without a search.
const MIN_SEARCHED_CHUNK: usize = 128;
const PRIME4: u32 = 2_654_435_761;
const PRIME7: u64 = 58_295_818_150_454_627;

#[derive(Debug, Clone, Copy, Default)]
struct Long {
    cur: i32,
    prev: i32,
}

fn load32(b: &[u8], i: i32) -> u32 {
    let i = i as usize;
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]))
}

fn load64(b: &[u8], i: i32) -> u64 {
    let i = i as usize;
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]))
}

fn hash4(u: u64) -> usize {
    ((u as u32).wrapping_mul(PRIME4) >> (32 - TABLE_BITS)) as usize
}

fn hash7(u: u64) -> usize {
    ((u << 8).wrapping_mul(PRIME7) >> (64 - TABLE_BITS)) as usize
}

/// Equal bytes at `a` and `b` in `src`, up to `end` for `a`.
fn common(src: &[u8], a: i32, b: i32, end: usize) -> i32 {
    let (a, b) = (a as usize, b as usize);
    let mut n = 0;
    let max = end - a;
    while n + 8 <= max {
        let x = u64::from_le_bytes(src[a + n..a + n + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(src[b + n..b + n + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return (n + ((x ^ y).trailing_zeros() / 8) as usize) as i32;
        }
        n += 8;
    }
    while n < max && src[a + n] == src[b + n] {
        n += 1;
    }
    n as i32
}

/// The level-5 encoder's state.
#[derive(Debug)]
struct Level5 {
    hist: Vec<u8>,
    cur: i32,
    // Fixed-size tables: a hash indexes them without a bounds check.
    table: Box<[i32; TABLE_SIZE]>,
    long: Box<[Long; TABLE_SIZE]>,
}

impl Default for Level5 {
    fn default() -> Self {
        Level5 {
            hist: Vec::with_capacity(ALLOC_HISTORY),
            cur: MAX_STORE_BLOCK,
            table: Box::new([0; TABLE_SIZE]),
            long: Box::new([Long::default(); TABLE_SIZE]),
        }
    }
}

impl Level5 {
    /// Puts every entry out of reach, as the encoder's `Reset` does.
    fn reset(&mut self) {
        if self.cur <= BUFFER_RESET {
            self.cur += MAX_MATCH_OFFSET + self.hist.len() as i32;
        }
        self.hist.clear();
    }

    fn protect_wraparound(&mut self) {
        while self.cur >= BUFFER_RESET {
            if self.hist.is_empty() {
                self.table.fill(0);
                self.long.fill(Long::default());
                self.cur = MAX_MATCH_OFFSET;
                break;
            }
            let min_off = self.cur + self.hist.len() as i32 - MAX_MATCH_OFFSET;
            let cur = self.cur;
            let shift = |v: i32| {
                if v <= min_off {
                    0
                } else {
                    v - cur + MAX_MATCH_OFFSET
                }
            };
            self.table.iter_mut().for_each(|v| *v = shift(*v));
            for e in self.long.iter_mut() {
                if e.cur <= min_off {
                    *e = Long::default();
                } else {
                    e.cur = shift(e.cur);
                    e.prev = shift(e.prev);
                }
            }
            self.cur = MAX_MATCH_OFFSET;
        }
    }

    fn add_block(&mut self, src: &[u8]) -> i32 {
        if self.hist.len() + src.len() > ALLOC_HISTORY {
            let offset = self.hist.len() - MAX_MATCH_OFFSET as usize;
            self.hist.drain(..offset);
            self.cur += offset as i32;
        }
        let s = self.hist.len() as i32;
        self.hist.extend_from_slice(src);
        s
    }

    fn insert_long(&mut self, h: usize, offset: i32) {
        let e = &mut self.long[h];
        e.prev = e.cur;
        e.cur = offset;
    }

    /// Encodes `src` (a chunk), appending its tokens (literals 0) to `out`; none if the
    /// encoder found no match (the chunk is then stored).
    fn encode(&mut self, src: &[u8], out: &mut Vec<Token>) {
        self.protect_wraparound();
        let s = self.add_block(src);
        if src.len() < MIN_NON_LITERAL_BLOCK {
            out.resize(out.len() + src.len(), 0);
            return;
        }
        let first = out.len();
        let hist = std::mem::take(&mut self.hist);
        let next_emit = self.search(&hist, s, out) as usize;
        if next_emit < hist.len() && out.len() > first {
            out.resize(out.len() + hist.len() - next_emit, 0);
        }
        self.hist = hist;
    }

    /// The match search over `src` (the history) from `s`; returns where the literal
    /// remainder starts.
    fn search(&mut self, src: &[u8], mut s: i32, out: &mut Vec<Token>) -> i32 {
        let s_limit = src.len() as i32 - INPUT_MARGIN;
        let mut next_emit = s;
        let mut cv = load64(src, s);
        loop {
            let mut next_s = s;
            let (mut l, mut t): (i32, i32);
            loop {
                let mut next_hash_s = hash4(cv);
                let mut next_hash_l = hash7(cv);
                s = next_s;
                next_s = s + 1 + ((s - next_emit) >> 6);
                if next_s > s_limit {
                    return next_emit;
                }
                let s_candidate = self.table[next_hash_s];
                let l_candidate = self.long[next_hash_l];
                let next = load64(src, next_s);
                let entry = s + self.cur;
                self.table[next_hash_s] = entry;
                self.insert_long(next_hash_l, entry);
                next_hash_s = hash4(next);
                next_hash_l = hash7(next);

                t = l_candidate.cur - self.cur;
                l = 0;
                if s - t < MAX_MATCH_OFFSET {
                    if cv as u32 == load32(src, t) {
                        self.table[next_hash_s] = next_s + self.cur;
                        self.insert_long(next_hash_l, next_s + self.cur);
                        let t2 = l_candidate.prev - self.cur;
                        if s - t2 < MAX_MATCH_OFFSET && cv as u32 == load32(src, t2) {
                            l = self.matchlen(s + 4, t + 4, src) + 4;
                            let ml1 = self.matchlen(s + 4, t2 + 4, src) + 4;
                            if ml1 > l {
                                t = t2;
                                l = ml1;
                            }
                        }
                        break;
                    }
                    t = l_candidate.prev - self.cur;
                    if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                        self.table[next_hash_s] = next_s + self.cur;
                        self.insert_long(next_hash_l, next_s + self.cur);
                        break;
                    }
                }
                t = s_candidate - self.cur;
                if s - t < MAX_MATCH_OFFSET && cv as u32 == load32(src, t) {
                    l = self.matchlen(s + 4, t + 4, src) + 4;
                    let l_candidate = self.long[next_hash_l];
                    self.table[next_hash_s] = next_s + self.cur;
                    self.insert_long(next_hash_l, next_s + self.cur);
                    let t2 = l_candidate.cur - self.cur;
                    if next_s - t2 < MAX_MATCH_OFFSET {
                        if load32(src, t2) == next as u32 {
                            let ml = self.matchlen(next_s + 4, t2 + 4, src) + 4;
                            if ml > l {
                                (t, s, l) = (t2, next_s, ml);
                                break;
                            }
                        }
                        let t2 = l_candidate.prev - self.cur;
                        if next_s - t2 < MAX_MATCH_OFFSET && load32(src, t2) == next as u32 {
                            let ml = self.matchlen(next_s + 4, t2 + 4, src) + 4;
                            if ml > l {
                                (t, s, l) = (t2, next_s, ml);
                            }
                        }
                    }
                    break;
                }
                cv = next;
            }
            if l == 0 {
                l = common(src, s + 4, t + 4, src.len()) + 4;
            } else if l == 258 {
                l += common(src, s + l, t + l, src.len());
            }
            let s_at = s + l;
            if l < 30 && s_at < s_limit {
                const SKIP_BEGINNING: i32 = 2;
                let e_long = self.long[hash7(load64(src, s_at))].cur;
                let t2 = e_long - self.cur - l + SKIP_BEGINNING;
                let s2 = s + SKIP_BEGINNING;
                let off = s2 - t2;
                if t2 >= 0 && off < MAX_MATCH_OFFSET && off > 0 {
                    let l2 = common(src, s2, t2, src.len());
                    if l2 > l {
                        (t, l, s) = (t2, l2, s2);
                    }
                }
            }
            while t > 0 && s > next_emit && src[t as usize - 1] == src[s as usize - 1] {
                s -= 1;
                t -= 1;
                l += 1;
            }
            out.resize(out.len() + (s - next_emit) as usize, 0);
            push_match(out, l, (s - t) as u16);
            s += l;
            next_emit = s;
            if next_s >= s {
                s = next_s + 1;
            }
            if s >= s_limit {
                return next_emit;
            }
            self.insert_inside(src, s, l);
            let x = load64(src, s - 1);
            let o = self.cur + s - 1;
            self.table[hash4(x)] = o;
            self.insert_long(hash7(x), o);
            cv = x >> 8;
        }
    }

    /// Indexes positions inside the match just taken (ending at `s`, length `l`).
    fn insert_inside(&mut self, src: &[u8], s: i32, l: i32) {
        let mut i = s - l + 1;
        if i >= s - 1 {
            return;
        }
        let mut cv = load64(src, i);
        let t = i + self.cur;
        self.table[hash4(cv)] = t;
        self.insert_long(hash7(cv), t);
        cv >>= 8;
        self.insert_long(hash7(cv), t + 1);
        cv >>= 8;
        self.table[hash4(cv)] = t + 2;
        i += 4;
        while i < s - 1 {
            let cv = load64(src, i);
            let t = i + self.cur;
            self.insert_long(hash7(cv), t);
            self.table[hash4(cv >> 8)] = t + 1;
            i += 3;
        }
    }

    fn matchlen(&self, s: i32, t: i32, src: &[u8]) -> i32 {
        let end = (s as usize + 258 - 4).min(src.len());
        common(src, s, t, end)
    }
}

/// Splits a match as the encoder does: pieces of 258, never leaving less than 3.
fn push_match(out: &mut Vec<Token>, mut len: i32, dist: u16) {
    while len > 0 {
        let piece = if len <= 258 {
            len
        } else if len > 258 + 3 {
            258
        } else {
            258 - 3
        };
        len -= piece;
        out.push(match_token(piece as u16, dist));
    }
}

/// pgzip at level 5 over one stream: guesses the token at each stream position.
#[derive(Debug)]
pub struct Pgzip {
    encoder: Level5,
    /// Stream positions: where the current pgzip block and the next chunk start.
    block_start: u64,
    next_chunk: u64,
    /// The replay's tokens not yet passed, by stream position.
    guesses: VecDeque<(u64, Token)>,
    scratch: Vec<Token>,
}

impl Default for Pgzip {
    fn default() -> Self {
        let mut encoder = Level5::default();
        encoder.reset();
        Pgzip {
            encoder,
            block_start: 0,
            next_chunk: 0,
            guesses: VecDeque::new(),
            scratch: Vec::new(),
        }
    }
}

impl Pgzip {
    /// Encodes the chunks that start in `bytes[start..end]` (`base`: the stream position of
    /// `bytes[0]`). An empty range is a sync flush: a new pgzip block starts there.
    pub fn advance(&mut self, bytes: &[u8], start: usize, end: usize, base: u64) {
        let (abs_start, abs_end) = (base + start as u64, base + end as u64);
        if start == end {
            self.new_block(bytes, abs_start, base);
            return;
        }
        if self.next_chunk < abs_start {
            // Bytes the replay never saw (not pgzip's layout): go on from here.
            self.next_chunk = abs_start;
        }
        while self.next_chunk < abs_end {
            let from = (self.next_chunk - base) as usize;
            let to = (from + MAX_STORE_BLOCK as usize).min(end);
            self.encode_chunk(&bytes[from..to], to - from == MAX_STORE_BLOCK as usize);
            self.next_chunk = base + to as u64;
        }
    }

    fn new_block(&mut self, bytes: &[u8], at: u64, base: u64) {
        self.encoder.reset();
        if at - self.block_start > PGZIP_TAIL && at - PGZIP_TAIL >= base {
            let tail = &bytes[(at - PGZIP_TAIL - base) as usize..(at - base) as usize];
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            self.encoder.encode(tail, &mut scratch);
            self.scratch = scratch;
        }
        self.block_start = at;
        self.next_chunk = at;
        self.guesses.clear();
    }

    /// Encodes a chunk and keeps its matches as guesses (a position without one is guessed
    /// a literal).
    fn encode_chunk(&mut self, chunk: &[u8], full: bool) {
        if !full && chunk.len() < MIN_SEARCHED_CHUNK {
            // A final chunk too small to search: literals (or stored), then a reset.
            self.encoder.reset();
            return;
        }
        let mut tokens = std::mem::take(&mut self.scratch);
        tokens.clear();
        self.encoder.encode(chunk, &mut tokens);
        // Tokens that remove less than 1/16 of the chunk are written as literals (none at
        // all: stored).
        if tokens.len() <= chunk.len() - (chunk.len() >> 4) {
            let mut at = self.next_chunk;
            for &t in &tokens {
                if t != 0 {
                    self.guesses.push_back((at, t));
                    at += u64::from(t >> 16);
                } else {
                    at += 1;
                }
            }
        }
        self.scratch = tokens;
    }

    /// The replay's token at stream position `at` (a literal where it has none).
    pub fn guess(&mut self, at: u64) -> Token {
        while let Some(&(p, t)) = self.guesses.front() {
            if p > at {
                break;
            }
            self.guesses.pop_front();
            if p == at {
                return t;
            }
        }
        0
    }
}

/// The tokens of `tokens` (a block's, from a chunk boundary) that cover its first chunk.
pub fn first_chunk(tokens: &[Token]) -> &[Token] {
    let mut covered = 0usize;
    for (i, &t) in tokens.iter().enumerate() {
        covered += if t == 0 { 1 } else { (t >> 16) as usize };
        if covered >= MAX_STORE_BLOCK as usize {
            return &tokens[..=i];
        }
    }
    tokens
}
