//! The free-space reserve of a data directory.
//!
//! Writes of blob data stop with [`StoreError::StorageFull`] while the filesystem has less
//! than a reserve free, so that a full disk is met by a clear refusal before any write fails
//! half-way. Metadata commits may use most of the reserve: they are small, and a metadata
//! database that runs out of space in the middle of a commit refuses every later operation
//! until it is reopened (redb), which is what the reserve exists to avoid. Another process
//! can still fill the disk past the reserve; every write then fails cleanly, as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StoreError;

/// Smallest and largest default reserve; in between, 1/64 of the filesystem.
const MIN_RESERVE: u64 = 1024 * 1024;
const MAX_RESERVE: u64 = 256 * 1024 * 1024;

/// Free space checks for the filesystem holding a directory.
#[derive(Debug, Clone)]
pub struct FreeSpace {
    dir: Arc<PathBuf>,
    reserve: u64,
}

/// Bytes free to an unprivileged writer and the filesystem's size.
fn statvfs(dir: &Path) -> Result<(u64, u64), StoreError> {
    let st = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    let unit = st.f_frsize.max(1);
    Ok((
        st.f_bavail.saturating_mul(unit),
        st.f_blocks.saturating_mul(unit),
    ))
}

impl FreeSpace {
    /// The reserve for `dir`'s filesystem: 1/64 of its size, between 1 MiB and 256 MiB.
    pub fn for_dir(dir: &Path) -> Result<Self, StoreError> {
        let (_, total) = statvfs(dir)?;
        Ok(Self::with_reserve(
            dir,
            (total / 64).clamp(MIN_RESERVE, MAX_RESERVE),
        ))
    }

    /// A reserve of `reserve` bytes on `dir`'s filesystem.
    pub fn with_reserve(dir: &Path, reserve: u64) -> Self {
        FreeSpace {
            dir: Arc::new(dir.to_path_buf()),
            reserve,
        }
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Whether `len` more bytes of blob data fit above the reserve.
    pub fn check_data(&self, len: u64) -> Result<(), StoreError> {
        let (free, _) = statvfs(&self.dir)?;
        if free < self.reserve.saturating_add(len) {
            return Err(StoreError::StorageFull);
        }
        Ok(())
    }

    /// Whether a metadata commit has room: a quarter of the reserve must still be free.
    pub fn check_metadata(&self) -> Result<(), StoreError> {
        let (free, _) = statvfs(&self.dir)?;
        if free < self.reserve / 4 {
            return Err(StoreError::StorageFull);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_a_zero_reserve_accepts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let huge = FreeSpace::with_reserve(dir.path(), u64::MAX / 2);
        assert!(matches!(huge.check_data(1), Err(StoreError::StorageFull)));
        assert!(matches!(
            huge.check_metadata(),
            Err(StoreError::StorageFull)
        ));
        let none = FreeSpace::with_reserve(dir.path(), 0);
        none.check_data(1).expect("one byte fits");
        none.check_metadata().expect("metadata fits");
        let default = FreeSpace::for_dir(dir.path()).expect("statvfs");
        assert!((MIN_RESERVE..=MAX_RESERVE).contains(&default.reserve()));
    }
}
