//! Cross-checks of flows against the deployment they run in (`ivr check
//! --config ivr.toml`): every queue a flow enqueues to exists, and every
//! priority it can set is one of the configured caller tiers.

use std::collections::BTreeMap;

use ivr_syntax::ast::*;
use ivr_syntax::{Code, Diagnostic, Span};

use ivr_syntax::closest;
use crate::load::Loaded;
use crate::resolve::{all_blocks, visit_stmts};

/// What the deployment offers flows.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub queues: Vec<String>,
    /// Configured caller tiers (name, priority); empty: any priority goes.
    pub tiers: Vec<(String, i64)>,
}

/// The values an expression can take, when they are all known (a literal, or
/// a variable only ever set and initialised to literals), each with where it
/// is written.
fn possible(e: &Expr, loaded: &Loaded) -> Option<BTreeMap<i64, Span>> {
    match &e.kind {
        ExprKind::Num(n) => n.parse::<i64>().ok().map(|v| BTreeMap::from([(v, e.span)])),
        ExprKind::Unary(UnOp::Neg, inner) => possible(inner, loaded).map(|s| s.into_iter().map(|(v, _)| (-v, e.span)).collect()),
        ExprKind::Path(var, None) => {
            let mut values = BTreeMap::new();
            let mut known = true;
            for (_, file) in &loaded.files {
                for item in &file.items {
                    if let Item::Var { name, init, .. } = item {
                        if name.name == var.name {
                            match init.as_ref().map(|i| possible(i, loaded)) {
                                Some(Some(v)) => values.extend(v),
                                Some(None) => known = false,
                                None => {
                                    values.insert(0, name.span);
                                }
                            }
                        }
                    }
                }
            }
            all_blocks(loaded, |b| {
                visit_stmts(b, &mut |s| {
                    if let StmtKind::Set(name, value) = &s.kind {
                        if name.name == var.name {
                            match value.kind {
                                ExprKind::Num(_) | ExprKind::Unary(..) => match possible(value, loaded) {
                                    Some(v) => values.extend(v),
                                    None => known = false,
                                },
                                _ => known = false,
                            }
                        }
                    }
                });
            });
            (known && !values.is_empty()).then_some(values)
        }
        _ => None,
    }
}

pub fn check(loaded: &Loaded, site: &Site, diags: &mut Vec<Diagnostic>) {
    let tiers: Vec<i64> = site.tiers.iter().map(|t| t.1).collect();
    let tier_list = site.tiers.iter().map(|(n, p)| format!("{n} = {p}")).collect::<Vec<_>>().join(", ");
    all_blocks(loaded, |b| {
        visit_stmts(b, &mut |s| {
            let StmtKind::Enqueue { queue, priority, .. } = &s.kind else { return };
            if !site.queues.iter().any(|q| *q == queue.name) {
                let mut d = Diagnostic::new(Code::UnknownQueue, format!("no queue named `{}` is configured", queue.name), queue.span, "not a queue of this deployment");
                let names: Vec<&str> = site.queues.iter().map(String::as_str).collect();
                d = match closest(&queue.name, &names) {
                    Some(c) => d.with_help(format!("did you mean `{c}`?")),
                    None => d.with_help(format!("configured queues: {}", if site.queues.is_empty() { "none".to_string() } else { site.queues.join(", ") })),
                };
                diags.push(d);
            }
            let Some(p) = priority.as_ref().filter(|_| !tiers.is_empty()) else { return };
            match possible(p, loaded) {
                Some(values) => {
                    for (v, at) in values.iter().filter(|(v, _)| !tiers.contains(v)) {
                        let mut d = Diagnostic::new(Code::UnknownTier, format!("priority {v} is not a configured caller tier"), p.span, format!("can be {v} here"));
                        if *at != p.span {
                            d = d.with_related(*at, format!("set to {v} here"));
                        }
                        diags.push(d.with_help(format!("configured tiers: {tier_list}")));
                    }
                }
                None => diags.push(
                    Diagnostic::new(Code::UncheckedPriority, "this priority cannot be checked against the caller tiers", p.span, "not a literal or a variable set only to literals")
                        .with_help(format!("set the priority from literals so `ivr check` can see it maps to a tier ({tier_list})")),
                ),
            }
        });
    });
}
