//! Bytes after a compressed stream's last member or frame: kept verbatim in the correction
//! record, up to [`MAX_TRAILING`].

use std::io::Write;

use crate::rc::Coder;
use crate::LayerError;

/// Most bytes after the last member or frame a layer may carry.
pub const MAX_TRAILING: usize = 1 << 20;

/// Collects what `read` still yields after `start` (bytes already read past the stream),
/// refusing more than [`MAX_TRAILING`]; `after` names the stream's last part.
pub fn collect(
    mut start: Vec<u8>,
    after: &str,
    mut read: impl FnMut(&mut [u8]) -> Result<usize, LayerError>,
) -> Result<Vec<u8>, LayerError> {
    let mut buf = [0u8; 4096];
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            return Ok(start);
        }
        start.extend_from_slice(&buf[..n]);
        if start.len() > MAX_TRAILING {
            return Err(LayerError::Limit(format!(
                "more than 1 MiB after the last {after}"
            )));
        }
    }
}

/// Writes the trailing bytes into the record.
pub fn code<C: Coder>(c: &mut C, tail: &[u8]) {
    c.count(tail.len() as u64);
    c.verbatim(tail, tail.len());
}

/// Reads the trailing bytes from the record and writes them to `out`.
pub fn rebuild<C: Coder, W: Write>(c: &mut C, out: &mut W) -> Result<(), LayerError> {
    let len = c.count(0) as usize;
    if len > MAX_TRAILING {
        return Err(LayerError::Mismatch(
            "tail length in correction too large".into(),
        ));
    }
    out.write_all(&c.verbatim(&[], len))?;
    Ok(())
}
