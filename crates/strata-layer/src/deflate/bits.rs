//! LSB-first bit input and output, as DEFLATE (RFC 1951 section 3.1.1) packs them.

use std::io::Read;

use crate::LayerError;

/// Reads bits from a byte source, least significant first, optionally recording every bit
/// it hands out (the raw block headers that a rebuild replays).
#[derive(Debug)]
pub struct BitReader<R> {
    inner: R,
    buf: u64,
    nbits: u32,
    /// Bytes pulled from `inner` so far.
    consumed: u64,
    eof: bool,
    recording: Option<BitWriter>,
}

impl<R: Read> BitReader<R> {
    pub fn new(inner: R) -> Self {
        BitReader {
            inner,
            buf: 0,
            nbits: 0,
            consumed: 0,
            eof: false,
            recording: None,
        }
    }

    fn refill(&mut self) -> Result<(), LayerError> {
        while self.nbits <= 56 && !self.eof {
            let mut byte = [0u8; 1];
            match self.inner.read(&mut byte) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    self.buf |= (byte[0] as u64) << self.nbits;
                    self.nbits += 8;
                    self.consumed += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LayerError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next `n` (<= 32) bits without consuming them; missing bits past the end read as 0.
    pub fn peek(&mut self, n: u32) -> Result<u32, LayerError> {
        if self.nbits < n {
            self.refill()?;
        }
        Ok((self.buf & ((1u64 << n) - 1)) as u32)
    }

    /// Consumes `n` bits (that [`BitReader::peek`] made available).
    pub fn consume(&mut self, n: u32) -> Result<(), LayerError> {
        if n > self.nbits {
            return Err(LayerError::Truncated);
        }
        if let Some(rec) = self.recording.as_mut() {
            rec.put(n, (self.buf & ((1u64 << n) - 1)) as u32);
        }
        self.buf >>= n;
        self.nbits -= n;
        Ok(())
    }

    /// Reads `n` (<= 32) bits.
    pub fn bits(&mut self, n: u32) -> Result<u32, LayerError> {
        let v = self.peek(n)?;
        self.consume(n)?;
        Ok(v)
    }

    /// Bits left before the next byte boundary.
    pub fn bits_to_boundary(&self) -> u32 {
        self.nbits % 8
    }

    /// Reads one byte at a byte boundary.
    pub fn byte(&mut self) -> Result<u8, LayerError> {
        debug_assert_eq!(self.nbits % 8, 0);
        Ok(self.bits(8)? as u8)
    }

    /// Reads up to `out.len()` bytes at a byte boundary; returns how many (0 at the end).
    pub fn read_bytes(&mut self, out: &mut [u8]) -> Result<usize, LayerError> {
        debug_assert_eq!(self.nbits % 8, 0);
        let mut n = 0;
        while n < out.len() && self.nbits >= 8 {
            out[n] = self.bits(8)? as u8;
            n += 1;
        }
        if n < out.len() && self.nbits == 0 && !self.eof {
            let got = self.inner.read(&mut out[n..]).map_err(LayerError::Io)?;
            self.consumed += got as u64;
            if got == 0 {
                self.eof = true;
            }
            n += got;
        }
        Ok(n)
    }

    /// `true` when no bits are left.
    pub fn at_end(&mut self) -> Result<bool, LayerError> {
        if self.nbits == 0 {
            self.refill()?;
        }
        Ok(self.nbits == 0)
    }

    /// Bytes of the source consumed so far, counting whole bytes handed out or buffered.
    pub fn position_bytes(&self) -> u64 {
        self.consumed - (self.nbits / 8) as u64
    }

    /// Starts recording consumed bits.
    pub fn start_recording(&mut self) {
        self.recording = Some(BitWriter::default());
    }

    /// Stops recording and returns what was recorded.
    pub fn take_recording(&mut self) -> BitWriter {
        self.recording.take().unwrap_or_default()
    }
}

/// Collects bits least significant first into bytes.
#[derive(Debug, Default, Clone)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits not yet in `out` (fewer than 32 between calls).
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    /// Appends the low `n` (<= 32) bits of `v`.
    #[inline]
    pub fn put(&mut self, n: u32, v: u32) {
        self.acc |= ((v as u64) & ((1u64 << n) - 1)) << self.nbits;
        self.nbits += n;
        if self.nbits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.nbits -= 32;
        }
    }

    /// Moves the complete bytes of `acc` to `out`.
    fn flush_bytes(&mut self) {
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// Total bits written.
    pub fn bit_len(&self) -> u64 {
        self.out.len() as u64 * 8 + self.nbits as u64
    }

    /// Bits pending before the next byte boundary would be reached (0..8).
    pub fn bits_to_boundary(&self) -> u32 {
        (8 - self.nbits % 8) % 8
    }

    /// Appends whole bytes; the writer must be at a byte boundary.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        self.flush_bytes();
        debug_assert_eq!(self.nbits, 0);
        self.out.extend_from_slice(bytes);
    }

    /// Takes the complete bytes written so far, keeping the partial byte.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.flush_bytes();
        std::mem::take(&mut self.out)
    }

    /// Complete bytes written so far.
    pub fn bytes(&mut self) -> &[u8] {
        self.flush_bytes();
        &self.out
    }

    /// The bits as (bytes, bit count), the last byte partial.
    pub fn into_parts(mut self) -> (Vec<u8>, u64) {
        let len = self.bit_len();
        self.flush_bytes();
        if self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
        (self.out, len)
    }
}
