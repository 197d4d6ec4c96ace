//! The load-time verifier: every index and jump target is checked before a program
//! runs, so the VM can index its tables without a bounds failure ever reaching a call.

use crate::{Instr, OpKind, Program, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("instruction {pc}: {what} index {index} is out of range (table has {len})")]
    OutOfRange { pc: usize, what: &'static str, index: u32, len: usize },
    #[error("{what} refers to instruction {target}, past the end of the code ({len} instructions)")]
    BadTarget { what: String, target: u32, len: usize },
    #[error("instruction {pc}: transfer target must be a text constant")]
    TransferNotText { pc: usize },
    #[error("{0}")]
    Table(String),
    #[error("the program has no code")]
    Empty,
}

fn check(pc: usize, what: &'static str, index: u32, len: usize) -> Result<(), VerifyError> {
    if (index as usize) < len {
        Ok(())
    } else {
        Err(VerifyError::OutOfRange { pc, what, index, len })
    }
}

/// Checks that every reference inside the program points at something that exists.
pub fn verify(p: &Program) -> Result<(), VerifyError> {
    let n = p.code.len();
    if n == 0 {
        return Err(VerifyError::Empty);
    }
    let target = |what: String, t: u32| {
        if (t as usize) < n {
            Ok(())
        } else {
            Err(VerifyError::BadTarget { what, target: t, len: n })
        }
    };
    for (pc, ins) in p.code.iter().enumerate() {
        match *ins {
            Instr::Const(k) => check(pc, "constant", k, p.consts.len())?,
            Instr::Load(s) | Instr::Store(s) => check(pc, "slot", s, p.slots.len())?,
            Instr::IsOpen(h) => check(pc, "hours", h, p.hours.len())?,
            Instr::Jump(t) | Instr::JumpIfNot(t) => target(format!("jump at {pc}"), t)?,
            Instr::Switch(t) => check(pc, "switch table", t, p.tables.len())?,
            Instr::Call(s) => check(pc, "sub-flow", s, p.subs.len())?,
            Instr::Node(x) => check(pc, "node", x, p.nodes.len())?,
            Instr::Play(x) => check(pc, "prompt", x, p.prompts.len())?,
            Instr::Collect(c) => check(pc, "collection", c, p.collects.len())?,
            Instr::Await(o) => check(pc, "operation", o, p.ops.len())?,
            Instr::SetLanguage(l) => check(pc, "language", l, p.languages.len())?,
            Instr::Transfer(k) => {
                check(pc, "constant", k, p.consts.len())?;
                if !matches!(p.consts[k as usize], Value::Text(_)) {
                    return Err(VerifyError::TransferNotText { pc });
                }
            }
            Instr::Pop | Instr::Neg | Instr::Not | Instr::Bin(_) | Instr::Builtin(..) | Instr::Ret
            | Instr::Back | Instr::Say(_) | Instr::Flush | Instr::Hangup(_) => {}
        }
    }
    for e in &p.entries {
        target(format!("entry {}", e.number), e.pc)?;
    }
    for node in &p.nodes {
        target(format!("node {}", node.name), node.pc)?;
    }
    for s in &p.subs {
        target(format!("sub-flow {}", s.name), s.pc)?;
    }
    for (i, t) in p.tables.iter().enumerate() {
        target(format!("switch table {i} default"), t.default)?;
        for (_, c) in &t.cases {
            target(format!("switch table {i}"), *c)?;
        }
    }
    let nprompts = p.prompts.len();
    for (i, pr) in p.prompts.iter().enumerate() {
        if pr.text.len() != p.languages.len() || pr.audio.len() != p.languages.len() {
            return Err(VerifyError::Table(format!("prompt {i} does not have one text per language")));
        }
    }
    for (i, c) in p.collects.iter().enumerate() {
        let bad = c.slot as usize >= p.slots.len()
            || c.prompts.iter().chain(&c.reprompts).any(|&x| x as usize >= nprompts)
            || c.reads.iter().any(|r| r.slot as usize >= p.slots.len() || r.at as usize > c.prompts.len())
            || c.min_digits > c.max_digits
            || c.max_digits == 0;
        if bad {
            return Err(VerifyError::Table(format!("collection {i} refers to a missing slot or prompt, or has no valid length")));
        }
    }
    for (i, o) in p.ops.iter().enumerate() {
        if o.params.len() != o.secret_params.len() || o.outcomes.is_empty() {
            return Err(VerifyError::Table(format!("operation {i} is malformed")));
        }
        if let OpKind::Request { hold: Some(h), .. } = o.kind {
            if h as usize >= nprompts {
                return Err(VerifyError::Table(format!("operation {i} names a missing hold prompt")));
            }
        }
        if o.outcomes.iter().flat_map(|oc| &oc.fields).any(|f| f.2 as usize >= p.slots.len()) {
            return Err(VerifyError::Table(format!("operation {i} stores a field in a missing slot")));
        }
    }
    for h in &p.hours {
        if h.weekly.iter().flatten().any(|&(a, b)| a >= b || b > 24 * 60) {
            return Err(VerifyError::Table(format!("hours {} has an invalid range", h.name)));
        }
    }
    if let Some(s) = &p.spans {
        if s.lines.len() != n || s.lines.iter().any(|&(f, _)| f as usize >= s.files.len()) {
            return Err(VerifyError::Table("span table does not match the code".into()));
        }
    }
    Ok(())
}
