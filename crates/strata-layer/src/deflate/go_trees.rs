//! The dynamic block header Go's `compress/flate` writes for a block's tokens: code lengths
//! by its length-limited construction (symbols sorted by frequency then value, bit counts
//! per level as its `bitCounts` computes them, the most frequent symbols given the shortest
//! codes), one run-length coding over the literal and distance lengths together, and the
//! code-length code built the same way.
//!
//! Docker's and containerd's layers are written this way, at every level (BestSpeed
//! included), so the correction record keeps only "as predicted" for them.

use super::bits::BitWriter;
use super::huffman::{BlockFreqs, Huffman};

const L_CODES: usize = 286;
const D_CODES: usize = 30;
const BL_CODES: usize = 19;
const ORDER: [usize; BL_CODES] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
/// The sentinel frequency (Go's `math.MaxInt32`).
const NONE: i64 = i32::MAX as i64;

/// One level of Go's `bitCounts`.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    last_freq: i64,
    next_char_freq: i64,
    next_pair_freq: i64,
    needed: i64,
}

/// How many symbols get each code length (index = length), for `freqs` sorted ascending
/// (at least three), limited to `max_bits`.
fn bit_counts(freqs: &[i64], max_bits: usize) -> Vec<usize> {
    let n = freqs.len();
    let freq = |i: usize| freqs.get(i).copied().unwrap_or(NONE);
    let max_bits = max_bits.min(n - 1);
    let mut levels = [Level::default(); 17];
    let mut leaf_counts = [[0usize; 17]; 17];
    for level in 1..=max_bits {
        levels[level] = Level {
            last_freq: freq(1),
            next_char_freq: freq(2),
            next_pair_freq: if level == 1 { NONE } else { freq(0) + freq(1) },
            needed: 0,
        };
        leaf_counts[level][level] = 2;
    }
    levels[max_bits].needed = 2 * n as i64 - 4;
    let mut level = max_bits;
    loop {
        let l = levels[level];
        if l.next_pair_freq == NONE && l.next_char_freq == NONE {
            levels[level].needed = 0;
            levels[level + 1].next_pair_freq = NONE;
            level += 1;
            continue;
        }
        let prev_freq = l.last_freq;
        if l.next_char_freq < l.next_pair_freq {
            let count = leaf_counts[level][level] + 1;
            levels[level].last_freq = l.next_char_freq;
            leaf_counts[level][level] = count;
            levels[level].next_char_freq = freq(count);
        } else {
            levels[level].last_freq = l.next_pair_freq;
            let below = leaf_counts[level - 1];
            leaf_counts[level][..level].copy_from_slice(&below[..level]);
            levels[level - 1].needed = 2;
        }
        levels[level].needed -= 1;
        if levels[level].needed == 0 {
            if level == max_bits {
                break;
            }
            levels[level + 1].next_pair_freq = prev_freq + levels[level].last_freq;
            level += 1;
        } else {
            while levels[level - 1].needed > 0 {
                level -= 1;
            }
        }
    }
    let counts = leaf_counts[max_bits];
    let mut by_len = vec![0usize; max_bits + 1];
    for (bits, level) in (1..=max_bits).rev().enumerate() {
        by_len[bits + 1] = counts[level] - counts[level - 1];
    }
    by_len
}

/// Code lengths for `freq` as Go's `huffmanEncoder.generate` assigns them.
fn code_lengths(freq: &[u32], max_bits: usize) -> Vec<u8> {
    let mut lens = vec![0u8; freq.len()];
    let mut list: Vec<(u32, usize)> = freq
        .iter()
        .enumerate()
        .filter(|(_, &f)| f != 0)
        .map(|(sym, &f)| (f, sym))
        .collect();
    if list.len() <= 2 {
        for &(_, sym) in &list {
            lens[sym] = 1;
        }
        return lens;
    }
    list.sort_unstable();
    let freqs: Vec<i64> = list.iter().map(|&(f, _)| f as i64).collect();
    let by_len = bit_counts(&freqs, max_bits);
    let mut rest = list.len();
    for (bits, &count) in by_len.iter().enumerate().skip(1) {
        for &(_, sym) in &list[rest - count..rest] {
            lens[sym] = bits as u8;
        }
        rest -= count;
    }
    lens
}

/// Go's `generateCodegen`: (code-length symbol, extra bits, extra value) runs over the
/// literal lengths followed by the distance lengths.
fn runs(lens: &[u8]) -> Vec<(usize, u32, u32)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lens.len() {
        let size = lens[i];
        let mut count = lens[i..].iter().take_while(|&&l| l == size).count();
        i += count;
        if size != 0 {
            out.push((size as usize, 0, 0));
            count -= 1;
            while count >= 3 {
                let n = count.min(6);
                out.push((16, 2, n as u32 - 3));
                count -= n;
            }
        } else {
            while count >= 11 {
                let n = count.min(138);
                out.push((18, 7, n as u32 - 11));
                count -= n;
            }
            if count >= 3 {
                out.push((17, 3, count as u32 - 3));
                count = 0;
            }
        }
        out.extend((0..count).map(|_| (size as usize, 0, 0)));
    }
    out
}

/// The header Go writes after BTYPE for a dynamic block with symbol counts `freqs`: (bytes,
/// bit count). `None` if the lengths cannot form one. `all_codes`: klauspost/compress's
/// form for a block more may follow (all 286 literal and 30 distance lengths, zeros
/// included, and no distance code made up when there is none).
pub fn dynamic_header(freqs: &BlockFreqs, all_codes: bool) -> Option<(Vec<u8>, u64)> {
    let lfreq = &freqs.lit;
    let mut dfreq = freqs.dist.clone();
    let (num_lit, mut num_dist) = if all_codes {
        (L_CODES, D_CODES)
    } else {
        (
            L_CODES - lfreq.iter().rev().take_while(|&&f| f == 0).count(),
            D_CODES - dfreq.iter().rev().take_while(|&&f| f == 0).count(),
        )
    };
    if num_dist == 0 {
        dfreq[0] = 1;
        num_dist = 1;
    }
    let llens = code_lengths(lfreq, 15);
    let dlens = code_lengths(&dfreq, 15);
    let all: Vec<u8> = llens[..num_lit]
        .iter()
        .chain(&dlens[..num_dist])
        .copied()
        .collect();
    let codegen = runs(&all);
    let mut cgfreq = vec![0u32; BL_CODES];
    for &(sym, _, _) in &codegen {
        cgfreq[sym] += 1;
    }
    let cglens = code_lengths(&cgfreq, 7);
    let mut num_cg = BL_CODES;
    while num_cg > 4 && cgfreq[ORDER[num_cg - 1]] == 0 {
        num_cg -= 1;
    }
    let cg = Huffman::new(&cglens).ok()?;
    let mut w = BitWriter::default();
    w.put(5, (num_lit - 257) as u32);
    w.put(5, (num_dist - 1) as u32);
    w.put(4, (num_cg - 4) as u32);
    for &sym in &ORDER[..num_cg] {
        w.put(3, cglens[sym] as u32);
    }
    for &(sym, extra_bits, extra) in &codegen {
        let (code, len) = cg.code(sym);
        w.put(len, code);
        w.put(extra_bits, extra);
    }
    Some(w.into_parts())
}
