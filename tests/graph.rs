//! `ivr graph`: the shipped flows drawn as dot and Mermaid (snapshots), and as
//! an SVG of our own that names every menu and labels its keys.

mod common;
use common::*;

fn graph(flow: &str, format: &str) -> String {
    let out = ivr(&["graph", flow, "--format", format, "--builtin"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn the_shipped_flows_as_dot_and_mermaid() {
    for (name, flow) in [("securities", "flows/securities_hotline.ivr"), ("bank", "flows/bank_hotline.ivr")] {
        insta::assert_snapshot!(format!("graph_{name}_dot"), graph(flow, "dot"));
        insta::assert_snapshot!(format!("graph_{name}_mermaid"), graph(flow, "mermaid"));
    }
}

#[test]
fn the_svg_names_every_menu_and_labels_its_keys() {
    let svg = graph("flows/securities_hotline.ivr", "svg");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    for label in [">main_menu<", ">quotes<", ">key 1<", ">on exhausted<", ">quote: not_found<", ">☎ 962588<", ">hang up<"] {
        assert!(svg.contains(label), "{label} missing");
    }
    // Well-formed enough for a browser: every element opened is closed.
    assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
}

#[test]
fn a_flow_with_errors_is_not_drawn() {
    let out = ivr(&["graph", "tests/ui/E0101.ivr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("[E0101]"), "{}", stderr(&out));
}

/// A copy of flows/ in a temporary directory, for editing.
fn flows_copy(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ok = std::process::Command::new("cp").arg("-r").arg(root().join("flows")).arg(&dir).status().unwrap();
    assert!(ok.success());
    dir
}

#[test]
fn diff_says_what_changed_for_a_caller() {
    let new = flows_copy("new");
    let flow = new.join("securities_hotline.ivr");
    let text = std::fs::read_to_string(&flow).unwrap().replace("    key 4 -> messages\n", "    key 4 -> subscriptions\n    key 7 -> messages\n");
    std::fs::write(&flow, text).unwrap();
    let prompts = new.join("prompts.toml");
    let text = std::fs::read_to_string(&prompts).unwrap().replacen("欢迎致电证券服务热线。", "您好，欢迎致电证券服务热线。", 1);
    std::fs::write(&prompts, text).unwrap();
    let trading = new.join("securities/trading.ivr");
    let text = std::fs::read_to_string(&trading).unwrap().replacen("        secret\n", "", 1);
    std::fs::write(&trading, text).unwrap();
    let out = ivr(&["diff", "flows/securities_hotline.ivr", flow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("menu main_menu: key 4 now leads to subscriptions (was messages)"), "{said}");
    assert!(said.contains("menu main_menu: key 7 added: leads to messages"), "{said}");
    assert!(said.contains("prompt welcome: zh: \"您好，欢迎致电证券服务热线。\" (was \"欢迎致电证券服务热线。\")"), "{said}");
    assert!(said.contains("no longer secret: the digits will be logged and shown"), "{said}");
    let same = ivr(&["diff", "flows/securities_hotline.ivr", "flows/securities_hotline.ivr"]);
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).contains("no change a caller would notice"));
    let _ = std::fs::remove_dir_all(&new);
}

#[test]
fn coloured_by_what_the_scenarios_reached() {
    let cov = std::env::temp_dir().join(format!("ivr-graph-coverage-{}.json", std::process::id()));
    let out = ivr(&["test", "flows/tests/securities_quotes.test.toml", "--coverage", "--format", "json"]);
    std::fs::write(&cov, stdout(&out)).unwrap();
    let dot = ivr(&["graph", "flows/securities_hotline.ivr", "--coverage", cov.to_str().unwrap()]);
    assert!(dot.status.success(), "{}", stderr(&dot));
    let text = stdout(&dot);
    let line = |start: &str| text.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or_else(|| panic!("{start} in {text}")).to_string();
    assert!(line("\"quotes\" [").contains("#16a34a"), "the quotes menu was reached: {}", line("\"quotes\" ["));
    assert!(line("\"subscriptions\" [").contains("#dc2626"), "the subscriptions menu never was");
    assert!(line("\"main_menu\" -> \"trading\"").contains("dashed"), "key 2 never pressed");
    assert!(!line("\"main_menu\" -> \"quotes\"").contains("dashed"), "key 1 pressed");
    let mermaid = ivr(&["graph", "flows/securities_hotline.ivr", "--coverage", cov.to_str().unwrap(), "--format", "mermaid"]);
    assert!(stdout(&mermaid).contains("classDef missed"));
    let svg = ivr(&["graph", "flows/securities_hotline.ivr", "--coverage", cov.to_str().unwrap(), "--format", "svg", "--builtin"]);
    assert!(stdout(&svg).contains("stroke=\"#dc2626\""));
    // Coverage of another flow, or not coverage at all: said, not drawn.
    let other = ivr(&["graph", "flows/bank_hotline.ivr", "--coverage", cov.to_str().unwrap()]);
    assert!(!other.status.success() && stderr(&other).contains("has no coverage of"), "{}", stderr(&other));
    std::fs::write(&cov, "{}").unwrap();
    assert!(!ivr(&["graph", "flows/securities_hotline.ivr", "--coverage", cov.to_str().unwrap()]).status.success());
    let _ = std::fs::remove_file(&cov);
}
