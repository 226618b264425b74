//! The block compressor while earlier bytes of the window sit in the other segment of the
//! streaming input buffer (`ZSTD_compressBlock_doubleFast_extDict_generic`).

use super::search::Found;
use super::{Block, Dfast, HASH_READ};
use crate::zst::matcher::{match_len_at, read32_at, read64_at};

impl Dfast {
    /// The block compressor while earlier bytes of the window sit in the other segment of
    /// the streaming buffer (`..._extDict_generic`): `prefix` is the index where the current
    /// segment starts. A candidate whose first bytes straddle the segments' seam reads other
    /// memory in libzstd: taken as no match here. Returns the repeat offsets it ends with.
    pub(super) fn search_external(&mut self, blk: &Block, start: i64, prefix: i64) -> [u32; 3] {
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
                    self.emit_second_offset(blk, ip, len);
                    ip += len;
                    anchor = ip;
                }
            }
        }
        [o1 as u32, o2 as u32, self.reps[2]]
    }
}
