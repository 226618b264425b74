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

use super::matcher::{read32_at, read64_at};
use super::replay::{rebased, Guess};

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
            *k = rebased(*k, shift);
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

mod external;
mod search;

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
