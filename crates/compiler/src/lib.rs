//! Compiles IVR flows to a verified [`Program`]: load → parse → resolve →
//! type-check and lower → lint.
//!
//! The compiler reaches the outside only through a [`World`]: flow files,
//! the prompt catalogue and holiday calendars are all read through it (files for
//! the CLI, memory for tests). It never stops at the first problem: every
//! diagnostic of a run is returned, and a program is produced only when there are
//! no errors. Diagnostics are data; rendering is the caller's job.

mod codes;
pub mod diff;
mod fields;
mod flow;
pub mod graph;
pub mod index;
mod load;
mod lower;
mod resolve;
mod site;

use ivr_bytecode::Program;
pub use ivr_syntax::{Code, Diagnostic, FileId, Severity, SourceMap, Span};

pub use codes::{explain, CODES};
pub use site::Site;

/// Everything the compiler may read. Paths are `/`-separated and relative to the
/// directory of the main flow file.
pub trait World {
    /// The text of a file, or a message saying why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;

    /// Today (YYYYMMDD), for the checks that look ahead (a holiday calendar
    /// running out); `None` skips them, so a compilation is the same any day.
    fn today(&self) -> Option<u32> {
        None
    }
}


/// A world held in memory, for tests and embedding.
#[derive(Debug, Default, Clone)]
pub struct MemoryWorld {
    pub files: std::collections::BTreeMap<String, String>,
}

impl MemoryWorld {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }
}

impl World for MemoryWorld {
    fn read(&self, path: &str) -> Result<String, String> {
        self.files.get(path).cloned().ok_or_else(|| "no such file".to_string())
    }
}

/// The result of a compilation.
#[derive(Debug)]
pub struct Compiled {
    /// Present when there were no errors (warnings allowed).
    pub program: Option<Program>,
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read, so diagnostics can be rendered against their source.
    pub sources: SourceMap,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// Compiles the flow project whose main file is `main` (imports, catalogue and
/// calendars are found relative to it).
pub fn compile(world: &dyn World, main: &str) -> Compiled {
    compile_for(world, main, None)
}

/// Like [`compile`], and also checks the flows against the deployment's
/// queues and caller tiers (E0501, E0502, W0501).
pub fn compile_for(world: &dyn World, main: &str, site: Option<&Site>) -> Compiled {
    let mut loaded = load::load(world, main);
    let mut diags = std::mem::take(&mut loaded.diags);
    let symbols = resolve::resolve(&loaded, &mut diags);
    let program = lower::lower(&loaded, &symbols, &mut diags);
    flow::check(&loaded, &symbols, &mut diags);
    fields::check(&symbols, &mut diags);
    if let Some(site) = site {
        site::check(&loaded, site, &mut diags);
    }
    diags.sort_by_key(|d| (d.span.file, d.span.start, d.code));
    diags.dedup();
    let has_errors = diags.iter().any(|d| d.severity == Severity::Error);
    let program = program.filter(|_| !has_errors).and_then(|p| match ivr_bytecode::verify(&p) {
        Ok(()) => Some(p),
        Err(e) => {
            // The compiler only emits verified programs; reaching this is a compiler bug.
            let main = loaded.files.first().map_or(FileId(0), |(id, _)| *id);
            diags.push(Diagnostic::new(Code::InternalError, format!("internal compiler error: {e}"), Span::new(main, 0, 0), "here"));
            None
        }
    });
    Compiled { program, diagnostics: diags, sources: loaded.sources }
}

#[cfg(test)]
mod tests;
