//! Canonical Huffman codes from code lengths (RFC 1951 section 3.2.2), for decoding with a
//! lookup table and for encoding with bit-reversed codes.

use crate::LayerError;

/// Longest code DEFLATE allows.
pub const MAX_BITS: u32 = 15;

/// A code built from per-symbol lengths: a decode table and the encode codes.
#[derive(Debug, Clone)]
pub struct Huffman {
    /// `table[bits]` = (symbol, length) for the next `max_len` input bits; length 0 = no code.
    table: Vec<(u16, u8)>,
    max_len: u32,
    /// Per symbol: code bit-reversed for LSB-first output, and its length (0 = absent).
    codes: Vec<(u16, u8)>,
}

impl Huffman {
    /// Builds the code; rejects over-subscribed length sets. Incomplete sets are legal here
    /// (Go writes a one-code distance tree) and any input that reaches a hole is an error.
    pub fn new(lengths: &[u8]) -> Result<Self, LayerError> {
        let mut count = [0u32; MAX_BITS as usize + 1];
        for &l in lengths {
            if l as u32 > MAX_BITS {
                return Err(LayerError::Deflate("code length over 15".into()));
            }
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut left: i64 = 1;
        for &c in &count[1..] {
            left = left * 2 - c as i64;
            if left < 0 {
                return Err(LayerError::Deflate("over-subscribed huffman code".into()));
            }
        }
        let mut next = [0u32; MAX_BITS as usize + 2];
        let mut code = 0u32;
        for bits in 1..=MAX_BITS as usize {
            code = (code + count[bits - 1]) << 1;
            next[bits] = code;
        }
        let max_len = (1..=MAX_BITS)
            .rev()
            .find(|&b| count[b as usize] > 0)
            .unwrap_or(1);
        let mut table = vec![(0u16, 0u8); 1 << max_len];
        let mut codes = vec![(0u16, 0u8); lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let c = next[l as usize];
            next[l as usize] += 1;
            let rev = reverse(c, l as u32);
            codes[sym] = (rev as u16, l);
            let mut k = rev as usize;
            while k < table.len() {
                table[k] = (sym as u16, l);
                k += 1 << l;
            }
        }
        Ok(Huffman {
            table,
            max_len,
            codes,
        })
    }

    /// Looks up the symbol at the front of `bits` (at least `max_len` bits, LSB first).
    #[inline]
    pub fn lookup(&self, bits: u32) -> Option<(u16, u32)> {
        let (sym, len) = self.table[(bits as usize) & (self.table.len() - 1)];
        (len > 0).then_some((sym, len as u32))
    }

    /// Bits to peek before [`Huffman::lookup`].
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// The bit-reversed code and length of `sym`; length 0 if the code lacks the symbol.
    #[inline]
    pub fn code(&self, sym: usize) -> (u32, u32) {
        let (c, l) = self.codes.get(sym).copied().unwrap_or((0, 0));
        (c as u32, l as u32)
    }
}

fn reverse(code: u32, len: u32) -> u32 {
    code.reverse_bits() >> (32 - len)
}

/// The fixed literal/length code lengths (RFC 1951 section 3.2.6).
pub fn fixed_litlen_lengths() -> Vec<u8> {
    let mut l = vec![8u8; 288];
    l[144..256].fill(9);
    l[256..280].fill(7);
    l
}

/// The fixed distance code lengths.
pub fn fixed_dist_lengths() -> Vec<u8> {
    vec![5u8; 32]
}

/// Base lengths of length symbols 257..=285 and their extra bits.
pub const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
pub const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Base distances of distance symbols 0..=29 and their extra bits.
pub const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
pub const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The largest index whose base is at most `v` (`base` ascending).
const fn base_index(base: &[u16], v: u16) -> usize {
    let mut i = 0;
    while i + 1 < base.len() && base[i + 1] <= v {
        i += 1;
    }
    i
}

/// Per match length 0..=258: the index of its length symbol (lengths under 3 unused).
const LEN_INDEX: [u8; 259] = {
    let mut t = [0u8; 259];
    let mut len = 3;
    while len <= 258 {
        t[len] = base_index(&LEN_BASE, len as u16) as u8;
        len += 1;
    }
    t
};

/// Distance symbols by distance - 1 for distances up to 256, and by (distance - 1) >> 7
/// above (those symbols' ranges start at multiples of 128 + 1), as zlib tabulates them.
const DIST_INDEX: ([u8; 256], [u8; 256]) = {
    let (mut lo, mut hi) = ([0u8; 256], [0u8; 256]);
    let mut i = 0;
    while i < 256 {
        lo[i] = base_index(&DIST_BASE, i as u16 + 1) as u8;
        hi[i] = base_index(&DIST_BASE, ((i as u16) << 7) + 1) as u8;
        i += 1;
    }
    (lo, hi)
};

/// The length symbol (257..=285) and extra value for a match length 3..=258. Length 258 has
/// its own symbol (285); encoders never use 284 with extra 31 for it.
#[inline]
pub fn length_symbol(len: u16) -> (usize, u32) {
    let idx = LEN_INDEX[len.min(258) as usize] as usize;
    (257 + idx, len.saturating_sub(LEN_BASE[idx]) as u32)
}

/// The distance symbol and extra value for a distance 1..=32768.
#[inline]
pub fn distance_symbol(dist: u16) -> (usize, u32) {
    let d = dist.max(1) as usize - 1;
    let idx = if d < 256 {
        DIST_INDEX.0[d]
    } else {
        DIST_INDEX.1[(d >> 7) & 0xff]
    } as usize;
    (idx, dist.saturating_sub(DIST_BASE[idx]) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_tables_agree_with_the_bases() {
        for len in 3..=258u16 {
            let (sym, extra) = length_symbol(len);
            let idx = sym - 257;
            assert!(
                LEN_BASE[idx] <= len && extra < 1 << LEN_EXTRA[idx].max(1),
                "{len}"
            );
            assert!(idx == 28 || len < LEN_BASE[idx + 1] || len == 258, "{len}");
        }
        assert_eq!(length_symbol(258), (285, 0));
        assert_eq!(length_symbol(257), (284, 30));
        for dist in 1..=32768u32 {
            let (idx, extra) = distance_symbol(dist as u16);
            assert_eq!(DIST_BASE[idx] as u32 + extra, dist);
            assert!(extra < 1 << DIST_EXTRA[idx], "{dist}");
        }
    }

    #[test]
    fn canonical_codes_match_the_rfc_example() {
        // RFC 1951 3.2.2: lengths (3,3,3,3,3,2,4,4) give F=00, A=010, ..., H=1111
        let h = Huffman::new(&[3, 3, 3, 3, 3, 2, 4, 4]).expect("valid");
        assert_eq!(h.code(5), (0b00, 2));
        assert_eq!(h.code(0), (reverse(0b010, 3), 3));
        assert_eq!(h.code(7), (reverse(0b1111, 4), 4));
        assert_eq!(h.lookup(reverse(0b1110, 4)), Some((6, 4)));
    }

    #[test]
    fn over_subscribed_is_rejected_and_one_code_is_accepted() {
        assert!(Huffman::new(&[1, 1, 1]).is_err());
        let one = Huffman::new(&[0, 1]).expect("one code");
        assert_eq!(one.lookup(0), Some((1, 1)));
        assert_eq!(one.lookup(1), None);
    }

    #[test]
    fn length_and_distance_symbols_round_trip() {
        for len in 3..=258u16 {
            let (sym, extra) = length_symbol(len);
            let i = sym - 257;
            assert!(extra < (1 << LEN_EXTRA[i]) || (LEN_EXTRA[i] == 0 && extra == 0));
            assert_eq!(LEN_BASE[i] + extra as u16, len);
        }
        assert_eq!(length_symbol(258).0, 285);
        for dist in 1..=32768u32 {
            let (i, extra) = distance_symbol(dist as u16);
            assert_eq!(DIST_BASE[i] as u32 + extra, dist);
        }
    }
}

/// How often a dynamic block uses each literal/length and distance symbol (its end of block
/// counted once): what an encoder builds the block's codes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFreqs {
    pub lit: Vec<u32>,
    pub dist: Vec<u32>,
}

impl BlockFreqs {
    /// Counts `tokens` (literals read from `data` from `start`); `None` if they run past it.
    pub fn count(tokens: &[super::block::Token], data: &[u8], start: usize) -> Option<Self> {
        let mut f = BlockFreqs {
            lit: vec![0; 286],
            dist: vec![0; 30],
        };
        let mut p = start;
        for &t in tokens {
            if t == 0 {
                f.lit[*data.get(p)? as usize] += 1;
                p += 1;
            } else {
                let (len, dist) = super::block::unpack(t);
                f.lit[length_symbol(len).0] += 1;
                f.dist[distance_symbol(dist).0] += 1;
                p += len as usize;
            }
        }
        f.lit[256] += 1;
        Some(f)
    }
}
