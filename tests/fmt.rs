//! `ivr fmt`: one canonical layout, idempotent, comments kept, and the
//! compiled program never changed by it — over every flow in the repository
//! and every diagnostic fixture.

mod common;
use common::*;

use ivr_compiler::{compile, MemoryWorld};

/// Every .ivr under `dir`, with its text.
fn flows(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            flows(&p, out);
        } else if p.extension().is_some_and(|x| x == "ivr") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// The program a project compiles to with `main` replaced by `text`
/// (stripped of source positions), or the codes of its diagnostics.
fn outcome(main: &std::path::Path, text: &str) -> Result<Vec<u8>, Vec<String>> {
    let dir = main.parent().unwrap();
    let mut world = MemoryWorld::new();
    let mut files = Vec::new();
    flows(dir, &mut files);
    for (p, t) in &files {
        world = world.with(p.strip_prefix(dir).unwrap().to_str().unwrap(), t);
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            world = world.with(p.file_name().unwrap().to_str().unwrap(), &std::fs::read_to_string(&p).unwrap());
        }
    }
    let name = main.file_name().unwrap().to_str().unwrap();
    world = world.with(name, text);
    let c = compile(&world, name);
    match c.program {
        Some(p) => Ok(ivr_bytecode::encode(&p, true)),
        None => Err(c.diagnostics.iter().map(|d| d.code.to_string()).collect()),
    }
}

#[test]
fn formatting_is_idempotent_and_never_changes_the_program() {
    let mut files = Vec::new();
    flows(&root().join("flows"), &mut files);
    flows(&root().join("tests/ui"), &mut files);
    flows(&root().join("tests/agents"), &mut files);
    assert!(files.len() > 40);
    for (path, text) in &files {
        let once = ivr_syntax::format::format(text);
        assert_eq!(ivr_syntax::format::format(&once), once, "not idempotent on {}", path.display());
        let comments = |s: &str| s.lines().filter_map(|l| l.find("//").map(|i| l[i..].trim_end().to_string())).collect::<Vec<_>>();
        assert_eq!(comments(&once), comments(text), "comments kept in {}", path.display());
        if path.starts_with(root().join("flows")) || path.starts_with(root().join("tests/agents")) {
            assert_eq!(outcome(path, &once), outcome(path, text), "the program changed for {}", path.display());
        }
    }
}

/// The same flow with its whitespace messed up: indentation of tabs and
/// spaces, doubled spaces and `->` without spaces outside strings and
/// comments, extra blank lines.
fn mess(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start();
        out.push_str(&"\t".repeat(i % 3));
        out.push_str(&" ".repeat(i % 5));
        let (mut in_string, mut rest) = (false, String::new());
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_string && c == '/' && chars.peek() == Some(&'/') {
                rest.push(c);
                rest.extend(chars.by_ref());
                break;
            }
            match c {
                '"' => in_string = !in_string,
                ' ' if !in_string && i % 2 == 0 => rest.push(' '),
                _ => {}
            }
            rest.push(c);
        }
        out.push_str(&rest.replace(" -> ", "->"));
        out.push_str(if i % 7 == 0 { "   \n\n\n" } else { "\n" });
    }
    out
}

#[test]
fn any_layout_of_the_shipped_flows_formats_back_to_them() {
    let mut files = Vec::new();
    flows(&root().join("flows"), &mut files);
    flows(&root().join("tests/agents"), &mut files);
    for (path, text) in &files {
        let messy = mess(text);
        assert_ne!(&messy, text);
        assert_eq!(outcome(path, &messy), outcome(path, text), "the mess still compiles the same: {}", path.display());
        // Blank lines are the designer's grouping: kept, but never two in a row.
        let formatted = ivr_syntax::format::format(&messy);
        assert!(!formatted.contains("\n\n\n"), "{}", path.display());
        let solid = |s: &str| s.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
        assert_eq!(solid(&formatted), solid(text), "{} formats back to itself", path.display());
    }
}

#[test]
fn fmt_check_passes_on_the_shipped_flows_and_fails_on_a_messy_one() {
    let out = ivr(&["fmt", "--check", "flows/"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let dir = std::env::temp_dir().join(format!("ivr-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let messy = dir.join("messy.ivr");
    std::fs::write(&messy, "entry 1->s\nstep s {\nhangup\n  }\n").unwrap();
    let check = ivr(&["fmt", "--check", messy.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stdout(&check).contains("messy.ivr"), "{}", stdout(&check));
    let fix = ivr(&["fmt", messy.to_str().unwrap()]);
    assert_eq!(fix.status.code(), Some(0), "{}", stderr(&fix));
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), "entry 1 -> s\nstep s {\n    hangup\n}\n");
    // A file that does not parse is left alone.
    let broken = dir.join("broken.ivr");
    std::fs::write(&broken, "step s {\n  play \"x\n").unwrap();
    let out = ivr(&["fmt", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), "step s {\n  play \"x\n");
    let _ = std::fs::remove_dir_all(&dir);
}
