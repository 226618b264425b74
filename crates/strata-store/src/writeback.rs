//! Starting the writeback of a file range early (`sync_file_range(2)` with
//! `SYNC_FILE_RANGE_WRITE`): the kernel begins writing the dirty pages and returns, so a later
//! fsync has less left to wait for. Linux only; elsewhere a no-op.
//!
//! With [`crate::mapped`], one of the two modules of the crate with `unsafe` code.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Starts writing `len` bytes at `offset` of `file` to disk; returns at once.
#[cfg(target_os = "linux")]
pub(crate) fn start(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::other(
            "range beyond the file offsets the kernel takes",
        ));
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
    // memory of this process.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}
