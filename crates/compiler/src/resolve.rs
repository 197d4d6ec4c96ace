//! Collects every declaration of the project into one namespace and reports
//! duplicates; discovers the variables that `collect` and `request … as` bind.

use std::collections::{HashMap, HashSet};

use ivr_bytecode::Hours;
use ivr_syntax::ast::*;
use ivr_syntax::{closest, edit_distance, Code, Diagnostic, Span};

use crate::load::{calendar_path, Loaded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Step,
    Menu,
}

pub struct NodeDecl<'a> {
    pub name: &'a Ident,
    pub kind: NodeKind,
    pub step: Option<&'a Block>,
    pub menu: Option<&'a MenuDecl>,
}

#[derive(Debug, Clone)]
pub enum VarKind {
    /// A plain value.
    Value(Type),
    /// The result of `request SERVICE … as NAME`: its fields are `NAME.field`.
    Result(String),
}

#[derive(Debug, Clone)]
pub struct VarInfo {
    pub kind: VarKind,
    pub secret: bool,
    pub span: Span,
    pub init: Option<Expr>,
    /// Declared by the flow (var, collect, request), as opposed to built in.
    pub user: bool,
}

pub struct Symbols<'a> {
    pub languages: Vec<String>,
    pub nodes: Vec<NodeDecl<'a>>,
    pub node_index: HashMap<String, usize>,
    pub subs: HashMap<String, &'a SubDecl>,
    pub services: HashMap<String, &'a ServiceDecl>,
    pub hours: Vec<Hours>,
    pub hours_index: HashMap<String, usize>,
    pub vars: HashMap<String, VarInfo>,
    pub var_order: Vec<String>,
    pub entries: Vec<(&'a Str, &'a Ident)>,
    pub anywhere: Vec<&'a KeyBinding>,
    /// Names of items that failed to parse: references to them are not reported.
    pub broken: HashSet<String>,
}

/// Calls `f` on every statement in `block`, nested ones included.
pub fn visit_stmts<'a>(block: &'a Block, f: &mut dyn FnMut(&'a Stmt)) {
    for s in &block.stmts {
        f(s);
        match &s.kind {
            StmtKind::If { arms, otherwise } => {
                for (_, b) in arms {
                    visit_stmts(b, f);
                }
                if let Some(b) = otherwise {
                    visit_stmts(b, f);
                }
            }
            StmtKind::Collect { options, .. } => visit_opts(options, f),
            StmtKind::Request { outcomes, .. }
            | StmtKind::Enqueue { outcomes, .. }
            | StmtKind::Dial { outcomes, .. }
            | StmtKind::Record { outcomes, .. } => {
                for o in outcomes {
                    visit_stmts(&o.body, f);
                }
            }
            _ => {}
        }
    }
}

pub fn visit_opts<'a>(options: &'a [Opt], f: &mut dyn FnMut(&'a Stmt)) {
    for o in options {
        match &o.kind {
            OptKind::Key(k) => visit_stmts(&k.body, f),
            OptKind::On(_, b) => visit_stmts(b, f),
            _ => {}
        }
    }
}

/// Every top-level block of the project.
pub fn all_blocks<'a>(loaded: &'a Loaded, mut f: impl FnMut(&'a Block)) {
    all_blocks_in(loaded, |b, _| f(b));
}

/// Every top-level block of the project, with the sub-flow it belongs to.
pub fn all_blocks_in<'a>(loaded: &'a Loaded, mut f: impl FnMut(&'a Block, Option<&'a SubDecl>)) {
    for (_, file) in &loaded.files {
        for item in &file.items {
            match item {
                Item::Step { body, .. } => f(body, None),
                Item::Sub(s) => f(&s.body, Some(s)),
                Item::Menu(m) => {
                    for o in &m.options {
                        match &o.kind {
                            OptKind::Key(k) => f(&k.body, None),
                            OptKind::On(_, b) => f(b, None),
                            _ => {}
                        }
                    }
                }
                Item::Anywhere { bindings, .. } => bindings.iter().for_each(|b| f(&b.body, None)),
                _ => {}
            }
        }
    }
}

/// Reports a name declared twice in one list (parameters, outcomes, fields).
fn unique_names<'a>(what: &str, names: impl IntoIterator<Item = &'a Ident>, diags: &mut Vec<Diagnostic>) {
    let mut seen: Vec<&Ident> = Vec::new();
    for n in names {
        match seen.iter().find(|s| s.name == n.name) {
            Some(first) => diags.push(duplicate(what, n, first.span)),
            None => seen.push(n),
        }
    }
}

fn duplicate(what: &str, name: &Ident, first: Span) -> Diagnostic {
    Diagnostic::new(Code::DuplicateDefinition, format!("{what} `{}` is defined twice", name.name), name.span, "defined again here")
        .with_related(first, "first defined here")
        .with_help("rename one of them")
}

/// A built-in variable (`caller`, `dialed`) the flow tries to change.
pub fn read_only(name: &Ident) -> Diagnostic {
    Diagnostic::new(Code::ReadOnlyVariable, format!("`{}` is set by the call and cannot be changed", name.name), name.span, "read-only")
        .with_help(format!("keep your own copy: `var my_{0}: text` and `set my_{0} = {0}`", name.name))
}

/// A name given to two different things (a step and a variable, say).
fn clash(what: &str, name: &Ident, first_what: &str, first: Span) -> Diagnostic {
    let a = |w: &str| if w == "hours" { "opening hours".to_string() } else { format!("a {w}") };
    Diagnostic::new(Code::DuplicateDefinition, format!("`{}` already names {}", name.name, a(first_what)), name.span, format!("{} named `{}` here", a(what), name.name))
        .with_related(first, format!("{} `{}`", if first_what == "hours" { "the hours" } else { first_what }, name.name))
        .with_help(format!("steps, menus, sub-flows, services, hours and variables share one namespace: rename the {what}"))
}

pub fn resolve<'a>(loaded: &'a Loaded, diags: &mut Vec<Diagnostic>) -> Symbols<'a> {
    let mut s = Symbols {
        languages: Vec::new(),
        nodes: Vec::new(),
        node_index: HashMap::new(),
        subs: HashMap::new(),
        services: HashMap::new(),
        hours: Vec::new(),
        hours_index: HashMap::new(),
        vars: HashMap::new(),
        var_order: Vec::new(),
        entries: Vec::new(),
        anywhere: Vec::new(),
        broken: HashSet::new(),
    };
    let mut names: HashMap<String, (Span, &'static str)> = HashMap::new();
    let mut lang_decl: Option<Span> = None;
    for b in ["caller", "dialed"] {
        s.vars.insert(
            b.into(),
            VarInfo { kind: VarKind::Value(Type::Text), secret: false, span: Span::default(), init: None, user: false },
        );
        s.var_order.push(b.into());
    }
    for (_, file) in &loaded.files {
        for item in &file.items {
            let mut declare = |what: &'static str, name: &'a Ident, diags: &mut Vec<Diagnostic>| -> bool {
                if let Some(&(first, first_what)) = names.get(&name.name) {
                    diags.push(if first_what == what { duplicate(what, name, first) } else { clash(what, name, first_what, first) });
                    false
                } else {
                    names.insert(name.name.clone(), (name.span, what));
                    true
                }
            };
            match item {
                Item::Languages(ls) => {
                    let span = ls[0].span.to(ls[ls.len() - 1].span);
                    if let Some(first) = lang_decl {
                        diags.push(
                            Diagnostic::new(Code::DuplicateDefinition, "languages are declared twice", span, "declared again here")
                                .with_related(first, "first declared here"),
                        );
                        continue;
                    }
                    lang_decl = Some(span);
                    for l in ls {
                        if s.languages.contains(&l.name) {
                            diags.push(Diagnostic::new(Code::DuplicateDefinition, format!("language `{}` is listed twice", l.name), l.span, "listed again"));
                        } else {
                            s.languages.push(l.name.clone());
                        }
                    }
                }
                Item::Step { name, body } => {
                    if declare("step", name, diags) {
                        s.node_index.insert(name.name.clone(), s.nodes.len());
                        s.nodes.push(NodeDecl { name, kind: NodeKind::Step, step: Some(body), menu: None });
                    }
                }
                Item::Menu(m) => {
                    if declare("menu", &m.name, diags) {
                        s.node_index.insert(m.name.name.clone(), s.nodes.len());
                        s.nodes.push(NodeDecl { name: &m.name, kind: NodeKind::Menu, step: None, menu: Some(m) });
                    }
                }
                Item::Sub(sub) => {
                    unique_names("parameter", sub.params.iter().map(|p| &p.name), diags);
                    if declare("sub-flow", &sub.name, diags) {
                        s.subs.insert(sub.name.name.clone(), sub);
                    }
                }
                Item::Service(svc) => {
                    unique_names("parameter", svc.params.iter().map(|p| &p.name), diags);
                    unique_names("outcome", svc.variants.iter().map(|v| &v.name), diags);
                    for v in &svc.variants {
                        unique_names("field", v.fields.iter().map(|f| &f.name), diags);
                    }
                    // A field read as `q.field` has one type whichever outcome set it.
                    let fields: Vec<&Param> = svc.variants.iter().flat_map(|v| &v.fields).collect();
                    for (i, f) in fields.iter().enumerate() {
                        if let Some(first) = fields[..i].iter().find(|g| g.name.name == f.name.name && g.ty != f.ty) {
                            diags.push(
                                Diagnostic::new(Code::TypeMismatch, format!("field `{}` is {} here but {} in another outcome", f.name.name, f.ty.name(), first.ty.name()), f.ty_span, format!("this is {}", f.ty.name()))
                                    .with_related(first.ty_span, format!("this is {}", first.ty.name()))
                                    .with_help("a field is read as `result.field` whichever outcome set it: give it one type, or rename one"),
                            );
                        }
                    }
                    if declare("service", &svc.name, diags) {
                        s.services.insert(svc.name.name.clone(), svc);
                    }
                }
                Item::Hours(h) => {
                    if declare("hours", &h.name, diags) {
                        let compiled = compile_hours(h, loaded, diags);
                        s.hours_index.insert(h.name.name.clone(), s.hours.len());
                        s.hours.push(compiled);
                    }
                }
                Item::Var { name, ty, init } => {
                    if declare("variable", name, diags) {
                        let t = match (ty, init) {
                            (Some((t, _)), _) => *t,
                            (None, Some(e)) => literal_type(e).unwrap_or(Type::Text),
                            (None, None) => Type::Text,
                        };
                        s.vars.insert(
                            name.name.clone(),
                            VarInfo { kind: VarKind::Value(t), secret: false, span: name.span, init: init.clone(), user: true },
                        );
                        s.var_order.push(name.name.clone());
                    }
                }
                Item::Entry { number, target } => {
                    if let Some((first, _)) = s.entries.iter().find(|(n, _)| n.value == number.value) {
                        diags.push(
                            Diagnostic::new(Code::DuplicateEntry, format!("number {} has two entries", number.value), number.span, "bound again here")
                                .with_related(first.span, "first bound here")
                                .with_help("a dialed number picks exactly one flow; remove one entry"),
                        );
                    } else {
                        s.entries.push((number, target));
                    }
                }
                Item::Anywhere { bindings, .. } => s.anywhere.extend(bindings.iter()),
                Item::Broken { name: Some(n), .. } => {
                    s.broken.insert(n.name.clone());
                }
                Item::Import(_) | Item::Catalogue(_) | Item::Broken { .. } => {}
            }
        }
    }
    if s.languages.is_empty() {
        s.languages.push("zh".into());
    }
    // Variables bound by collect and request. Inside a sub-flow, collecting
    // into one of its parameters sets the parameter (checked when lowering).
    let mut found: Vec<(&'a Ident, VarKind, bool)> = Vec::new();
    all_blocks_in(loaded, |b, sub| {
        let param = |name: &Ident| sub.and_then(|s| s.params.iter().find(|p| p.name.name == name.name));
        visit_stmts(b, &mut |st| match &st.kind {
            StmtKind::Collect { var, options } => {
                if param(var).is_some() {
                    return;
                }
                let numeric = options.iter().any(|o| matches!(o.kind, OptKind::Decimal | OptKind::Range(..)));
                let secret = options.iter().any(|o| matches!(o.kind, OptKind::Secret));
                found.push((var, VarKind::Value(if numeric { Type::Number } else { Type::Text }), secret));
            }
            StmtKind::Request { service, bind, .. } => {
                let bind = bind.as_ref().unwrap_or(service);
                if let Some(p) = param(bind) {
                    diags.push(
                        Diagnostic::new(Code::DuplicateDefinition, format!("`{}` is already a parameter of `{}`", bind.name, sub.map_or("", |s| s.name.name.as_str())), bind.span, "bound again here")
                            .with_related(p.name.span, "the parameter")
                            .with_help(format!("name the result differently: `request {}(…) as {}_result`", service.name, bind.name)),
                    );
                    return;
                }
                found.push((bind, VarKind::Result(service.name.clone()), false));
            }
            _ => {}
        })
    });
    for (ident, kind, secret) in found {
        match s.vars.get_mut(&ident.name) {
            None => {
                // `request quote(…)` binds its result to the service's own name.
                let own_result = matches!(&kind, VarKind::Result(svc) if *svc == ident.name && s.services.contains_key(svc));
                if let Some(&(first, first_what)) = names.get(&ident.name).filter(|_| !own_result) {
                    diags.push(clash("variable", ident, first_what, first));
                    continue;
                }
                s.vars.insert(ident.name.clone(), VarInfo { kind, secret, span: ident.span, init: None, user: true });
                s.var_order.push(ident.name.clone());
            }
            Some(info) if !info.user => diags.push(read_only(ident)),
            Some(info) => {
                let same = match (&info.kind, &kind) {
                    (VarKind::Value(a), VarKind::Value(b)) => a == b,
                    (VarKind::Result(a), VarKind::Result(b)) => a == b,
                    _ => false,
                };
                if !same {
                    diags.push(
                        Diagnostic::new(Code::TypeMismatch, format!("`{}` is used for values of different types", ident.name), ident.span, "bound here")
                            .with_related(info.span, "bound differently here")
                            .with_help("use a different name for each kind of value"),
                    );
                }
                info.secret |= secret;
            }
        }
    }
    s
}

fn literal_type(e: &Expr) -> Option<Type> {
    match &e.kind {
        ExprKind::Num(_) => Some(Type::Number),
        ExprKind::Str(_) => Some(Type::Text),
        ExprKind::Bool(_) => Some(Type::Bool),
        ExprKind::Unary(UnOp::Neg, _) => Some(Type::Number),
        ExprKind::Unary(UnOp::Not, _) => Some(Type::Bool),
        _ => None,
    }
}

fn compile_hours(h: &HoursDecl, loaded: &Loaded, diags: &mut Vec<Diagnostic>) -> Hours {
    let mut out = Hours {
        name: h.name.name.clone(),
        zone: String::new(),
        weekly: Default::default(),
        holidays: Vec::new(),
        makeup_days: Vec::new(),
    };
    let mut makeup_open = true;
    let mut cal = None;
    let (mut zone_at, mut holidays_at, mut makeup_at): (Option<Span>, Option<&Str>, Option<Span>) = (None, None, None);
    let twice = |what: &str, span: Span, first: Span| {
        Diagnostic::new(Code::DuplicateOption, format!("`{what}` is given twice"), span, "given again here")
            .with_related(first, "first given here")
            .with_help("only the last would count: keep one")
    };
    for line in &h.lines {
        match line {
            HoursLine::Zone(z) if zone_at.is_some() => diags.push(twice("zone", z.span, zone_at.unwrap_or_default())),
            HoursLine::Holidays(name) if holidays_at.is_some() => {
                let first = holidays_at.map_or(name.span, |f| f.span);
                diags.push(
                    Diagnostic::new(Code::SecondCalendar, format!("hours `{}` name a second holiday calendar", h.name.name), name.span, "a second calendar")
                        .with_related(first, "the first calendar")
                        .with_help("opening hours use one calendar: put the holidays and make-up days of every year in it (each calendar lists dates, so years can share a file)"),
                );
            }
            HoursLine::MakeupDays { span, .. } if makeup_at.is_some() => diags.push(twice("makeup-days", *span, makeup_at.unwrap_or_default())),
            HoursLine::Zone(z) => {
                zone_at = Some(z.span);
                if jiff::tz::TimeZone::get(&z.value).is_err() {
                    let zones: Vec<String> = jiff::tz::db().available().map(|n| n.as_str().to_string()).collect();
                    let names: Vec<&str> = zones.iter().map(String::as_str).collect();
                    let lower = z.value.to_lowercase();
                    // Zone names differ by a letter or two from other cities'
                    // (Asia/Beijing is one from Asia/Beirut): suggest only near misses.
                    let help = match closest(&z.value, &names).filter(|best| edit_distance(&z.value, best) <= 2) {
                        _ if lower.contains("beijing") || lower.contains("peking") => {
                            "mainland China's time zone is named \"Asia/Shanghai\"".to_string()
                        }
                        Some(best) => format!("did you mean \"{best}\"?"),
                        None => "use a name such as \"Asia/Shanghai\" or \"Asia/Hong_Kong\"".to_string(),
                    };
                    diags.push(Diagnostic::new(Code::UnknownTimeZone, format!("unknown time zone `{}`", z.value), z.span, "not an IANA time zone").with_help(help));
                }
                out.zone = z.value.clone();
            }
            HoursLine::Days { days, ranges, .. } => {
                for &d in days {
                    out.weekly[d as usize].extend(ranges.iter().copied());
                    out.weekly[d as usize].sort_unstable();
                }
            }
            HoursLine::Holidays(name) => {
                holidays_at = Some(name);
                if let Some(c) = loaded.calendars.get(&calendar_path(&loaded.main, &name.value)) {
                    cal = Some(c);
                }
            }
            HoursLine::MakeupDays { open, span } => {
                makeup_at = Some(*span);
                makeup_open = *open;
            }
        }
    }
    overlaps(h, diags);
    if out.zone.is_empty() {
        diags.push(
            Diagnostic::new(Code::MissingTimeZone, format!("hours `{}` have no time zone", h.name.name), h.name.span, "declared here")
                .with_help("add a line such as `zone \"Asia/Shanghai\"`: a call centre's hours are local time"),
        );
    }
    if let Some(c) = cal {
        out.holidays = c.holidays.clone();
        if makeup_open {
            out.makeup_days = c.makeup_days.clone();
        }
    }
    out
}

/// Reports opening ranges of one day that overlap (`mon-fri 09:00-17:00` and
/// `fri 09:00-12:00`): the call would be open for the union, which is rarely
/// what either line says. One diagnostic per pair of lines, naming the days.
fn overlaps(h: &HoursDecl, diags: &mut Vec<Diagnostic>) {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    /// One opening range: the line it is written on, and its span.
    struct Range {
        line: usize,
        span: Span,
        minutes: (u16, u16),
    }
    /// Two lines that overlap: their first overlapping ranges, and the days.
    struct Overlap<'d> {
        first: Span,
        later: Span,
        a: (u16, u16),
        b: (u16, u16),
        days: Vec<&'d str>,
    }
    let mut by_day: [Vec<Range>; 7] = Default::default();
    for (i, line) in h.lines.iter().enumerate() {
        if let HoursLine::Days { days, ranges, span } = line {
            for &d in days {
                for &r in ranges {
                    by_day[d as usize % 7].push(Range { line: i, span: *span, minutes: r });
                }
            }
        }
    }
    // By (earlier line, later line).
    let mut found: std::collections::BTreeMap<(usize, usize), Overlap> = Default::default();
    for (d, ranges) in by_day.iter().enumerate() {
        for (k, later) in ranges.iter().enumerate() {
            let b = later.minutes;
            if let Some(first) = ranges[..k].iter().find(|r| r.minutes.0 < b.1 && b.0 < r.minutes.1) {
                let o = found.entry((first.line, later.line)).or_insert(Overlap { first: first.span, later: later.span, a: first.minutes, b, days: Vec::new() });
                if !o.days.contains(&DAYS[d]) {
                    o.days.push(DAYS[d]);
                }
            }
        }
    }
    for ((i, j), Overlap { first, later, a, b, days }) in found {
        let what = format!("{}-{} and {}-{}", clock(a.0), clock(a.1), clock(b.0), clock(b.1));
        let mut d = Diagnostic::new(
            Code::OverlappingHours,
            format!("hours `{}` open {} twice: {what} overlap", h.name.name, days.join(", ")),
            later,
            "overlaps an earlier range",
        )
        .with_help("each day's ranges must not overlap: the call would be open for both, which neither line says; give the day once, with its real hours");
        if i != j {
            d = d.with_related(first, "the earlier range");
        }
        diags.push(d);
    }
}
