//! The gzip container (RFC 1952) around DEFLATE: members, headers kept verbatim, trailers
//! checked against the data, trailing bytes after the last member kept verbatim.
//!
//! Correction layout, after each member's DEFLATE record: one bit "trailer as computed"
//! (else its 8 bytes), then one bit "another member follows". After the last member, the
//! count and bytes of anything that follows it.

use std::io::{Read, Write};

use crate::deflate::bits::{BitReader, BitWriter};
use crate::deflate::{self, Codec, DeflateStats, Format};
use crate::rc::Coder;
use crate::{trailing, LayerError};

/// Longest gzip header we keep (FEXTRA, FNAME, FCOMMENT included).
const MAX_HEADER: usize = 64 * 1024;

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// Counts and checksums the plain bytes of one member as they pass through: written by the
/// analysis, read by the rebuild.
struct Tally<'a, T> {
    inner: &'a mut T,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<'a, T> Tally<'a, T> {
    fn new(inner: &'a mut T) -> Self {
        Tally {
            inner,
            crc: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    fn count(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
    }
}

impl<W: Write> Write for Tally<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Tally<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(&buf[..n]);
        Ok(n)
    }
}

fn read_header<R: Read>(r: &mut BitReader<R>) -> Result<Vec<u8>, LayerError> {
    let mut h = Vec::with_capacity(10);
    let mut byte = |h: &mut Vec<u8>| -> Result<u8, LayerError> {
        if h.len() >= MAX_HEADER {
            return Err(LayerError::Limit("gzip header longer than 64 KiB".into()));
        }
        let b = r.byte().map_err(|_| LayerError::Truncated)?;
        h.push(b);
        Ok(b)
    };
    for _ in 0..10 {
        byte(&mut h)?;
    }
    if h[0] != 0x1f || h[1] != 0x8b {
        return Err(LayerError::Gzip("bad magic".into()));
    }
    if h[2] != 8 {
        return Err(LayerError::Gzip("compression method is not deflate".into()));
    }
    let flags = h[3];
    if flags & 0xe0 != 0 {
        return Err(LayerError::Gzip("reserved flag bits set".into()));
    }
    if flags & FEXTRA != 0 {
        let xlen = byte(&mut h)? as usize | (byte(&mut h)? as usize) << 8;
        for _ in 0..xlen {
            byte(&mut h)?;
        }
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            while byte(&mut h)? != 0 {}
        }
    }
    if flags & FHCRC != 0 {
        byte(&mut h)?;
        byte(&mut h)?;
    }
    Ok(h)
}

/// Analyses a gzip blob: writes the decompressed bytes to `plain` and the correction to `c`.
pub fn analyze<R: Read, W: Write, C: Coder>(
    input: R,
    plain: &mut W,
    c: &mut C,
) -> Result<DeflateStats, LayerError> {
    analyze_format(input, plain, c, Format::default())
}

/// [`analyze`] writing a correction record of `format` (earlier formats: for tests of
/// recipes written by earlier versions).
pub fn analyze_format<R: Read, W: Write, C: Coder>(
    input: R,
    plain: &mut W,
    c: &mut C,
    format: Format,
) -> Result<DeflateStats, LayerError> {
    let mut r = BitReader::new(std::io::BufReader::with_capacity(1 << 16, input));
    let mut codec = Codec::new(format);
    let mut total = DeflateStats::default();
    loop {
        let header = read_header(&mut r)?;
        c.count(header.len() as u64);
        c.verbatim(&header, header.len());
        let mut tally = Tally::new(&mut *plain);
        let stats = deflate::analyze(&mut codec, &mut r, &mut tally, c)?;
        let (crc, len) = (tally.crc.finalize(), tally.len);
        total.blocks += stats.blocks;
        total.tokens += stats.tokens;
        total.plain_bytes += stats.plain_bytes;
        let mut trailer = [0u8; 8];
        for b in trailer.iter_mut() {
            *b = r.byte().map_err(|_| LayerError::Truncated)?;
        }
        let as_computed = trailer == trailer_bytes(crc, len);
        if c.direct(1, as_computed as u32) == 0 {
            c.verbatim(&trailer, 8);
        }
        let more = next_is_member(&mut r)?;
        c.direct(1, more as u32);
        if !more {
            break;
        }
    }
    let tail = trailing::collect(Vec::new(), "gzip member", |buf| r.read_bytes(buf))?;
    trailing::code(c, &tail);
    Ok(total)
}

fn trailer_bytes(crc: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.to_le_bytes());
    t[4..].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// `true` if the next two bytes are a gzip magic (without consuming them).
fn next_is_member<R: Read>(r: &mut BitReader<R>) -> Result<bool, LayerError> {
    Ok(!r.at_end()? && r.peek(16)? == 0x8b1f)
}

/// Rebuilds a gzip blob from its decompressed bytes (`plain`) and correction (`c`).
pub fn rebuild<P: Read, W: Write, C: Coder>(
    c: &mut C,
    plain: &mut P,
    out: &mut W,
) -> Result<(), LayerError> {
    rebuild_format(c, plain, out, Format::default())
}

/// [`rebuild`] from a correction record of an earlier `format`.
pub fn rebuild_format<P: Read, W: Write, C: Coder>(
    c: &mut C,
    plain: &mut P,
    out: &mut W,
    format: Format,
) -> Result<(), LayerError> {
    let mut codec = Codec::new(format);
    let mut w = BitWriter::default();
    loop {
        if c.exhausted() {
            return Err(LayerError::Mismatch("correction record ends early".into()));
        }
        let hlen = c.count(0) as usize;
        if hlen > MAX_HEADER {
            return Err(LayerError::Mismatch(
                "gzip header length in correction too large".into(),
            ));
        }
        out.write_all(&c.verbatim(&[], hlen))
            .map_err(LayerError::Io)?;
        let mut tally = Tally::new(&mut *plain);
        deflate::rebuild(&mut codec, c, &mut tally, &mut w, out)?;
        let trailer = if c.direct(1, 0) == 1 {
            trailer_bytes(tally.crc.finalize(), tally.len).to_vec()
        } else {
            c.verbatim(&[], 8)
        };
        out.write_all(&trailer).map_err(LayerError::Io)?;
        if c.direct(1, 0) == 0 {
            break;
        }
    }
    trailing::rebuild(c, out)
}
