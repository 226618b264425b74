//! A blob's recipe: its size, its digest and its chunks in order, in a compact checked
//! encoding; the blob rebuilt from it (verified) or a byte range of it read from the chunks
//! that cover the range alone.
//!
//! Encoding: `STRATA-CHUNKS-1\n`, size (u64 BE), sha256 (32 bytes), entry count (u64 BE),
//! then per entry its length (u32 BE) and a tag: 0 for a chunk of zeros, 1 followed by the
//! chunk's SHA-256.

use std::io::{Read, Write};

use sha2::{Digest as _, Sha256};

use crate::chunker::Chunker;
use crate::store::ChunkStore;
use crate::{ChunkError, ChunkId, MAX_CHUNK};

const MAGIC: &[u8] = b"STRATA-CHUNKS-1\n";

/// One chunk of a blob: its length, and which chunk (`None`: zeros, not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub len: u32,
    pub chunk: Option<ChunkId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub size: u64,
    pub sha256: [u8; 32],
    pub entries: Vec<Entry>,
}

/// A recipe made, and what it added to the store.
#[derive(Debug, Clone)]
pub struct Made {
    pub recipe: Recipe,
    /// Bytes the store grew by (new chunks, compressed).
    pub new_bytes: u64,
    /// Chunks the store did not hold yet.
    pub new_chunks: u64,
    /// Chunks of zeros (not stored).
    pub zero_chunks: u64,
}

fn bad(why: impl Into<String>) -> ChunkError {
    ChunkError::Recipe(why.into())
}

impl Recipe {
    /// Cuts what `reader` yields with `chunker` into `store`; the recipe of the blob.
    pub fn make<R: Read>(
        chunker: &Chunker,
        reader: R,
        store: &dyn ChunkStore,
    ) -> Result<Made, ChunkError> {
        let mut h = Sha256::new();
        let mut entries = Vec::new();
        let (mut new_bytes, mut new_chunks, mut zero_chunks) = (0, 0, 0);
        let size = chunker.cut(reader, |piece| {
            h.update(piece.data);
            let len = piece.data.len() as u32;
            if piece.is_zero() {
                zero_chunks += 1;
                entries.push(Entry { len, chunk: None });
            } else {
                let (id, added) = store.put(piece.data)?;
                if added > 0 {
                    new_chunks += 1;
                    new_bytes += added;
                }
                entries.push(Entry {
                    len,
                    chunk: Some(id),
                });
            }
            Ok(())
        })?;
        Ok(Made {
            recipe: Recipe {
                size,
                sha256: h.finalize().into(),
                entries,
            },
            new_bytes,
            new_chunks,
            zero_chunks,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 48 + self.entries.len() * 37);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(&(self.entries.len() as u64).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.len.to_be_bytes());
            match &e.chunk {
                None => out.push(0),
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(id);
                }
            }
        }
        out
    }

    /// Reads an encoded recipe, refusing anything that does not add up: a damaged or
    /// truncated one, chunks of no bytes or larger than any chunker cuts, lengths that do
    /// not sum to the size.
    pub fn decode(bytes: &[u8]) -> Result<Recipe, ChunkError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a chunk recipe (no STRATA-CHUNKS-1 header)"))?;
        let mut r = Reader(rest);
        let size = u64::from_be_bytes(r.take()?);
        let sha256: [u8; 32] = r.take()?;
        let count = u64::from_be_bytes(r.take()?);
        // Every entry takes at least 5 bytes: a count beyond that is a lie.
        if count > (r.0.len() / 5) as u64 {
            return Err(bad(format!(
                "{count} entries announced, the recipe is too short"
            )));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut sum = 0u64;
        for i in 0..count {
            let len = u32::from_be_bytes(r.take()?);
            if len == 0 || len > MAX_CHUNK {
                return Err(bad(format!("entry {i}: a chunk of {len} bytes")));
            }
            let chunk = match r.take::<1>()?[0] {
                0 => None,
                1 => Some(r.take()?),
                t => return Err(bad(format!("entry {i}: unknown tag {t}"))),
            };
            sum += u64::from(len);
            entries.push(Entry { len, chunk });
        }
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the last entry", r.0.len())));
        }
        if sum != size {
            return Err(bad(format!("chunks of {sum} bytes for a blob of {size}")));
        }
        Ok(Recipe {
            size,
            sha256,
            entries,
        })
    }

    /// Writes the blob to `out`, each chunk verified, and checks the whole against the
    /// recipe's digest (an error after the last byte: keep nothing written before then
    /// unless this returns `Ok`).
    pub fn rebuild(&self, store: &dyn ChunkStore, out: &mut dyn Write) -> Result<(), ChunkError> {
        let mut h = Sha256::new();
        let zeros = vec![0u8; self.entries.iter().map(|e| e.len).max().unwrap_or(0) as usize];
        for e in &self.entries {
            let data = match &e.chunk {
                None => zeros[..e.len as usize].to_vec(),
                Some(id) => store.get(id, e.len)?,
            };
            h.update(&data);
            out.write_all(&data)?;
        }
        let found: [u8; 32] = h.finalize().into();
        if found != self.sha256 {
            return Err(ChunkError::Digest {
                found: hex::encode(found),
                expected: hex::encode(self.sha256),
            });
        }
        Ok(())
    }

    /// Bytes `start..end` of the blob to `out`, read from the chunks covering them only
    /// (each verified). The range must lie within the blob.
    pub fn read_range(
        &self,
        store: &dyn ChunkStore,
        start: u64,
        end: u64,
        out: &mut dyn Write,
    ) -> Result<RangeRead, ChunkError> {
        if start > end || end > self.size {
            return Err(ChunkError::Range {
                start,
                end,
                size: self.size,
            });
        }
        let mut read = RangeRead::default();
        let mut offset = 0u64;
        for e in &self.entries {
            let (from, to) = (offset, offset + u64::from(e.len));
            offset = to;
            if to <= start {
                continue;
            }
            if from >= end {
                break;
            }
            let (a, b) = (
                (start.max(from) - from) as usize,
                (end.min(to) - from) as usize,
            );
            match &e.chunk {
                None => out.write_all(&vec![0u8; b - a])?,
                Some(id) => {
                    let data = store.get(id, e.len)?;
                    read.chunks += 1;
                    read.chunk_bytes += u64::from(e.len);
                    out.write_all(&data[a..b])?;
                }
            }
        }
        Ok(read)
    }

    /// The distinct chunks the recipe names.
    pub fn chunk_ids(&self) -> std::collections::BTreeSet<ChunkId> {
        self.entries.iter().filter_map(|e| e.chunk).collect()
    }
}

/// What a range read took from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeRead {
    pub chunks: u64,
    pub chunk_bytes: u64,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ChunkError> {
        if self.0.len() < N {
            return Err(bad("the recipe ends early"));
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemChunkStore;

    fn blob() -> Vec<u8> {
        let mut x = 11u64;
        let mut d: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // A run of zeros, as a sparse disk has.
        d[100_000..200_000].fill(0);
        d
    }

    #[test]
    fn a_blob_is_rebuilt_exactly_and_read_by_range() {
        let store = MemChunkStore::new();
        let d = blob();
        for c in [
            Chunker::new("fixed", 4).unwrap(),
            Chunker::new("fastcdc", 4).unwrap(),
        ] {
            let made = Recipe::make(&c, &d[..], &store).unwrap();
            let r = Recipe::decode(&made.recipe.encode()).unwrap();
            assert_eq!(r, made.recipe);
            let mut out = Vec::new();
            r.rebuild(&store, &mut out).unwrap();
            assert!(out == d, "{}", c.name());
            for (a, b) in [
                (0, 1),
                (4095, 4097),
                (99_990, 200_010),
                (299_999, 300_000),
                (5, 5),
            ] {
                let mut part = Vec::new();
                let read = r.read_range(&store, a, b, &mut part).unwrap();
                assert!(part == d[a as usize..b as usize], "{} {a}-{b}", c.name());
                assert!(
                    read.chunk_bytes <= (b - a) + 2 * 16384,
                    "{} {a}-{b}: {read:?}",
                    c.name()
                );
            }
            assert!(matches!(
                r.read_range(&store, 10, 300_001, &mut Vec::new()),
                Err(ChunkError::Range { .. })
            ));
        }
        // The zeros cost nothing with fixed chunks: the 23 aligned 4 KiB chunks inside them.
        let made = Recipe::make(
            &Chunker::new("fixed", 4).unwrap(),
            &d[..],
            &MemChunkStore::new(),
        )
        .unwrap();
        assert_eq!(made.zero_chunks, 23);
    }

    #[test]
    fn damaged_recipes_and_chunks_are_refused() {
        let store = MemChunkStore::new();
        let d = blob();
        let made = Recipe::make(&Chunker::new("fixed", 16).unwrap(), &d[..], &store).unwrap();
        let good = made.recipe.encode();
        for cut in [0, 10, MAGIC.len() + 20, good.len() - 1] {
            assert!(Recipe::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(Recipe::decode(&extra).is_err());
        // An absurd chunk length, and lengths that do not sum to the size.
        let len_at = MAGIC.len() + 8 + 32 + 8;
        let mut absurd = good.clone();
        absurd[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = Recipe::decode(&absurd).unwrap_err().to_string();
        assert!(e.contains("a chunk of 4294967295 bytes"), "{e}");
        let mut short = good.clone();
        short[len_at..len_at + 4].copy_from_slice(&100u32.to_be_bytes());
        assert!(Recipe::decode(&short)
            .unwrap_err()
            .to_string()
            .contains("for a blob of"));
        let mut huge_count = good.clone();
        huge_count[MAGIC.len() + 40..MAGIC.len() + 48].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(Recipe::decode(&huge_count).is_err());
        // A wrong digest in the recipe: the rebuild says so.
        let mut wrong = made.recipe.clone();
        wrong.sha256[0] ^= 1;
        assert!(matches!(
            wrong.rebuild(&store, &mut Vec::new()),
            Err(ChunkError::Digest { .. })
        ));
        // A chunk damaged in the store: detected, and the rebuild fails.
        let id = made.recipe.entries[0].chunk.unwrap();
        store.corrupt(&id, zstd::bulk::compress(b"not it", 3).unwrap());
        assert!(matches!(
            made.recipe.rebuild(&store, &mut Vec::new()),
            Err(ChunkError::Corrupt { .. })
        ));
    }
}
