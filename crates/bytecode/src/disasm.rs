//! Human-readable listing of a program, with source lines when the span table is
//! present. The listing is the snapshot format for compiler tests.

use std::fmt::Write;

use crate::{Instr, OpKind, Program, Value};

fn quote(v: &Value) -> String {
    match v {
        Value::Text(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Renders the whole program as text.
pub fn disassemble(p: &Program) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "; ivr program, format v{}", crate::FORMAT_VERSION);
    let _ = writeln!(o, "; languages: {}", p.languages.join(" "));
    for e in &p.entries {
        let _ = writeln!(o, "; entry {} -> {:04}", e.number, e.pc);
    }
    for (i, s) in p.slots.iter().enumerate() {
        let _ = writeln!(o, "; slot {i} {}: {}{}", s.name, s.ty.name(), if s.secret { " secret" } else { "" });
    }
    for (i, h) in p.hours.iter().enumerate() {
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let week: Vec<String> = h
            .weekly
            .iter()
            .zip(days)
            .filter(|(r, _)| !r.is_empty())
            .map(|(r, d)| {
                let rs: Vec<String> =
                    r.iter().map(|(a, b)| format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)).collect();
                format!("{d} {}", rs.join(","))
            })
            .collect();
        let _ = writeln!(
            o,
            "; hours {i} {} in {}: {}; {} holidays, {} make-up days",
            h.name,
            h.zone,
            week.join("; "),
            h.holidays.len(),
            h.makeup_days.len()
        );
    }
    let mut last_line = None;
    for (pc, ins) in p.code.iter().enumerate() {
        for n in p.nodes.iter().filter(|n| n.pc as usize == pc) {
            let _ = writeln!(o, "\n{:?} {}:", n.kind, n.name);
        }
        for s in p.subs.iter().filter(|s| s.pc as usize == pc) {
            let _ = writeln!(o, "\nsub {}:", s.name);
        }
        let line = match p.line_of(pc) {
            Some((_, l)) if last_line != Some(l) => {
                last_line = Some(l);
                format!("L{l}")
            }
            _ => String::new(),
        };
        let _ = writeln!(o, "  {pc:04} {line:>5}  {}", render(p, ins));
    }
    o
}

fn render(p: &Program, ins: &Instr) -> String {
    match *ins {
        Instr::Const(k) => format!("const       {}", quote(&p.consts[k as usize])),
        Instr::Load(s) => format!("load        {}", p.slots[s as usize].name),
        Instr::Store(s) => format!("store       {}", p.slots[s as usize].name),
        Instr::Pop => "pop".into(),
        Instr::Neg => "neg".into(),
        Instr::Not => "not".into(),
        Instr::Bin(op) => format!("{:<11} ", format!("{op:?}").to_lowercase()).trim_end().to_string(),
        Instr::Builtin(b, n) => format!("builtin     {}/{n}", b.name()),
        Instr::IsOpen(h) => format!("is_open     {}", p.hours[h as usize].name),
        Instr::Jump(t) => format!("jump        {t:04}"),
        Instr::JumpIfNot(t) => format!("jump_if_not {t:04}"),
        Instr::Switch(t) => {
            let table = &p.tables[t as usize];
            let cases: Vec<String> = table.cases.iter().map(|(v, t)| format!("{} => {t:04}", quote(v))).collect();
            format!("switch      [{}] else {:04}", cases.join(", "), table.default)
        }
        Instr::Call(s) => format!("call        {}", p.subs[s as usize].name),
        Instr::Ret => "ret".into(),
        Instr::Node(n) => format!("node        {}", p.nodes[n as usize].name),
        Instr::Back => "back".into(),
        Instr::Play(x) => {
            let pr = &p.prompts[x as usize];
            format!("play        {} {:?}", pr.id, pr.text.first().map(String::as_str).unwrap_or(""))
        }
        Instr::Say(k) => format!("say         {}", k.name()),
        Instr::Collect(c) => {
            let s = &p.collects[c as usize];
            let prompts: Vec<&str> = s.prompts.iter().map(|&x| p.prompts[x as usize].id.as_str()).collect();
            let mut d = format!(
                "collect     {} digits={}..{} first={}ms inter={}ms",
                p.slots[s.slot as usize].name,
                s.min_digits,
                s.max_digits,
                s.first_timeout_ms,
                s.inter_key_timeout_ms
            );
            if let Some(t) = s.terminator {
                let _ = write!(d, " end={t}");
            }
            if !s.keys.is_empty() {
                let _ = write!(d, " keys={}", s.keys);
            }
            for (flag, name) in [(s.barge_in, "barge-in"), (s.secret, "secret"), (s.decimal, "decimal")] {
                if flag {
                    let _ = write!(d, " {name}");
                }
            }
            if !s.patterns.is_empty() {
                let _ = write!(d, " pattern={}", s.patterns.join("|"));
            }
            if let Some((a, b)) = &s.range {
                let _ = write!(d, " range={a}..{b}");
            }
            let _ = write!(d, " prompts=[{}]", prompts.join(" "));
            d
        }
        Instr::Await(x) => {
            let op = &p.ops[x as usize];
            let what = match &op.kind {
                OpKind::Request { service, .. } => format!("request {service}"),
                OpKind::Enqueue { queue } => format!("enqueue {queue}"),
                OpKind::DialAgent => "dial_agent".into(),
                OpKind::Record { category, max_ms } => format!("record {category:?} max={max_ms}ms"),
            };
            let outs: Vec<&str> = op.outcomes.iter().map(|o| o.name.as_str()).collect();
            format!("await       {what} ({}) timeout={}ms -> [{}]", op.params.join(", "), op.timeout_ms, outs.join(" "))
        }
        Instr::SetLanguage(l) => format!("language    {}", p.languages[l as usize]),
        Instr::Flush => "flush".into(),
        Instr::Transfer(k) => format!("transfer    {}", quote(&p.consts[k as usize])),
        Instr::Hangup(r) => format!("hangup      {}", r.name()),
    }
}
