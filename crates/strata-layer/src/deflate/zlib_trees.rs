//! The dynamic block header zlib's `trees.c` (and GNU gzip's, the same code) writes for a
//! block's tokens: Huffman code lengths from the symbol frequencies (its heap order, its
//! depth tie-break, its fix-up of codes longer than 15 bits), the code-length code, and
//! the run-length coding of both length lists.
//!
//! A block written by zlib has exactly this header, so the correction record keeps only
//! "as predicted"; any other encoder's header is kept verbatim.

use super::bits::BitWriter;
use super::huffman::{BlockFreqs, Huffman};

const L_CODES: usize = 286;
const BL_CODES: usize = 19;
const HEAP_SIZE: usize = 2 * L_CODES + 1;
const REP_3_6: usize = 16;
const REPZ_3_10: usize = 17;
const REPZ_11_138: usize = 18;
const BL_ORDER: [usize; BL_CODES] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Code lengths for `freq` (one entry per symbol) limited to `max_length` bits, built as
/// zlib's `build_tree` and `gen_bitlen` do; and the largest symbol in use (`max_code`).
fn code_lengths(freq: &[u32], max_length: usize) -> (Vec<u8>, usize) {
    let elems = freq.len();
    let nodes = 2 * elems + 1;
    let mut f = vec![0u32; nodes];
    f[..elems].copy_from_slice(freq);
    let mut depth = vec![0u8; nodes];
    let mut dad = vec![0usize; nodes];
    let mut heap = vec![0usize; HEAP_SIZE + 1];
    let (mut heap_len, mut heap_max) = (0usize, HEAP_SIZE);
    let mut max_code: isize = -1;
    for (n, &fr) in freq.iter().enumerate() {
        if fr != 0 {
            heap_len += 1;
            heap[heap_len] = n;
            max_code = n as isize;
        }
    }
    // At least two codes, so that every code has at least one bit.
    while heap_len < 2 {
        let node = if max_code < 2 {
            max_code += 1;
            max_code as usize
        } else {
            0
        };
        heap_len += 1;
        heap[heap_len] = node;
        f[node] = 1;
    }
    let max_code = max_code as usize;
    let smaller = |f: &[u32], depth: &[u8], n: usize, m: usize| {
        f[n] < f[m] || (f[n] == f[m] && depth[n] <= depth[m])
    };
    let down = |heap: &mut [usize], heap_len: usize, f: &[u32], depth: &[u8], mut k: usize| {
        let v = heap[k];
        let mut j = k << 1;
        while j <= heap_len {
            if j < heap_len && smaller(f, depth, heap[j + 1], heap[j]) {
                j += 1;
            }
            if smaller(f, depth, v, heap[j]) {
                break;
            }
            heap[k] = heap[j];
            k = j;
            j <<= 1;
        }
        heap[k] = v;
    };
    for k in (1..=heap_len / 2).rev() {
        down(&mut heap, heap_len, &f, &depth, k);
    }
    let mut node = elems;
    loop {
        let n = heap[1];
        heap[1] = heap[heap_len];
        heap_len -= 1;
        down(&mut heap, heap_len, &f, &depth, 1);
        let m = heap[1];
        heap_max -= 1;
        heap[heap_max] = n;
        heap_max -= 1;
        heap[heap_max] = m;
        f[node] = f[n] + f[m];
        depth[node] = depth[n].max(depth[m]) + 1;
        dad[n] = node;
        dad[m] = node;
        heap[1] = node;
        node += 1;
        down(&mut heap, heap_len, &f, &depth, 1);
        if heap_len < 2 {
            break;
        }
    }
    heap_max -= 1;
    heap[heap_max] = heap[1];
    (
        bit_lengths(&heap, heap_max, &dad, nodes, max_code, max_length),
        max_code,
    )
}

/// zlib's `gen_bitlen`: lengths from the tree (root first, in heap order), then codes
/// deeper than `max_length` moved up, and lengths reassigned in heap order.
fn bit_lengths(
    heap: &[usize],
    heap_max: usize,
    dad: &[usize],
    nodes: usize,
    max_code: usize,
    max_length: usize,
) -> Vec<u8> {
    let mut len = vec![0usize; nodes];
    let mut bl_count = [0usize; 16];
    let mut overflow = 0;
    for &n in &heap[heap_max + 1..HEAP_SIZE] {
        let mut bits = len[dad[n]] + 1;
        if bits > max_length {
            bits = max_length;
            overflow += 1;
        }
        len[n] = bits;
        if n <= max_code {
            bl_count[bits] += 1;
        }
    }
    if overflow > 0 {
        while overflow > 0 {
            let mut bits = max_length - 1;
            while bits > 0 && bl_count[bits] == 0 {
                bits -= 1;
            }
            if bits == 0 {
                break;
            }
            bl_count[bits] -= 1;
            bl_count[bits + 1] += 2;
            bl_count[max_length] -= 1;
            overflow -= 2.min(overflow);
        }
        let mut h = HEAP_SIZE;
        for bits in (1..=max_length).rev() {
            let mut n = bl_count[bits];
            while n != 0 {
                h -= 1;
                let m = heap[h];
                if m > max_code {
                    continue;
                }
                len[m] = bits;
                n -= 1;
            }
        }
    }
    (0..=max_code).map(|n| len[n] as u8).collect()
}

/// One run of a length list as `scan_tree`/`send_tree` split it: (code-length symbol,
/// extra bits, extra value), in order.
fn runs(lens: &[u8], max_code: usize, out: &mut Vec<(usize, u32, u32)>) {
    let at = |n: usize| -> i32 {
        if n <= max_code {
            lens[n] as i32
        } else {
            0xffff
        }
    };
    let mut prevlen: i32 = -1;
    let mut nextlen = at(0);
    let (mut max_count, mut min_count) = if nextlen == 0 { (138, 3) } else { (7, 4) };
    let mut count = 0;
    for n in 0..=max_code {
        let curlen = nextlen;
        nextlen = at(n + 1);
        count += 1;
        if count < max_count && curlen == nextlen {
            continue;
        }
        if count < min_count {
            out.extend((0..count).map(|_| (curlen as usize, 0, 0)));
        } else if curlen != 0 {
            if curlen != prevlen {
                out.push((curlen as usize, 0, 0));
                count -= 1;
            }
            out.push((REP_3_6, 2, count as u32 - 3));
        } else if count <= 10 {
            out.push((REPZ_3_10, 3, count as u32 - 3));
        } else {
            out.push((REPZ_11_138, 7, count as u32 - 11));
        }
        count = 0;
        prevlen = curlen;
        (max_count, min_count) = if nextlen == 0 {
            (138, 3)
        } else if curlen == nextlen {
            (6, 3)
        } else {
            (7, 4)
        };
    }
}

/// The header zlib writes after BTYPE for a dynamic block of `tokens` (whose literals are
/// read from `data` from `start`): (bytes, bit count), as [`super::block::BlockKind`] keeps
/// it. `None` if the lengths cannot form a header (never for a real block).
pub fn dynamic_header(freqs: &BlockFreqs) -> Option<(Vec<u8>, u64)> {
    let (lfreq, dfreq) = (&freqs.lit, &freqs.dist);
    let (llens, lmax) = code_lengths(lfreq, 15);
    let (dlens, dmax) = code_lengths(dfreq, 15);
    let mut lruns = Vec::new();
    let mut druns = Vec::new();
    runs(&llens, lmax, &mut lruns);
    runs(&dlens, dmax, &mut druns);
    let mut blfreq = vec![0u32; BL_CODES];
    for &(sym, _, _) in lruns.iter().chain(&druns) {
        blfreq[sym] += 1;
    }
    let (mut bllens, _) = code_lengths(&blfreq, 7);
    bllens.resize(BL_CODES, 0);
    let mut max_blindex = BL_CODES - 1;
    while max_blindex >= 3 && bllens[BL_ORDER[max_blindex]] == 0 {
        max_blindex -= 1;
    }
    let bl = Huffman::new(&bllens).ok()?;
    let mut w = BitWriter::default();
    w.put(5, (lmax + 1 - 257) as u32);
    w.put(5, dmax as u32);
    w.put(4, (max_blindex + 1).checked_sub(4)? as u32);
    for &sym in &BL_ORDER[..=max_blindex] {
        w.put(3, bllens[sym] as u32);
    }
    for &(sym, extra_bits, extra) in lruns.iter().chain(&druns) {
        let (code, len) = bl.code(sym);
        w.put(len, code);
        w.put(extra_bits, extra);
    }
    Some(w.into_parts())
}
