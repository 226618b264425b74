//! A replay of klauspost/compress's zstd encoder at its default level (`SpeedDefault`, the
//! "double fast" encoder): what containers/image (skopeo, podman, buildah) and buildkit
//! write zstd layers with. Learned from the Go module's `zstd/enc_dfast.go`, `enc_base.go`
//! and `encoder.go`; the code is this project's.
//!
//! The streaming writer cuts the input into 128 KiB blocks and encodes each with history:
//! two hash tables, one over 8-byte prefixes (17 bits) and one over 5-byte prefixes (15 bits),
//! both updated at every position probed. At a position it tries, in order: the most recent
//! offset one byte ahead (only once the block has three sequences, so a block never depends
//! on the repeat offsets of the one before), the long table's candidate, the short table's
//! candidate (preferring a long candidate one byte later). Matches are extended backwards;
//! probes skip ahead the longer no match is found. After a match it indexes four positions
//! and tries the second most recent offset at once. A stream that fits one block is encoded
//! by a variant without history (`EncodeNoHist`) that differs in two details, kept here.
//!
//! The replay encodes each block as the decoder has produced it and lists the sequences the
//! encoder would write, by position, for the sequence model to guess from.

use std::ops::Range;

use super::matcher::{match_len_at, read32_at, read64_at};
use super::replay::{rebased, Guess};

const LONG_BITS: u32 = 17;
const SHORT_BITS: u32 = 15;
const PRIME5: u64 = 889_523_592_379;
const PRIME8: u64 = 0xcf1b_bcdc_b7a5_6463;
/// Bytes the encoder leaves unsearched at a block's end (an 8-byte read and 2 ahead).
const INPUT_MARGIN: i64 = 8 + 2;
/// A block shorter than this is written as literals.
const MIN_NON_LITERAL_BLOCK: u64 = 16;
/// The encoder's longest match (`maxMatchLength`).
const MAX_MATCH_LEN: i64 = 131_074;
/// Table positions are kept relative to an origin moved before they pass this.
const REBASE_AT: u64 = 1 << 31;

/// A table entry: a position (relative to the origin, plus one; 0 for none) and the 4 bytes
/// found there.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: u32,
    val: u32,
}

/// The encoder's state over one frame.
#[derive(Debug)]
pub struct Dfast {
    long: Box<[Entry; 1 << LONG_BITS]>,
    short: Box<[Entry; 1 << SHORT_BITS]>,
    /// Farthest distance a match may reach (the frame's window, as the writer sets it).
    max_off: i64,
    origin: u64,
    /// The frame is one block written without history.
    no_hist: bool,
    offset1: i64,
    offset2: i64,
    /// The sequences of the last block encoded.
    pub guesses: Vec<Guess>,
}

fn hash_long(u: u64) -> usize {
    (u.wrapping_mul(PRIME8) >> (64 - LONG_BITS)) as usize
}

fn hash_short(u: u64) -> usize {
    ((u << 24).wrapping_mul(PRIME5) >> (64 - SHORT_BITS)) as usize
}

/// One block's search: positions are indices into the frame buffer.
struct Search<'a> {
    src: &'a [u8],
    /// Frame position of `src[0]`.
    base: u64,
    end: i64,
    /// Lowest index a backward extension may reach.
    floor: i64,
}

impl Search<'_> {
    fn same_byte_before(&self, a: i64, b: i64) -> bool {
        a > 0 && b > 0 && self.src[a as usize - 1] == self.src[b as usize - 1]
    }
}

impl Dfast {
    /// The replay for a frame whose window is `window` and that holds `content_size` bytes
    /// if its header says.
    pub fn new(window: u64, content_size: Option<u64>) -> Self {
        Dfast {
            long: vec![Entry::default(); 1 << LONG_BITS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!()),
            short: vec![Entry::default(); 1 << SHORT_BITS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!()),
            max_off: window.min(1 << 40) as i64,
            origin: 0,
            no_hist: content_size.is_some_and(|n| n <= super::block::MAX_BLOCK as u64),
            offset1: 1,
            offset2: 4,
            guesses: Vec::new(),
        }
    }

    /// Moves the origin to `to`, dropping entries before it (none of them is reachable).
    fn rebase(&mut self, to: u64) {
        let shift = to - self.origin;
        for e in self.long.iter_mut().chain(self.short.iter_mut()) {
            e.key = rebased(e.key, shift);
        }
        self.origin = to;
    }

    /// Encodes the block at frame positions `block` of `buf` (which starts at frame position
    /// `base` and holds at least the window before the block): fills `guesses`.
    pub fn encode(&mut self, buf: &[u8], base: u64, block: Range<u64>) {
        self.guesses.clear();
        if block.end - block.start < MIN_NON_LITERAL_BLOCK || block.start < base {
            return;
        }
        if block.end - self.origin >= REBASE_AT {
            self.rebase(block.start.saturating_sub(self.max_off as u64));
        }
        let search = Search {
            src: buf,
            base,
            end: (block.end - base) as i64,
            floor: -(base as i64),
        };
        self.search(&search, (block.start - base) as i64);
    }

    fn key(&self, s: &Search, i: i64) -> u32 {
        (s.base + i as u64 - self.origin + 1) as u32
    }

    /// The index a table entry names, if it is one within reach of `at`.
    fn candidate(&self, s: &Search, e: Entry, at: i64, cv: u64) -> Option<i64> {
        if e.key == 0 || e.val != cv as u32 {
            return None;
        }
        let t = (self.origin + e.key as u64 - 1) as i64 - s.base as i64;
        (at - t < self.max_off && t >= 0).then_some(t)
    }

    fn put(&mut self, s: &Search, i: i64, cv: u64, long: usize, short: usize) {
        let e = Entry {
            key: self.key(s, i),
            val: cv as u32,
        };
        self.long[long] = e;
        self.short[short] = e;
    }

    fn emit(&mut self, s: &Search, at: i64, ml: i64, of: u32) {
        self.guesses.push(Guess {
            at: s.base + at as u64,
            ml: ml as u32,
            of,
        });
    }

    /// The encoder's loop over one block starting at index `start` (`Encode` in Go).
    fn search(&mut self, sr: &Search, start: i64) {
        let src = sr.src;
        let limit = sr.end - INPUT_MARGIN;
        let mut s = start;
        let mut next_emit = s;
        let mut cv = read64_at(src, s);
        let (mut offset1, mut offset2) = (self.offset1, self.offset2);
        'block: loop {
            let can_repeat = self.guesses.len() > 2;
            let mut t;
            loop {
                let (hl, hs) = (hash_long(cv), hash_short(cv));
                let (cand_l, cand_s) = (self.long[hl], self.short[hs]);
                let rep = s - offset1 + 1;
                self.put(sr, s, cv, hl, hs);
                if can_repeat && rep >= 0 && read32_at(src, rep) == (cv >> 8) as u32 {
                    let length = 4 + match_len_at(src, s + 5, rep + 4, sr.end);
                    let (mut rep, mut at, mut ml) = (rep, s + 1, length - 3);
                    let floor = (s - self.max_off).max(sr.floor);
                    while rep > floor
                        && at > next_emit + 1
                        && sr.same_byte_before(rep, at)
                        && (self.no_hist || ml < MAX_MATCH_LEN - 3 - 1)
                    {
                        rep -= 1;
                        at -= 1;
                        ml += 1;
                    }
                    self.emit(sr, at, ml + 3, 1);
                    s += length + 1;
                    next_emit = s;
                    if s >= limit {
                        break 'block;
                    }
                    cv = read64_at(src, s);
                    continue;
                }
                if let Some(c) = self.candidate(sr, cand_l, s, cv) {
                    t = c;
                    break;
                }
                if let Some(c) = self.candidate(sr, cand_s, s, cv) {
                    let cv1 = read64_at(src, s + 1);
                    let hl1 = hash_long(cv1);
                    let cand_l1 = self.long[hl1];
                    self.long[hl1] = Entry {
                        key: self.key(sr, s + 1),
                        val: cv1 as u32,
                    };
                    if let Some(c1) = self.candidate(sr, cand_l1, s + 1, cv1) {
                        t = c1;
                        s += 1;
                    } else {
                        t = c;
                    }
                    break;
                }
                s += 1 + ((s - next_emit) >> 7);
                if s >= limit {
                    break 'block;
                }
                cv = read64_at(src, s);
            }
            offset2 = offset1;
            offset1 = s - t;
            let mut l = match_len_at(src, s + 4, t + 4, sr.end) + 4;
            let floor = (s - self.max_off).max(sr.floor);
            while t > floor
                && s > next_emit
                && sr.same_byte_before(t, s)
                && (self.no_hist || l < MAX_MATCH_LEN)
            {
                s -= 1;
                t -= 1;
                l += 1;
            }
            self.emit(sr, s, l, (s - t) as u32 + 3);
            s += l;
            next_emit = s;
            if s >= limit {
                break 'block;
            }
            let cv1 = self.index_match(sr, s - l + 1, s - 2);
            cv = read64_at(src, s);
            let repeat = if self.no_hist {
                self.guesses.len() > 2
            } else {
                can_repeat
            };
            if !repeat {
                continue;
            }
            // The second most recent offset, straight after the match.
            loop {
                let o2 = s - offset2;
                if read32_at(src, o2) != cv as u32 {
                    break;
                }
                // Go's EncodeNoHist hashes a stale value here.
                let hs = hash_short(if self.no_hist { cv1 >> 8 } else { cv });
                let l = 4 + match_len_at(src, s + 4, o2 + 4, sr.end);
                self.put(sr, s, cv, hash_long(cv), hs);
                self.emit(sr, s, l, 1);
                s += l;
                next_emit = s;
                std::mem::swap(&mut offset1, &mut offset2);
                if s >= limit {
                    break 'block;
                }
                cv = read64_at(src, s);
            }
        }
        self.offset1 = offset1;
        self.offset2 = offset2;
    }

    /// Indexes a match's start + 1 and end - 2 in the long table and the next positions
    /// in the short one; returns the 8 bytes at end - 1.
    fn index_match(&mut self, sr: &Search, index0: i64, index1: i64) -> u64 {
        let (cv0, cv1) = (read64_at(sr.src, index0), read64_at(sr.src, index1));
        for (i, cv) in [(index0, cv0), (index1, cv1)] {
            self.long[hash_long(cv)] = Entry {
                key: self.key(sr, i),
                val: cv as u32,
            };
        }
        for (i, cv) in [(index0 + 1, cv0 >> 8), (index1 + 1, cv1 >> 8)] {
            self.short[hash_short(cv)] = Entry {
                key: self.key(sr, i),
                val: cv as u32,
            };
        }
        cv1 >> 8
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Text-like bytes: words from a small vocabulary, with noise, seeded.
    pub(in crate::zst) fn text(len: usize) -> Vec<u8> {
        let words: [&[u8]; 5] = [b"layer ", b"blob ", b"registry\n", b"0123456789", b"\0\0\0"];
        let (mut s, mut out) = (0x2545_f491_4f6c_dd1du64, Vec::with_capacity(len));
        while out.len() < len {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if s % 5 == 0 {
                out.push((s >> 40) as u8);
            } else {
                out.extend_from_slice(words[(s >> 33) as usize % words.len()]);
            }
        }
        out.truncate(len);
        out
    }

    /// The replay's guesses for `data` as 128 KiB blocks of a frame whose bytes start at
    /// frame position `shift`, as positions from the data's start.
    fn guesses(data: &[u8], shift: u64) -> Vec<Guess> {
        let mut replay = Dfast::new(8 << 20, None);
        let mut all = Vec::new();
        let block = super::super::block::MAX_BLOCK as u64;
        for start in (0..data.len() as u64).step_by(block as usize) {
            let end = (start + block).min(data.len() as u64);
            replay.encode(data, shift, shift + start..shift + end);
            all.extend(replay.guesses.iter().map(|g| Guess {
                at: g.at - shift,
                ..*g
            }));
        }
        all
    }

    #[test]
    fn moving_the_table_origin_changes_no_guess() {
        let data = text(1 << 20);
        let plain = guesses(&data, 0);
        assert!(
            plain.len() > 10_000,
            "the sample has matches: {}",
            plain.len()
        );
        // Positions cross the rebase point a few blocks in.
        assert_eq!(plain, guesses(&data, REBASE_AT - 300_000));
    }
}
