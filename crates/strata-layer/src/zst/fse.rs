//! Finite State Entropy tables (RFC 8878 section 4.1): the normalized-count description a
//! stream carries, the decoding table built from it, and the reverse walk that re-encodes a
//! symbol sequence given the state the decoder ended in.

use crate::LayerError;

/// Literal-length codes' default distribution (RFC 8878 3.1.1.3.2.2.1), accuracy 6.
pub const LL_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
    -1, -1, -1, -1,
];
/// Match-length codes' default distribution, accuracy 6.
pub const ML_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
/// Offset codes' default distribution, accuracy 5.
pub const OF_DEFAULT: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];

/// One decoding state: the symbol it yields and how the next state is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub symbol: u8,
    pub nbits: u8,
    pub base: u16,
}

/// A decoding table, plus each symbol's states sorted by `base` for the reverse walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub log: u32,
    pub entries: Vec<Entry>,
    /// Per symbol, where its slice of `previous` starts, how many slots it has and how far
    /// a next state is shifted to index them (its states' ranges tile `0..1 << log`, each
    /// `1 << shift` or twice that wide).
    reverse: Vec<Reverse>,
    /// The state each slot of a symbol's range belongs to.
    previous: Vec<u16>,
}

/// One symbol's part of the reverse lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reverse {
    start: u32,
    slots: u32,
    shift: u8,
}

impl Table {
    /// The table of an RLE mode: one state, always `symbol`, reading nothing.
    pub fn rle(symbol: u8) -> Table {
        let entries = vec![Entry {
            symbol,
            nbits: 0,
            base: 0,
        }];
        let mut reverse = vec![Reverse::default(); symbol as usize + 1];
        reverse[symbol as usize].slots = 1;
        Table {
            log: 0,
            entries,
            reverse,
            previous: vec![0],
        }
    }

    /// Builds the decoding table of a normalized distribution (`-1` = "less than one").
    pub fn build(norm: &[i16], log: u32) -> Result<Table, LayerError> {
        let size = 1usize << log;
        let total: i64 = norm.iter().map(|&c| (c as i64).abs()).sum();
        if total != size as i64 || norm.is_empty() || norm.len() > 256 {
            return Err(bad("fse distribution does not sum to its table size"));
        }
        let mut symbols = vec![0u8; size];
        let mut high = size - 1;
        for (s, &c) in norm.iter().enumerate() {
            if c == -1 {
                symbols[high] = s as u8;
                high = high.wrapping_sub(1);
            }
        }
        let step = (size >> 1) + (size >> 3) + 3;
        let mask = size - 1;
        let mut pos = 0usize;
        for (s, &c) in norm.iter().enumerate() {
            for _ in 0..c.max(0) {
                symbols[pos] = s as u8;
                pos = (pos + step) & mask;
                while pos > high {
                    pos = (pos + step) & mask;
                }
            }
        }
        if pos != 0 {
            return Err(bad("fse symbol spread did not end at zero"));
        }
        let mut next: Vec<u32> = norm.iter().map(|&c| c.unsigned_abs() as u32).collect();
        let entries: Vec<Entry> = symbols
            .iter()
            .map(|&s| {
                let n = next[s as usize];
                next[s as usize] += 1;
                let nbits = log - (31 - n.leading_zeros());
                let base = ((n << nbits) - size as u32) as u16;
                Entry {
                    symbol: s,
                    nbits: nbits as u8,
                    base,
                }
            })
            .collect();
        let (reverse, previous) = reverse_lookup(&entries, norm.len(), size);
        Ok(Table {
            log,
            entries,
            reverse,
            previous,
        })
    }

    /// The state that decodes `symbol` and from which the decoder moves to `next`.
    pub fn previous(&self, symbol: u8, next: u16) -> Result<u16, LayerError> {
        let r = self
            .reverse
            .get(symbol as usize)
            .filter(|r| r.slots > 0)
            .ok_or_else(|| bad("symbol has no state in its fse table"))?;
        let slot = (next >> r.shift) as u32;
        if slot >= r.slots {
            return Err(bad("fse state out of range"));
        }
        Ok(self.previous[(r.start + slot) as usize])
    }
}

/// For each symbol, the state whose range holds each `1 << shift`-wide slot of next states.
fn reverse_lookup(entries: &[Entry], symbols: usize, size: usize) -> (Vec<Reverse>, Vec<u16>) {
    let mut reverse = vec![Reverse::default(); symbols];
    for r in reverse.iter_mut() {
        r.shift = u8::MAX;
    }
    for e in entries {
        let r = &mut reverse[e.symbol as usize];
        r.shift = r.shift.min(e.nbits);
    }
    let mut start = 0u32;
    for r in reverse.iter_mut() {
        if r.shift == u8::MAX {
            r.shift = 0;
            continue;
        }
        r.start = start;
        r.slots = (size >> r.shift) as u32;
        start += r.slots;
    }
    let mut previous = vec![0u16; start as usize];
    for (u, e) in entries.iter().enumerate() {
        let r = reverse[e.symbol as usize];
        let first = r.start + (e.base >> r.shift) as u32;
        for slot in first..first + (1u32 << (e.nbits - r.shift)) {
            previous[slot as usize] = u as u16;
        }
    }
    (reverse, previous)
}

fn bad(msg: &str) -> LayerError {
    LayerError::Zstd(msg.into())
}

/// Reads a normalized-count description (RFC 8878 4.1.1) from the front of `src`: the
/// distribution, its accuracy log and the bytes it took. `max_log` bounds the accuracy.
pub fn read_ncount(
    src: &[u8],
    max_log: u32,
    max_symbols: usize,
) -> Result<(Vec<i16>, u32, usize), LayerError> {
    let mut r = ForwardBits { src, pos: 0 };
    let log = r.take(4)? + 5;
    if log > max_log {
        return Err(bad("fse accuracy log too large"));
    }
    let size = 1i32 << log;
    let mut remaining = size + 1;
    let mut threshold = size;
    let mut nbits = log + 1;
    let mut norm = Vec::new();
    while remaining > 1 {
        if norm.len() >= max_symbols {
            return Err(bad("fse description has too many symbols"));
        }
        let max = 2 * threshold - 1 - remaining;
        let low = r.peek(nbits - 1)? as i32;
        let value = if low < max {
            r.skip(nbits - 1);
            low
        } else {
            let v = r.peek(nbits)? as i32;
            r.skip(nbits);
            if v >= threshold {
                v - max
            } else {
                v
            }
        };
        let count = value - 1;
        remaining -= count.abs();
        norm.push(count as i16);
        if count == 0 {
            loop {
                let repeat = r.take(2)?;
                norm.extend(std::iter::repeat_n(0, repeat as usize));
                if norm.len() > max_symbols {
                    return Err(bad("fse description has too many symbols"));
                }
                if repeat != 3 {
                    break;
                }
            }
        }
        while remaining < threshold && nbits > 1 {
            nbits -= 1;
            threshold >>= 1;
        }
    }
    if remaining != 1 || norm.len() > max_symbols {
        return Err(bad("fse description does not add up"));
    }
    Ok((norm, log, r.pos.div_ceil(8)))
}

/// Little-endian, least significant bit first, over a slice.
struct ForwardBits<'a> {
    src: &'a [u8],
    pos: usize,
}

impl ForwardBits<'_> {
    fn peek(&self, n: u32) -> Result<u32, LayerError> {
        if self.pos + n as usize > self.src.len() * 8 {
            return Err(bad("fse description is truncated"));
        }
        let mut v = 0u32;
        for i in 0..n as usize {
            let p = self.pos + i;
            v |= (((self.src[p / 8] >> (p % 8)) & 1) as u32) << i;
        }
        Ok(v)
    }
    fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }
    fn take(&mut self, n: u32) -> Result<u32, LayerError> {
        let v = self.peek(n)?;
        self.skip(n);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_distributions_fill_their_tables() {
        for (norm, log) in [
            (&LL_DEFAULT[..], 6),
            (&ML_DEFAULT[..], 6),
            (&OF_DEFAULT[..], 5),
        ] {
            let t = Table::build(norm, log).expect("default table");
            assert_eq!(t.entries.len(), 1 << log);
        }
    }

    #[test]
    fn reverse_walk_finds_the_state_that_leads_to_each_next_state() {
        for (norm, log) in [
            (&LL_DEFAULT[..], 6),
            (&ML_DEFAULT[..], 6),
            (&OF_DEFAULT[..], 5),
        ] {
            let t = Table::build(norm, log).expect("default table");
            for (u, e) in t.entries.iter().enumerate() {
                for extra in 0..(1u16 << e.nbits) {
                    let next = e.base + extra;
                    assert_eq!(t.previous(e.symbol, next).expect("state") as usize, u);
                }
                assert!(
                    t.previous(e.symbol, 1 << log).is_err(),
                    "a state past the table"
                );
            }
        }
    }

    #[test]
    fn a_description_that_overflows_is_refused() {
        assert!(read_ncount(&[0xff, 0xff, 0xff], 9, 36).is_err());
        assert!(read_ncount(&[], 9, 36).is_err());
    }
}
