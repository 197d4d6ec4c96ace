//! Plausible mistakes never crash the checker. Flows are built from the shipped
//! flows and the diagnostic fixtures, then broken the way people break them:
//! a name renamed to clash with another, lines deleted, duplicated or moved
//! into another context, lines from other flows pasted in, a brace or quote
//! left out, full-width punctuation, the file cut short.
//! Whatever comes out, `compile` returns, and every diagnostic points inside
//! the file it names.

use std::path::Path;
use std::sync::LazyLock;

use proptest::prelude::*;

use crate::{compile, Compiled, MemoryWorld};

/// The corpus, read once: (project path, text) of the shipped flows, the files
/// they import and read, and every diagnostic fixture (`tests/ui/*.ivr`, each
/// at the project root, as the fixtures are checked).
static CORPUS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for (dir, prefix) in [("flows", ""), ("flows/lib", "lib/"), ("flows/securities", "securities/"), ("flows/calendars", "calendars/"), ("tests/ui", ""), ("tests/ui/calendars", "calendars/")] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir)).expect("corpus directory").flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if (name.ends_with(".ivr") || name.ends_with(".toml")) && !(dir == "tests/ui" && name == "prompts.toml") {
                files.push((format!("{prefix}{name}"), std::fs::read_to_string(&path).expect("corpus file")));
            }
        }
    }
    files
});

/// The flows of the corpus: candidates for the main file, and lines to paste.
fn flows() -> Vec<&'static str> {
    CORPUS.iter().filter(|(p, _)| p.ends_with(".ivr")).map(|(_, t)| t.as_str()).collect()
}

/// One way of breaking a flow; the numbers pick lines, names and places.
#[derive(Debug, Clone)]
enum Mutation {
    /// Every occurrence of one name becomes another name of the file.
    Rename(usize, usize),
    /// One occurrence of a name becomes another name of the file.
    RenameOne(usize, usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    /// A line moved elsewhere (a statement into another step, menu, handler…).
    MoveLine(usize, usize),
    /// A line of another corpus file pasted in.
    Paste(usize, usize),
    /// The file cut short.
    Truncate(usize),
    /// A brace, parenthesis or quote left out.
    DropPunctuation(usize),
    /// ASCII punctuation typed with a Chinese input method (`：`, `｛`, `－＞`…).
    FullWidth(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = || 0usize..100_000;
    prop_oneof![
        3 => (n(), n()).prop_map(|(a, b)| Mutation::Rename(a, b)),
        3 => (n(), n()).prop_map(|(a, b)| Mutation::RenameOne(a, b)),
        2 => n().prop_map(Mutation::DeleteLine),
        2 => n().prop_map(Mutation::DuplicateLine),
        3 => (n(), n()).prop_map(|(a, b)| Mutation::MoveLine(a, b)),
        2 => (n(), n()).prop_map(|(a, b)| Mutation::Paste(a, b)),
        1 => n().prop_map(Mutation::Truncate),
        2 => n().prop_map(Mutation::DropPunctuation),
        2 => n().prop_map(Mutation::FullWidth),
    ]
}

/// The names written in `src` (keywords too: a keyword typed as a name is a
/// plausible mistake), with their byte ranges.
fn names(src: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in src.char_indices().chain([(src.len(), ' ')]) {
        let word = c.is_alphanumeric() || c == '_';
        match (start, word) {
            (None, true) if !c.is_ascii_digit() => start = Some(i),
            (Some(s), false) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn apply(src: &str, m: &Mutation) -> String {
    let lines: Vec<&str> = src.split_inclusive('\n').collect();
    let words = names(src);
    match *m {
        Mutation::Rename(a, b) | Mutation::RenameOne(a, b) if !words.is_empty() => {
            let (from, to) = (words[a % words.len()], words[b % words.len()]);
            let (from, to) = (&src[from.0..from.1], &src[to.0..to.1]);
            if matches!(m, Mutation::Rename(..)) {
                let mut out = String::new();
                let mut last = 0;
                for &(s, e) in words.iter().filter(|(s, e)| &src[*s..*e] == from) {
                    out.push_str(&src[last..s]);
                    out.push_str(to);
                    last = e;
                }
                out.push_str(&src[last..]);
                out
            } else {
                let (s, e) = words[a % words.len()];
                format!("{}{to}{}", &src[..s], &src[e..])
            }
        }
        Mutation::DeleteLine(i) if !lines.is_empty() => {
            let i = i % lines.len();
            lines.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect()
        }
        Mutation::DuplicateLine(i) if !lines.is_empty() => {
            let i = i % lines.len();
            let mut out: Vec<&str> = lines.clone();
            out.insert(i, lines[i]);
            out.concat()
        }
        Mutation::MoveLine(i, j) if !lines.is_empty() => {
            let mut out: Vec<&str> = lines.clone();
            let l = out.remove(i % lines.len());
            out.insert(j % (out.len() + 1), l);
            out.concat()
        }
        Mutation::Paste(f, i) => {
            let flows = flows();
            let other: Vec<&str> = flows[f % flows.len()].split_inclusive('\n').collect();
            let line = format!("{}\n", other.get((f / flows.len()) % other.len().max(1)).unwrap_or(&"").trim_end_matches('\n'));
            let mut out: Vec<&str> = lines.clone();
            out.insert(i % (lines.len() + 1), &line);
            out.concat()
        }
        Mutation::DropPunctuation(i) => {
            let at: Vec<usize> = src.match_indices(['{', '}', '(', ')', '"']).map(|(at, _)| at).collect();
            match at.get(i % at.len().max(1)) {
                Some(&at) => format!("{}{}", &src[..at], &src[at + 1..]),
                None => src.to_string(),
            }
        }
        Mutation::FullWidth(i) => {
            const WIDE: &[(&str, &str)] = &[(":", "："), (",", "，"), ("->", "－＞"), ("{", "｛"), ("}", "｝"), ("(", "（"), (")", "）"), ("\"", "“")];
            let at: Vec<(usize, &str, &str)> =
                WIDE.iter().flat_map(|(a, w)| src.match_indices(a).map(move |(at, _)| (at, *a, *w))).collect();
            match at.get(i % at.len().max(1)) {
                Some(&(at, a, w)) => format!("{}{w}{}", &src[..at], &src[at + a.len()..]),
                None => src.to_string(),
            }
        }
        Mutation::Truncate(at) => {
            let mut at = at % (src.len() + 1);
            while !src.is_char_boundary(at) {
                at -= 1;
            }
            src[..at].to_string()
        }
        _ => src.to_string(),
    }
}

fn world(main: &str) -> MemoryWorld {
    let mut w = MemoryWorld::new();
    for (path, text) in CORPUS.iter() {
        w = w.with(path, text);
    }
    w.with("main.ivr", main)
}

/// Compiles `src` as the main file beside the corpus and checks the spans.
fn check_plausible(src: &str) -> Result<Compiled, String> {
    let c = compile(&world(src), "main.ivr");
    super::well_formed(&c)?;
    Ok(c)
}

proptest! {
    // 400 cases by default; PROPTEST_CASES=100000 for a long hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn plausible_mistakes_never_crash_the_checker(base in 0usize..1000, ms in prop::collection::vec(mutation(), 1..6)) {
        let flows = flows();
        let mut src = flows[base % flows.len()].to_string();
        for m in &ms {
            src = apply(&src, m);
        }
        if let Err(e) = check_plausible(&src) {
            prop_assert!(false, "{e}\n--- flow:\n{src}");
        }
    }
}
