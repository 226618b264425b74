//! Backward bit streams (RFC 8878 section 4.1): written least significant bit first and
//! closed by a 1 bit, read from that last bit towards the start.

use crate::LayerError;

/// Reads a backward stream; bits before its start read as zero and mark it overflowed.
#[derive(Debug)]
pub struct BackBits<'a> {
    src: &'a [u8],
    /// Bits not yet read; negative once the reader went past the start.
    pos: i64,
}

impl<'a> BackBits<'a> {
    pub fn new(src: &'a [u8]) -> Result<Self, LayerError> {
        let last = *src
            .last()
            .ok_or_else(|| LayerError::Zstd("empty bit stream".into()))?;
        if last == 0 {
            return Err(LayerError::Zstd("bit stream has no end marker".into()));
        }
        let pos = (src.len() as i64 - 1) * 8 + (7 - last.leading_zeros() as i64);
        Ok(BackBits { src, pos })
    }

    /// Bits `[start, start + n)` of the stream (n <= 56), zero where `start` is negative.
    fn window(&self, start: i64, n: u32) -> u64 {
        if n == 0 {
            return 0;
        }
        if start < 0 {
            let shift = (-start).min(64) as u32;
            if shift >= n {
                return 0;
            }
            return self.window(0, n - shift) << shift;
        }
        let byte = (start / 8) as usize;
        let mut buf = [0u8; 8];
        let end = (byte + 8).min(self.src.len());
        buf[..end - byte].copy_from_slice(&self.src[byte..end]);
        (u64::from_le_bytes(buf) >> (start % 8)) & ((1u64 << n) - 1)
    }

    /// The next `n` bits (n <= 32) without consuming them.
    pub fn peek(&self, n: u32) -> u32 {
        self.window(self.pos - n as i64, n) as u32
    }

    pub fn skip(&mut self, n: u32) {
        self.pos -= n as i64;
    }

    pub fn read(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.skip(n);
        v
    }

    /// `true` once more bits were read than the stream holds.
    pub fn overflowed(&self) -> bool {
        self.pos < 0
    }

    /// `true` when every bit was read and no more.
    pub fn is_exactly_used(&self) -> bool {
        self.pos == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::bits::BitWriter;

    #[test]
    fn fields_come_back_in_reverse_order() {
        let mut w = BitWriter::default();
        let fields = [
            (3u32, 5u32),
            (17, 0x1_2345),
            (1, 1),
            (31, 0x7fff_fff0),
            (0, 0),
            (9, 300),
        ];
        for &(n, v) in &fields {
            w.put(n, v);
        }
        w.put(1, 1);
        let (bytes, _) = w.into_parts();
        let mut r = BackBits::new(&bytes).expect("marker");
        for &(n, v) in fields.iter().rev() {
            assert_eq!(r.read(n), v);
        }
        assert!(r.is_exactly_used());
        r.read(1);
        assert!(r.overflowed());
    }

    #[test]
    fn a_stream_without_marker_is_refused() {
        assert!(BackBits::new(&[]).is_err());
        assert!(BackBits::new(&[1, 0]).is_err());
    }
}
