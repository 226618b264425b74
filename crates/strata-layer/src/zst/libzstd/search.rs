//! The block compressor over one contiguous window
//! (`ZSTD_compressBlock_doubleFast_noDict_generic`) and what it shares with the
//! external-dictionary variant.

use super::{Block, Dfast, HASH_READ, STEP_INCREASE};
use crate::zst::matcher::{match_len_at, read32_at, read64_at};
use crate::zst::replay::Guess;

/// Where a search found its match: at index `at`, `len` bytes, `offset` back.
pub(super) struct Found {
    pub(super) at: i64,
    pub(super) len: i64,
    pub(super) offset: i64,
}

impl Dfast {
    /// Extends a match at `ip` from `m` backwards while the bytes before agree (not before
    /// `anchor` nor to the lowest valid index).
    fn catch_up(blk: &Block, ip: i64, m: i64, len: i64, anchor: i64) -> Found {
        Self::catch_up_to(blk, ip, m, len, anchor, blk.lowest)
    }

    /// [`Dfast::catch_up`] with the source not extended to `floor` or below.
    pub(super) fn catch_up_to(
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

    pub(super) fn emit(&mut self, blk: &Block, at: i64, len: i64, of: u32) {
        self.guesses.push(Guess {
            at: blk.base + at as u64,
            ml: len as u32,
            of,
        });
    }

    /// The block compressor (`ZSTD_compressBlock_doubleFast_noDict_generic`) from index
    /// `start`; returns the repeat offsets it ends with.
    pub(super) fn search(&mut self, blk: &Block, start: i64) -> [u32; 3] {
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
                    self.emit_second_offset(blk, ip, len);
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

    /// A match at `ip` with the second most recent offset, straight after a match: `ip`
    /// goes into both tables and the sequence (no literals, repeat code 1) is written.
    pub(super) fn emit_second_offset(&mut self, blk: &Block, ip: i64, len: i64) {
        let key = self.key(blk, ip);
        let (s, l) = (self.hash_short(blk.src, ip), self.hash_long(blk.src, ip));
        self.short[s] = key;
        self.long[l] = key;
        self.emit(blk, ip, len, 1);
    }

    /// Indexes `at` (two past the position searched) in both tables, and the match's end:
    /// two before it in the long table, one before in the short.
    pub(super) fn index_after_match(&mut self, blk: &Block, at: i64, end: i64) {
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
