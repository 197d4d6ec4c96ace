//! The one canonical layout of a flow file (`ivr fmt`): four spaces of
//! indentation per open brace, one space around `->` and between words, at
//! most one blank line in a row, no trailing spaces, one newline at the end.
//! Only whitespace outside strings and comments changes, and the grammar
//! treats all whitespace alike, so formatting never changes what a flow
//! does (strings cannot span lines); comments stay where they are.
//! Formatting is idempotent.

/// A line split into code and an optional trailing `//` comment, with
/// strings kept whole.
struct Line<'a> {
    code: String,
    comment: Option<&'a str>,
    /// Braces opened minus closed in the code.
    depth_change: i32,
    /// The code starts by closing a brace (it dedents itself).
    starts_closing: bool,
}

/// Whitespace the grammar skips (ASCII, and the full-width space a Chinese
/// input method types).
fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{3000}' || c == '\u{FEFF}' || c == '\r'
}

fn split(line: &str) -> Line<'_> {
    let mut code = String::new();
    let mut comment = None;
    let mut depth = 0;
    let mut in_string = false;
    let mut pending_space = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            code.push(c);
            if c == '\\' {
                if let Some((_, n)) = chars.next() {
                    code.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '/' && line[i..].starts_with("//") {
            comment = Some(line[i..].trim_end());
            break;
        }
        if is_space(c) {
            pending_space = !code.is_empty();
            continue;
        }
        if pending_space {
            code.push(' ');
            pending_space = false;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        code.push(c);
    }
    let code = spaced_arrows(&code);
    let starts_closing = code.starts_with('}');
    Line { code, comment, depth_change: depth, starts_closing }
}

/// One space on each side of `->`, outside strings.
fn spaced_arrows(code: &str) -> String {
    let mut out = String::with_capacity(code.len() + 4);
    let mut in_string = false;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '-' && chars.peek() == Some(&'>') {
            chars.next();
            while out.ends_with(' ') {
                out.pop();
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("->");
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek().is_some() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `source` in the canonical layout.
pub fn format(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut depth: i32 = 0;
    let mut blank_run = 0;
    for raw in source.lines() {
        let line = split(raw);
        if line.code.is_empty() && line.comment.is_none() {
            blank_run += 1;
            continue;
        }
        if blank_run > 0 && !out.is_empty() {
            out.push('\n');
        }
        blank_run = 0;
        let indent = (depth - i32::from(line.starts_closing)).max(0) as usize;
        out.push_str(&"    ".repeat(indent));
        out.push_str(&line.code);
        if let Some(c) = line.comment {
            if !line.code.is_empty() {
                out.push(' ');
            }
            out.push_str(c);
        }
        out.push('\n');
        depth = (depth + line.depth_change).max(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn a_messy_flow_gets_the_canonical_layout_and_keeps_its_comments() {
        let messy = "entry 1->start   // 主号码\n\n\n\nstep start {\n  play  welcome\n\t\tgoto   main\n}\nmenu main {\n prompt main_menu\n key 1->start // 再听一遍\n    key 2   ->   start\n on exhausted {\n hangup\n }\n  }\n";
        let want = "entry 1 -> start // 主号码\n\nstep start {\n    play welcome\n    goto main\n}\nmenu main {\n    prompt main_menu\n    key 1 -> start // 再听一遍\n    key 2 -> start\n    on exhausted {\n        hangup\n    }\n}\n";
        assert_eq!(format(messy), want);
        assert_eq!(format(want), want, "idempotent");
    }

    #[test]
    fn strings_and_comments_are_left_alone() {
        let src = "step s {\n    transfer  \"  95588 -> x  \"   // a -> b  {\n}\n";
        assert_eq!(format(src), "step s {\n    transfer \"  95588 -> x  \" // a -> b  {\n}\n");
        assert_eq!(format("step s {\u{3000}play  welcome }\n"), "step s { play welcome }\n");
    }
}
