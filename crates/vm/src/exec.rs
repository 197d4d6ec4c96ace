//! The interpreter loop, input collection and operation handling.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use ivr_bytecode::{BinOp, Builtin, HangupReason, Instr, NodeKind, OpKind, Value};

use crate::*;

/// Collection statuses pushed by `Collect`.
const OK: u32 = 0;
const NO_INPUT: u32 = 1;
const INVALID: u32 = 2;

type Fault = String;

impl Session {
    /// Runs instructions until the flow waits or ends.
    pub(crate) fn run(&mut self) {
        let program = Arc::clone(&self.program);
        let mut budget = STEP_BUDGET;
        while matches!(self.wait, Wait::Running) {
            if budget == 0 {
                self.fault(format!("step budget of {STEP_BUDGET} instructions exceeded without waiting for the caller"));
                return;
            }
            budget -= 1;
            let Some(&ins) = program.code.get(self.pc) else {
                self.fault("ran past the end of the program".into());
                return;
            };
            self.executed += 1;
            self.pc += 1;
            if let Err(message) = self.exec(ins) {
                self.pc -= 1;
                self.fault(message);
                return;
            }
        }
    }

    fn fault(&mut self, message: String) {
        self.actions.push_back(Action::Fault { message, pc: self.pc as u32 });
        self.end(Action::Hangup { reason: HangupReason::Fault });
    }

    fn end(&mut self, action: Action) {
        if let Wait::Awaiting(a) = &self.wait {
            self.actions.push_back(Action::Cancel { op: a.id });
        }
        self.actions.push_back(action);
        self.wait = Wait::Done;
    }

    fn pop(&mut self) -> Result<Value, Fault> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_num(&mut self) -> Result<Decimal, Fault> {
        match self.pop()? {
            Value::Num(n) => Ok(n),
            v => Err(format!("expected a number, found {}", v.type_name())),
        }
    }

    fn push(&mut self, v: Value) -> Result<(), Fault> {
        if self.stack.len() >= 256 {
            return Err("stack overflow".into());
        }
        self.stack.push(v);
        Ok(())
    }

    fn exec(&mut self, ins: Instr) -> Result<(), Fault> {
        let p = Arc::clone(&self.program);
        match ins {
            Instr::Const(k) => self.push(p.consts[k as usize].clone())?,
            Instr::Load(s) => self.push(self.slots[s as usize].clone())?,
            Instr::Store(s) => self.slots[s as usize] = self.pop()?,
            Instr::Pop => {
                self.pop()?;
            }
            Instr::Neg => {
                let n = self.pop_num()?;
                self.push(Value::Num(-n))?;
            }
            Instr::Not => {
                let b = self.pop()?.as_bool().ok_or("`not` needs a bool")?;
                self.push(Value::Bool(!b))?;
            }
            Instr::Bin(op) => {
                let b = self.pop()?;
                let a = self.pop()?;
                self.push(binary(op, a, b)?)?;
            }
            Instr::Builtin(f, argc) => {
                if self.stack.len() < argc as usize {
                    return Err("stack underflow".into());
                }
                let args = self.stack.split_off(self.stack.len() - argc as usize);
                self.push(builtin(f, &args)?)?;
            }
            Instr::IsOpen(h) => {
                let hours = &p.hours[h as usize];
                let wall = self.wall_at_start + (self.now - self.start) as i64;
                let open = crate::hours::is_open(hours, wall)
                    .ok_or_else(|| format!("unknown time zone {:?} in hours {}", hours.zone, hours.name))?;
                self.push(Value::Bool(open))?;
            }
            Instr::Jump(t) => self.pc = t as usize,
            Instr::JumpIfNot(t) => {
                if !self.pop()?.as_bool().ok_or("condition is not a bool")? {
                    self.pc = t as usize;
                }
            }
            Instr::Switch(t) => {
                let v = self.pop()?;
                let table = &p.tables[t as usize];
                self.pc = table.cases.iter().find(|(c, _)| *c == v).map_or(table.default, |(_, t)| *t) as usize;
            }
            Instr::Call(s) => {
                if self.frames.len() >= 64 {
                    return Err("sub-flows nested too deeply".into());
                }
                self.frames.push(self.pc as u32);
                self.pc = p.subs[s as usize].pc as usize;
            }
            Instr::Ret => self.pc = self.frames.pop().ok_or("return outside a sub-flow")? as usize,
            Instr::Node(n) => {
                let node = &p.nodes[n as usize];
                let menu = node.kind == NodeKind::Menu;
                if menu && self.menus.last() != Some(&n) {
                    if self.menus.len() == MENU_HISTORY_MAX {
                        self.menus.remove(0);
                    }
                    self.menus.push(n);
                }
                // Nodes live at the top level: entering one leaves every sub-flow.
                self.frames.clear();
                self.current_node = Some(n);
                self.actions.push_back(Action::EnterNode { name: node.name.clone(), menu });
                // The loop guard: a flow going round without the caller doing anything.
                self.nodes_without_input += 1;
                if self.nodes_without_input > self.limits.max_nodes_without_input {
                    return Err(format!(
                        "{} steps entered without the caller pressing a key (a loop through failing services or hand-offs?)",
                        self.nodes_without_input - 1
                    ));
                }
                let idle = self.now.saturating_sub(self.last_input_ms);
                if idle > self.limits.max_idle_ms {
                    return Err(format!("{} s without the caller pressing a key or being served", idle / 1_000));
                }
            }
            Instr::Back => {
                let in_menu = self.current_node.is_some_and(|n| p.nodes[n as usize].kind == NodeKind::Menu);
                if in_menu && self.menus.len() > 1 && self.menus.last() == self.current_node.as_ref() {
                    self.menus.pop();
                }
                self.pc = match self.menus.last() {
                    Some(&m) => p.nodes[m as usize].pc as usize,
                    None => self.entry_pc,
                };
                self.frames.clear();
            }
            Instr::Play(x) => {
                let id = self.play_id();
                self.actions.push_back(Action::Play { id, prompt: x, lang: self.lang, barge_in: false });
            }
            Instr::Say(kind) => {
                let value = self.pop()?;
                let id = self.play_id();
                self.actions.push_back(Action::Say { id, kind, value, lang: self.lang });
            }
            Instr::Collect(c) => {
                let attempt = self.pop_num()?;
                self.begin_collect(c, attempt.is_zero());
            }
            Instr::Await(o) => self.begin_await(o)?,
            Instr::SetLanguage(l) => {
                self.lang = l;
                self.actions.push_back(Action::SetLanguage { lang: l });
            }
            Instr::Flush => self.typeahead.clear(),
            Instr::Transfer(k) => {
                let target = p.consts[k as usize].to_string();
                self.end(Action::Transfer { target });
            }
            Instr::Hangup(reason) => self.end(Action::Hangup { reason }),
        }
        Ok(())
    }

    // ------------------------------------------------------------ collection

    fn begin_collect(&mut self, c: u32, first: bool) {
        let p = Arc::clone(&self.program);
        let spec = &p.collects[c as usize];
        let var = p.slots[spec.slot as usize].name.clone();
        let listen = Action::Listen { var, max_digits: spec.max_digits, secret: spec.secret };
        let mut col = Collecting { spec: c, digits: String::new(), phase: Phase::Waiting { deadline: 0 } };
        if !spec.barge_in {
            // The caller must hear the prompt: keys typed ahead are dropped.
            self.typeahead.clear();
        } else if !self.typeahead.is_empty() {
            // Keys typed ahead count as barge-in: skip the prompts.
            if self.playing.take().is_some() {
                self.actions.push_back(Action::StopPlayback);
            }
            col.phase = Phase::Waiting { deadline: self.now + spec.first_timeout_ms };
            self.actions.push_back(listen);
            self.wait = Wait::Collecting(col);
            while let Some(k) = self.typeahead.pop_front() {
                self.collect_key(k);
                if !matches!(self.wait, Wait::Collecting(_)) {
                    break;
                }
            }
            return;
        }
        let full = first || spec.reprompts.is_empty();
        let prompts = if full { &spec.prompts } else { &spec.reprompts };
        // Values read among the prompts, in their places (the short reprompt has none).
        let reads = if full { spec.reads.as_slice() } else { &[] };
        for i in 0..=prompts.len() {
            for r in reads.iter().filter(|r| r.at as usize == i) {
                let id = self.play_id();
                let value = self.slots.get(r.slot as usize).cloned().unwrap_or_else(|| Value::text(""));
                self.actions.push_back(Action::Say { id, kind: r.kind, value, lang: self.lang });
            }
            if let Some(&pr) = prompts.get(i) {
                let id = self.play_id();
                self.actions.push_back(Action::Play { id, prompt: pr, lang: self.lang, barge_in: spec.barge_in });
            }
        }
        self.actions.push_back(listen);
        col.phase = match self.playing {
            Some(until) => Phase::Prompting { until },
            None => Phase::Waiting { deadline: self.now + spec.first_timeout_ms },
        };
        self.wait = Wait::Collecting(col);
    }

    pub(crate) fn play_done(&mut self, id: PlayId) {
        if self.playing == Some(id) {
            self.playing = None;
        }
        match &mut self.wait {
            Wait::Collecting(col) => {
                if let Phase::Prompting { until } = col.phase {
                    if until == id {
                        let t = self.program.collects[col.spec as usize].first_timeout_ms;
                        col.phase = Phase::Waiting { deadline: self.now + t };
                    }
                }
            }
            Wait::Awaiting(a) if a.hold_playing == Some(id) => {
                // Hold music loops until the answer comes.
                if let OpKind::Request { hold: Some(h), .. } = self.program.ops[a.op as usize].kind {
                    let lang = self.lang;
                    self.next_play += 1;
                    let pid = PlayId(self.next_play);
                    a.hold_playing = Some(pid);
                    self.playing = Some(pid);
                    self.actions.push_back(Action::Play { id: pid, prompt: h, lang, barge_in: false });
                }
            }
            _ => {}
        }
    }

    pub(crate) fn digit(&mut self, key: char) {
        self.nodes_without_input = 0;
        self.last_input_ms = self.now;
        match &self.wait {
            Wait::Collecting(col) => {
                let spec = &self.program.collects[col.spec as usize];
                if let Phase::Prompting { .. } = col.phase {
                    if !spec.barge_in {
                        return; // keys during a no-barge-in prompt are dropped
                    }
                    self.playing = None;
                    self.actions.push_back(Action::StopPlayback);
                }
                self.collect_key(key);
            }
            Wait::Done => {}
            _ => {
                if self.typeahead.len() == TYPEAHEAD_MAX {
                    self.typeahead.pop_front();
                }
                self.typeahead.push_back(key);
            }
        }
    }

    /// One key into the active collection.
    fn collect_key(&mut self, key: char) {
        let Wait::Collecting(col) = &mut self.wait else { return };
        let spec = &self.program.collects[col.spec as usize];
        if spec.terminator == Some(key) {
            return self.finish_collect(false);
        }
        let ch = if spec.decimal && key == '*' { '.' } else { key };
        col.digits.push(ch);
        if col.digits.chars().count() as u32 >= spec.max_digits {
            return self.finish_collect(false);
        }
        col.phase = Phase::Waiting { deadline: self.now + spec.inter_key_timeout_ms };
    }

    fn finish_collect(&mut self, timed_out: bool) {
        let Wait::Collecting(col) = std::mem::replace(&mut self.wait, Wait::Running) else { return };
        let spec = &self.program.collects[col.spec as usize];
        let (status, value) = if col.digits.is_empty() && timed_out {
            (NO_INPUT, None)
        } else {
            match validate(spec, &col.digits) {
                Some(v) => (OK, Some(v)),
                None => (INVALID, None),
            }
        };
        if let Some(v) = value {
            self.slots[spec.slot as usize] = v;
        }
        self.stack.push(Value::Num(status.into()));
        self.run();
    }

    // ------------------------------------------------------------ operations

    fn begin_await(&mut self, o: u32) -> Result<(), Fault> {
        let p = Arc::clone(&self.program);
        let op = &p.ops[o as usize];
        if self.stack.len() < op.params.len() {
            return Err("stack underflow".into());
        }
        let values = self.stack.split_off(self.stack.len() - op.params.len());
        self.next_op += 1;
        let id = OpId(self.next_op);
        let mut hold_at = None;
        let action = match &op.kind {
            OpKind::Request { service, hold } => {
                hold_at = hold.map(|_| self.now + HOLD_AFTER_MS);
                let args = op
                    .params
                    .iter()
                    .zip(values)
                    .zip(&op.secret_params)
                    .map(|((name, value), &secret)| Arg { name: name.clone(), value, secret })
                    .collect();
                Action::Request { op: id, service: service.clone(), args, timeout_ms: op.timeout_ms }
            }
            OpKind::Enqueue { queue } => {
                let priority = values.first().and_then(Value::as_num).and_then(|n| n.trunc().to_i64()).unwrap_or(0);
                Action::Enqueue { op: id, queue: queue.clone(), priority, max_wait_ms: op.timeout_ms }
            }
            OpKind::DialAgent => {
                let work_number = values.first().map(Value::to_string).unwrap_or_default();
                Action::DialAgent { op: id, work_number, timeout_ms: op.timeout_ms }
            }
            OpKind::Record { category, max_ms } => Action::Record { op: id, category: category.clone(), max_ms: *max_ms },
        };
        self.actions.push_back(action);
        // Only a request's timeout is the VM's to enforce; queues, rings and
        // recordings are timed by the host that runs them.
        let deadline = matches!(op.kind, OpKind::Request { .. }).then(|| self.now + op.timeout_ms).filter(|_| op.timeout_ms > 0);
        self.wait = Wait::Awaiting(Awaiting { op: o, id, deadline, hold_at, hold_playing: None });
        Ok(())
    }

    pub(crate) fn completed(&mut self, id: OpId, outcome: &str, fields: Vec<(String, Value)>) {
        let Wait::Awaiting(a) = &self.wait else { return };
        if a.id != id {
            return; // a late answer to an operation the flow gave up on
        }
        let p = Arc::clone(&self.program);
        let op = &p.ops[a.op as usize];
        // Time with an agent (or waiting for one) is the caller's time, not idling.
        if !matches!(op.kind, OpKind::Request { .. }) {
            self.last_input_ms = self.now;
        }
        let stop_hold = a.hold_playing.is_some();
        let mut index = op.outcomes.iter().position(|o| o.name == outcome);
        // Fields must come with the declared types, or the answer counts as failed.
        if let Some(i) = index {
            let ok = op.outcomes[i].fields.iter().all(|(name, ty, _)| {
                fields.iter().any(|(n, v)| n == name && v.type_name() == ty.name())
            });
            if ok {
                for (name, _, slot) in &op.outcomes[i].fields {
                    if let Some((_, v)) = fields.iter().find(|(n, _)| n == name) {
                        self.slots[*slot as usize] = v.clone();
                    }
                }
            } else {
                index = None;
            }
        }
        let index = index.or_else(|| op.outcomes.iter().position(|o| o.name == "failed")).unwrap_or(0);
        if stop_hold {
            self.playing = None;
            self.actions.push_back(Action::StopPlayback);
        }
        self.wait = Wait::Running;
        self.stack.push(Value::Num((index as u32).into()));
        self.run();
    }

    pub(crate) fn fire_timer(&mut self) {
        let now = self.now;
        match &mut self.wait {
            Wait::Collecting(Collecting { phase: Phase::Waiting { deadline }, .. }) if *deadline <= now => {
                self.finish_collect(true);
            }
            Wait::Awaiting(a) => {
                if a.hold_at.is_some_and(|h| h <= now) {
                    a.hold_at = None;
                    if let OpKind::Request { hold: Some(h), .. } = self.program.ops[a.op as usize].kind {
                        self.next_play += 1;
                        let pid = PlayId(self.next_play);
                        a.hold_playing = Some(pid);
                        self.playing = Some(pid);
                        let lang = self.lang;
                        self.actions.push_back(Action::Play { id: pid, prompt: h, lang, barge_in: false });
                    }
                } else if a.deadline.is_some_and(|d| d <= now) {
                    let id = a.id;
                    self.actions.push_back(Action::Cancel { op: id });
                    self.completed(id, "timeout", Vec::new());
                }
            }
            _ => {}
        }
    }
}

/// Checks typed input against a collection's rules; the value to store, or `None`
/// when the input is invalid.
fn validate(spec: &ivr_bytecode::CollectSpec, digits: &str) -> Option<Value> {
    let n = digits.chars().count() as u32;
    if n < spec.min_digits || n > spec.max_digits {
        return None;
    }
    if !spec.keys.is_empty() {
        return spec.keys.contains(digits).then(|| Value::text(digits));
    }
    let allowed = |c: char| c.is_ascii_digit() || (spec.decimal && c == '.');
    if !digits.chars().all(allowed) {
        return None;
    }
    if !spec.patterns.is_empty() && !spec.patterns.iter().any(|p| matches_pattern(p, digits)) {
        return None;
    }
    if spec.date && !is_calendar_date(digits) {
        return None;
    }
    if let Some(re) = &spec.matches {
        // Checked by the compiler; a program from elsewhere with a bad one matches nothing.
        if !regex_lite::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(digits)) {
            return None;
        }
    }
    if !spec.decimal && spec.range.is_none() {
        return Some(Value::text(digits));
    }
    if digits.starts_with('.') || digits.ends_with('.') || digits.matches('.').count() > 1 {
        return None;
    }
    let num: Decimal = digits.parse().ok()?;
    if let Some((Value::Num(lo), Value::Num(hi))) = &spec.range {
        if num < *lo || num > *hi {
            return None;
        }
    }
    Some(Value::Num(num))
}

/// Eight digits YYYYMMDD naming a day the calendar has (years 1000–9999).
pub(crate) fn is_calendar_date(digits: &str) -> bool {
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (y, m, d) = (digits[..4].parse::<i16>(), digits[4..6].parse::<i8>(), digits[6..].parse::<i8>());
    let (Ok(y), Ok(m), Ok(d)) = (y, m, d) else { return false };
    y >= 1000 && jiff::civil::Date::new(y, m, d).is_ok()
}

/// `X` matches any digit; any other character matches itself.
pub(crate) fn matches_pattern(pattern: &str, digits: &str) -> bool {
    pattern.chars().count() == digits.chars().count()
        && pattern.chars().zip(digits.chars()).all(|(p, d)| p == d || (p == 'X' && d.is_ascii_digit()))
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, Fault> {
    use Value::*;
    let overflow = || "number too large".to_string();
    Ok(match (op, a, b) {
        (BinOp::Add, Num(x), Num(y)) => Num(x.checked_add(y).ok_or_else(overflow)?),
        (BinOp::Add, Text(x), Text(y)) => Value::text(&format!("{x}{y}")),
        (BinOp::Sub, Num(x), Num(y)) => Num(x.checked_sub(y).ok_or_else(overflow)?),
        (BinOp::Mul, Num(x), Num(y)) => Num(x.checked_mul(y).ok_or_else(overflow)?),
        (BinOp::Div, Num(_), Num(y)) if y.is_zero() => return Err("division by zero".into()),
        (BinOp::Div, Num(x), Num(y)) => Num(x.checked_div(y).ok_or_else(overflow)?),
        (BinOp::Eq, x, y) => Bool(x == y),
        (BinOp::Ne, x, y) => Bool(x != y),
        (BinOp::Lt, Num(x), Num(y)) => Bool(x < y),
        (BinOp::Le, Num(x), Num(y)) => Bool(x <= y),
        (BinOp::Gt, Num(x), Num(y)) => Bool(x > y),
        (BinOp::Ge, Num(x), Num(y)) => Bool(x >= y),
        (BinOp::Lt, Text(x), Text(y)) => Bool(x < y),
        (BinOp::Le, Text(x), Text(y)) => Bool(x <= y),
        (BinOp::Gt, Text(x), Text(y)) => Bool(x > y),
        (BinOp::Ge, Text(x), Text(y)) => Bool(x >= y),
        (BinOp::And, Bool(x), Bool(y)) => Bool(x && y),
        (BinOp::Or, Bool(x), Bool(y)) => Bool(x || y),
        (op, a, b) => return Err(format!("cannot apply {op:?} to {} and {}", a.type_name(), b.type_name())),
    })
}

fn builtin(f: Builtin, args: &[Value]) -> Result<Value, Fault> {
    Ok(match (f, args) {
        (Builtin::Len, [Value::Text(s)]) => Value::Num(s.chars().count().into()),
        (Builtin::Round, [Value::Num(n), Value::Num(places)]) => {
            let dp = places.to_u32().filter(|&d| d <= 10).ok_or("round: places must be 0 to 10")?;
            Value::Num(n.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero))
        }
        (Builtin::Text, [v]) => Value::text(&v.to_string()),
        (Builtin::StartsWith, [Value::Text(s), Value::Text(p)]) => Value::Bool(s.starts_with(&**p)),
        (f, _) => return Err(format!("bad arguments to {}", f.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_typed_as_yyyymmdd() {
        assert!(is_calendar_date("20261123") && is_calendar_date("20240229"));
        assert!(!is_calendar_date("20250229") && !is_calendar_date("20261301") && !is_calendar_date("20261100") && !is_calendar_date("2026112") && !is_calendar_date("09991231"));
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern("6XXXXX", "600000"));
        assert!(!matches_pattern("6XXXXX", "000001"));
        assert!(!matches_pattern("6XXXXX", "60000"));
    }
}
