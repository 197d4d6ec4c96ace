//! Renders compiler diagnostics for people (miette), for tools (JSON) and for
//! GitHub workflow annotations.

use std::fmt;

use ivr_compiler::{Diagnostic, Severity, SourceMap, Span};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};

/// The path a diagnostic's file is shown under: the project root joined to the
/// file's project-relative name.
pub fn display_path(root: &str, name: &str) -> String {
    if root.is_empty() || root == "." || name.starts_with('/') {
        name.to_string()
    } else {
        format!("{}/{name}", root.trim_end_matches('/'))
    }
}

struct Report<'a> {
    d: &'a Diagnostic,
    src: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.d.code, self.d.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

fn sspan(s: Span) -> SourceSpan {
    SourceSpan::new((s.start as usize).into(), s.len())
}

fn location(sources: &SourceMap, root: &str, s: Span) -> String {
    let f = sources.get(s.file);
    let (l, c) = f.line_col(s.start);
    format!("{}:{l}:{c}", display_path(root, &f.name))
}

/// One diagnostic drawn with its source, as a person reads it in a terminal.
pub fn human(sources: &SourceMap, root: &str, d: &Diagnostic, color: bool) -> String {
    let file = sources.get(d.span.file);
    let mut labels = vec![LabeledSpan::new_primary_with_span(Some(d.label.clone()), sspan(d.span))];
    let mut elsewhere = Vec::new();
    for (span, label) in &d.related {
        if span.file == d.span.file {
            labels.push(LabeledSpan::new_with_span(Some(label.clone()), sspan(*span)));
        } else {
            elsewhere.push(format!("{label}: {}", location(sources, root, *span)));
        }
    }
    let help = match (&d.help, elsewhere.is_empty()) {
        (h, true) => h.clone(),
        (None, false) => Some(elsewhere.join("; ")),
        (Some(h), false) => Some(format!("{h}\n{}", elsewhere.join("; "))),
    };
    let report = Report {
        d,
        src: NamedSource::new(display_path(root, &file.name), file.text.clone()).with_language("ivr"),
        labels,
        help,
    };
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let mut out = String::new();
    let _ = GraphicalReportHandler::new_themed(theme).with_width(100).render_report(&mut out, &report);
    out
}

/// One diagnostic as a JSON object.
pub fn json(sources: &SourceMap, root: &str, d: &Diagnostic) -> serde_json::Value {
    let f = sources.get(d.span.file);
    let (line, column) = f.line_col(d.span.start);
    let (end_line, end_column) = f.line_col(d.span.end);
    serde_json::json!({
        "code": d.code,
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "message": d.message,
        "file": display_path(root, &f.name),
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "label": d.label,
        "help": d.help,
        "related": d.related.iter().map(|(s, l)| serde_json::json!({"location": location(sources, root, *s), "label": l})).collect::<Vec<_>>(),
    })
}

/// One diagnostic as a GitHub Actions workflow command.
pub fn github(sources: &SourceMap, root: &str, d: &Diagnostic) -> String {
    let f = sources.get(d.span.file);
    let (line, col) = f.line_col(d.span.start);
    let (end_line, end_col) = f.line_col(d.span.end);
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let esc = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| esc(s).replace(':', "%3A").replace(',', "%2C");
    let mut msg = d.message.clone();
    if let Some(h) = &d.help {
        msg.push_str("\nhelp: ");
        msg.push_str(h);
    }
    format!(
        "::{level} file={},line={line},col={col},endLine={end_line},endColumn={end_col},title={}::{}",
        prop(&display_path(root, &f.name)),
        prop(d.code),
        esc(&msg)
    )
}
