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
