//! A binary adaptive range coder (the LZMA family's design: 11-bit probabilities, carry
//! propagation through a cached byte) and the symmetric [`Coder`] trait that lets one model
//! function both encode and decode.
//!
//! Symmetry is the point: the correction record is written by [`RcEncoder`] while a stream is
//! analysed and read back by [`RcDecoder`] while it is rebuilt; both run the same model code,
//! so they cannot drift apart.

const PROB_BITS: u32 = 11;
const PROB_ONE: u16 = 1 << PROB_BITS;
const MOVE_BITS: u32 = 5;
const TOP: u32 = 1 << 24;

/// An adaptive probability that the next bit is 0.
#[derive(Debug, Clone, Copy)]
pub struct Prob(u16);

impl Default for Prob {
    fn default() -> Self {
        Prob(PROB_ONE / 2)
    }
}

impl Prob {
    fn update(&mut self, bit: bool) {
        if bit {
            self.0 -= self.0 >> MOVE_BITS;
        } else {
            self.0 += (PROB_ONE - self.0) >> MOVE_BITS;
        }
    }
}

/// A probability for a bit that is nearly always 0 (a guess that nearly always holds):
/// 16-bit precision, so a long run of zeros costs ~0.0004 bits each where [`Prob`]'s
/// 11 bits never go below ~0.02.
#[derive(Debug, Clone, Copy)]
pub struct SureProb(u16);

const SURE_BITS: u32 = 16;
const SURE_MOVE: u32 = 4;

impl Default for SureProb {
    fn default() -> Self {
        SureProb(1 << (SURE_BITS - 1))
    }
}

impl SureProb {
    fn update(&mut self, bit: bool) {
        if bit {
            self.0 -= self.0 >> SURE_MOVE;
        } else {
            self.0 += (((1u32 << SURE_BITS) - self.0 as u32) >> SURE_MOVE) as u16;
        }
    }
}

/// One code path for both directions: an encoder takes the given value and returns it, a
/// decoder ignores it and returns what it reads.
pub trait Coder {
    /// `true` for the encoder: only then may a model derive values from the actual data.
    const ENCODING: bool;
    /// Codes one bit with an adaptive probability.
    fn bit(&mut self, p: &mut Prob, bit: bool) -> bool;
    /// Codes one bit with a high-precision adaptive probability (see [`SureProb`]).
    fn sure_bit(&mut self, p: &mut SureProb, bit: bool) -> bool;
    /// Codes the low `n` bits of `value` (n <= 32) at probability one half each.
    fn direct(&mut self, n: u32, value: u32) -> u32;

    /// `true` once a decoder has read past the end of its stream (an encoder never is).
    fn exhausted(&self) -> bool {
        false
    }

    /// Codes an `n`-bit value, most significant bit first, through a binary tree of adaptive
    /// probabilities (`probs` has at least `1 << n` entries).
    fn tree(&mut self, probs: &mut [Prob], n: u32, value: u32) -> u32 {
        let mut node = 1usize;
        for i in (0..n).rev() {
            let b = self.bit(&mut probs[node], (value >> i) & 1 == 1);
            node = (node << 1) | b as usize;
        }
        (node - (1 << n)) as u32
    }

    /// Codes `len` bytes verbatim (an encoder takes them from `bytes`).
    fn verbatim(&mut self, bytes: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| self.direct(8, if Self::ENCODING { bytes[i] as u32 } else { 0 }) as u8)
            .collect()
    }

    /// Codes a count with a variable number of direct bits (a 7-bit width, then the bits).
    fn count(&mut self, value: u64) -> u64 {
        let width = if Self::ENCODING {
            64 - value.leading_zeros()
        } else {
            0
        };
        let width = self.direct(7, width);
        let mut v = 0u64;
        let mut left = width;
        while left > 0 {
            let take = left.min(32);
            left -= take;
            let part = if Self::ENCODING {
                (value >> left) as u32 & mask(take)
            } else {
                0
            };
            v = (v << take) | self.direct(take, part) as u64;
        }
        v
    }
}

fn mask(n: u32) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1 << n) - 1
    }
}

/// Writes a range-coded byte stream.
#[derive(Debug)]
pub struct RcEncoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    out: Vec<u8>,
}

impl Default for RcEncoder {
    fn default() -> Self {
        RcEncoder {
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
            out: Vec::new(),
        }
    }
}

impl RcEncoder {
    fn shift_low(&mut self) {
        if (self.low as u32) < 0xFF00_0000 || (self.low >> 32) != 0 {
            let carry = (self.low >> 32) as u8;
            let mut byte = self.cache;
            loop {
                self.out.push(byte.wrapping_add(carry));
                byte = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = (self.low >> 24) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    /// Codes `bit` where the range splits at `bound` (zero below it, one above).
    #[inline]
    fn encode(&mut self, bound: u32, bit: bool) {
        if bit {
            self.low += bound as u64;
            self.range -= bound;
        } else {
            self.range = bound;
        }
        self.normalize();
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Bytes written so far (the final size is known after [`RcEncoder::finish`]).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// `true` before anything has been flushed.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Flushes the coder and returns the stream.
    pub fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }
}

impl Coder for RcEncoder {
    const ENCODING: bool = true;

    fn bit(&mut self, p: &mut Prob, bit: bool) -> bool {
        self.encode((self.range >> PROB_BITS) * p.0 as u32, bit);
        p.update(bit);
        bit
    }

    fn sure_bit(&mut self, p: &mut SureProb, bit: bool) -> bool {
        self.encode((self.range >> SURE_BITS) * p.0 as u32, bit);
        p.update(bit);
        bit
    }

    fn direct(&mut self, n: u32, value: u32) -> u32 {
        for i in (0..n).rev() {
            self.range >>= 1;
            if (value >> i) & 1 == 1 {
                self.low += self.range as u64;
            }
            self.normalize();
        }
        value & mask(n)
    }
}

/// Reads a range-coded byte stream. Reading past its end yields zero bytes; callers check
/// what they decode (a rebuild is always verified against the original digest).
#[derive(Debug)]
pub struct RcDecoder<'a> {
    input: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

impl<'a> RcDecoder<'a> {
    /// Starts decoding `input`, a stream written by [`RcEncoder`].
    pub fn new(input: &'a [u8]) -> Self {
        let mut d = RcDecoder {
            input,
            pos: 0,
            range: u32::MAX,
            code: 0,
        };
        for _ in 0..5 {
            d.code = (d.code << 8) | d.next_byte() as u32;
        }
        d
    }

    fn next_byte(&mut self) -> u8 {
        let b = self.input.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// `true` once the decoder has consumed more bytes than the stream holds.
    pub fn overrun(&self) -> bool {
        self.pos > self.input.len()
    }

    /// Reads a bit where the range splits at `bound` (zero below it, one above).
    #[inline]
    fn decode(&mut self, bound: u32) -> bool {
        let bit = self.code >= bound;
        if bit {
            self.code -= bound;
            self.range -= bound;
        } else {
            self.range = bound;
        }
        self.normalize();
        bit
    }

    fn normalize(&mut self) {
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | self.next_byte() as u32;
        }
    }
}

impl Coder for RcDecoder<'_> {
    const ENCODING: bool = false;

    fn exhausted(&self) -> bool {
        self.overrun()
    }

    fn bit(&mut self, p: &mut Prob, _bit: bool) -> bool {
        let bit = self.decode((self.range >> PROB_BITS) * p.0 as u32);
        p.update(bit);
        bit
    }

    fn sure_bit(&mut self, p: &mut SureProb, _bit: bool) -> bool {
        let bit = self.decode((self.range >> SURE_BITS) * p.0 as u32);
        p.update(bit);
        bit
    }

    fn direct(&mut self, n: u32, _value: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..n {
            self.range >>= 1;
            let bit = self.code >= self.range;
            if bit {
                self.code -= self.range;
            }
            v = (v << 1) | bit as u32;
            self.normalize();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script<C: Coder>(c: &mut C, bits: &[bool], values: &[u64]) -> (Vec<bool>, Vec<u64>) {
        let mut probs = [Prob::default(); 4];
        let mut tree = [Prob::default(); 256];
        let mut got_bits = Vec::new();
        let mut got_values = Vec::new();
        for (i, &b) in bits.iter().enumerate() {
            got_bits.push(c.bit(&mut probs[i % 4], b));
        }
        for &v in values {
            got_values.push(c.count(v));
            got_values.push(c.tree(&mut tree, 8, (v & 0xFF) as u32) as u64);
            got_values.push(c.direct(13, (v & 0x1FFF) as u32) as u64);
        }
        (got_bits, got_values)
    }

    #[test]
    fn decoder_reads_what_encoder_wrote() {
        let bits: Vec<bool> = (0..5000u32).map(|i| (i * 7919) % 11 < 2).collect();
        let values = [0u64, 1, 255, 4096, u32::MAX as u64, u64::MAX, 1 << 40];
        let mut enc = RcEncoder::default();
        let (b1, v1) = script(&mut enc, &bits, &values);
        let stream = enc.finish();
        let mut dec = RcDecoder::new(&stream);
        let (b2, v2) = script(&mut dec, &bits, &values);
        assert_eq!(b1, bits);
        assert_eq!(b2, bits);
        let expect: Vec<u64> = values
            .iter()
            .flat_map(|&v| [v, v & 0xFF, v & 0x1FFF])
            .collect();
        assert_eq!(v1, expect);
        assert_eq!(v2, expect);
        assert!(!dec.overrun());
    }

    #[test]
    fn skewed_bits_cost_little() {
        let mut enc = RcEncoder::default();
        let mut p = Prob::default();
        for i in 0..80_000 {
            enc.bit(&mut p, i % 100 == 0);
        }
        let len = enc.finish().len();
        // entropy of p=0.01 is 0.081 bits: 80k bits -> ~810 bytes
        assert!(len < 1200, "{len} bytes");
    }
}
