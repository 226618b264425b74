//! A replay of Go's `compress/flate` at BestSpeed (Go's `deflatefast.go`): each block of up
//! to 65535 bytes is encoded on its own against a 16384-entry table of 4-byte values
//! (Snappy's scheme: probes spaced further apart the longer no match is found, the last 15
//! bytes always literals), with matches reaching into the previous block.
//!
//! Go writes such a block with its tokens, or as literals only when matches saved little,
//! or stored; the table is updated either way, so every block is replayed, and the model
//! codes only which of the first two the block is (see `TokenModel::code_block`).

use super::block::{match_token, Token};

const TABLE_BITS: u32 = 14;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const MAX_STORE_BLOCK: i32 = 65535;
const MAX_OFFSET: i32 = 32768;
const INPUT_MARGIN: usize = 16 - 1;
const MIN_NON_LITERAL_BLOCK: usize = 1 + 1 + INPUT_MARGIN;
const BUFFER_RESET: i32 = i32::MAX - MAX_STORE_BLOCK * 2;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    val: u32,
    offset: i32,
}

/// Go's BestSpeed encoder state across the blocks of one stream.
#[derive(Debug)]
pub struct GoFast {
    table: Vec<Entry>,
    prev: Vec<u8>,
    cur: i32,
}

impl Default for GoFast {
    fn default() -> Self {
        GoFast {
            table: vec![Entry::default(); TABLE_SIZE],
            prev: Vec::new(),
            cur: MAX_STORE_BLOCK,
        }
    }
}

fn load32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn load64(b: &[u8], i: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(v)
}

fn hash(u: u32) -> usize {
    (u.wrapping_mul(0x1e35_a7bd) >> (32 - TABLE_BITS)) as usize
}

impl GoFast {
    fn shift_offsets(&mut self) {
        if self.prev.is_empty() {
            self.table.fill(Entry::default());
        } else {
            for e in &mut self.table {
                e.offset = (e.offset - self.cur + MAX_OFFSET + 1).max(0);
            }
        }
        self.cur = MAX_OFFSET + 1;
    }

    /// Length of the match at `s` with the earlier position `t` (negative: in the previous
    /// block), at most 254 more bytes.
    fn match_len(&self, s: usize, t: i64, src: &[u8]) -> usize {
        let end = (s + 258 - 4).min(src.len());
        let a = &src[s..end];
        if t >= 0 {
            let b = &src[t as usize..];
            return a.iter().zip(b).take_while(|(x, y)| x == y).count();
        }
        let tp = self.prev.len() as i64 + t;
        if tp < 0 {
            return 0;
        }
        let b = &self.prev[tp as usize..];
        let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        if n < b.len().min(a.len()) || s + n == end {
            return n;
        }
        n + src[s + n..end]
            .iter()
            .zip(src)
            .take_while(|(x, y)| x == y)
            .count()
    }

    fn candidate_at(&self, e: Entry, s: usize) -> Option<i64> {
        let offset = s as i64 - (e.offset as i64 - self.cur as i64);
        (offset <= MAX_OFFSET as i64).then_some(e.offset as i64 - self.cur as i64)
    }

    /// The tokens Go writes for the block `src` (the state advances as Go's does).
    pub fn encode(&mut self, src: &[u8]) -> Vec<Token> {
        if self.cur >= BUFFER_RESET {
            self.shift_offsets();
        }
        let mut out = Vec::new();
        if src.len() < MIN_NON_LITERAL_BLOCK {
            self.cur += MAX_STORE_BLOCK;
            self.prev.clear();
            out.resize(src.len(), 0);
            return out;
        }
        let s_limit = src.len() - INPUT_MARGIN;
        let (mut next_emit, mut s) = (0usize, 0usize);
        let mut cv = load32(src, 0);
        let mut next_hash = hash(cv);
        'outer: loop {
            let mut skip = 32usize;
            let mut next_s = s;
            let mut candidate;
            loop {
                s = next_s;
                let between = skip >> 5;
                next_s = s + between;
                skip += between;
                if next_s > s_limit {
                    break 'outer;
                }
                candidate = self.table[next_hash];
                let now = load32(src, next_s);
                self.table[next_hash] = Entry {
                    offset: s as i32 + self.cur,
                    val: cv,
                };
                next_hash = hash(now);
                if self.candidate_at(candidate, s).is_some() && cv == candidate.val {
                    break;
                }
                cv = now;
            }
            out.resize(out.len() + (s - next_emit), 0);
            loop {
                s += 4;
                let t = candidate.offset as i64 - self.cur as i64 + 4;
                let l = self.match_len(s, t, src);
                out.push(match_token(l as u16 + 4, (s as i64 - t) as u16));
                s += l;
                next_emit = s;
                if s >= s_limit {
                    break 'outer;
                }
                let mut x = load64(src, s - 1);
                self.table[hash(x as u32)] = Entry {
                    offset: self.cur + s as i32 - 1,
                    val: x as u32,
                };
                x >>= 8;
                let curr = hash(x as u32);
                candidate = self.table[curr];
                self.table[curr] = Entry {
                    offset: self.cur + s as i32,
                    val: x as u32,
                };
                if self.candidate_at(candidate, s).is_none() || x as u32 != candidate.val {
                    cv = (x >> 8) as u32;
                    next_hash = hash(cv);
                    s += 1;
                    break;
                }
            }
        }
        out.resize(out.len() + (src.len() - next_emit), 0);
        self.cur += src.len() as i32;
        self.prev.clear();
        self.prev.extend_from_slice(src);
        out
    }
}
