//! Cutting a blob into chunks.

use std::io::Read;

use crate::{ChunkError, MAX_CHUNK};

/// How a blob is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunker {
    /// Content-defined (FastCDC 2020): boundaries follow the content, so an insertion
    /// moves only the chunks around it. Chunks of `avg / 4` to `avg * 4` bytes.
    FastCdc { avg: u32 },
    /// Fixed-size chunks from the blob's start: a raw disk's blocks (4 KiB filesystem
    /// blocks within them) stay whole and aligned.
    Fixed { size: u32 },
}

/// One chunk as it is cut: where it starts in the blob, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

impl Piece<'_> {
    /// All zeros (never stored: a recipe marks it).
    pub fn is_zero(&self) -> bool {
        self.data.iter().all(|&b| b == 0)
    }
}

/// Smallest average / fixed size accepted: 1 KiB (below that the recipe outweighs the
/// chunks).
const SMALLEST: u32 = 1 << 10;

impl Chunker {
    /// `fastcdc` or `fixed` with the (average) chunk size in KiB.
    pub fn new(kind: &str, kib: u32) -> Result<Chunker, ChunkError> {
        let size = kib
            .checked_mul(1024)
            .ok_or_else(|| ChunkError::Chunker(format!("chunk size {kib} KiB is too large")))?;
        let (chunker, largest) = match kind {
            "fastcdc" => (Chunker::FastCdc { avg: size }, size.saturating_mul(4)),
            "fixed" => (Chunker::Fixed { size }, size),
            other => {
                return Err(ChunkError::Chunker(format!(
                    "unknown chunker {other:?}: fastcdc or fixed"
                )))
            }
        };
        if size < SMALLEST || largest > MAX_CHUNK {
            return Err(ChunkError::Chunker(format!(
                "{kind} chunks of {kib} KiB: the chunk size must be 1 KiB to {} KiB",
                if kind == "fastcdc" {
                    MAX_CHUNK / 4 / 1024
                } else {
                    MAX_CHUNK / 1024
                }
            )));
        }
        Ok(chunker)
    }

    /// A short name for reports: `fastcdc-64k`, `fixed-4k`.
    pub fn name(&self) -> String {
        match self {
            Chunker::FastCdc { avg } => format!("fastcdc-{}k", avg / 1024),
            Chunker::Fixed { size } => format!("fixed-{}k", size / 1024),
        }
    }

    /// Cuts what `reader` yields, calling `each` with every chunk in order; returns the
    /// bytes read. Memory: one chunk (fixed) or FastCDC's window of the largest chunk.
    pub fn cut<R: Read>(
        &self,
        mut reader: R,
        mut each: impl FnMut(Piece<'_>) -> Result<(), ChunkError>,
    ) -> Result<u64, ChunkError> {
        match *self {
            Chunker::Fixed { size } => {
                let mut buf = vec![0u8; size as usize];
                let mut offset = 0u64;
                loop {
                    let n = read_full(&mut reader, &mut buf)?;
                    if n == 0 {
                        return Ok(offset);
                    }
                    each(Piece {
                        offset,
                        data: &buf[..n],
                    })?;
                    offset += n as u64;
                    if n < buf.len() {
                        return Ok(offset);
                    }
                }
            }
            Chunker::FastCdc { avg } => {
                let chunks = fastcdc::v2020::StreamCDC::new(reader, avg / 4, avg, avg * 4);
                let mut total = 0u64;
                for chunk in chunks {
                    let chunk = chunk.map_err(|e| match e {
                        fastcdc::v2020::Error::IoError(io) => ChunkError::Io(io),
                        other => ChunkError::Chunker(other.to_string()),
                    })?;
                    each(Piece {
                        offset: chunk.offset,
                        data: &chunk.data,
                    })?;
                    total = chunk.offset + chunk.length as u64;
                }
                Ok(total)
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, ChunkError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cuts(c: Chunker, d: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let n = c
            .cut(d, |p| {
                out.push((p.offset, p.data.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(n, d.len() as u64);
        out
    }

    #[test]
    fn chunks_cover_the_blob_in_order() {
        let d = data(1 << 20, 7);
        for c in [
            Chunker::new("fastcdc", 16).unwrap(),
            Chunker::new("fixed", 4).unwrap(),
        ] {
            let pieces = cuts(c, &d);
            let mut next = 0;
            let mut joined = Vec::new();
            for (offset, bytes) in &pieces {
                assert_eq!(*offset, next, "{}", c.name());
                next += bytes.len() as u64;
                joined.extend_from_slice(bytes);
            }
            assert_eq!(joined, d, "{}", c.name());
        }
        assert_eq!(cuts(Chunker::new("fixed", 4).unwrap(), &d).len(), 256);
        assert!(cuts(Chunker::new("fixed", 4).unwrap(), &[]).is_empty());
    }

    #[test]
    fn content_defined_boundaries_survive_an_insertion() {
        let d = data(1 << 20, 9);
        let mut shifted = data(100, 3);
        shifted.extend_from_slice(&d);
        let c = Chunker::new("fastcdc", 8).unwrap();
        let a: std::collections::HashSet<Vec<u8>> = cuts(c, &d).into_iter().map(|x| x.1).collect();
        let b = cuts(c, &shifted);
        let shared = b.iter().filter(|x| a.contains(&x.1)).count();
        assert!(
            shared * 10 >= b.len() * 9,
            "{shared} of {} chunks kept",
            b.len()
        );
        // Fixed chunks all move.
        let f = Chunker::new("fixed", 8).unwrap();
        let a: std::collections::HashSet<Vec<u8>> = cuts(f, &d).into_iter().map(|x| x.1).collect();
        assert_eq!(
            cuts(f, &shifted)
                .iter()
                .filter(|x| a.contains(&x.1))
                .count(),
            0
        );
    }

    #[test]
    fn absurd_sizes_are_refused() {
        for (kind, kib) in [
            ("fixed", 0),
            ("fastcdc", 0),
            ("fixed", 32 * 1024),
            ("fastcdc", 8 * 1024),
            ("rabin", 64),
            ("fixed", u32::MAX),
        ] {
            assert!(Chunker::new(kind, kib).is_err(), "{kind} {kib}");
        }
        assert!(Chunker::new("fastcdc", 4096).is_ok());
        assert!(Chunker::new("fixed", 16384).is_ok());
    }
}
