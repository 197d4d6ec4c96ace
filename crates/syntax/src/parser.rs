//! From pest pairs to the AST, with recovery and "expected …" diagnostics.

use std::sync::LazyLock;

use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use pest_derive::Parser;

use crate::ast::*;
use crate::{Code, Diagnostic, FileId, Span};

#[derive(Parser)]
#[grammar = "../../../grammar/ivr.pest"]
struct IvrParser;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or, Assoc::Left))
        .op(Op::infix(Rule::and, Assoc::Left))
        .op(Op::prefix(Rule::not))
        .op(Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::ge, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub_op, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg))
});

/// Parses one source file. Never fails: syntax errors come back as diagnostics and
/// the tree holds everything that could be read.
fn say_kind(s: &str) -> SayKind {
    match s {
        "number" => SayKind::Number,
        "digits" => SayKind::Digits,
        "phone" => SayKind::Phone,
        "money" => SayKind::Money,
        "percent" => SayKind::Percent,
        "date" => SayKind::Date,
        _ => SayKind::Time,
    }
}

pub fn parse(file: FileId, src: &str) -> (File, Vec<Diagnostic>) {
    let mut p = Builder { file, src, diags: Vec::new() };
    let ast = match IvrParser::parse(Rule::file, src) {
        Ok(mut pairs) => {
            let root = pairs.next().expect("file rule yields one pair");
            let mut items = Vec::new();
            for pair in root.into_inner() {
                match pair.as_rule() {
                    Rule::EOI => {}
                    Rule::bad_item => items.push(p.bad_item(pair)),
                    _ => items.push(p.item(pair)),
                }
            }
            File { items }
        }
        Err(e) => {
            // The permissive grammar accepts any input; this is only reachable on a
            // grammar bug, and even then the user gets a diagnostic, not a panic.
            p.diags.push(p.pest_error(e, 0));
            File::default()
        }
    };
    (ast, p.diags)
}

struct Builder<'s> {
    file: FileId,
    src: &'s str,
    diags: Vec<Diagnostic>,
}

fn human_rule(rule: Rule) -> Option<String> {
    let name = format!("{rule:?}");
    let text = match rule {
        Rule::EOI => "end of file".to_string(),
        Rule::ident | Rule::path => "a name".to_string(),
        Rule::string | Rule::string_inner => "a \"quoted string\"".to_string(),
        Rule::integer => "a whole number".to_string(),
        Rule::decimal => "a number".to_string(),
        Rule::duration => "a duration such as `5s`".to_string(),
        Rule::key => "a key (0-9, *, #, A-D)".to_string(),
        Rule::dialed => "a dialed number".to_string(),
        Rule::expr | Rule::call | Rule::boolean | Rule::neg | Rule::not => "an expression".to_string(),
        Rule::block => "`{`".to_string(),
        Rule::action => "`->` or `{`".to_string(),
        Rule::args | Rule::params => "`(`".to_string(),
        Rule::outcomes => "`{`".to_string(),
        Rule::clock | Rule::time_range => "a time range such as `09:00-16:30`".to_string(),
        Rule::day | Rule::day_range => "a day such as `mon`".to_string(),
        Rule::say_kind => "one of number, digits, money, percent, date, time".to_string(),
        Rule::handler_kind => "one of timeout, invalid, exhausted".to_string(),
        Rule::type_name => "a type (text, number, bool)".to_string(),
        Rule::or | Rule::and | Rule::eq | Rule::ne | Rule::lt | Rule::le | Rule::gt | Rule::ge
        | Rule::add | Rule::sub_op | Rule::mul | Rule::div => return None,
        _ if name.starts_with("kw_") => format!("`{}`", name[3..].replace('_', "-")),
        _ if name.starts_with("opt_") => format!("`{}`", name[4..].replace('_', "-")),
        Rule::bad_stmt | Rule::bad_item => return None,
        _ => format!("`{name}`"),
    };
    Some(text)
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `5s`, `500ms`, `2min`, `1.5s` into milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("min") {
        (n, 60_000.0)
    } else {
        (text.strip_suffix('s')?, 1000.0)
    };
    let v: f64 = num.parse().ok()?;
    let ms = v * scale;
    (ms.is_finite() && ms < 1e12).then_some(ms.round() as u64)
}

impl<'s> Builder<'s> {
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident { name: pair.as_str().to_string(), span: self.span(&pair) }
    }

    fn string(&self, pair: Pair<Rule>) -> Str {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().map_or("", |p| p.as_str());
        Str { value: unescape(inner), span }
    }

    fn duration(&mut self, pair: Pair<Rule>) -> Duration {
        let span = self.span(&pair);
        let ms = duration_ms(pair.as_str()).unwrap_or_else(|| {
            self.diags.push(Diagnostic::new(Code::NumberTooLarge, "duration out of range", span, "too long"));
            0
        });
        Duration { ms, span }
    }

    fn integer(&mut self, pair: Pair<Rule>) -> u32 {
        let span = self.span(&pair);
        pair.as_str().parse().unwrap_or_else(|_| {
            self.diags.push(Diagnostic::new(Code::NumberTooLarge, "number too large", span, "does not fit"));
            0
        })
    }

    /// Builds the diagnostic for a pest error in the chunk starting at `base`.
    fn pest_error(&self, e: pest::error::Error<Rule>, base: usize) -> Diagnostic {
        let pos = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        } + base;
        let mut expected: Vec<String> = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => {
                positives.iter().filter_map(|r| human_rule(*r)).collect()
            }
            pest::error::ErrorVariant::CustomError { message } => vec![message.clone()],
        };
        expected.sort();
        expected.dedup();
        self.syntax_error_at(pos, &expected)
    }

    fn syntax_error_at(&self, pos: usize, expected: &[String]) -> Diagnostic {
        let rest = &self.src[pos.min(self.src.len())..];
        let found: String = match rest.chars().next() {
            None => "end of file".into(),
            Some(c) if c.is_whitespace() => "end of line".into(),
            Some(c) if c.is_alphanumeric() || c == '_' => {
                let w: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
                format!("`{w}`")
            }
            Some(c) => format!("`{c}`"),
        };
        let len = match rest.chars().next() {
            Some(c) if !c.is_whitespace() => {
                rest.char_indices().find(|(_, c)| !(c.is_alphanumeric() || *c == '_')).map_or(rest.len(), |(i, _)| i).max(c.len_utf8())
            }
            _ => 0,
        };
        let span = Span::new(self.file, pos, pos + len);
        let message = match expected.len() {
            0 => format!("unexpected {found}"),
            1 => format!("expected {}, found {found}", expected[0]),
            n if n <= 6 => format!(
                "expected {} or {}, found {found}",
                expected[..n - 1].join(", "),
                expected[n - 1]
            ),
            _ => format!("unexpected {found}"),
        };
        let mut d = Diagnostic::new(Code::SyntaxError, message, span, "unexpected here");
        let words: Vec<&str> = expected.iter().filter_map(|e| e.strip_prefix('`')?.strip_suffix('`')).collect();
        let typed = found.trim_matches('`');
        let wide = rest.chars().next().and_then(hints::full_width).is_some();
        if let Some(best) = crate::closest(typed, &words).filter(|b| *b != typed && found.starts_with('`') && !wide) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else if expected.len() > 6 {
            d = d.with_help(format!("expected one of: {}", expected.join(", ")));
        }
        d
    }

    /// Explains a chunk that did not parse by a string or (`braces`) a `{` left
    /// open, if there is one, and adds a hint for full-width punctuation.
    fn explain(&self, text: &str, base: usize, braces: bool, strict: impl FnOnce(&Self) -> Diagnostic) -> Diagnostic {
        let scan = hints::scan(text);
        let at = |i: usize, len: usize| Span::new(self.file, base + i, base + i + len);
        let mut d = if let Some(i) = scan.unclosed_string {
            Diagnostic::new(Code::SyntaxError, "this string is not closed", at(i, 1), "the string starts here")
                .with_help("a string ends with `\"` on the line where it starts")
        } else if let (true, Some(&i)) = (braces, scan.unclosed_braces.last()) {
            let end = base + text.len();
            let rest = &self.src[end..];
            let next = rest.trim_start();
            let (where_, label) = if next.is_empty() {
                (Span::new(self.file, self.src.len(), self.src.len()), "the file ends here".to_string())
            } else {
                let word: String = next.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let start = end + rest.len() - next.len();
                (Span::new(self.file, start, start + word.len()), format!("`{word}` starts a new item here"))
            };
            let d = Diagnostic::new(Code::SyntaxError, "this `{` is not closed", at(i, 1), "opened here")
                .with_help("close it with `}` (a `}` at the start of a line closes the `{` of the line indented alike)");
            // The item's own `{` runs on to the next item; an inner one was
            // closed too late, by a `}` meant for another.
            if text.find('{') == Some(i) { d.with_related(where_, label) } else { d }
        } else {
            strict(self)
        };
        if let Some(f) = scan.full_width {
            let wide = at(f.at, f.typed.len());
            if d.span.start != wide.start {
                d = d.with_related(wide, format!("full-width `{}`", f.typed));
            }
            d = d.with_help(format!("`{}` is a full-width {} (typed with a Chinese input method): write `{}`", f.typed, f.name, f.ascii));
        }
        d
    }

    /// A top-level chunk that did not parse: report why and keep its name.
    fn bad_item(&mut self, pair: Pair<Rule>) -> Item {
        let span = self.span(&pair);
        let text = pair.as_str();
        let base = pair.as_span().start();
        let diag = self.explain(text, base, true, |b| match IvrParser::parse(Rule::strict_item, text) {
            Err(e) => b.pest_error(e, base),
            Ok(pairs) => {
                let end = pairs.last().map_or(0, |p| p.as_span().end());
                let skip = text[end..].len() - text[end..].trim_start().len();
                b.syntax_error_at(base + end + skip, &["a top-level item (step, menu, sub, …)".to_string()])
            }
        });
        self.diags.push(diag);
        let mut words = text.split_whitespace();
        let kind = match words.next() {
            Some("step") => "step",
            Some("menu") => "menu",
            Some("sub") => "sub",
            Some("service") => "service",
            Some("hours") => "hours",
            Some("var") => "var",
            _ => "",
        };
        let name = if kind.is_empty() {
            None
        } else {
            words.next().and_then(|w| {
                let n: String = w.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let off = text.find(w)? + base;
                (!n.is_empty()).then(|| Ident { span: Span::new(self.file, off, off + n.len()), name: n })
            })
        };
        Item::Broken { kind, name, span }
    }

    /// A line that did not parse where `context` (`strict_stmt`, `strict_option`
    /// or `strict_outcome`) was expected: report why.
    fn bad_stmt(&mut self, pair: Pair<Rule>, context: Rule) {
        let text = pair.as_str();
        let base = pair.as_span().start();
        // A bad line never holds its block's `}`, so braces say nothing here.
        let diag = self.explain(text, base, false, |b| match IvrParser::parse(context, text) {
            Err(e) => b.pest_error(e, base),
            Ok(pairs) => {
                let end = pairs.last().map_or(0, |p| p.as_span().end());
                let skip = text[end..].len() - text[end..].trim_start().len();
                b.syntax_error_at(base + end + skip, &["a new line or `}`".to_string()])
            }
        });
        self.diags.push(diag);
    }

    fn item(&mut self, pair: Pair<Rule>) -> Item {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        match rule {
            Rule::import => {
                inner.next();
                Item::Import(self.string(inner.next().unwrap()))
            }
            Rule::languages => Item::Languages(inner.skip(1).map(|p| self.ident(p)).collect()),
            Rule::catalogue => {
                inner.next();
                Item::Catalogue(self.string(inner.next().unwrap()))
            }
            Rule::entry => {
                inner.next();
                let num = inner.next().unwrap();
                let number = Str { value: num.as_str().to_string(), span: self.span(&num) };
                let target = self.ident(inner.next().unwrap());
                Item::Entry { number, target }
            }
            Rule::var_decl => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let mut ty = None;
                let mut init = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::type_name => ty = Some((type_of(&p), self.span(&p))),
                        _ => init = Some(self.expr(p)),
                    }
                }
                Item::Var { name, ty, init }
            }
            Rule::service_decl => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let params = self.params(inner.next().unwrap());
                let variants = inner
                    .map(|v| {
                        let mut vi = v.into_inner();
                        let name = self.ident(vi.next().unwrap());
                        let fields = vi.next().map(|p| self.params(p)).unwrap_or_default();
                        Variant { name, fields }
                    })
                    .collect();
                Item::Service(ServiceDecl { name, params, variants })
            }
            Rule::hours_decl => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let lines = inner.map(|l| self.hours_line(l)).collect();
                Item::Hours(HoursDecl { name, lines })
            }
            Rule::anywhere => {
                inner.next();
                let bindings = inner.flat_map(|p| self.key_bindings(p)).collect();
                Item::Anywhere { bindings, span }
            }
            Rule::step => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let body = self.block(inner.next().unwrap());
                Item::Step { name, body }
            }
            Rule::sub => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let params = self.params(inner.next().unwrap());
                let mut ret = None;
                let mut body = Block::default();
                for p in inner {
                    match p.as_rule() {
                        Rule::type_name => ret = Some((type_of(&p), self.span(&p))),
                        _ => body = self.block(p),
                    }
                }
                Item::Sub(SubDecl { name, params, ret, body })
            }
            Rule::menu => {
                inner.next();
                let name = self.ident(inner.next().unwrap());
                let options = self.opts(inner);
                Item::Menu(MenuDecl { name, options, span })
            }
            r => unreachable!("item rule {r:?}"),
        }
    }

    fn params(&self, pair: Pair<Rule>) -> Vec<Param> {
        pair.into_inner()
            .map(|p| {
                let mut pi = p.into_inner();
                let name = self.ident(pi.next().unwrap());
                let t = pi.next().unwrap();
                Param { name, ty: type_of(&t), ty_span: self.span(&t) }
            })
            .collect()
    }

    fn hours_line(&mut self, pair: Pair<Rule>) -> HoursLine {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        match rule {
            Rule::hours_zone => {
                inner.next();
                HoursLine::Zone(self.string(inner.next().unwrap()))
            }
            Rule::hours_holidays => {
                inner.next();
                HoursLine::Holidays(self.string(inner.next().unwrap()))
            }
            Rule::hours_makeup => {
                inner.next();
                let open = inner.next().unwrap().as_rule() == Rule::kw_open;
                HoursLine::MakeupDays { open, span }
            }
            Rule::hours_days => {
                // The line ends with its last time range (the pair may take the
                // whitespace after it).
                let end = inner.clone().last().map_or(span.end, |p| p.as_span().end() as u32);
                let span = Span { end, ..span };
                let mut days = Vec::new();
                let mut ranges = Vec::new();
                for p in inner {
                    match p.as_rule() {
                        Rule::day_range => {
                            let ds: Vec<u8> = p.into_inner().map(|d| day_index(d.as_str())).collect();
                            let (a, b) = (ds[0], *ds.last().unwrap());
                            if a <= b {
                                days.extend(a..=b);
                            } else {
                                days.extend((a..7).chain(0..=b));
                            }
                        }
                        _ => {
                            let rspan = self.span(&p);
                            let text = p.as_str().to_string();
                            let mut cs = p.into_inner().map(|c| clock_minutes(c.as_str()));
                            let (a, b) = (cs.next().unwrap(), cs.next().unwrap());
                            match (a, b) {
                                (Some(a), Some(b)) if a < b => ranges.push((a, b)),
                                (Some(_), Some(_)) => self.diags.push(
                                    Diagnostic::new(Code::InvalidTimeRange, format!("opening hours {text} end before they start"), rspan, "ends before it starts")
                                        .with_help("hours past midnight are two ranges: `mon 22:00-24:00` and `tue 00:00-06:00`"),
                                ),
                                _ => self.diags.push(
                                    Diagnostic::new(Code::InvalidTimeRange, format!("{text} is not a time of day"), rspan, "not a valid time range")
                                        .with_help("write times as HH:MM between 00:00 and 24:00"),
                                ),
                            }
                        }
                    }
                }
                HoursLine::Days { days, ranges, span }
            }
            r => unreachable!("hours rule {r:?}"),
        }
    }

    /// One binding per key: `key 1-5 into score -> done` is five, each
    /// setting `score` to its key before it goes on.
    fn key_bindings(&mut self, pair: Pair<Rule>) -> Vec<KeyBinding> {
        let mut inner = pair.into_inner();
        inner.next();
        let k = inner.next().unwrap();
        let first = k.as_str().chars().next().unwrap();
        let mut key_span = self.span(&k);
        let mut next = inner.next().unwrap();
        let mut last = first;
        if next.as_rule() == Rule::key {
            last = next.as_str().chars().next().unwrap();
            key_span = Span { end: self.span(&next).end, ..key_span };
            next = inner.next().unwrap();
        }
        let mut into = None;
        if next.as_rule() == Rule::kw_into {
            into = Some(self.ident(inner.next().unwrap()));
            next = inner.next().unwrap();
        }
        let body = self.action(next);
        let same_kind = (first.is_ascii_digit() && last.is_ascii_digit()) || (('A'..='D').contains(&first) && ('A'..='D').contains(&last));
        let keys: Vec<char> = if first == last {
            vec![first]
        } else if same_kind && first < last {
            (first..=last).collect()
        } else {
            self.diags.push(
                Diagnostic::new(Code::InvalidKeyRange, format!("`{first}-{last}` is not a range of keys"), key_span, "not a range")
                    .with_help("a range runs from a lower digit to a higher one (`key 1-5`), or from A to D; bind `*` and `#` one by one"),
            );
            vec![first]
        };
        keys.into_iter()
            .map(|key| {
                let mut body = body.clone();
                if let Some(v) = &into {
                    let value = if key.is_ascii_digit() { ExprKind::Num(key.to_string()) } else { ExprKind::Str(key.to_string()) };
                    body.stmts.insert(0, Stmt { kind: StmtKind::Set(v.clone(), Expr { kind: value, span: key_span }), span: v.span });
                }
                KeyBinding { key, key_span, body }
            })
            .collect()
    }

    /// `-> target` becomes a block holding one `goto` (or `back` / `repeat`).
    fn action(&mut self, pair: Pair<Rule>) -> Block {
        let span = self.span(&pair);
        let p = pair.into_inner().next().unwrap();
        let pspan = self.span(&p);
        let kind = match p.as_rule() {
            Rule::block => return self.block(p),
            Rule::back => StmtKind::Back,
            Rule::repeat => StmtKind::Repeat,
            _ => StmtKind::Goto(self.ident(p)),
        };
        Block { stmts: vec![Stmt { kind, span: pspan }], span }
    }

    fn block(&mut self, pair: Pair<Rule>) -> Block {
        let span = self.span(&pair);
        let mut stmts = Vec::new();
        for p in pair.into_inner() {
            if p.as_rule() == Rule::bad_stmt {
                let span = self.span(&p);
                self.bad_stmt(p, Rule::strict_stmt);
                stmts.push(Stmt { kind: StmtKind::Broken, span });
            } else {
                stmts.push(self.stmt(p));
            }
        }
        Block { stmts, span }
    }

    fn outcomes(&mut self, pair: Pair<Rule>) -> Vec<Outcome> {
        let mut out = Vec::new();
        for p in pair.into_inner() {
            if p.as_rule() == Rule::bad_stmt {
                self.bad_stmt(p, Rule::strict_outcome);
                continue;
            }
            let span = self.span(&p);
            let mut pi = p.into_inner();
            let n = pi.next().unwrap();
            let name = (n.as_rule() == Rule::ident).then(|| self.ident(n));
            let body = self.action(pi.next().unwrap());
            out.push(Outcome { name, span, body });
        }
        out
    }

    /// A menu's or collection's options, a key range giving one per key.
    fn opts(&mut self, pairs: pest::iterators::Pairs<Rule>) -> Vec<Opt> {
        let mut out = Vec::new();
        for p in pairs {
            if p.as_rule() == Rule::key_binding {
                let span = self.span(&p);
                out.extend(self.key_bindings(p).into_iter().map(|k| Opt { kind: OptKind::Key(k), span }));
            } else {
                out.push(self.opt(p));
            }
        }
        out
    }

    fn opt(&mut self, pair: Pair<Rule>) -> Opt {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        if rule == Rule::bad_stmt {
            self.bad_stmt(pair, Rule::strict_option);
            return Opt { kind: OptKind::Broken, span };
        }
        if rule == Rule::key_binding {
            unreachable!("key bindings are read by `opts`");
        }
        let mut inner = pair.into_inner();
        inner.next(); // the keyword
        let kind = match rule {
            Rule::opt_prompt => OptKind::Prompt(self.ident(inner.next().unwrap())),
            Rule::opt_reprompt => OptKind::Reprompt(self.ident(inner.next().unwrap())),
            Rule::opt_timeout => OptKind::Timeout(self.duration(inner.next().unwrap())),
            Rule::opt_inter_key => OptKind::InterKey(self.duration(inner.next().unwrap())),
            Rule::opt_retries => OptKind::Retries(self.integer(inner.next().unwrap())),
            Rule::opt_barge_in => OptKind::BargeIn(inner.next().unwrap().as_rule() == Rule::kw_on),
            Rule::opt_length => {
                let a = self.integer(inner.next().unwrap());
                let b = inner.next().map_or(a, |p| self.integer(p));
                OptKind::Length(a, b)
            }
            Rule::opt_terminator => OptKind::Terminator(inner.next().unwrap().as_str().chars().next().unwrap()),
            Rule::opt_secret => OptKind::Secret,
            Rule::opt_decimal => OptKind::Decimal,
            Rule::opt_pattern => OptKind::Pattern(inner.map(|p| self.string(p)).collect()),
            Rule::opt_range => {
                let a = inner.next().unwrap().as_str().to_string();
                let b = inner.next().unwrap().as_str().to_string();
                OptKind::Range(a, b)
            }
            Rule::opt_confirm => {
                let prompt = self.ident(inner.next().unwrap());
                let kind = inner.nth(1).map(|k| self.ident(k));
                OptKind::Confirm(prompt, kind)
            }
            Rule::opt_date => OptKind::Date,
            Rule::opt_say => {
                let k = say_kind(inner.next().unwrap().as_str());
                OptKind::Say(k, self.expr(inner.next().unwrap()))
            }
            Rule::opt_matches => OptKind::Matches(self.string(inner.next().unwrap())),
            Rule::handler => {
                // `inner.next()` above consumed `on`'s keyword; the kind follows.
                let k = match inner.next().unwrap().as_str() {
                    "timeout" => HandlerKind::Timeout,
                    "invalid" => HandlerKind::Invalid,
                    _ => HandlerKind::Exhausted,
                };
                OptKind::On(k, self.action(inner.next().unwrap()))
            }
            r => unreachable!("option rule {r:?}"),
        };
        Opt { kind, span }
    }

    fn stmt(&mut self, pair: Pair<Rule>) -> Stmt {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        inner.next(); // every statement starts with its keyword
        let kind = match rule {
            Rule::play => StmtKind::Play(self.ident(inner.next().unwrap())),
            Rule::say => {
                let k = say_kind(inner.next().unwrap().as_str());
                StmtKind::Say(k, self.expr(inner.next().unwrap()))
            }
            Rule::set => {
                let name = self.ident(inner.next().unwrap());
                StmtKind::Set(name, self.expr(inner.next().unwrap()))
            }
            Rule::if_stmt => {
                let mut arms = Vec::new();
                let mut otherwise = None;
                let mut cond: Option<Expr> = None;
                for p in inner {
                    match p.as_rule() {
                        Rule::kw_else | Rule::kw_if => {}
                        Rule::expr => cond = Some(self.expr(p)),
                        _ => {
                            let b = self.block(p);
                            match cond.take() {
                                Some(c) => arms.push((c, b)),
                                None => otherwise = Some(b),
                            }
                        }
                    }
                }
                StmtKind::If { arms, otherwise }
            }
            Rule::goto => StmtKind::Goto(self.ident(inner.next().unwrap())),
            Rule::back => StmtKind::Back,
            Rule::repeat => StmtKind::Repeat,
            Rule::run => {
                let sub = self.ident(inner.next().unwrap());
                let args = self.args(inner.next().unwrap());
                let into = inner.nth(1).map(|p| self.ident(p));
                StmtKind::Run { sub, args, into }
            }
            Rule::return_stmt => StmtKind::Return(inner.next().map(|p| self.expr(p))),
            Rule::transfer => StmtKind::Transfer(self.string(inner.next().unwrap())),
            Rule::hangup => StmtKind::Hangup,
            Rule::language => StmtKind::Language(self.ident(inner.next().unwrap())),
            Rule::flush => StmtKind::Flush,
            Rule::collect => {
                let var = self.ident(inner.next().unwrap());
                let options = self.opts(inner);
                StmtKind::Collect { var, options }
            }
            Rule::request => {
                let service = self.ident(inner.next().unwrap());
                let args = self.args(inner.next().unwrap());
                let (mut bind, mut timeout, mut hold, mut outcomes) = (None, None, None, Vec::new());
                while let Some(p) = inner.next() {
                    match p.as_rule() {
                        Rule::kw_as => bind = Some(self.ident(inner.next().unwrap())),
                        Rule::kw_hold => hold = Some(self.ident(inner.next().unwrap())),
                        Rule::opt_timeout => timeout = Some(self.duration(p.into_inner().nth(1).unwrap())),
                        _ => outcomes = self.outcomes(p),
                    }
                }
                StmtKind::Request { service, args, bind, timeout, hold, outcomes }
            }
            Rule::enqueue => {
                let queue = self.ident(inner.next().unwrap());
                let (mut priority, mut max_wait, mut outcomes) = (None, None, Vec::new());
                while let Some(p) = inner.next() {
                    match p.as_rule() {
                        Rule::kw_priority => priority = Some(self.expr(inner.next().unwrap())),
                        Rule::kw_max_wait => max_wait = Some(self.duration(inner.next().unwrap())),
                        _ => outcomes = self.outcomes(p),
                    }
                }
                StmtKind::Enqueue { queue, priority, max_wait, outcomes }
            }
            Rule::dial => {
                inner.next(); // `agent`
                let agent = self.expr(inner.next().unwrap());
                let (mut timeout, mut outcomes) = (None, Vec::new());
                for p in inner {
                    match p.as_rule() {
                        Rule::opt_timeout => timeout = Some(self.duration(p.into_inner().nth(1).unwrap())),
                        _ => outcomes = self.outcomes(p),
                    }
                }
                StmtKind::Dial { agent, timeout, outcomes }
            }
            Rule::record => {
                let category = self.string(inner.next().unwrap());
                let (mut max, mut outcomes) = (None, Vec::new());
                while let Some(p) = inner.next() {
                    match p.as_rule() {
                        Rule::kw_max => max = Some(self.duration(inner.next().unwrap())),
                        _ => outcomes = self.outcomes(p),
                    }
                }
                StmtKind::Record { category, max, outcomes }
            }
            r => unreachable!("statement rule {r:?}"),
        };
        Stmt { kind, span }
    }

    fn args(&mut self, pair: Pair<Rule>) -> Vec<Expr> {
        pair.into_inner().map(|p| self.expr(p)).collect()
    }

    fn expr(&mut self, pair: Pair<Rule>) -> Expr {
        let file = self.file;
        let sp = move |p: &Pair<Rule>| Span::new(file, p.as_span().start(), p.as_span().end());
        // The Pratt parser needs `Fn` closures; collect nested args eagerly through a
        // RefCell-free recursion by parsing primaries with a fresh builder.
        let e = PRATT
            .map_primary(|p| {
                let span = sp(&p);
                let kind = match p.as_rule() {
                    Rule::decimal => ExprKind::Num(p.as_str().to_string()),
                    Rule::string => ExprKind::Str(unescape(p.into_inner().next().map_or("", |s| s.as_str()))),
                    Rule::boolean => ExprKind::Bool(p.into_inner().next().unwrap().as_rule() == Rule::kw_true),
                    Rule::path => {
                        let mut pi = p.into_inner();
                        let a = pi.next().unwrap();
                        let a = Ident { name: a.as_str().to_string(), span: sp(&a) };
                        let b = pi.next().map(|b| Ident { name: b.as_str().to_string(), span: sp(&b) });
                        ExprKind::Path(a, b)
                    }
                    Rule::call => {
                        let mut pi = p.into_inner();
                        let n = pi.next().unwrap();
                        let name = Ident { name: n.as_str().to_string(), span: sp(&n) };
                        let mut sub = Builder { file, src: self.src, diags: Vec::new() };
                        let args = pi.next().unwrap().into_inner().map(|a| sub.expr(a)).collect();
                        ExprKind::Call(name, args)
                    }
                    Rule::expr => {
                        let mut sub = Builder { file, src: self.src, diags: Vec::new() };
                        return sub.expr(p);
                    }
                    r => unreachable!("primary {r:?}"),
                };
                Expr { kind, span }
            })
            .map_prefix(|op, rhs| {
                let o = if op.as_rule() == Rule::neg { UnOp::Neg } else { UnOp::Not };
                Expr { span: sp(&op).to(rhs.span), kind: ExprKind::Unary(o, Box::new(rhs)) }
            })
            .map_infix(|lhs, op, rhs| {
                let o = match op.as_rule() {
                    Rule::or => BinOp::Or,
                    Rule::and => BinOp::And,
                    Rule::eq => BinOp::Eq,
                    Rule::ne => BinOp::Ne,
                    Rule::lt => BinOp::Lt,
                    Rule::le => BinOp::Le,
                    Rule::gt => BinOp::Gt,
                    Rule::ge => BinOp::Ge,
                    Rule::add => BinOp::Add,
                    Rule::sub_op => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    _ => BinOp::Div,
                };
                Expr { span: lhs.span.to(rhs.span), kind: ExprKind::Binary(o, Box::new(lhs), Box::new(rhs)) }
            })
            .parse(pair.into_inner());
        e
    }
}

fn type_of(pair: &Pair<Rule>) -> Type {
    match pair.as_str() {
        "text" => Type::Text,
        "number" => Type::Number,
        _ => Type::Bool,
    }
}

fn day_index(d: &str) -> u8 {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|x| *x == d).unwrap_or(0) as u8
}

fn clock_minutes(c: &str) -> Option<u16> {
    let (h, m) = c.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

mod hints;
#[cfg(test)]
mod tests;
