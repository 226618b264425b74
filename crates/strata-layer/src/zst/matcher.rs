//! The decoded bytes of one frame as the sequence model sees them: a buffer that keeps at
//! least the window, hash chains over every 4-byte prefix, and the repeat offsets. Analysis
//! and rebuild drive identical copies, so every prediction is the same on both sides.

use super::block::MAX_BLOCK;
use crate::LayerError;

/// Most buckets of the 4-byte chain heads (fewer for small windows).
const HASH_BITS: u32 = 17;
/// Buckets of the 5-7 byte prefix tables: large, since a collision hides a match.
const LONG_HASH_BITS: u32 = 18;
/// Fewest buckets of any table.
const MIN_HASH_BITS: u32 = 10;
/// Farthest back the chains reach; farther matches are coded explicitly.
const MAX_CHAIN_WINDOW: usize = 8 << 20;
/// Chain links walked when listing candidates.
pub const MAX_WALK: usize = 16;
/// Chain links looked at when asking whether a match starts at a position.
const MATCHABLE_LINKS: usize = 2;
/// Bytes compared when ranking candidates by length.
const RANK_LEN: usize = 128;

/// The three repeat offsets and how an offset value moves them (RFC 8878 3.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reps(pub [u32; 3]);

impl Default for Reps {
    fn default() -> Self {
        Reps([1, 4, 8])
    }
}

impl Reps {
    /// The distance an offset value names; updates the offsets.
    pub fn resolve(&mut self, of: u32, ll: u32) -> Result<u32, LayerError> {
        let r = &mut self.0;
        if of > 3 {
            let d = of - 3;
            *r = [d, r[0], r[1]];
            return Ok(d);
        }
        let d = match of - 1 + (ll == 0) as u32 {
            0 => r[0],
            1 => {
                *r = [r[1], r[0], r[2]];
                r[0]
            }
            2 => {
                *r = [r[2], r[0], r[1]];
                r[0]
            }
            _ => {
                let d = r[0].wrapping_sub(1);
                if d == 0 {
                    return Err(LayerError::Zstd("repeat offset of zero".into()));
                }
                *r = [d, r[0], r[1]];
                d
            }
        };
        Ok(d)
    }

    /// The distance offset value `of` would name, without moving anything.
    pub fn peek(&self, of: u32, ll: u32) -> u32 {
        let mut copy = *self;
        copy.resolve(of, ll).unwrap_or(0)
    }
}

/// One frame's bytes and the chains over them. Positions are counted from the frame start.
#[derive(Debug)]
pub struct Matcher {
    buf: Vec<u8>,
    /// Frame position of `buf[0]`.
    base: u64,
    window: usize,
    /// Positions below this are in the chains.
    hashed: u64,
    mask: usize,
    head: Vec<u32>,
    head_bits: u32,
    long_bits: u32,
    prev: Vec<u32>,
    /// The chain of positions sharing an 8-byte prefix hash (its heads: `long_heads[3]`).
    prev8: Vec<u32>,
    /// Most recent position of each 5-, 6-, 7- and 8-byte prefix hash.
    long_heads: [Vec<u32>; 4],
    /// Positions are put into the chains (off once an encoder's replay predicts the frame).
    chains: bool,
}

/// How many leading bytes `a` and `b` (of equal length) share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = u64::from_le_bytes(x.try_into().unwrap_or([0; 8]))
            ^ u64::from_le_bytes(y.try_into().unwrap_or([0; 8]));
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..]
        .iter()
        .zip(&b[n..])
        .take_while(|(x, y)| x == y)
        .count()
}

fn read8(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

/// The 4 bytes at index `i` of `b`, little-endian (the encoders' replays read this way).
#[inline]
pub fn read32_at(b: &[u8], i: i64) -> u32 {
    let i = i as usize;
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]))
}

/// The 8 bytes at index `i` of `b`, little-endian.
#[inline]
pub fn read64_at(b: &[u8], i: i64) -> u64 {
    read8(&b[i as usize..])
}

/// How many bytes from index `a` on equal those from `b` on (`b < a`), not past `end`.
#[inline]
pub fn match_len_at(buf: &[u8], a: i64, b: i64, end: i64) -> i64 {
    let n = (end - a) as usize;
    common_prefix(
        &buf[a as usize..end as usize],
        &buf[b as usize..b as usize + n],
    ) as i64
}

/// Hash of the first `len` (5-8) bytes of `word`, in `bits` bits.
fn hash_long(word: u64, len: usize, bits: u32) -> usize {
    let v = word << (64 - 8 * len as u32);
    (v.wrapping_mul(0xCF1B_BCDC_B7A5_6463) >> (64 - bits)) as usize
}

fn hash4(b: &[u8], bits: u32) -> usize {
    let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    (v.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

impl Matcher {
    pub fn new(window: u64) -> Self {
        let chain = (window as usize)
            .clamp(1 << 10, MAX_CHAIN_WINDOW)
            .next_power_of_two();
        let log = chain.trailing_zeros();
        let head_bits = log.clamp(MIN_HASH_BITS, HASH_BITS);
        let long_bits = log.clamp(MIN_HASH_BITS, LONG_HASH_BITS);
        Matcher {
            buf: Vec::new(),
            base: 0,
            window: window as usize,
            hashed: 0,
            mask: chain - 1,
            head: Vec::new(),
            head_bits,
            long_bits,
            prev: Vec::new(),
            prev8: Vec::new(),
            long_heads: [0; 4].map(|_| Vec::new()),
            chains: true,
        }
    }

    /// The held bytes and the frame position of the first.
    pub fn held(&self) -> (&[u8], u64) {
        (&self.buf, self.base)
    }

    /// Stops putting positions into the chains (and frees them): after this only
    /// [`Matcher::match_len`] and the byte accessors answer.
    pub fn stop_chains(&mut self) {
        self.chains = false;
        self.head = Vec::new();
        self.prev = Vec::new();
        self.prev8 = Vec::new();
        self.long_heads = [0; 4].map(|_| Vec::new());
    }

    /// Frame position one past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }

    /// The byte at frame position `p` (which must be held).
    pub fn at(&self, p: u64) -> u8 {
        self.buf[(p - self.base) as usize]
    }

    /// The bytes from frame position `p` to the end.
    pub fn from(&self, p: u64) -> &[u8] {
        &self.buf[(p - self.base) as usize..]
    }

    /// `true` if a match `d` back from `p` starts inside the window and the buffer.
    pub fn reaches(&self, p: u64, d: u64) -> bool {
        d >= 1 && d <= p - self.base && d as usize <= self.window.max(1)
    }

    /// Drops bytes no match can reach any more (only when the buffer is twice the window).
    pub fn trim(&mut self) {
        self.hash_until(self.end());
        let keep = self.window.max(MAX_BLOCK);
        if self.buf.len() > 2 * keep + MAX_BLOCK {
            let cut = self.buf.len() - keep;
            self.buf.drain(..cut);
            self.base += cut as u64;
        }
    }

    /// Puts every position below `p` (that has 4 bytes after it) into the chains.
    /// (Positions need 8 bytes after them; the last 7 of the data wait for more.)
    fn hash_until(&mut self, p: u64) {
        if !self.chains {
            return;
        }
        if self.head.is_empty() {
            // Allocated at first use: a frame an encoder's replay predicts never needs them.
            let chain = self.mask + 1;
            self.head = vec![u32::MAX; 1 << self.head_bits];
            self.prev = vec![u32::MAX; chain];
            self.prev8 = vec![u32::MAX; chain];
            self.long_heads = [0; 4].map(|_| vec![u32::MAX; 1 << self.long_bits]);
        }
        let last = p.min(self.end().saturating_sub(7));
        while self.hashed < last {
            let i = (self.hashed - self.base) as usize;
            let at = self.hashed as u32;
            let h = hash4(&self.buf[i..], self.head_bits);
            self.prev[self.hashed as usize & self.mask] = self.head[h];
            self.head[h] = at;
            let word = read8(&self.buf[i..]);
            self.prev8[self.hashed as usize & self.mask] =
                self.long_heads[3][hash_long(word, 8, self.long_bits)];
            for (k, heads) in self.long_heads.iter_mut().enumerate() {
                heads[hash_long(word, k + 5, self.long_bits)] = at;
            }
            self.hashed += 1;
        }
    }

    /// Length of the match `d` back from `p`, not past `limit` nor `cap` bytes.
    pub fn match_len(&self, p: u64, d: u64, limit: u64, cap: usize) -> usize {
        if !self.reaches(p, d) || p >= limit.min(self.end()) {
            return 0;
        }
        let (a, b) = ((p - d - self.base) as usize, (p - self.base) as usize);
        let n = ((limit.min(self.end()) - p) as usize).min(cap);
        common_prefix(&self.buf[a..a + n], &self.buf[b..b + n])
    }

    /// Walks up to `links` links of the chain at `p`: calls `visit(distance, length)` for
    /// each earlier position whose first 4 bytes equal those at `p`, nearest first, until
    /// it returns false.
    fn walk(
        &mut self,
        p: u64,
        limit: u64,
        cap: usize,
        links: usize,
        long: bool,
        mut visit: impl FnMut(u64, usize) -> bool,
    ) {
        self.hash_until(p);
        if !self.chains {
            return;
        }
        let end = limit.min(self.end());
        let need = if long { 8 } else { 4 };
        if p + need > end || (long && p + 8 > self.end()) {
            return;
        }
        let i = (p - self.base) as usize;
        let n = ((end - p) as usize).min(cap).max(need as usize);
        let here = &self.buf[i..i + n];
        let first = u32::from_le_bytes([here[0], here[1], here[2], here[3]]);
        let (heads, chain) = if long {
            (&self.long_heads[3], &self.prev8)
        } else {
            (&self.head, &self.prev)
        };
        let mut link = if long {
            heads[hash_long(read8(here), 8, self.long_bits)]
        } else {
            heads[hash4(here, self.head_bits)]
        };
        let mut last_d = 0u64;
        for _ in 0..links {
            if link == u32::MAX {
                break;
            }
            let d = (p as u32).wrapping_sub(link) as u64;
            if d <= last_d || !self.reaches(p, d) || d as usize > self.mask {
                break;
            }
            last_d = d;
            let j = i - d as usize;
            let there = &self.buf[j..j + n];
            if u32::from_le_bytes([there[0], there[1], there[2], there[3]]) == first {
                let len = common_prefix(there, here);
                if len >= need as usize && !visit(d, len) {
                    return;
                }
            }
            link = chain[link as usize & self.mask];
        }
    }

    /// Earlier positions matching at `p` (at least 4 bytes), nearest first, with their
    /// lengths (compared up to `RANK_LEN` bytes).
    /// With `long`, only positions sharing 8 bytes (through their own chain).
    pub fn candidates(&mut self, p: u64, limit: u64, long: bool, out: &mut Vec<(u64, usize)>) {
        out.clear();
        self.walk(p, limit, RANK_LEN, MAX_WALK, long, |d, len| {
            out.push((d, len));
            true
        });
    }

    /// `true` if a match of at least `min` bytes starts at `p`: through a repeat offset or
    /// the most recent earlier position sharing its first `min` bytes' hash (for `min` of
    /// 4 or less, the first few chain links).
    pub fn matchable(&mut self, p: u64, limit: u64, reps: &Reps, min: usize) -> bool {
        if reps
            .0
            .iter()
            .any(|&d| self.match_len(p, d as u64, limit, min) >= min)
        {
            return true;
        }
        if min <= 4 {
            let mut found = false;
            self.walk(p, limit, 4, MATCHABLE_LINKS, false, |_, len| {
                found = len >= min;
                !found
            });
            return found;
        }
        self.hash_until(p);
        if p + 8 > self.end() {
            return false;
        }
        let k = min.min(8);
        self.latest(p, limit, k, min).is_some()
    }

    /// The most recent earlier position sharing the hash of the `k` (5-8) bytes at `p`, as
    /// (distance, length), if at least `min` bytes match there.
    fn latest(&mut self, p: u64, limit: u64, k: usize, min: usize) -> Option<(u64, usize)> {
        self.hash_until(p);
        if !self.chains || p + 8 > self.end() {
            return None;
        }
        let link = self.long_heads[k - 5][hash_long(read8(self.from(p)), k, self.long_bits)];
        if link == u32::MAX {
            return None;
        }
        let d = (p as u32).wrapping_sub(link) as u64;
        if d > self.mask as u64 {
            return None;
        }
        let len = self.match_len(p, d, limit, RANK_LEN);
        (len >= min).then_some((d, len))
    }

    /// What an encoder with one table of 8-byte and one of `min`-byte prefixes would find
    /// at `p`: up to two distinct matches, the longer first.
    pub fn quick(&mut self, p: u64, limit: u64, min: usize, out: &mut Vec<(u64, usize)>) {
        out.clear();
        let min = min.max(4);
        let short = if min <= 4 {
            let mut first = None;
            self.walk(p, limit, RANK_LEN, 1, false, |d, len| {
                first = Some((d, len));
                false
            });
            first
        } else {
            self.latest(p, limit, min.min(8), min)
        };
        out.extend(self.latest(p, limit, 8, min));
        if let Some(s) = short {
            if out.first().is_none_or(|l| l.0 != s.0) {
                out.push(s);
            }
        }
        if out.len() == 2 && out[1].1 > out[0].1 {
            out.swap(0, 1);
        }
    }
}
