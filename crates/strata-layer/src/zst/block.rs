//! One zstd block (RFC 8878 section 3.1.1.2): parsed into a [`BlockPlan`] (every choice its
//! encoder made that the decoded bytes do not determine) and encoded back from a plan plus
//! the block's decoded bytes.

use super::backbits::BackBits;
use super::fse::{read_ncount, Table, LL_DEFAULT, ML_DEFAULT, OF_DEFAULT};
use super::huf::HufTable;
use crate::deflate::bits::BitWriter;
use crate::LayerError;

/// Largest decoded (and encoded) block.
pub const MAX_BLOCK: usize = 128 * 1024;

pub const LL_BASE: [u32; 36] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64,
    128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];
pub const LL_BITS: [u8; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11,
    12, 13, 14, 15, 16,
];
pub const ML_BASE: [u32; 53] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30, 31, 32, 33, 34, 35, 37, 39, 41, 43, 47, 51, 59, 67, 83, 99, 131, 259, 515, 1027,
    2051, 4099, 8195, 16387, 32771, 65539,
];
pub const ML_BITS: [u8; 53] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];

/// Longest literal length and match length a sequence can code.
pub const MAX_LL: u32 = 65536 + (1 << 16) - 1;
pub const MAX_ML: u32 = 65539 + (1 << 16) - 1;

/// One sequence: literals to copy, then a match; `of` is the coded offset value (1-3 name
/// repeat offsets, above 3 it is the distance plus 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq {
    pub ll: u32,
    pub ml: u32,
    pub of: u32,
}

/// Block kinds as the block header numbers them.
pub const RAW: u8 = 0;
pub const RLE: u8 = 1;
pub const COMPRESSED: u8 = 2;

/// Literal section kinds.
pub const LIT_RAW: u8 = 0;
pub const LIT_RLE: u8 = 1;
pub const LIT_COMPRESSED: u8 = 2;
pub const LIT_TREELESS: u8 = 3;

/// Everything about a block besides its decoded bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockPlan {
    pub last: bool,
    pub kind: u8,
    /// Decoded size.
    pub regen: u32,
    pub lit_kind: u8,
    /// The literal header's size-format bits.
    pub lit_format: u8,
    /// A compressed literal section's Huffman description, verbatim.
    pub huf: Vec<u8>,
    /// Bytes the sequence count took (1-3).
    pub nseq_bytes: u8,
    pub modes: u8,
    /// Per LL, OF, ML: the FSE description or RLE byte, verbatim (empty otherwise).
    pub tables: [Vec<u8>; 3],
    /// Per LL, OF, ML: the state the decoder ended in.
    pub last_states: [u16; 3],
    pub seqs: Vec<Seq>,
}

/// Entropy tables a block may repeat from the one before it in the same frame.
#[derive(Debug, Default, Clone)]
pub struct Carry {
    huf: Option<HufTable>,
    fse: [Option<Table>; 3],
}

fn bad(msg: &str) -> LayerError {
    LayerError::Zstd(msg.into())
}

fn code_of(base: &[u32], v: u32) -> u8 {
    (base.partition_point(|&b| b <= v) - 1) as u8
}

pub fn ll_code(v: u32) -> u8 {
    if v < 16 {
        v as u8
    } else {
        code_of(&LL_BASE, v)
    }
}

pub fn ml_code(v: u32) -> u8 {
    code_of(&ML_BASE, v)
}

pub fn of_code(v: u32) -> u8 {
    (31 - v.leading_zeros()) as u8
}

/// LL, OF, ML: default distribution, its accuracy, the most accuracy a description may ask
/// for, and how many symbols the codes have.
const FIELDS: [(&[i16], u32, u32, usize); 3] = [
    (&LL_DEFAULT, 6, 9, 36),
    (&OF_DEFAULT, 5, 8, 32),
    (&ML_DEFAULT, 6, 9, 53),
];

struct Cursor<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LayerError> {
        let s = self
            .src
            .get(self.pos..self.pos + n)
            .ok_or_else(|| bad("block is truncated"))?;
        self.pos += n;
        Ok(s)
    }
    fn byte(&mut self) -> Result<u8, LayerError> {
        Ok(self.take(1)?[0])
    }
    fn rest(&self) -> &'a [u8] {
        &self.src[self.pos..]
    }
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | b as u64)
}

/// Parses a compressed block's body and decodes its literals; the sequences are left in
/// the plan for the caller to execute against the window.
pub fn parse_compressed(
    body: &[u8],
    plan: &mut BlockPlan,
    carry: &mut Carry,
) -> Result<Vec<u8>, LayerError> {
    let mut c = Cursor { src: body, pos: 0 };
    let lits = parse_literals(&mut c, plan, carry)?;
    parse_sequences(&mut c, plan, carry)?;
    Ok(lits)
}

fn parse_literals(
    c: &mut Cursor,
    plan: &mut BlockPlan,
    carry: &mut Carry,
) -> Result<Vec<u8>, LayerError> {
    let b0 = c.byte()?;
    plan.lit_kind = b0 & 3;
    let mut format = (b0 >> 2) & 3;
    if plan.lit_kind <= LIT_RLE {
        let regen = match format {
            0 | 2 => {
                format = 0;
                (b0 >> 3) as usize
            }
            1 => (b0 as usize >> 4) | (c.byte()? as usize) << 4,
            _ => (b0 as usize >> 4) | (le(c.take(2)?) as usize) << 4,
        };
        plan.lit_format = format;
        if regen > MAX_BLOCK {
            return Err(bad("literal section larger than a block"));
        }
        return Ok(if plan.lit_kind == LIT_RAW {
            c.take(regen)?.to_vec()
        } else {
            vec![c.byte()?; regen]
        });
    }
    plan.lit_format = format;
    let (bytes, bits) = match format {
        0 | 1 => (2, 10),
        2 => (3, 14),
        _ => (4, 18),
    };
    let head = (b0 as u64) | le(c.take(bytes)?) << 8;
    let mask = (1u64 << bits) - 1;
    let regen = ((head >> 4) & mask) as usize;
    let size = ((head >> (4 + bits)) & mask) as usize;
    if regen > MAX_BLOCK {
        return Err(bad("literal section larger than a block"));
    }
    let section = c.take(size)?;
    let mut s = Cursor {
        src: section,
        pos: 0,
    };
    if plan.lit_kind == LIT_COMPRESSED {
        let (table, used) = HufTable::read(section)?;
        plan.huf = s.take(used)?.to_vec();
        carry.huf = Some(table);
    }
    let table = carry
        .huf
        .as_ref()
        .ok_or_else(|| bad("treeless literals without an earlier table"))?;
    let mut lits = Vec::with_capacity(regen);
    if format == 0 {
        table.decode(s.rest(), regen, &mut lits)?;
    } else {
        let jump = s.take(6)?;
        let sizes = [le(&jump[0..2]), le(&jump[2..4]), le(&jump[4..6])].map(|v| v as usize);
        let each = regen.div_ceil(4);
        if each * 3 > regen {
            return Err(bad("too few literals for four streams"));
        }
        for &n in &sizes {
            table.decode(s.take(n)?, each, &mut lits)?;
        }
        table.decode(s.rest(), regen - 3 * each, &mut lits)?;
    }
    Ok(lits)
}

fn parse_sequences(
    c: &mut Cursor,
    plan: &mut BlockPlan,
    carry: &mut Carry,
) -> Result<(), LayerError> {
    let b0 = c.byte()? as usize;
    let (n, used) = match b0 {
        0..=127 => (b0, 1),
        128..=254 => (((b0 - 128) << 8) + c.byte()? as usize, 2),
        _ => (le(c.take(2)?) as usize + 0x7f00, 3),
    };
    plan.nseq_bytes = used;
    if n == 0 {
        if !c.rest().is_empty() {
            return Err(bad("bytes after an empty sequence section"));
        }
        return Ok(());
    }
    if n > MAX_BLOCK {
        return Err(bad("more sequences than a block can hold"));
    }
    plan.modes = c.byte()?;
    if plan.modes & 3 != 0 {
        return Err(bad("reserved sequence mode bits set"));
    }
    let mut tables: Vec<Table> = Vec::with_capacity(3);
    for (i, &(default, log, max_log, syms)) in FIELDS.iter().enumerate() {
        let mode = (plan.modes >> (6 - 2 * i)) & 3;
        let table = match mode {
            0 => Table::build(default, log)?,
            1 => {
                let s = c.byte()?;
                if s as usize >= syms {
                    return Err(bad("rle code out of range"));
                }
                plan.tables[i] = vec![s];
                Table::rle(s)
            }
            2 => {
                let (norm, log, used) = read_ncount(c.rest(), max_log, syms)?;
                plan.tables[i] = c.take(used)?.to_vec();
                Table::build(&norm, log)?
            }
            _ => carry.fse[i]
                .clone()
                .ok_or_else(|| bad("repeated sequence table without an earlier one"))?,
        };
        carry.fse[i] = Some(table.clone());
        tables.push(table);
    }
    let mut r = BackBits::new(c.rest())?;
    let mut st = [0usize; 3];
    for (i, t) in tables.iter().enumerate() {
        st[i] = r.read(t.log) as usize;
    }
    plan.seqs.reserve(n);
    for k in 0..n {
        let [ll_t, of_t, ml_t] = [&tables[0], &tables[1], &tables[2]];
        let (ll_e, of_e, ml_e) = (
            ll_t.entries[st[0]],
            of_t.entries[st[1]],
            ml_t.entries[st[2]],
        );
        let (lc, oc, mc) = (
            ll_e.symbol as usize,
            of_e.symbol as u32,
            ml_e.symbol as usize,
        );
        if lc >= 36 || mc >= 53 || oc > 31 {
            return Err(bad("sequence code out of range"));
        }
        let of = (1u32 << oc) + r.read(oc);
        let ml = ML_BASE[mc] + r.read(ML_BITS[mc] as u32);
        let ll = LL_BASE[lc] + r.read(LL_BITS[lc] as u32);
        plan.seqs.push(Seq { ll, ml, of });
        if k + 1 < n {
            st[0] = ll_e.base as usize + r.read(ll_e.nbits as u32) as usize;
            st[2] = ml_e.base as usize + r.read(ml_e.nbits as u32) as usize;
            st[1] = of_e.base as usize + r.read(of_e.nbits as u32) as usize;
        }
    }
    if !r.is_exactly_used() {
        return Err(bad(
            "sequence bit stream length does not match its sequences",
        ));
    }
    plan.last_states = st.map(|s| s as u16);
    Ok(())
}

/// The literals a block's sequences leave: every byte of `plain` no match covers.
pub fn literals_of(plan: &BlockPlan, plain: &[u8]) -> Result<Vec<u8>, LayerError> {
    let mut lits = Vec::with_capacity(plain.len());
    let mut pos = 0usize;
    for s in &plan.seqs {
        let end = pos + s.ll as usize;
        lits.extend_from_slice(
            plain
                .get(pos..end)
                .ok_or_else(|| bad("sequences run past the block"))?,
        );
        pos = end + s.ml as usize;
    }
    lits.extend_from_slice(
        plain
            .get(pos..)
            .ok_or_else(|| bad("sequences run past the block"))?,
    );
    Ok(lits)
}

/// Encodes a compressed block's body from its plan and decoded bytes.
pub fn encode_compressed(
    plan: &BlockPlan,
    plain: &[u8],
    carry: &mut Carry,
) -> Result<Vec<u8>, LayerError> {
    let lits = literals_of(plan, plain)?;
    let mut out = Vec::with_capacity(plain.len() / 2);
    encode_literals(plan, &lits, carry, &mut out)?;
    encode_sequences(plan, carry, &mut out)?;
    Ok(out)
}

fn put_le(out: &mut Vec<u8>, v: u64, bytes: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..bytes]);
}

fn encode_literals(
    plan: &BlockPlan,
    lits: &[u8],
    carry: &mut Carry,
    out: &mut Vec<u8>,
) -> Result<(), LayerError> {
    let (kind, format, n) = (
        plan.lit_kind as u64,
        plan.lit_format as u64,
        lits.len() as u64,
    );
    if plan.lit_kind <= LIT_RLE {
        match format {
            0 => put_le(out, kind | n << 3, 1),
            1 => put_le(out, kind | 1 << 2 | n << 4, 2),
            _ => put_le(out, kind | 3 << 2 | n << 4, 3),
        }
        if plan.lit_kind == LIT_RAW {
            out.extend_from_slice(lits);
        } else {
            out.push(
                *lits
                    .first()
                    .ok_or_else(|| bad("rle literals without a byte"))?,
            );
        }
        return Ok(());
    }
    if plan.lit_kind == LIT_COMPRESSED {
        carry.huf = Some(HufTable::read(&plan.huf)?.0);
    }
    let table = carry
        .huf
        .as_ref()
        .ok_or_else(|| bad("treeless literals without an earlier table"))?;
    let mut body = if plan.lit_kind == LIT_COMPRESSED {
        plan.huf.clone()
    } else {
        Vec::new()
    };
    if format == 0 {
        body.extend_from_slice(&table.encode(lits)?);
    } else {
        let each = lits.len().div_ceil(4);
        let streams = [0, 1, 2, 3].map(|i| {
            let lo = (i * each).min(lits.len());
            let hi = if i == 3 {
                lits.len()
            } else {
                ((i + 1) * each).min(lits.len())
            };
            table.encode(&lits[lo..hi])
        });
        let mut jump = Vec::with_capacity(6);
        let mut data = Vec::new();
        for (i, s) in streams.into_iter().enumerate() {
            let s = s?;
            if i < 3 {
                put_le(&mut jump, s.len() as u64, 2);
            }
            data.extend_from_slice(&s);
        }
        body.extend_from_slice(&jump);
        body.extend_from_slice(&data);
    }
    let size = body.len() as u64;
    let (bytes, bits) = match format {
        0 | 1 => (3, 10),
        2 => (4, 14),
        _ => (5, 18),
    };
    if n >> bits != 0 || size >> bits != 0 {
        return Err(bad("literal sizes do not fit their header format"));
    }
    put_le(out, kind | format << 2 | n << 4 | size << (4 + bits), bytes);
    out.extend_from_slice(&body);
    Ok(())
}

fn encode_sequences(
    plan: &BlockPlan,
    carry: &mut Carry,
    out: &mut Vec<u8>,
) -> Result<(), LayerError> {
    let n = plan.seqs.len();
    match plan.nseq_bytes {
        1 if n < 128 => out.push(n as u8),
        2 if n < 0x7f00 => put_le(out, (((n >> 8) + 128) | (n & 0xff) << 8) as u64, 2),
        3 if n >= 0x7f00 => {
            out.push(255);
            put_le(out, (n - 0x7f00) as u64, 2);
        }
        _ => return Err(bad("sequence count does not fit its recorded width")),
    }
    if n == 0 {
        return Ok(());
    }
    out.push(plan.modes);
    let mut tables: Vec<Table> = Vec::with_capacity(3);
    for (i, &(default, log, max_log, syms)) in FIELDS.iter().enumerate() {
        let table = match (plan.modes >> (6 - 2 * i)) & 3 {
            0 => Table::build(default, log)?,
            1 => Table::rle(
                *plan.tables[i]
                    .first()
                    .ok_or_else(|| bad("rle mode without its code"))?,
            ),
            2 => {
                let (norm, log, _) = read_ncount(&plan.tables[i], max_log, syms)?;
                Table::build(&norm, log)?
            }
            _ => carry.fse[i]
                .clone()
                .ok_or_else(|| bad("repeated sequence table without an earlier one"))?,
        };
        out.extend_from_slice(&plan.tables[i]);
        carry.fse[i] = Some(table.clone());
        tables.push(table);
    }
    // Each field's states, walked back from the one the decoder ended in.
    let codes = plan
        .seqs
        .iter()
        .map(|s| {
            if s.of == 0 || s.ml < ML_BASE[0] || s.ll > MAX_LL || s.ml > MAX_ML {
                return Err(bad("sequence value out of range"));
            }
            Ok([ll_code(s.ll), of_code(s.of), ml_code(s.ml)])
        })
        .collect::<Result<Vec<[u8; 3]>, LayerError>>()?;
    let mut states = vec![[0u16; 3]; n];
    states[n - 1] = plan.last_states;
    for k in (0..n - 1).rev() {
        for f in 0..3 {
            states[k][f] = tables[f].previous(codes[k][f], states[k + 1][f])?;
        }
    }
    for f in 0..3 {
        let e = tables[f]
            .entries
            .get(states[n - 1][f] as usize)
            .ok_or_else(|| bad("final state out of range"))?;
        if e.symbol != codes[n - 1][f] {
            return Err(bad("final state does not decode the last code"));
        }
    }
    // Fields in the order the decoder reads them, then written back to front.
    let mut fields: Vec<(u32, u32)> = Vec::with_capacity(n * 6 + 3);
    for f in 0..3 {
        fields.push((tables[f].log, states[0][f] as u32));
    }
    for k in 0..n {
        let s = plan.seqs[k];
        let [lc, oc, mc] = codes[k].map(|c| c as usize);
        fields.push((oc as u32, s.of - (1 << oc)));
        fields.push((ML_BITS[mc] as u32, s.ml - ML_BASE[mc]));
        fields.push((LL_BITS[lc] as u32, s.ll - LL_BASE[lc]));
        if k + 1 < n {
            for f in [0, 2, 1] {
                let e = tables[f].entries[states[k][f] as usize];
                fields.push((e.nbits as u32, (states[k + 1][f] - e.base) as u32));
            }
        }
    }
    let mut w = BitWriter::default();
    for &(nb, v) in fields.iter().rev() {
        w.put(nb, v);
    }
    w.put(1, 1);
    out.extend_from_slice(&w.into_parts().0);
    Ok(())
}
