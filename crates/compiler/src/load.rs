//! Reads and parses every file of a project through the [`World`]: flow files and
//! their imports, the prompt catalogue, and holiday calendars.

use std::collections::{BTreeMap, HashMap};

use ivr_syntax::ast::{self, HoursLine, Item};
use ivr_syntax::{Code, Diagnostic, FileId, SourceMap, Span};
use serde::Deserialize;

use crate::World;

/// One catalogue entry: text per language and optional audio overrides.
#[derive(Debug, Clone, Deserialize)]
pub struct PromptDef {
    #[serde(default)]
    pub audio: BTreeMap<String, String>,
    #[serde(flatten)]
    pub text: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Catalogue {
    pub file: FileId,
    pub prompts: BTreeMap<String, (PromptDef, Span)>,
}

/// A holiday calendar file: statutory holidays and make-up working days (调休).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarFile {
    /// A description for people; the compiler does not use it.
    #[serde(default)]
    #[allow(dead_code)]
    pub name: String,
    #[serde(default)]
    pub holidays: Vec<toml::Spanned<String>>,
    #[serde(default)]
    pub makeup_workdays: Vec<toml::Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct Calendar {
    pub holidays: Vec<u32>,
    pub makeup_days: Vec<u32>,
}

pub struct Loaded {
    /// The main flow file's project-relative path.
    pub main: String,
    pub sources: SourceMap,
    pub files: Vec<(FileId, ast::File)>,
    pub catalogue: Option<Catalogue>,
    /// By the name written in `holidays "…"` (per declaring file directory).
    pub calendars: HashMap<String, Calendar>,
    pub diags: Vec<Diagnostic>,
    /// The catalogue exists but could not be read or parsed: its own
    /// diagnostic explains, and prompts are not reported missing one by one.
    pub catalogue_broken: bool,
}

/// Joins a relative path to the directory of `base`, folding `.` and `..`.
pub fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if rel.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = base.split('/').collect();
        p.pop();
        p
    };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if rel.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

fn toml_error(file: FileId, e: &toml::de::Error) -> Diagnostic {
    let span = e.span().map_or(Span::new(file, 0, 0), |r| Span::new(file, r.start, r.end));
    Diagnostic::new(Code::MalformedData, format!("malformed file: {}", e.message().trim()), span, "here")
}

/// Parses `yyyy-mm-dd` into `yyyymmdd`, checking the date exists.
fn ymd(s: &str) -> Option<u32> {
    let d: jiff::civil::Date = s.parse().ok()?;
    Some(d.year() as u32 * 10_000 + d.month() as u32 * 100 + d.day() as u32)
}

pub fn load(world: &dyn World, main: &str) -> Loaded {
    let mut l = Loaded {
        main: join("", main),
        sources: SourceMap::default(),
        files: Vec::new(),
        catalogue: None,
        catalogue_broken: false,
        calendars: HashMap::new(),
        diags: Vec::new(),
    };
    let mut queue: Vec<(String, Option<Span>)> = vec![(join("", main), None)];
    while let Some((path, from)) = queue.pop() {
        if l.sources.find(&path).is_some() {
            continue; // already loaded (imports may form cycles; each file loads once)
        }
        let text = match world.read(&path) {
            Ok(t) => t,
            Err(e) => {
                let d = match from {
                    Some(span) => Diagnostic::new(Code::UnreadableFile, format!("cannot read `{path}`: {e}"), span, "imported here"),
                    None => {
                        // The main file: its diagnostic points at an empty stand-in,
                        // so it still names a file of the source map.
                        let id = l.sources.add(path.clone(), String::new());
                        Diagnostic::new(Code::UnreadableFile, format!("cannot read `{path}`: {e}"), Span::new(id, 0, 0), "")
                            .with_help("check the path of the flow file, and that it is saved as UTF-8")
                    }
                };
                l.diags.push(d);
                continue;
            }
        };
        let id = l.sources.add(path.clone(), text);
        let (file, diags) = ivr_syntax::parse(id, &l.sources.get(id).text);
        l.diags.extend(diags);
        for item in &file.items {
            if let Item::Import(s) = item {
                queue.push((join(&path, &s.value), Some(s.span)));
            }
        }
        l.files.push((id, file));
    }
    l.files.sort_by_key(|(id, _)| *id);
    load_catalogue(world, main, &mut l);
    load_calendars(world, &mut l);
    l
}

fn load_catalogue(world: &dyn World, main: &str, l: &mut Loaded) {
    let declared = l.files.iter().find_map(|(id, f)| {
        f.items.iter().find_map(|i| match i {
            Item::Catalogue(s) => Some((join(&l.sources.get(*id).name, &s.value), Some(s.span))),
            _ => None,
        })
    });
    let (path, from) = declared.unwrap_or_else(|| (join(main, "prompts.toml"), None));
    let text = match world.read(&path) {
        Ok(t) => t,
        Err(e) => {
            if let Some(span) = from {
                l.diags.push(Diagnostic::new(Code::UnreadableFile, format!("cannot read the prompt catalogue `{path}`: {e}"), span, "declared here"));
                l.catalogue_broken = true;
            }
            return;
        }
    };
    let file = l.sources.add(path, text);
    let parsed: Result<BTreeMap<String, toml::Spanned<PromptDef>>, _> = toml::from_str(&l.sources.get(file).text);
    match parsed {
        Ok(map) => {
            let prompts = map
                .into_iter()
                .map(|(k, v)| {
                    let span = Span::new(file, v.span().start, v.span().end);
                    (k, (v.into_inner(), span))
                })
                .collect();
            l.catalogue = Some(Catalogue { file, prompts });
        }
        Err(e) => {
            l.diags.push(toml_error(file, &e));
            l.catalogue_broken = true;
        }
    }
}

/// The file a `holidays "NAME"` line refers to: `calendars/NAME.toml` in the
/// project (beside the main flow), or a path ending in `.toml` relative to it.
pub fn calendar_path(main: &str, name: &str) -> String {
    if name.ends_with(".toml") {
        join(main, name)
    } else {
        join(main, &format!("calendars/{name}.toml"))
    }
}

/// How far ahead a holiday calendar running out is warned of.
const CALENDAR_WARN_DAYS: i64 = 60;

fn load_calendars(world: &dyn World, l: &mut Loaded) {
    let mut wanted = Vec::new();
    for (_, f) in &l.files {
        for item in &f.items {
            if let Item::Hours(h) = item {
                for line in &h.lines {
                    if let HoursLine::Holidays(s) = line {
                        wanted.push((calendar_path(&l.main, &s.value), s.span));
                    }
                }
            }
        }
    }
    for (path, span) in wanted {
        if l.calendars.contains_key(&path) {
            continue;
        }
        let named_at = span;
        let text = match world.read(&path) {
            Ok(t) => t,
            Err(e) => {
                l.diags.push(
                    Diagnostic::new(Code::UnknownCalendar, format!("cannot read calendar `{path}`: {e}"), span, "calendar named here")
                        .with_help("a calendar is a TOML file with `holidays` and `makeup_workdays` lists of dates"),
                );
                continue;
            }
        };
        let file = l.sources.add(path.clone(), text);
        let src = &l.sources.get(file).text;
        match toml::from_str::<CalendarFile>(src) {
            Ok(c) => {
                let span = |d: &toml::Spanned<String>| Span::new(file, d.span().start, d.span().end);
                let mut dates = |list: &[toml::Spanned<String>]| -> Vec<(u32, Span)> {
                    let mut out = Vec::new();
                    for d in list {
                        match ymd(d.get_ref()) {
                            Some(v) => out.push((v, span(d))),
                            None => l.diags.push(Diagnostic::new(
                                Code::MalformedData,
                                format!("`{}` is not a date", d.get_ref()),
                                span(d),
                                "expected YYYY-MM-DD",
                            )),
                        }
                    }
                    out
                };
                let (holidays, makeup) = (dates(&c.holidays), dates(&c.makeup_workdays));
                for (day, at) in &makeup {
                    if let Some((_, first)) = holidays.iter().find(|(h, _)| h == day) {
                        l.diags.push(
                            Diagnostic::new(Code::HolidayAndMakeupDay, format!("{}-{:02}-{:02} is both a holiday and a make-up working day", day / 10_000, day / 100 % 100, day % 100), *at, "a make-up working day")
                                .with_related(*first, "a holiday")
                                .with_help("a day is closed (holiday) or worked (make-up day), not both: remove it from one list"),
                        );
                    }
                }
                let sorted = |list: Vec<(u32, Span)>| {
                    let mut days: Vec<u32> = list.into_iter().map(|(d, _)| d).collect();
                    days.sort_unstable();
                    days.dedup();
                    days
                };
                // The calendar covers the years it names days in; opening
                // hours past its end would treat every holiday as a working day.
                let last_year = holidays.iter().chain(&makeup).map(|(d, _)| d / 10_000).max();
                // Warned 60 days ahead: next year's days are published only in
                // November or December, so a 12-month horizon would warn all year.
                let horizon = world.today().and_then(|t| {
                    let d = jiff::civil::Date::new((t / 10_000) as i16, (t / 100 % 100) as i8, (t % 100) as i8).ok()?.checked_add(jiff::Span::new().days(CALENDAR_WARN_DAYS)).ok()?;
                    Some((t, d.year() as u32 * 10_000 + d.month() as u32 * 100 + d.day() as u32))
                });
                if let (Some((today, horizon)), Some(year)) = (horizon, last_year) {
                    let covered_until = year * 10_000 + 1231;
                    if covered_until < horizon {
                        let (y, m, d) = (today / 10_000, today / 100 % 100, today % 100);
                        let (message, label) = if covered_until < today {
                            (format!("holiday calendar `{path}` has expired: it lists days up to {year}, and today is {y}-{m:02}-{d:02}"), "an expired calendar")
                        } else {
                            (format!("holiday calendar `{path}` lists days up to {year}: it runs out within {CALENDAR_WARN_DAYS} days"), "runs out soon")
                        };
                        l.diags.push(
                            Diagnostic::new(Code::CalendarRunsOut, message, named_at, label)
                                .with_help(format!("add the holidays and make-up working days of {} (the State Council publishes them in November or December); until then those days are ordinary days", year + 1)),
                        );
                    }
                }
                l.calendars.insert(path, Calendar { holidays: sorted(holidays), makeup_days: sorted(makeup) });
            }
            Err(e) => l.diags.push(toml_error(file, &e)),
        }
    }
}
