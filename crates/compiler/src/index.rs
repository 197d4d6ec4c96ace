//! What an editor needs to know about a flow project: every name declared
//! (steps, menus, sub-flows, services, variables, opening hours, prompts in
//! the catalogue) with where, and every place a name is used. The language
//! server (`ivr lsp`) answers go-to-definition, find-references, hover and
//! completion from it. Built from the loaded files, so it works on a project
//! with errors too.

use ivr_syntax::ast::*;
use ivr_syntax::{SourceMap, Span};

use crate::{load, World};

/// What kind of thing a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SymbolKind {
    Step,
    Menu,
    Sub,
    Service,
    Variable,
    Hours,
    Prompt,
}

impl SymbolKind {
    pub fn name(self) -> &'static str {
        match self {
            SymbolKind::Step => "step",
            SymbolKind::Menu => "menu",
            SymbolKind::Sub => "sub-flow",
            SymbolKind::Service => "service",
            SymbolKind::Variable => "variable",
            SymbolKind::Hours => "opening hours",
            SymbolKind::Prompt => "prompt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    pub span: Span,
}

/// A prompt of the catalogue: its text and recordings by language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptInfo {
    pub id: String,
    pub text: Vec<(String, String)>,
    /// Recording paths by language, relative to the catalogue's directory.
    pub audio: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Index {
    pub sources: SourceMap,
    pub decls: Vec<Symbol>,
    /// Uses of names (the kind is what the use expects, when it says).
    pub refs: Vec<(String, Option<SymbolKind>, Span)>,
    pub prompts: Vec<PromptInfo>,
    /// The catalogue file's path, relative to the project root.
    pub catalogue_path: Option<String>,
}

impl Index {
    /// The name at byte `offset` of file `file`, if any.
    pub fn name_at(&self, file: ivr_syntax::FileId, offset: usize) -> Option<(&str, Span)> {
        let hit = |s: &Span| s.file == file && s.start as usize <= offset && offset <= s.end as usize;
        self.refs.iter().find(|(_, _, s)| hit(s)).map(|(n, _, s)| (n.as_str(), *s)).or_else(|| self.decls.iter().find(|d| hit(&d.span)).map(|d| (d.name.as_str(), d.span)))
    }

    /// Where `name` is declared.
    pub fn definition(&self, name: &str) -> Option<&Symbol> {
        self.decls.iter().find(|d| d.name == name)
    }

    /// Every use of `name`.
    pub fn references(&self, name: &str) -> Vec<Span> {
        self.refs.iter().filter(|(n, _, _)| n == name).map(|(_, _, s)| *s).collect()
    }

    pub fn prompt(&self, id: &str) -> Option<&PromptInfo> {
        self.prompts.iter().find(|p| p.id == id)
    }
}

/// Indexes the project whose main file is `main`.
pub fn index(world: &dyn World, main: &str) -> Index {
    let loaded = load::load(world, main);
    let mut ix = Index { sources: loaded.sources.clone(), ..Index::default() };
    for (_, file) in &loaded.files {
        for item in &file.items {
            item_index(item, &mut ix);
        }
    }
    if let Some(cat) = &loaded.catalogue {
        ix.catalogue_path = Some(loaded.sources.get(cat.file).name.clone());
        for (id, (def, span)) in &cat.prompts {
            ix.decls.push(Symbol { name: id.clone(), kind: SymbolKind::Prompt, span: *span });
            ix.prompts.push(PromptInfo {
                id: id.clone(),
                text: def.text.iter().map(|(l, t)| (l.clone(), t.clone())).collect(),
                audio: def.audio.iter().map(|(l, a)| (l.clone(), a.clone())).collect(),
            });
        }
    }
    ix
}

fn item_index(item: &Item, ix: &mut Index) {
    let mut decl = |name: &Ident, kind| ix.decls.push(Symbol { name: name.name.clone(), kind, span: name.span });
    match item {
        Item::Entry { target, .. } => ix.refs.push((target.name.clone(), None, target.span)),
        Item::Var { name, init, .. } => {
            decl(name, SymbolKind::Variable);
            if let Some(e) = init {
                expr_refs(e, ix);
            }
        }
        Item::Service(s) => decl(&s.name, SymbolKind::Service),
        Item::Hours(h) => decl(&h.name, SymbolKind::Hours),
        Item::Step { name, body } => {
            decl(name, SymbolKind::Step);
            block_refs(body, ix);
        }
        Item::Menu(m) => {
            decl(&m.name, SymbolKind::Menu);
            options_refs(&m.options, ix);
        }
        Item::Sub(s) => {
            decl(&s.name, SymbolKind::Sub);
            for p in &s.params {
                ix.decls.push(Symbol { name: p.name.name.clone(), kind: SymbolKind::Variable, span: p.name.span });
            }
            block_refs(&s.body, ix);
        }
        Item::Anywhere { bindings, .. } => {
            for b in bindings {
                block_refs(&b.body, ix);
            }
        }
        _ => {}
    }
}

fn options_refs(options: &[Opt], ix: &mut Index) {
    for o in options {
        match &o.kind {
            OptKind::Prompt(p) | OptKind::Reprompt(p) | OptKind::Confirm(p, _) => ix.refs.push((p.name.clone(), Some(SymbolKind::Prompt), p.span)),
            OptKind::Key(k) => block_refs(&k.body, ix),
            OptKind::On(_, b) => block_refs(b, ix),
            _ => {}
        }
    }
}

fn block_refs(block: &Block, ix: &mut Index) {
    for s in &block.stmts {
        match &s.kind {
            StmtKind::Play(p) => ix.refs.push((p.name.clone(), Some(SymbolKind::Prompt), p.span)),
            StmtKind::Say(_, e) | StmtKind::Return(Some(e)) => expr_refs(e, ix),
            StmtKind::Set(v, e) => {
                ix.refs.push((v.name.clone(), Some(SymbolKind::Variable), v.span));
                expr_refs(e, ix);
            }
            StmtKind::If { arms, otherwise } => {
                for (c, b) in arms {
                    expr_refs(c, ix);
                    block_refs(b, ix);
                }
                if let Some(b) = otherwise {
                    block_refs(b, ix);
                }
            }
            StmtKind::Goto(t) => ix.refs.push((t.name.clone(), None, t.span)),
            StmtKind::Run { sub, args, into } => {
                ix.refs.push((sub.name.clone(), Some(SymbolKind::Sub), sub.span));
                args.iter().for_each(|a| expr_refs(a, ix));
                if let Some(v) = into {
                    ix.refs.push((v.name.clone(), Some(SymbolKind::Variable), v.span));
                }
            }
            StmtKind::Collect { var, options } => {
                ix.refs.push((var.name.clone(), Some(SymbolKind::Variable), var.span));
                options_refs(options, ix);
            }
            StmtKind::Request { service, args, hold, outcomes, .. } => {
                ix.refs.push((service.name.clone(), Some(SymbolKind::Service), service.span));
                args.iter().for_each(|a| expr_refs(a, ix));
                if let Some(h) = hold {
                    ix.refs.push((h.name.clone(), Some(SymbolKind::Prompt), h.span));
                }
                outcomes.iter().for_each(|o| block_refs(&o.body, ix));
            }
            StmtKind::Enqueue { priority, outcomes, .. } => {
                if let Some(p) = priority {
                    expr_refs(p, ix);
                }
                outcomes.iter().for_each(|o| block_refs(&o.body, ix));
            }
            StmtKind::Dial { agent, outcomes, .. } => {
                expr_refs(agent, ix);
                outcomes.iter().for_each(|o| block_refs(&o.body, ix));
            }
            StmtKind::Record { outcomes, .. } => outcomes.iter().for_each(|o| block_refs(&o.body, ix)),
            _ => {}
        }
    }
}

fn expr_refs(e: &Expr, ix: &mut Index) {
    match &e.kind {
        ExprKind::Path(v, _) => ix.refs.push((v.name.clone(), Some(SymbolKind::Variable), v.span)),
        ExprKind::Call(f, args) => {
            // `open(hours)`: the argument names opening hours.
            if f.name == "open" {
                if let Some(ExprKind::Path(h, None)) = args.first().map(|a| &a.kind) {
                    ix.refs.push((h.name.clone(), Some(SymbolKind::Hours), h.span));
                    return;
                }
            }
            args.iter().for_each(|a| expr_refs(a, ix));
        }
        ExprKind::Unary(_, x) => expr_refs(x, ix),
        ExprKind::Binary(_, a, b) => {
            expr_refs(a, ix);
            expr_refs(b, ix);
        }
        _ => {}
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;
    use crate::MemoryWorld;

    #[test]
    fn names_are_found_where_declared_and_where_used() {
        let src = "entry 1 -> start\nvar n = 0\nstep start {\n    play welcome\n    set n = n + 1\n    goto start\n}\n";
        let world = MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "[welcome]\nzh = \"欢迎。\"\nen = \"Welcome.\"\n");
        let ix = index(&world, "main.ivr");
        let d = ix.definition("start").expect("declared");
        assert_eq!((d.kind, &src[d.span.start as usize..d.span.end as usize]), (SymbolKind::Step, "start"));
        assert_eq!(ix.references("start").len(), 2, "the entry and the goto");
        assert_eq!(ix.references("n").len(), 2);
        let p = ix.prompt("welcome").expect("in the catalogue");
        assert!(p.text.contains(&("en".to_string(), "Welcome.".to_string())));
        let at = src.find("play welcome").unwrap() + 7;
        assert_eq!(ix.name_at(ix.definition("start").unwrap().span.file, at).map(|x| x.0), Some("welcome"));
    }
}
