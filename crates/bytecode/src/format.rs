//! The binary file format: a header, then tagged sections each holding a
//! postcard-encoded table. See `docs/bytecode.md`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{verify, Program, VerifyError};

/// The first four bytes of every program file.
pub const MAGIC: [u8; 4] = *b"IVRB";
/// Bumped whenever the encoding or the meaning of an instruction changes.
pub const FORMAT_VERSION: u16 = 2;

/// Section ids. Ids of 128 and above are optional: a reader that does not know
/// one skips it; a missing required section is an error.
mod id {
    pub const META: u8 = 1;
    pub const CONSTS: u8 = 2;
    pub const CODE: u8 = 3;
    pub const SLOTS: u8 = 4;
    pub const NODES: u8 = 5;
    pub const PROMPTS: u8 = 6;
    pub const COLLECTS: u8 = 7;
    pub const OPS: u8 = 8;
    pub const TABLES: u8 = 9;
    pub const HOURS: u8 = 10;
    pub const SPANS: u8 = 128;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not an IVR program (bad magic number)")]
    BadMagic,
    #[error("program format version {found} is not supported (this build reads version {FORMAT_VERSION}); recompile the flow")]
    Version { found: u16 },
    #[error("program file is truncated")]
    Truncated,
    #[error("section {0} appears twice")]
    DuplicateSection(u8),
    #[error("unknown required section {0}")]
    UnknownSection(u8),
    #[error("required section {0} is missing")]
    MissingSection(&'static str),
    #[error("section {section} is malformed: {message}")]
    Malformed { section: &'static str, message: String },
    #[error("program failed verification: {0}")]
    Verify(#[from] VerifyError),
}

fn put<T: Serialize>(out: &mut Vec<u8>, id: u8, value: &T) {
    let bytes = postcard::to_allocvec(value).expect("in-memory encoding cannot fail");
    out.push(id);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

/// Encodes a program. The span table is written unless `strip` is set.
pub fn encode(p: &Program, strip: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    put(&mut out, id::META, &(&p.languages, &p.entries, &p.subs));
    put(&mut out, id::CONSTS, &p.consts);
    put(&mut out, id::CODE, &p.code);
    put(&mut out, id::SLOTS, &p.slots);
    put(&mut out, id::NODES, &p.nodes);
    put(&mut out, id::PROMPTS, &p.prompts);
    put(&mut out, id::COLLECTS, &p.collects);
    put(&mut out, id::OPS, &p.ops);
    put(&mut out, id::TABLES, &p.tables);
    put(&mut out, id::HOURS, &p.hours);
    if let (Some(spans), false) = (&p.spans, strip) {
        put(&mut out, id::SPANS, spans);
    }
    out
}

fn get<T: DeserializeOwned>(bytes: Option<&[u8]>, section: &'static str) -> Result<T, DecodeError> {
    let bytes = bytes.ok_or(DecodeError::MissingSection(section))?;
    postcard::from_bytes(bytes).map_err(|e| DecodeError::Malformed { section, message: e.to_string() })
}

/// Decodes and verifies a program. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Program, DecodeError> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_le_bytes(bytes.get(4..6).ok_or(DecodeError::Truncated)?.try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    let mut sections: [Option<&[u8]>; 11] = [None; 11];
    let mut rest = &bytes[6..];
    while !rest.is_empty() {
        let (&sid, tail) = rest.split_first().unwrap();
        let len = tail.get(..4).ok_or(DecodeError::Truncated)?;
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let body = tail.get(4..4usize.saturating_add(len)).ok_or(DecodeError::Truncated)?;
        rest = &tail[4 + len..];
        let slot = match sid {
            id::META..=id::HOURS => sid as usize,
            id::SPANS => 0,
            s if s >= 128 => continue,
            s => return Err(DecodeError::UnknownSection(s)),
        };
        if sections[slot].replace(body).is_some() {
            return Err(DecodeError::DuplicateSection(sid));
        }
    }
    let (languages, entries, subs) = get(sections[id::META as usize], "meta")?;
    let program = Program {
        languages,
        entries,
        subs,
        consts: get(sections[id::CONSTS as usize], "consts")?,
        code: get(sections[id::CODE as usize], "code")?,
        slots: get(sections[id::SLOTS as usize], "slots")?,
        nodes: get(sections[id::NODES as usize], "nodes")?,
        prompts: get(sections[id::PROMPTS as usize], "prompts")?,
        collects: get(sections[id::COLLECTS as usize], "collects")?,
        ops: get(sections[id::OPS as usize], "ops")?,
        tables: get(sections[id::TABLES as usize], "tables")?,
        hours: get(sections[id::HOURS as usize], "hours")?,
        spans: match sections[0] {
            Some(b) => Some(get(Some(b), "spans")?),
            None => None,
        },
    };
    verify(&program)?;
    Ok(program)
}
