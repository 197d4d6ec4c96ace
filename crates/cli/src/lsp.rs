//! `ivr lsp`: a language server on stdio for editors. Diagnostics as you type
//! (the checker's own codes, help lines included), go to definition and find
//! references for steps, menus, sub-flows, services, variables, hours and
//! prompts (into the catalogue), hover (a prompt's text in every language and
//! whether its recordings exist), and completion of the project's names and
//! the language's keywords. Files open in the editor are read from the
//! editor's buffers; the rest of the project from disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ivr_compiler::index::{self, Index, SymbolKind};
use ivr_compiler::{Severity, World};
use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::notification::{DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _, PublishDiagnostics};
use lsp_types::request::{Completion, GotoDefinition, HoverRequest, References, Request as _};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionOptions, Diagnostic, DiagnosticSeverity, Hover, HoverContents, HoverProviderCapability, Location, MarkupContent, MarkupKind, NumberOrString, OneOf,
    Position, PublishDiagnosticsParams, Range, ServerCapabilities, TextDocumentSyncCapability, TextDocumentSyncKind, Uri,
};

/// Keywords a designer types (completion).
const KEYWORDS: &[&str] = &[
    "entry", "step", "menu", "sub", "service", "var", "hours", "anywhere", "import", "languages", "prompts", "play", "say", "set", "if", "else", "goto", "back", "repeat", "run", "into", "return",
    "collect", "request", "as", "timeout", "hold", "enqueue", "priority", "max-wait", "dial", "agent", "record", "max", "transfer", "hangup", "language", "flush", "prompt", "reprompt",
    "inter-key", "retries", "barge-in", "length", "terminator", "secret", "decimal", "pattern", "range", "confirm", "key", "on", "invalid", "exhausted", "zone", "holidays", "makeup-days",
];

/// Reads files from the editor's open buffers first, then the disk.
struct Overlay<'a> {
    root: PathBuf,
    open: &'a HashMap<PathBuf, String>,
}

impl World for Overlay<'_> {
    fn read(&self, path: &str) -> Result<String, String> {
        let full = normalize(&self.root.join(path));
        match self.open.get(&full) {
            Some(text) => Ok(text.clone()),
            None => std::fs::read_to_string(&full).map_err(|e| e.to_string().to_lowercase()),
        }
    }

    fn today(&self) -> Option<u32> {
        crate::today_from_env()
    }
}

/// `a/b/../c` → `a/c` (no file system access).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn uri_to_path(uri: &Uri) -> Option<PathBuf> {
    let s = uri.as_str().strip_prefix("file://")?;
    // Percent-decoding of what editors escape in paths.
    let mut bytes = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).ok()?, 16) {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8(bytes).ok()?))
}

fn path_to_uri(p: &Path) -> Option<Uri> {
    let mut s = String::from("file://");
    for b in p.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.parse().ok()
}

/// LSP positions are lines and UTF-16 columns.
fn position(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary_compat(offset)];
    let line = before.matches('\n').count() as u32;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Position { line, character: before[start..].encode_utf16().count() as u32 }
}

fn offset(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0;
    for (i, c) in text[line_start..].char_indices() {
        if units >= pos.character as usize || c == '\n' {
            return line_start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

struct Server {
    open: HashMap<PathBuf, String>,
}

impl Server {
    fn project(&self, path: &Path) -> (Overlay<'_>, String) {
        let root = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (Overlay { root, open: &self.open }, name)
    }

    fn diagnostics(&self, path: &Path) -> Vec<Diagnostic> {
        let (world, name) = self.project(path);
        let c = ivr_compiler::compile(&world, &name);
        c.diagnostics
            .iter()
            .filter(|d| c.sources.get(d.span.file).name == name)
            .map(|d| {
                let text = &c.sources.get(d.span.file).text;
                let message = match &d.help {
                    Some(h) => format!("{}\nhelp: {h}", d.message),
                    None => d.message.clone(),
                };
                Diagnostic {
                    range: Range { start: position(text, d.span.start as usize), end: position(text, d.span.end as usize) },
                    severity: Some(if d.severity == Severity::Error { DiagnosticSeverity::ERROR } else { DiagnosticSeverity::WARNING }),
                    code: Some(NumberOrString::String(d.code.to_string())),
                    source: Some("ivr".into()),
                    message,
                    ..Diagnostic::default()
                }
            })
            .collect()
    }

    /// The index of the project `path` belongs to, the file's id in it, and
    /// the byte offset of `pos`.
    fn at(&self, path: &Path, pos: Position) -> Option<(Index, ivr_syntax::FileId, usize, PathBuf)> {
        let (world, name) = self.project(path);
        let root = world.root.clone();
        let ix = index::index(&world, &name);
        let file = ix.sources.find(&name)?;
        let off = offset(&ix.sources.get(file).text, pos);
        Some((ix, file, off, root))
    }

    fn location(ix: &Index, root: &Path, span: ivr_syntax::Span) -> Option<Location> {
        let f = ix.sources.get(span.file);
        let uri = path_to_uri(&normalize(&root.join(&f.name)))?;
        Some(Location { uri, range: Range { start: position(&f.text, span.start as usize), end: position(&f.text, span.end as usize) } })
    }

    fn hover(&self, path: &Path, pos: Position) -> Option<Hover> {
        let (ix, file, off, root) = self.at(path, pos)?;
        let (name, span) = ix.name_at(file, off)?;
        let text = if let Some(p) = ix.prompt(name) {
            let base = ix.catalogue_path.as_deref().and_then(|c| Path::new(c).parent().map(Path::to_path_buf)).unwrap_or_default();
            let mut s = format!("**prompt `{name}`**\n\n");
            for (lang, t) in &p.text {
                s.push_str(&format!("- {lang}: {t}\n"));
            }
            for (lang, a) in &p.audio {
                let exists = root.join(&base).join(a).is_file();
                s.push_str(&format!("- recording ({lang}): `{a}` {}\n", if exists { "✓" } else { "— missing" }));
            }
            if p.audio.is_empty() {
                s.push_str("- no recording: plays the rendered text\n");
            }
            s
        } else {
            let d = ix.definition(name)?;
            format!("**{} `{name}`** — {} use(s)", d.kind.name(), ix.references(name).len())
        };
        let f = ix.sources.get(file);
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: text }),
            range: Some(Range { start: position(&f.text, span.start as usize), end: position(&f.text, span.end as usize) }),
        })
    }

    fn completion(&self, path: &Path) -> Vec<CompletionItem> {
        let (world, name) = self.project(path);
        let ix = index::index(&world, &name);
        let mut items: Vec<CompletionItem> = ix
            .decls
            .iter()
            .map(|d| CompletionItem {
                label: d.name.clone(),
                kind: Some(match d.kind {
                    SymbolKind::Step | SymbolKind::Menu => CompletionItemKind::MODULE,
                    SymbolKind::Sub => CompletionItemKind::FUNCTION,
                    SymbolKind::Service => CompletionItemKind::INTERFACE,
                    SymbolKind::Variable => CompletionItemKind::VARIABLE,
                    SymbolKind::Hours => CompletionItemKind::CONSTANT,
                    SymbolKind::Prompt => CompletionItemKind::TEXT,
                }),
                detail: Some(match ix.prompt(&d.name) {
                    Some(p) => p.text.first().map(|(l, t)| format!("prompt ({l}): {t}")).unwrap_or_else(|| "prompt".into()),
                    None => d.kind.name().to_string(),
                }),
                ..CompletionItem::default()
            })
            .collect();
        items.extend(KEYWORDS.iter().map(|k| CompletionItem { label: k.to_string(), kind: Some(CompletionItemKind::KEYWORD), ..CompletionItem::default() }));
        items.sort_by(|a, b| a.label.cmp(&b.label));
        items.dedup_by(|a, b| a.label == b.label);
        items
    }
}

fn params<P: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<P, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Serves the editor until it says `exit`.
pub fn run() -> Result<(), String> {
    let (conn, io) = Connection::stdio();
    let caps = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions::default()),
        ..ServerCapabilities::default()
    };
    conn.initialize(serde_json::to_value(caps).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let mut server = Server { open: HashMap::new() };
    for msg in &conn.receiver {
        match msg {
            Message::Request(req) => {
                if conn.handle_shutdown(&req).map_err(|e| e.to_string())? {
                    break;
                }
                let resp = answer(&server, req);
                conn.sender.send(Message::Response(resp)).map_err(|e| e.to_string())?;
            }
            Message::Notification(n) => {
                let changed = match n.method.as_str() {
                    DidOpenTextDocument::METHOD => params::<lsp_types::DidOpenTextDocumentParams>(n.params).ok().map(|p| (p.text_document.uri, Some(p.text_document.text))),
                    DidChangeTextDocument::METHOD => params::<lsp_types::DidChangeTextDocumentParams>(n.params).ok().and_then(|p| p.content_changes.into_iter().last().map(|c| (p.text_document.uri, Some(c.text)))),
                    DidCloseTextDocument::METHOD => params::<lsp_types::DidCloseTextDocumentParams>(n.params).ok().map(|p| (p.text_document.uri, None)),
                    _ => None,
                };
                let Some((uri, text)) = changed else { continue };
                let Some(path) = uri_to_path(&uri).map(|p| normalize(&p)) else { continue };
                let diagnostics = match text {
                    Some(t) => {
                        server.open.insert(path.clone(), t);
                        // A checker bug must not take the editor's server down.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.diagnostics(&path))).unwrap_or_default()
                    }
                    None => {
                        server.open.remove(&path);
                        Vec::new()
                    }
                };
                let p = PublishDiagnosticsParams { uri, diagnostics, version: None };
                let note = Notification::new(PublishDiagnostics::METHOD.to_string(), p);
                conn.sender.send(Message::Notification(note)).map_err(|e| e.to_string())?;
            }
            Message::Response(_) => {}
        }
    }
    // After `exit` the process ends: the reader thread may still wait on an
    // editor's open stdin, so it is not joined (the writer has flushed).
    drop(conn);
    drop(io);
    Ok(())
}

fn answer(server: &Server, req: Request) -> Response {
    let id = req.id.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<serde_json::Value, String> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
        match req.method.as_str() {
            GotoDefinition::METHOD => {
                let p: lsp_types::GotoDefinitionParams = params(req.params)?;
                let tp = p.text_document_position_params;
                let path = uri_to_path(&tp.text_document.uri).map(|p| normalize(&p)).ok_or("not a file")?;
                let loc = server.at(&path, tp.position).and_then(|(ix, file, off, root)| {
                    let (name, _) = ix.name_at(file, off)?;
                    let d = ix.definition(name)?;
                    Server::location(&ix, &root, d.span)
                });
                json(serde_json::to_value(loc))
            }
            References::METHOD => {
                let p: lsp_types::ReferenceParams = params(req.params)?;
                let tp = p.text_document_position;
                let path = uri_to_path(&tp.text_document.uri).map(|p| normalize(&p)).ok_or("not a file")?;
                let locs: Vec<Location> = server
                    .at(&path, tp.position)
                    .map(|(ix, file, off, root)| {
                        let Some((name, _)) = ix.name_at(file, off) else { return Vec::new() };
                        let mut spans = ix.references(name);
                        if p.context.include_declaration {
                            spans.extend(ix.definition(name).map(|d| d.span));
                        }
                        spans.into_iter().filter_map(|s| Server::location(&ix, &root, s)).collect()
                    })
                    .unwrap_or_default();
                json(serde_json::to_value(locs))
            }
            HoverRequest::METHOD => {
                let p: lsp_types::HoverParams = params(req.params)?;
                let tp = p.text_document_position_params;
                let path = uri_to_path(&tp.text_document.uri).map(|p| normalize(&p)).ok_or("not a file")?;
                json(serde_json::to_value(server.hover(&path, tp.position)))
            }
            Completion::METHOD => {
                let p: lsp_types::CompletionParams = params(req.params)?;
                let path = uri_to_path(&p.text_document_position.text_document.uri).map(|p| normalize(&p)).ok_or("not a file")?;
                json(serde_json::to_value(server.completion(&path)))
            }
            other => Err(format!("unsupported request {other}")),
        }
    }));
    match result {
        Ok(Ok(v)) => Response::new_ok(id, v),
        Ok(Err(e)) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, e),
        Err(_) => Response::new_err(id, lsp_server::ErrorCode::InternalError as i32, "internal error in ivr lsp".into()),
    }
}
