//! A replay of libzstd's "double fast" strategy at level 3, the zstd CLI's default, as the
//! CLI drives it (several threads' framing, `-T1` and up) or as one call over a whole input
//! does. Learned from zstd 1.5.4's `zstd_double_fast.c`, `zstd_compress.c` and
//! `zstdmt_compress.c` (1.5.5 and 1.5.6 search the same way; 1.5.7 differs in one choice,
//! a parameter here); the code is this project's.
//!
//! Parameters come from the level and, when the frame header states it, the content size
//! (libzstd's parameter tables and their adjustment to small inputs): a window of 2^W, a
//! table of 2^H entries over 8-byte prefixes and one of 2^C over `mls`-byte prefixes.
//!
//! Per 128 KiB block the encoder probes positions at a step that grows by one every 256
//! probes without a match; at each it tries the most recent offset one byte ahead, the long
//! table's candidate (8 bytes must agree), then the short table's (4 bytes), and for a short
//! one the long candidate one byte later. Candidates must lie above the lowest valid
//! position (the frame's or job's start, or the window's reach from the block's end).
//! After a match it indexes two positions and tries the second most recent offset. Repeat
//! offsets carry over from a block only if that block was written compressed.
//!
//! How the input reached the encoder ([`Cut`]) matters. With worker threads the CLI cuts the
//! input into jobs of 2^(W+2) bytes (at least 1 MiB); every job after the first starts from
//! empty tables, primed with every third position of the previous job's last 2^(W-3) bytes,
//! and with no repeat offsets. A one-shot call sees one contiguous window. The one-thread
//! streaming API copies the input into a buffer of window + block bytes, refilled from its
//! start when full: the bytes before that point become an "external dictionary", searched by
//! a variant (`ZSTD_compressBlock_doubleFast_extDict_generic`: no step growth, and no match
//! or repeat read across the two segments) until they leave the window.

use std::ops::Range;

use super::matcher::{match_len_at, read32_at, read64_at};

use super::klauspost::Guess;

const PRIME4: u32 = 2_654_435_761;
const PRIME5: u64 = 889_523_592_379;
const PRIME6: u64 = 227_718_039_650_203;
const PRIME7: u64 = 58_295_818_150_454_627;
const PRIME8: u64 = 0xcf1b_bcdc_b7a5_6463;
/// Probes without a match after which the step grows.
const STEP_INCREASE: i64 = 1 << 8;
/// Bytes every hash reads; the search stops this far before the block's end.
const HASH_READ: i64 = 8;
/// Table positions are kept relative to an origin moved before they pass this.
const REBASE_AT: u64 = 1 << 31;

/// The encoder's parameters for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub window_log: u32,
    /// Bits of the short (`mls`-byte) table.
    pub chain_log: u32,
    /// Bits of the long (8-byte) table.
    pub hash_log: u32,
    pub mls: u32,
    /// zstd 1.5.7 and later: a long candidate a byte after a short match is taken only if
    /// it is longer (earlier versions always take it).
    pub longer_next: bool,
}

impl Params {
    /// Level 3's parameters for a frame of `content_size` bytes (unknown: any size), as
    /// zstd before 1.5.7 (`longer_next` false) or from 1.5.7 on chooses them.
    pub fn level3(content_size: Option<u64>, longer_next: bool) -> Params {
        // libzstd's tables: inputs over 256 KiB (or unknown), up to 256, 128 and 16 KiB.
        let (w, c, h, mls) = match content_size {
            Some(n) if n <= 16 << 10 => (14, 14, 15, 4),
            Some(n) if n <= 128 << 10 => (17, 15, 16, 5),
            Some(n) if n <= 256 << 10 => (18, 16, 16, 4),
            _ => (21, 16, 17, 5),
        };
        let mut p = Params {
            window_log: w,
            chain_log: c,
            hash_log: h,
            mls,
            longer_next,
        };
        if let Some(n) = content_size {
            let src_log = if n < 64 {
                6
            } else {
                64 - (n - 1).leading_zeros()
            };
            p.window_log = p.window_log.min(src_log);
            p.hash_log = p.hash_log.min(p.window_log + 1);
            p.chain_log = p.chain_log.min(p.window_log);
        }
        p.window_log = p.window_log.max(10);
        p
    }
}

/// How the input reached the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The CLI's worker threads: jobs, each restarted.
    Jobs,
    /// One call over the whole input.
    OneCall,
    /// The one-thread streaming API and its input buffer.
    Buffered,
}

/// The encoder's state over one frame.
#[derive(Debug)]
pub struct Dfast {
    params: Params,
    long: Vec<u32>,
    short: Vec<u32>,
    cut: Cut,
    /// Bytes per job ([`Cut::Jobs`]).
    job: u64,
    /// Bytes of the previous job a job is primed with.
    overlap: u64,
    /// Bytes of the streaming input buffer ([`Cut::Buffered`]).
    buffer: u64,
    /// Where the current job's reachable bytes start (its primer's start), or the current
    /// buffer fill's.
    seg_start: u64,
    origin: u64,
    /// The origin moves once positions pass it by this much.
    rebase_at: u64,
    reps: [u32; 3],
    /// The sequences of the last block encoded.
    pub guesses: Vec<Guess>,
}

/// One block's search: indices into the frame buffer.
struct Block<'a> {
    src: &'a [u8],
    /// Frame position of `src[0]`.
    base: u64,
    end: i64,
    /// Candidates must lie above this index.
    lowest: i64,
}

impl Dfast {
    /// The replay for a frame of `content_size` bytes (if known) with these parameters,
    /// its input cut as `cut`.
    pub fn new(params: Params, cut: Cut, content_size: Option<u64>) -> Self {
        let w = params.window_log;
        let window = (1u64 << w).min(content_size.unwrap_or(u64::MAX)).max(1);
        Dfast {
            params,
            long: vec![0; 1 << params.hash_log],
            short: vec![0; 1 << params.chain_log],
            cut,
            job: 1 << (w + 2).max(20),
            overlap: 1 << (w - 3),
            buffer: window + window.min(super::block::MAX_BLOCK as u64),
            seg_start: 0,
            origin: 0,
            rebase_at: REBASE_AT,
            reps: [1, 4, 8],
            guesses: Vec::new(),
        }
    }

    pub fn params(&self) -> Params {
        self.params
    }

    fn hash_long(&self, b: &[u8], i: i64) -> usize {
        (read64_at(b, i).wrapping_mul(PRIME8) >> (64 - self.params.hash_log)) as usize
    }

    fn hash_short(&self, b: &[u8], i: i64) -> usize {
        let bits = self.params.chain_log;
        let shifted = |len: u32, prime: u64| {
            ((read64_at(b, i) << (64 - 8 * len)).wrapping_mul(prime) >> (64 - bits)) as usize
        };
        match self.params.mls {
            5 => shifted(5, PRIME5),
            6 => shifted(6, PRIME6),
            7 => shifted(7, PRIME7),
            _ => (read32_at(b, i).wrapping_mul(PRIME4) >> (32 - bits)) as usize,
        }
    }

    fn key(&self, blk: &Block, i: i64) -> u32 {
        (blk.base + i as u64 - self.origin + 1) as u32
    }

    /// The index a table entry names, if it lies above the lowest valid one.
    fn valid(&self, blk: &Block, key: u32) -> Option<i64> {
        let i = (self.origin + key as u64) as i64 - 1 - blk.base as i64;
        (key != 0 && i > blk.lowest).then_some(i)
    }

    fn rebase(&mut self, to: u64) {
        let shift = to - self.origin;
        for k in self.long.iter_mut().chain(self.short.iter_mut()) {
            *k = if (*k as u64) > shift {
                (*k as u64 - shift) as u32
            } else {
                0
            };
        }
        self.origin = to;
    }

    /// Encodes the block at frame positions `block` of `buf` (which starts at frame position
    /// `base` and holds the window before the block): fills `guesses`. `compressed` says
    /// whether the stream holds the block compressed (only then do its repeat offsets carry).
    pub fn encode(&mut self, buf: &[u8], base: u64, block: Range<u64>, compressed: bool) {
        self.guesses.clear();
        let window = 1u64 << self.params.window_log;
        if block.start < base || block.start - base < window.min(block.start) {
            return;
        }
        match self.cut {
            Cut::Jobs if block.start > 0 && block.start.is_multiple_of(self.job) => {
                self.start_job(buf, base, block.start);
            }
            Cut::Buffered => self.seg_start = block.start - block.start % self.buffer,
            _ => {}
        }
        if block.end - self.origin >= self.rebase_at {
            self.rebase(block.start.saturating_sub(window));
        }
        // Blocks under 7 bytes are not searched.
        if block.end - block.start < 7 {
            return;
        }
        let reach = block.end.saturating_sub(window);
        let external = self.cut == Cut::Buffered && self.seg_start > 0 && reach < self.seg_start;
        let lowest = if external {
            reach
        } else {
            self.seg_start.max(reach)
        };
        let blk = Block {
            src: buf,
            base,
            end: (block.end - base) as i64,
            lowest: lowest as i64 - base as i64,
        };
        let start = (block.start - base) as i64;
        let next = if external {
            self.search_external(&blk, start, self.seg_start as i64 - base as i64)
        } else {
            self.search(&blk, start)
        };
        if compressed {
            self.reps = next;
        }
    }

    /// A new job at `start`: empty tables primed with the previous job's last bytes, no
    /// repeat offsets.
    fn start_job(&mut self, buf: &[u8], base: u64, start: u64) {
        self.long.fill(0);
        self.short.fill(0);
        self.seg_start = start - self.overlap.min(start);
        self.origin = self.seg_start;
        self.reps = [0, 0, 0];
        let blk = Block {
            src: buf,
            base,
            end: (start - base) as i64,
            lowest: 0,
        };
        let mut i = (self.seg_start - base) as i64;
        while i + 2 <= blk.end - HASH_READ {
            let key = self.key(&blk, i);
            let (s, l) = (self.hash_short(buf, i), self.hash_long(buf, i));
            self.short[s] = key;
            self.long[l] = key;
            i += 3;
        }
    }
}

/// Where a search found its match: at index `at`, `len` bytes, `offset` back.
struct Found {
    at: i64,
    len: i64,
    offset: i64,
}

impl Dfast {
    /// Extends a match at `ip` from `m` backwards while the bytes before agree (not before
    /// `anchor` nor to the lowest valid index).
    fn catch_up(blk: &Block, ip: i64, m: i64, len: i64, anchor: i64) -> Found {
        Self::catch_up_to(blk, ip, m, len, anchor, blk.lowest)
    }

    /// [`Dfast::catch_up`] with the source not extended to `floor` or below.
    fn catch_up_to(
        blk: &Block,
        mut ip: i64,
        mut m: i64,
        mut len: i64,
        anchor: i64,
        floor: i64,
    ) -> Found {
        while ip > anchor && m > floor && blk.src[ip as usize - 1] == blk.src[m as usize - 1] {
            ip -= 1;
            m -= 1;
            len += 1;
        }
        Found {
            at: ip,
            len,
            offset: ip - m,
        }
    }

    fn emit(&mut self, blk: &Block, at: i64, len: i64, of: u32) {
        self.guesses.push(Guess {
            at: blk.base + at as u64,
            ml: len as u32,
            of,
        });
    }

    /// The block compressor (`ZSTD_compressBlock_doubleFast_noDict_generic`) from index
    /// `start`; returns the repeat offsets it ends with.
    fn search(&mut self, blk: &Block, start: i64) -> [u32; 3] {
        let src = blk.src;
        let end = blk.end;
        let limit = end - HASH_READ;
        let mut anchor = start;
        let mut ip = start + (start == blk.lowest) as i64;
        let seg_start = self.seg_start as i64 - blk.base as i64;
        let window_low = seg_start.max(ip - (1i64 << self.params.window_log));
        let max_rep = (ip - window_low) as u32;
        let (mut o1, mut o2) = (self.reps[0], self.reps[1]);
        let (mut saved1, mut saved2) = (0, 0);
        if o2 > max_rep {
            (saved2, o2) = (o2, 0);
        }
        if o1 > max_rep {
            (saved1, o1) = (o1, 0);
        }
        'outer: loop {
            let mut step = 1;
            let mut next_step = ip + STEP_INCREASE;
            let mut ip1 = ip + step;
            if ip1 > limit {
                break 'outer;
            }
            let mut hl0 = self.hash_long(src, ip);
            let mut idxl0 = self.long[hl0];
            let (curr, hl1, found) = loop {
                let hs0 = self.hash_short(src, ip);
                let idxs0 = self.short[hs0];
                let curr = ip;
                let key = self.key(blk, ip);
                self.long[hl0] = key;
                self.short[hs0] = key;
                if o1 > 0 && read32_at(src, ip + 1 - o1 as i64) == read32_at(src, ip + 1) {
                    let len = match_len_at(src, ip + 5, ip + 5 - o1 as i64, end) + 4;
                    ip += 1;
                    self.emit(blk, ip, len, 1);
                    break (
                        curr,
                        None,
                        Found {
                            at: ip,
                            len,
                            offset: 0,
                        },
                    );
                }
                let hl1 = self.hash_long(src, ip1);
                if let Some(m) = self.valid(blk, idxl0) {
                    if read64_at(src, m) == read64_at(src, ip) {
                        let len = match_len_at(src, ip + 8, m + 8, end) + 8;
                        break (curr, Some(hl1), Self::catch_up(blk, ip, m, len, anchor));
                    }
                }
                let idxl1 = self.long[hl1];
                if let Some(m) = self.valid(blk, idxs0) {
                    if read32_at(src, m) == read32_at(src, ip) {
                        let f = self.short_match(blk, (ip, m), (ip1, idxl1), anchor);
                        break (curr, Some(hl1), f);
                    }
                }
                if ip1 >= next_step {
                    step += 1;
                    next_step += STEP_INCREASE;
                }
                ip = ip1;
                ip1 += step;
                hl0 = hl1;
                idxl0 = idxl1;
                if ip1 > limit {
                    break 'outer;
                }
            };
            if let Some(hl1) = hl1 {
                o2 = o1;
                o1 = found.offset as u32;
                if step < 4 {
                    self.long[hl1] = self.key(blk, ip1);
                }
                self.emit(blk, found.at, found.len, found.offset as u32 + 3);
            }
            ip = found.at + found.len;
            anchor = ip;
            if ip <= limit {
                self.index_after_match(blk, curr + 2, ip);
                while ip <= limit && o2 > 0 && read32_at(src, ip) == read32_at(src, ip - o2 as i64)
                {
                    let len = match_len_at(src, ip + 4, ip + 4 - o2 as i64, end) + 4;
                    std::mem::swap(&mut o1, &mut o2);
                    let key = self.key(blk, ip);
                    let (s, l) = (self.hash_short(src, ip), self.hash_long(src, ip));
                    self.short[s] = key;
                    self.long[l] = key;
                    self.emit(blk, ip, len, 1);
                    ip += len;
                    anchor = ip;
                }
            }
        }
        if saved1 != 0 && o1 != 0 {
            saved2 = saved1;
        }
        [
            if o1 != 0 { o1 } else { saved1 },
            if o2 != 0 { o2 } else { saved2 },
            self.reps[2],
        ]
    }

    /// A short match `m` for `ip`: a long candidate (its key) for `ip1`, a byte later, is
    /// taken instead (before zstd 1.5.7 always, from 1.5.7 on only if it is longer).
    fn short_match(
        &self,
        blk: &Block,
        (ip, m): (i64, i64),
        (ip1, key1): (i64, u32),
        anchor: i64,
    ) -> Found {
        let (src, end) = (blk.src, blk.end);
        let long = self
            .valid(blk, key1)
            .filter(|&m1| read64_at(src, m1) == read64_at(src, ip1));
        if !self.params.longer_next {
            if let Some(m1) = long {
                let len = match_len_at(src, ip1 + 8, m1 + 8, end) + 8;
                return Self::catch_up(blk, ip1, m1, len, anchor);
            }
            let len = match_len_at(src, ip + 4, m + 4, end) + 4;
            return Self::catch_up(blk, ip, m, len, anchor);
        }
        let len = match_len_at(src, ip + 4, m + 4, end) + 4;
        if let Some(m1) = long {
            let len1 = match_len_at(src, ip1 + 8, m1 + 8, end) + 8;
            if len1 > len {
                return Self::catch_up(blk, ip1, m1, len1, anchor);
            }
        }
        Self::catch_up(blk, ip, m, len, anchor)
    }

    /// The block compressor while earlier bytes of the window sit in the other segment of
    /// the streaming buffer (`..._extDict_generic`): `prefix` is the index where the current
    /// segment starts. A candidate whose first bytes straddle the segments' seam reads other
    /// memory in libzstd: taken as no match here. Returns the repeat offsets it ends with.
    fn search_external(&mut self, blk: &Block, start: i64, prefix: i64) -> [u32; 3] {
        let (src, end) = (blk.src, blk.end);
        let limit = end - HASH_READ;
        let (mut anchor, mut ip) = (start, start);
        let (mut o1, mut o2) = (self.reps[0] as i64, self.reps[1] as i64);
        // A match source: valid, and its first `n` bytes on one side of the seam.
        let usable = |m: i64, n: i64| m > blk.lowest && (m >= prefix || m + n <= prefix);
        // How far back a match from `m` may be extended.
        let floor = |m: i64| if m < prefix { blk.lowest } else { prefix };
        let rep_usable = |r: i64, at: i64, o: i64| {
            (r >= prefix || r + 4 <= prefix) && o <= at - blk.lowest && o > 0
        };
        while ip < limit {
            let (hs, hl) = (self.hash_short(src, ip), self.hash_long(src, ip));
            let (mi, mli) = (self.short[hs], self.long[hl]);
            let curr = ip;
            let key = self.key(blk, ip);
            self.short[hs] = key;
            self.long[hl] = key;
            let rep = curr + 1 - o1;
            let found =
                if rep_usable(rep, curr + 1, o1) && read32_at(src, rep) == read32_at(src, ip + 1) {
                    let len = match_len_at(src, ip + 5, rep + 4, end) + 4;
                    ip += 1;
                    self.emit(blk, ip, len, 1);
                    Found {
                        at: ip,
                        len,
                        offset: 0,
                    }
                } else {
                    let long = self
                        .valid(blk, mli)
                        .filter(|&m| usable(m, 8) && read64_at(src, m) == read64_at(src, ip));
                    let short = self
                        .valid(blk, mi)
                        .filter(|&m| usable(m, 4) && read32_at(src, m) == read32_at(src, ip));
                    let f = if let Some(m) = long {
                        let len = match_len_at(src, ip + 8, m + 8, end) + 8;
                        Self::catch_up_to(blk, ip, m, len, anchor, floor(m))
                    } else if let Some(m) = short {
                        let h3 = self.hash_long(src, ip + 1);
                        let m3 = self.valid(blk, self.long[h3]);
                        self.long[h3] = self.key(blk, ip + 1);
                        match m3.filter(|&m3| {
                            usable(m3, 8) && read64_at(src, m3) == read64_at(src, ip + 1)
                        }) {
                            Some(m3) => {
                                let len = match_len_at(src, ip + 9, m3 + 8, end) + 8;
                                Self::catch_up_to(blk, ip + 1, m3, len, anchor, floor(m3))
                            }
                            None => {
                                let len = match_len_at(src, ip + 4, m + 4, end) + 4;
                                Self::catch_up_to(blk, ip, m, len, anchor, floor(m))
                            }
                        }
                    } else {
                        ip += ((ip - anchor) >> 8) + 1;
                        continue;
                    };
                    o2 = o1;
                    o1 = f.offset;
                    self.emit(blk, f.at, f.len, f.offset as u32 + 3);
                    f
                };
            ip = found.at + found.len;
            anchor = ip;
            if ip <= limit {
                self.index_after_match(blk, curr + 2, ip);
                while ip <= limit {
                    let r = ip - o2;
                    if !(rep_usable(r, ip, o2) && read32_at(src, r) == read32_at(src, ip)) {
                        break;
                    }
                    let len = match_len_at(src, ip + 4, r + 4, end) + 4;
                    std::mem::swap(&mut o1, &mut o2);
                    let key = self.key(blk, ip);
                    let (s, l) = (self.hash_short(src, ip), self.hash_long(src, ip));
                    self.short[s] = key;
                    self.long[l] = key;
                    self.emit(blk, ip, len, 1);
                    ip += len;
                    anchor = ip;
                }
            }
        }
        [o1 as u32, o2 as u32, self.reps[2]]
    }

    /// Indexes `at` (two past the position searched) in both tables, and the match's end:
    /// two before it in the long table, one before in the short.
    fn index_after_match(&mut self, blk: &Block, at: i64, end: i64) {
        let src = blk.src;
        let (k_at, k2, k1) = (
            self.key(blk, at),
            self.key(blk, end - 2),
            self.key(blk, end - 1),
        );
        let l = self.hash_long(src, at);
        self.long[l] = k_at;
        let l = self.hash_long(src, end - 2);
        self.long[l] = k2;
        let s = self.hash_short(src, at);
        self.short[s] = k_at;
        let s = self.hash_short(src, end - 1);
        self.short[s] = k1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zst::klauspost::tests::text;

    /// The replay's guesses for `data` as 128 KiB blocks of one frame, the table origin
    /// moving every `rebase_at` bytes.
    fn guesses(data: &[u8], rebase_at: u64) -> Vec<Guess> {
        let mut replay = Dfast::new(Params::level3(None, false), Cut::Jobs, None);
        replay.rebase_at = rebase_at;
        let mut all = Vec::new();
        let block = crate::zst::block::MAX_BLOCK as u64;
        for start in (0..data.len() as u64).step_by(block as usize) {
            let end = (start + block).min(data.len() as u64);
            replay.encode(data, 0, start..end, true);
            all.extend_from_slice(&replay.guesses);
        }
        all
    }

    #[test]
    fn moving_the_table_origin_changes_no_guess() {
        // Three jobs (8 MiB each), the origin moving every 3 MiB (4 MiB past the window).
        let data = text(20 << 20);
        let plain = guesses(&data, REBASE_AT);
        assert!(
            plain.len() > 100_000,
            "the sample has matches: {}",
            plain.len()
        );
        let moved = guesses(&data, 3 << 20);
        let first_change = plain.iter().zip(&moved).position(|(a, b)| a != b);
        assert_eq!(first_change, None, "guesses differ");
        assert_eq!(plain.len(), moved.len());
    }

    #[test]
    fn small_inputs_take_the_parameters_libzstd_gives_them() {
        let p = |n| Params::level3(Some(n), false);
        assert_eq!((p(9_000).window_log, p(9_000).hash_log), (14, 15));
        assert_eq!((p(200_000).window_log, p(200_000).mls), (18, 4));
        assert_eq!((p(100_000).window_log, p(100_000).chain_log), (17, 15));
        assert_eq!(p(5_000).window_log, 13);
        assert_eq!(Params::level3(None, false).window_log, 21);
    }
}
