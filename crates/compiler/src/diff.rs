//! What changed for a caller between two versions of a flow: numbers that
//! answer, steps and menus that appeared or went, where each key, handler and
//! outcome now leads, what each prompt says, and opening hours — not a text
//! diff. Built on [`crate::graph`] and the compiled programs.

use std::collections::{BTreeMap, BTreeSet};

use ivr_bytecode::Program;

use crate::graph::{FlowGraph, NodeKind};

/// One change, as a line a service designer reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Where: `entry 962588`, `menu main_menu`, `prompt welcome`, `hours office`.
    pub place: String,
    pub what: String,
}

fn node_names(g: &FlowGraph) -> BTreeMap<&str, (NodeKind, &str)> {
    g.nodes.iter().map(|n| (n.id.as_str(), (n.kind, n.label.as_str()))).collect()
}

/// The ways out of each node: (from, what leads there) → where to.
fn ways(g: &FlowGraph) -> BTreeMap<(String, String), BTreeSet<String>> {
    let names = node_names(g);
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for e in &g.edges {
        // End nodes are compared by what they say (their ids are positional).
        let to = names.get(e.to.as_str()).map_or(e.to.clone(), |(kind, label)| if *kind == NodeKind::End { format!("({label})") } else { e.to.clone() });
        out.entry((e.from.clone(), e.label.clone())).or_default().insert(to);
    }
    out
}

fn kind_name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Entry => "entry",
        NodeKind::Step => "step",
        NodeKind::Menu => "menu",
        NodeKind::Sub => "sub-flow",
        NodeKind::Anywhere => "keys in every menu",
        NodeKind::End => "end",
    }
}

/// The changes from `old` to `new`, in a stable order.
pub fn diff(old: (&FlowGraph, &Program), new: (&FlowGraph, &Program)) -> Vec<Change> {
    let mut out = Vec::new();
    let (on, nn) = (node_names(old.0), node_names(new.0));
    let place = |id: &str, names: &BTreeMap<&str, (NodeKind, &str)>| match names.get(id) {
        Some((NodeKind::Entry, label)) => format!("entry {}", label.trim_start_matches("☎ ")),
        Some((kind, _)) => format!("{} {id}", kind_name(*kind)),
        None => id.to_string(),
    };
    for (id, (kind, _)) in &nn {
        if *kind != NodeKind::End && !on.contains_key(id) {
            out.push(Change { place: place(id, &nn), what: "added".into() });
        }
    }
    for (id, (kind, _)) in &on {
        if *kind != NodeKind::End && !nn.contains_key(id) {
            out.push(Change { place: place(id, &on), what: "removed".into() });
        }
    }
    let (ow, nw) = (ways(old.0), ways(new.0));
    let keys: BTreeSet<&(String, String)> = ow.keys().chain(nw.keys()).collect();
    for k in keys {
        let (from, label) = k;
        if !nn.contains_key(from.as_str()) || !on.contains_key(from.as_str()) {
            continue; // said as the node's addition or removal
        }
        let how = if label.is_empty() { "goes on".to_string() } else { label.clone() };
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(" or ");
        match (ow.get(k), nw.get(k)) {
            (Some(a), Some(b)) if a != b => out.push(Change { place: place(from, &nn), what: format!("{how} now leads to {} (was {})", list(b), list(a)) }),
            (None, Some(b)) => out.push(Change { place: place(from, &nn), what: format!("{how} added: leads to {}", list(b)) }),
            (Some(a), None) => out.push(Change { place: place(from, &on), what: format!("{how} removed (led to {})", list(a)) }),
            _ => {}
        }
    }
    // What each node asks and does: secrets, timeouts, retries, lengths,
    // patterns, priorities, how values are read.
    let details: BTreeSet<&(String, String)> = old.0.details.keys().chain(new.0.details.keys()).collect();
    for k in details {
        let (node, what) = k;
        if !nn.contains_key(node.as_str()) || !on.contains_key(node.as_str()) {
            continue;
        }
        let show = |s: &str| if s.is_empty() { "no settings".to_string() } else { s.to_string() };
        match (old.0.details.get(k), new.0.details.get(k)) {
            (Some(a), Some(b)) if a != b => {
                let mut said = format!("{what}: {} (was {})", show(b), show(a));
                let secret = |s: &str| s.split(", ").any(|p| p == "secret");
                if secret(a) && !secret(b) {
                    said.push_str(" — no longer secret: the digits will be logged and shown");
                }
                out.push(Change { place: place(node, &nn), what: said });
            }
            (None, Some(b)) => out.push(Change { place: place(node, &nn), what: format!("{what} added ({})", show(b)) }),
            (Some(a), None) => out.push(Change { place: place(node, &on), what: format!("{what} removed (was {})", show(a)) }),
            _ => {}
        }
    }
    // Prompts: what the caller hears, in each language.
    let prompts = |p: &Program| -> BTreeMap<String, Vec<(String, String)>> {
        p.prompts.iter().map(|x| (x.id.clone(), p.languages.iter().cloned().zip(x.text.iter().cloned()).collect())).collect()
    };
    let (op, np) = (prompts(old.1), prompts(new.1));
    for (id, texts) in &np {
        match op.get(id) {
            None => out.push(Change { place: format!("prompt {id}"), what: "now played".into() }),
            Some(before) => {
                for (lang, text) in texts {
                    match before.iter().find(|(l, _)| l == lang) {
                        Some((_, was)) if was != text => out.push(Change { place: format!("prompt {id}"), what: format!("{lang}: \"{text}\" (was \"{was}\")") }),
                        None => out.push(Change { place: format!("prompt {id}"), what: format!("{lang}: \"{text}\" added") }),
                        _ => {}
                    }
                }
            }
        }
    }
    for id in op.keys().filter(|id| !np.contains_key(*id)) {
        out.push(Change { place: format!("prompt {id}"), what: "no longer played".into() });
    }
    // Opening hours.
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let fmt = |r: &[(u16, u16)]| r.iter().map(|(a, b)| format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60)).collect::<Vec<_>>().join(" ");
    for h in &new.1.hours {
        let Some(was) = old.1.hours.iter().find(|o| o.name == h.name) else {
            out.push(Change { place: format!("hours {}", h.name), what: "added".into() });
            continue;
        };
        if was.zone != h.zone {
            out.push(Change { place: format!("hours {}", h.name), what: format!("time zone {} (was {})", h.zone, was.zone) });
        }
        for (d, day) in DAYS.iter().enumerate() {
            if was.weekly[d] != h.weekly[d] {
                let show = |r: &[(u16, u16)]| if r.is_empty() { "closed".to_string() } else { fmt(r) };
                out.push(Change { place: format!("hours {}", h.name), what: format!("{day} {} (was {})", show(&h.weekly[d]), show(&was.weekly[d])) });
            }
        }
        if was.holidays != h.holidays {
            let added = h.holidays.iter().filter(|d| !was.holidays.contains(d)).count();
            let removed = was.holidays.iter().filter(|d| !h.holidays.contains(d)).count();
            out.push(Change { place: format!("hours {}", h.name), what: format!("holidays: {added} added, {removed} removed") });
        }
    }
    for h in old.1.hours.iter().filter(|h| !new.1.hours.iter().any(|n| n.name == h.name)) {
        out.push(Change { place: format!("hours {}", h.name), what: "removed".into() });
    }
    out
}
