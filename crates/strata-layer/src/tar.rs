//! Tar streams split into file contents (to the [`FileStore`]) and a recipe that rebuilds the
//! exact stream: every byte that is not regular-file content (headers, PAX and GNU long-name
//! records, padding, the end-of-archive blocks and anything after them) is kept verbatim in
//! the recipe's metadata, zstd-compressed; each regular file's content is a reference to its
//! digest.
//!
//! Entries are checked as they stream past, and a layer that fails a check is refused with a
//! clear error: absolute names or `..` components, hard links to anything but an earlier
//! entry, symbolic links whose relative target climbs above the root, device nodes other
//! than the standard character devices every OCI runtime provides, duplicate names, oversized
//! PAX or long-name records, too many entries, truncated streams.

use std::collections::HashSet;
use std::io::{Read, Write};

use crate::filestore::{FileDigest, FileStore, FileWriter, Stored};
use crate::LayerError;

const BLOCK: usize = 512;
/// Largest PAX record or GNU long name we parse.
const MAX_RECORD: u64 = 1 << 20;

/// Limits that bound what one layer may cost to decompose.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_tar_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_tar_bytes: 64 << 30,
        }
    }
}

/// One step of a rebuild: copy metadata bytes, or a stored file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Meta(u64),
    File { digest: FileDigest, size: u64 },
}

/// What rebuilds a tar stream from the file store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarRecipe {
    pub ops: Vec<Op>,
    /// Every non-file byte, in order.
    pub meta: Vec<u8>,
}

impl TarRecipe {
    /// Files referenced, in order (with repeats).
    pub fn files(&self) -> impl Iterator<Item = (&FileDigest, u64)> {
        self.ops.iter().filter_map(|op| match op {
            Op::File { digest, size } => Some((digest, *size)),
            Op::Meta(_) => None,
        })
    }

    /// Length of the tar stream.
    pub fn tar_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Meta(n) => *n,
                Op::File { size, .. } => *size,
            })
            .sum()
    }

    fn push_meta(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.meta.extend_from_slice(bytes);
        if let Some(Op::Meta(n)) = self.ops.last_mut() {
            *n += bytes.len() as u64;
        } else {
            self.ops.push(Op::Meta(bytes.len() as u64));
        }
    }
}

enum State<'s> {
    Header,
    File {
        left: u64,
        writer: Box<dyn FileWriter + 's>,
    },
    Record {
        left: u64,
        kind: u8,
    },
    Skip {
        left: u64,
    },
    Trailer,
}

/// Splits a tar stream written into it; [`TarSplitter::finish`] returns the recipe.
pub struct TarSplitter<'s> {
    store: &'s dyn FileStore,
    limits: Limits,
    state: State<'s>,
    header: Vec<u8>,
    record: Vec<u8>,
    recipe: TarRecipe,
    added: Vec<FileDigest>,
    names: HashSet<String>,
    long_name: Option<String>,
    long_link: Option<String>,
    pax_path: Option<String>,
    pax_link: Option<String>,
    pax_size: Option<u64>,
    entries: u64,
    total: u64,
    error: Option<LayerError>,
}

impl std::fmt::Debug for TarSplitter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSplitter")
            .field("entries", &self.entries)
            .field("total", &self.total)
            .finish()
    }
}

fn hostile(msg: impl Into<String>) -> LayerError {
    LayerError::Hostile(msg.into())
}

fn field_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn parse_num(b: &[u8]) -> Result<u64, LayerError> {
    if b[0] & 0x80 != 0 {
        if b[0] & 0x40 != 0 {
            return Err(LayerError::Tar("negative base-256 number".into()));
        }
        let mut v: u64 = (b[0] & 0x3f) as u64;
        for &c in &b[1..] {
            if v >> 56 != 0 {
                return Err(LayerError::Tar("base-256 number overflows".into()));
            }
            v = (v << 8) | c as u64;
        }
        return Ok(v);
    }
    let s = field_str(b);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| LayerError::Tar(format!("bad octal field {s:?}")))
}

/// The standard character devices of OCI runtimes (null, zero, full, random, urandom, tty,
/// console, ptmx), by (major, minor).
const RUNTIME_DEVICES: [(u64, u64); 8] = [
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
    (5, 2),
];

/// Lexically normalises an entry name; rejects absolute names and `..` components.
fn clean_name(name: &str) -> Result<String, LayerError> {
    if name.starts_with('/') {
        return Err(hostile(format!("absolute entry name {name:?}")));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(hostile(format!("entry name {name:?} contains \"..\""))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `true` if a relative symlink target climbs above the root from the link's directory.
fn climbs_out(link_name: &str, target: &str) -> bool {
    let mut depth = link_name.split('/').filter(|p| !p.is_empty()).count() as i64 - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

impl<'s> TarSplitter<'s> {
    pub fn new(store: &'s dyn FileStore, limits: Limits) -> Self {
        TarSplitter {
            store,
            limits,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            record: Vec::new(),
            recipe: TarRecipe::default(),
            added: Vec::new(),
            names: HashSet::new(),
            long_name: None,
            long_link: None,
            pax_path: None,
            pax_link: None,
            pax_size: None,
            entries: 0,
            total: 0,
            error: None,
        }
    }

    /// `true` once an entry or limit check has refused the stream.
    pub fn refused(&self) -> bool {
        self.error.is_some()
    }

    /// Files this splitter added to the store (for rollback).
    pub fn added(&self) -> &[FileDigest] {
        &self.added
    }

    /// Ends the stream: the recipe, or why the stream is not a complete tar.
    pub fn finish(self) -> Result<(TarRecipe, Vec<FileDigest>), (LayerError, Vec<FileDigest>)> {
        if let Some(e) = self.error {
            return Err((e, self.added));
        }
        match self.state {
            State::Trailer => Ok((self.recipe, self.added)),
            _ => Err((
                LayerError::Tar("tar stream truncated before its end-of-archive blocks".into()),
                self.added,
            )),
        }
    }

    fn on_header(&mut self) -> Result<(), LayerError> {
        let h = std::mem::take(&mut self.header);
        self.recipe.push_meta(&h);
        if h.iter().all(|&b| b == 0) {
            self.state = State::Trailer;
            return Ok(());
        }
        let stored: u64 = parse_num(&h[148..156])?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    b as u64
                }
            })
            .sum();
        if stored != sum {
            return Err(LayerError::Tar("header checksum mismatch".into()));
        }
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(LayerError::Limit(format!(
                "more than {} tar entries",
                self.limits.max_entries
            )));
        }
        let kind = h[156];
        let mut size = parse_num(&h[124..136])?;
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_RECORD {
                    return Err(hostile(format!("{} record of {size} bytes", kind as char)));
                }
                self.record.clear();
                self.state = if size == 0 {
                    State::Header
                } else {
                    State::Record { left: size, kind }
                };
                return Ok(());
            }
            _ => {}
        }
        if let Some(s) = self.pax_size.take() {
            size = s;
        }
        let raw_name = self
            .long_name
            .take()
            .or(self.pax_path.take())
            .unwrap_or_else(|| {
                let name = field_str(&h[0..100]);
                let prefix = if &h[257..262] == b"ustar" {
                    field_str(&h[345..500])
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            });
        let link = self
            .long_link
            .take()
            .or(self.pax_link.take())
            .unwrap_or_else(|| field_str(&h[157..257]));
        let name = clean_name(&raw_name)?;
        self.check_entry(kind, &name, &link, &h)?;
        if !self.names.insert(name.clone()) && !name.is_empty() {
            return Err(hostile(format!("duplicate entry {name:?}")));
        }
        self.state = match kind {
            b'0' | b'\0' | b'7' if size > 0 => State::File {
                left: size,
                writer: self.store.writer()?,
            },
            _ if size > 0 && !matches!(kind, b'1' | b'2' | b'5') => State::Skip { left: size },
            _ => State::Header,
        };
        Ok(())
    }

    fn check_entry(&self, kind: u8, name: &str, link: &str, h: &[u8]) -> Result<(), LayerError> {
        match kind {
            b'1' => {
                let target = clean_name(link)
                    .map_err(|_| hostile(format!("hard link {name:?} points outside: {link:?}")))?;
                if !self.names.contains(&target) {
                    return Err(hostile(format!(
                        "hard link {name:?} to unknown entry {link:?}"
                    )));
                }
            }
            b'2' if !link.starts_with('/') && climbs_out(name, link) => {
                return Err(hostile(format!(
                    "symlink {name:?} points outside the root: {link:?}"
                )));
            }
            b'3' | b'4' => {
                let dev = (parse_num(&h[329..337])?, parse_num(&h[337..345])?);
                if kind == b'4' || !RUNTIME_DEVICES.contains(&dev) {
                    return Err(hostile(format!(
                        "device node {name:?} ({}:{})",
                        dev.0, dev.1
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_record(&mut self, kind: u8) -> Result<(), LayerError> {
        let data = std::mem::take(&mut self.record);
        match kind {
            b'L' => self.long_name = Some(field_str(&data)),
            b'K' => self.long_link = Some(field_str(&data)),
            b'x' => self.parse_pax(&data)?,
            _ => {}
        }
        Ok(())
    }

    fn parse_pax(&mut self, mut data: &[u8]) -> Result<(), LayerError> {
        while !data.is_empty() {
            let sp = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| LayerError::Tar("bad pax record".into()))?;
            let len: usize = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > sp && l <= data.len())
                .ok_or_else(|| LayerError::Tar("bad pax record length".into()))?;
            let rec = &data[sp + 1..len];
            let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
            if let Some(eq) = rec.iter().position(|&b| b == b'=') {
                let (k, v) = (
                    &rec[..eq],
                    String::from_utf8_lossy(&rec[eq + 1..]).into_owned(),
                );
                match k {
                    b"path" => self.pax_path = Some(v),
                    b"linkpath" => self.pax_link = Some(v),
                    b"size" => {
                        self.pax_size = Some(
                            v.parse()
                                .map_err(|_| LayerError::Tar("bad pax size".into()))?,
                        )
                    }
                    _ => {}
                }
            }
            data = &data[len..];
        }
        Ok(())
    }

    fn consume(&mut self, mut buf: &[u8]) -> Result<(), LayerError> {
        self.total += buf.len() as u64;
        if self.total > self.limits.max_tar_bytes {
            return Err(LayerError::Limit(format!(
                "tar stream longer than {} bytes",
                self.limits.max_tar_bytes
            )));
        }
        while !buf.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(buf.len());
                    self.header.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.header.len() == BLOCK {
                        self.on_header()?;
                    }
                }
                State::File { left, writer } => {
                    let take = (*left).min(buf.len() as u64) as usize;
                    writer.write_all(&buf[..take])?;
                    *left -= take as u64;
                    buf = &buf[take..];
                    if *left == 0 {
                        let State::File { writer, .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!("state checked above")
                        };
                        let size = self.file_done(writer)?;
                        self.pad(size);
                    }
                }
                State::Record { left, kind } => {
                    let take = (*left).min(buf.len() as u64) as usize;
                    self.record.extend_from_slice(&buf[..take]);
                    self.recipe.push_meta(&buf[..take]);
                    *left -= take as u64;
                    buf = &buf[take..];
                    if *left == 0 {
                        let kind = *kind;
                        let size = self.record.len() as u64;
                        self.on_record(kind)?;
                        self.state = State::Header;
                        self.pad(size);
                    }
                }
                State::Skip { left } => {
                    let take = (*left).min(buf.len() as u64) as usize;
                    self.recipe.push_meta(&buf[..take]);
                    *left -= take as u64;
                    buf = &buf[take..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Trailer => {
                    self.recipe.push_meta(buf);
                    buf = &[];
                }
            }
        }
        Ok(())
    }

    /// After content of `size` bytes, the padding to the next block is copied verbatim.
    fn pad(&mut self, size: u64) {
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if pad > 0 {
            self.state = State::Skip { left: pad };
        }
    }

    fn file_done(&mut self, writer: Box<dyn FileWriter + 's>) -> Result<u64, LayerError> {
        let Stored { digest, size, new } = writer.commit()?;
        if new {
            self.added.push(digest);
        }
        self.recipe.ops.push(Op::File { digest, size });
        Ok(size)
    }
}

impl Write for TarSplitter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("tar stream already refused"));
        }
        if let Err(e) = self.consume(buf) {
            let msg = e.to_string();
            self.error = Some(e);
            return Err(std::io::Error::other(msg));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams the tar bytes a recipe describes.
pub struct TarBuilder<'a> {
    recipe: &'a TarRecipe,
    store: &'a dyn FileStore,
    op: usize,
    meta_pos: usize,
    meta_left: u64,
    file: Option<(Box<dyn Read + 'a>, u64)>,
}

impl std::fmt::Debug for TarBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarBuilder").field("op", &self.op).finish()
    }
}

impl<'a> TarBuilder<'a> {
    pub fn new(recipe: &'a TarRecipe, store: &'a dyn FileStore) -> Self {
        TarBuilder {
            recipe,
            store,
            op: 0,
            meta_pos: 0,
            meta_left: 0,
            file: None,
        }
    }
}

impl Read for TarBuilder<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.meta_left > 0 {
                let n = (self.meta_left.min(out.len() as u64)) as usize;
                let src = self
                    .recipe
                    .meta
                    .get(self.meta_pos..self.meta_pos + n)
                    .ok_or_else(|| std::io::Error::other("recipe metadata shorter than its ops"))?;
                out[..n].copy_from_slice(src);
                self.meta_pos += n;
                self.meta_left -= n as u64;
                return Ok(n);
            }
            if let Some((file, left)) = self.file.as_mut() {
                if *left > 0 {
                    let want = (*left).min(out.len() as u64) as usize;
                    let n = file.read(&mut out[..want])?;
                    if n == 0 {
                        return Err(std::io::Error::other(
                            "stored file shorter than the recipe says",
                        ));
                    }
                    *left -= n as u64;
                    return Ok(n);
                }
                self.file = None;
            }
            let Some(op) = self.recipe.ops.get(self.op) else {
                return Ok(0);
            };
            self.op += 1;
            match op {
                Op::Meta(n) => self.meta_left = *n,
                Op::File { digest, size } => {
                    let r = self.store.open(digest).map_err(std::io::Error::other)?;
                    self.file = Some((r, *size));
                }
            }
        }
    }
}
