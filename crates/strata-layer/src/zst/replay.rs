//! Encoders a frame's sequences may be guessed from, and the choice among them.
//!
//! Until a frame's first block with sequences, every candidate runs over every block. At
//! that block the record names the candidate that guesses (almost) all of its sequences, or
//! none; from then on only that one runs (none: the general model codes the frame).
//! Candidates: klauspost/compress's default encoder, and libzstd's level 3 as the zstd CLI
//! drives it (in jobs, with threads) and as a library does (one job). The last two agree
//! over the first job: when one of them is chosen there, the other runs on as its twin
//! until a block with sequences in the second job, where the record names the one to keep.

use std::ops::Range;

use super::block::Seq;
use super::klauspost::{self, Guess};
use super::libzstd;
use super::FrameHeader;
use crate::rc::{Coder, Prob};

/// Sequences of 32 a candidate must guess in a frame's first block with sequences to be
/// chosen (an encoder that is merely similar would pay more for its misses than the general
/// model costs).
const REPLAY_SHARE: usize = 31;

/// How the record's replay choices are coded.
#[derive(Debug, Clone, Default)]
pub struct ReplayProbs {
    /// Which candidate a frame is replayed with (0: none).
    pick: [Prob; 8],
    /// Whether the twin replaces the chosen libzstd variant.
    twin: Prob,
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
    /// The other libzstd variant while the chosen one still agrees with it: the frame
    /// position where they part, and the variant.
    twin: Option<(u64, Encoder)>,
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
                    for threaded in [true, false] {
                        let e = libzstd::Dfast::new(params, threaded);
                        candidates.push(Encoder::Libzstd(Box::new(e)));
                    }
                }
            }
        }
        Replays {
            candidates,
            decided: !enabled,
            twin: None,
        }
    }

    /// Runs the candidates over the block the frame's bytes `buf` (from frame position
    /// `base`) end with: every block of a frame, whatever its kind, in order.
    pub fn run(&mut self, buf: &[u8], base: u64, block: Range<u64>, compressed: bool) {
        for e in &mut self.candidates {
            e.encode(buf, base, block.clone(), compressed);
        }
        if let Some((_, e)) = self.twin.as_mut() {
            e.encode(buf, base, block, compressed);
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
    /// which candidate predicts the frame, if any; at the first where a chosen libzstd
    /// variant and its twin part, which of the two. Returns `true` if one predicts it.
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
        if let Some((parting, twin)) = self.twin.take() {
            if start < parting {
                self.twin = Some((parting, twin));
            } else if let Some(chosen) = self.candidates.first_mut() {
                let better = C::ENCODING
                    && count_hits(seqs, twin.guesses(), start)
                        > count_hits(seqs, chosen.guesses(), start);
                if c.bit(&mut probs.twin, better) {
                    *chosen = twin;
                }
            }
        }
        self.chosen()
    }

    fn choose<C: Coder>(&mut self, c: &mut C, probs: &mut [Prob; 8], seqs: &[Seq], start: u64) {
        let mut pick = 0;
        if C::ENCODING {
            let mut best = seqs.len() * REPLAY_SHARE;
            for (i, e) in self.candidates.iter().enumerate() {
                let hits = count_hits(seqs, e.guesses(), start) * 32;
                if hits >= best {
                    (best, pick) = (hits + 1, i + 1);
                }
            }
        }
        let pick = c.tree(probs, 3, pick as u32) as usize;
        self.decided = true;
        let mut all = std::mem::take(&mut self.candidates);
        let Some(i) = pick.checked_sub(1).filter(|&i| i < all.len()) else {
            return;
        };
        let chosen = all.swap_remove(i);
        if let Encoder::Libzstd(e) = &chosen {
            // Its twin: the same parameters, the other threading.
            let twin = all.into_iter().find(|o| match o {
                Encoder::Libzstd(t) => t.params() == e.params(),
                Encoder::Klauspost(_) => false,
            });
            let parting = e.second_job().or(twin_job(&twin));
            if let (Some(parting), Some(twin)) = (parting, twin) {
                if start < parting {
                    self.twin = Some((parting, twin));
                }
            }
        }
        self.candidates = vec![chosen];
    }
}

/// Where a libzstd variant's second job starts (if it is cut into jobs).
fn twin_job(e: &Option<Encoder>) -> Option<u64> {
    match e {
        Some(Encoder::Libzstd(d)) => d.second_job(),
        _ => None,
    }
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
