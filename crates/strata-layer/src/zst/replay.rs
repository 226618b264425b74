//! Encoders a frame's sequences may be guessed from, and the choice among them.
//!
//! Until a frame's first block with sequences, every candidate runs over every block. At
//! that block the record names the candidate that guesses (almost) all of its sequences, or
//! none; from then on only that one runs (none: the general model codes the frame).
//! Candidates: klauspost/compress's default encoder, and libzstd's level 3 as the zstd CLI
//! drives it (in jobs, with threads) and as a library does (one call, or its one-thread
//! streaming API), as zstd 1.5.4-1.5.6 or 1.5.7 search. The three ways of cutting the
//! input agree at first: when one of them is chosen, the others run on as its twins until
//! they guess differently, and there the record names the one to keep.

use std::ops::Range;

use super::block::Seq;
use super::klauspost;
use super::libzstd::{self, Cut};
use super::FrameHeader;
use crate::rc::{Coder, Prob};

/// Sequences of 32 a candidate must guess in a frame's first block with sequences to be
/// chosen (an encoder that is merely similar would pay more for its misses than the general
/// model costs).
const REPLAY_SHARE: usize = 31;

/// A sequence an encoder writes: its match starts at frame position `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guess {
    pub at: u64,
    pub ml: u32,
    pub of: u32,
}

/// A replay's hash-table entry (a position relative to the table origin, plus one; 0 for
/// none) once the origin moves `shift` bytes forward: entries it passes become empty.
pub fn rebased(key: u32, shift: u64) -> u32 {
    (key as u64)
        .checked_sub(shift)
        .filter(|&k| k > 0)
        .unwrap_or(0) as u32
}

/// How the record's replay choices are coded.
#[derive(Debug, Clone, Default)]
pub struct ReplayProbs {
    /// Which candidate a frame is replayed with (0: none).
    pick: [Prob; 8],
    /// Which of the chosen libzstd replay and its twins is kept.
    twin: [Prob; 4],
}

/// One encoder's replay.
#[derive(Debug)]
enum Encoder {
    Klauspost(Box<klauspost::Dfast>),
    Libzstd(Box<libzstd::Dfast>),
}

impl Encoder {
    fn encode(&mut self, buf: &[u8], base: u64, block: Range<u64>, compressed: bool) {
        match self {
            Encoder::Klauspost(e) => e.encode(buf, base, block),
            Encoder::Libzstd(e) => e.encode(buf, base, block, compressed),
        }
    }

    fn guesses(&self) -> &[Guess] {
        match self {
            Encoder::Klauspost(e) => &e.guesses,
            Encoder::Libzstd(e) => &e.guesses,
        }
    }
}

/// The candidates of a frame and whether one was chosen.
#[derive(Debug)]
pub struct Replays {
    candidates: Vec<Encoder>,
    decided: bool,
    /// Variants of the chosen libzstd replay (its other input cuts) that have guessed the
    /// same so far; where they first differ, the record names the one to keep.
    twins: Vec<Encoder>,
}

impl Replays {
    /// The candidates for a frame with this header (none: `enabled` false).
    pub fn new(frame: &FrameHeader, enabled: bool) -> Self {
        let mut candidates = Vec::new();
        if enabled {
            candidates.push(Encoder::Klauspost(Box::new(klauspost::Dfast::new(
                frame.window,
                frame.content_size,
            ))));
            for longer_next in [false, true] {
                let params = libzstd::Params::level3(frame.content_size, longer_next);
                let needs = (1u64 << params.window_log).min(frame.content_size.unwrap_or(u64::MAX));
                if frame.window >= needs {
                    for cut in [Cut::Jobs, Cut::OneCall, Cut::Buffered] {
                        let e = libzstd::Dfast::new(params, cut, frame.content_size);
                        candidates.push(Encoder::Libzstd(Box::new(e)));
                    }
                }
            }
        }
        Replays {
            candidates,
            decided: !enabled,
            twins: Vec::new(),
        }
    }

    /// Runs the candidates over the block the frame's bytes `buf` (from frame position
    /// `base`) end with: every block of a frame, whatever its kind, in order.
    pub fn run(&mut self, buf: &[u8], base: u64, block: Range<u64>, compressed: bool) {
        for e in self.candidates.iter_mut().chain(self.twins.iter_mut()) {
            e.encode(buf, base, block.clone(), compressed);
        }
    }

    /// `true` once a candidate predicts the frame.
    pub fn chosen(&self) -> bool {
        self.decided && !self.candidates.is_empty()
    }

    /// The chosen candidate's sequences for the last block.
    pub fn guesses(&self) -> &[Guess] {
        match (self.decided, self.candidates.first()) {
            (true, Some(e)) => e.guesses(),
            _ => &[],
        }
    }

    /// At a block with sequences (`seqs`, starting at `start`): at the frame's first, codes
    /// which candidate predicts the frame, if any; where the chosen libzstd replay and its
    /// twins first guess differently, which of them to keep. Returns `true` if one predicts
    /// the frame.
    pub fn decide<C: Coder>(
        &mut self,
        c: &mut C,
        probs: &mut ReplayProbs,
        seqs: &[Seq],
        start: u64,
    ) -> bool {
        if !self.decided {
            self.choose(c, &mut probs.pick, seqs, start);
        }
        let parted = match self.candidates.first() {
            Some(chosen) => self.twins.iter().any(|t| t.guesses() != chosen.guesses()),
            None => false,
        };
        if parted {
            self.keep_twin(c, &mut probs.twin, seqs, start);
        }
        self.chosen()
    }

    fn choose<C: Coder>(&mut self, c: &mut C, probs: &mut [Prob; 8], seqs: &[Seq], start: u64) {
        let pick = if C::ENCODING {
            let least = (seqs.len() * REPLAY_SHARE).div_ceil(32);
            best_of(&self.candidates, seqs, start)
                .filter(|&(_, hits)| hits >= least && hits > 0)
                .map_or(0, |(i, _)| i + 1)
        } else {
            0
        };
        let pick = c.tree(probs, 3, pick as u32) as usize;
        self.decided = true;
        let mut all = std::mem::take(&mut self.candidates);
        let Some(i) = pick.checked_sub(1).filter(|&i| i < all.len()) else {
            return;
        };
        let chosen = all.swap_remove(i);
        if let Encoder::Libzstd(e) = &chosen {
            self.twins = all
                .into_iter()
                .filter(|o| matches!(o, Encoder::Libzstd(t) if t.params() == e.params()))
                .collect();
        }
        self.candidates = vec![chosen];
    }

    /// Codes which of the chosen replay and its twins guesses this block best; keeps it,
    /// and the twins that still guess as it does.
    fn keep_twin<C: Coder>(&mut self, c: &mut C, probs: &mut [Prob; 4], seqs: &[Seq], start: u64) {
        let mut all = std::mem::take(&mut self.candidates);
        all.append(&mut self.twins);
        let pick = if C::ENCODING {
            best_of(&all, seqs, start).map_or(0, |(i, _)| i)
        } else {
            0
        };
        let pick = (c.tree(probs, 2, pick as u32) as usize).min(all.len() - 1);
        let kept = all.swap_remove(pick);
        self.twins = all
            .into_iter()
            .filter(|t| t.guesses() == kept.guesses())
            .collect();
        self.candidates = vec![kept];
    }
}

/// The encoder that guesses most of a block's sequences (the first of equals), with its
/// number of hits.
fn best_of(encoders: &[Encoder], seqs: &[Seq], start: u64) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, e) in encoders.iter().enumerate() {
        let hits = count_hits(seqs, e.guesses(), start);
        if best.is_none_or(|(_, b)| hits > b) {
            best = Some((i, hits));
        }
    }
    best
}

/// The guess for a sequence whose literals start at `p`: the first one whose match starts
/// there or later (`cursor` moves forwards only).
pub fn next_guess(guesses: &[Guess], cursor: &mut usize, p: u64) -> Option<Guess> {
    while guesses.get(*cursor).is_some_and(|g| g.at < p) {
        *cursor += 1;
    }
    guesses.get(*cursor).copied()
}

pub fn is_hit(s: &Seq, p: u64, g: Option<Guess>) -> bool {
    g.is_some_and(|g| g.at == p + s.ll as u64 && g.ml == s.ml && g.of == s.of)
}

/// How many of a block's sequences (starting at `start`) the guesses get right.
fn count_hits(seqs: &[Seq], guesses: &[Guess], start: u64) -> usize {
    let (mut p, mut cursor, mut hits) = (start, 0, 0);
    for s in seqs {
        hits += is_hit(s, p, next_guess(guesses, &mut cursor, p)) as usize;
        p += s.ll as u64 + s.ml as u64;
    }
    hits
}
