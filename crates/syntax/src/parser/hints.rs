//! What people get wrong most, read from a chunk that did not parse: a string
//! or a `{` left open, punctuation typed with a Chinese input method.

/// The ASCII a full-width character stands for, and what it is called.
pub fn full_width(c: char) -> Option<(&'static str, &'static str)> {
    Some(match c {
        '：' => (":", "colon"),
        '，' | '、' => (",", "comma"),
        '－' => ("-", "minus sign"),
        '＞' => (">", "greater-than sign"),
        '＜' => ("<", "less-than sign"),
        '＝' => ("=", "equals sign"),
        '｛' => ("{", "brace"),
        '｝' => ("}", "brace"),
        '（' => ("(", "parenthesis"),
        '）' => (")", "parenthesis"),
        '“' | '”' | '＂' => ("\"", "quotation mark"),
        '＃' => ("#", "hash sign"),
        '＊' => ("*", "asterisk"),
        '．' => (".", "full stop"),
        '＋' => ("+", "plus sign"),
        '／' => ("/", "slash"),
        _ => return None,
    })
}

/// A full-width stand-in for ASCII punctuation, at a byte offset of the chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct FullWidth {
    pub at: usize,
    pub typed: String,
    pub ascii: &'static str,
    pub name: &'static str,
}

/// What a scan of a chunk found, outside comments (offsets in the chunk).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The opening quote of the first string not closed on its line.
    pub unclosed_string: Option<usize>,
    /// Each `{` never closed, in the order opened.
    pub unclosed_braces: Vec<usize>,
    /// The first full-width punctuation outside strings.
    pub full_width: Option<FullWidth>,
}

/// Scans `text`. A `}` that starts a line closes the open `{` whose line is
/// indented the same (so a `}` forgotten inside a step is found where it was
/// forgotten, not at the step's end); any other `}` closes the innermost.
pub fn scan(text: &str) -> Scan {
    let mut out = Scan::default();
    let mut open: Vec<(usize, usize)> = Vec::new(); // (offset, indent of its line)
    let mut string: Option<usize> = None;
    let mut line_indent = 0;
    let mut line_blank = true; // nothing but whitespace so far on this line
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            if let Some(start) = string.take() {
                out.unclosed_string.get_or_insert(start);
            }
            line_indent = 0;
            line_blank = true;
            continue;
        }
        if let Some(_start) = string {
            match c {
                '\\' => {
                    chars.next_if(|(_, n)| *n != '\n');
                }
                '"' => string = None,
                _ => {}
            }
            continue;
        }
        let first_on_line = line_blank;
        if c.is_whitespace() {
            if line_blank {
                line_indent += 1;
            }
            continue;
        }
        line_blank = false;
        match c {
            '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                while chars.next_if(|(_, n)| *n != '\n').is_some() {}
            }
            '"' => string = Some(i),
            '{' => open.push((i, line_indent)),
            '}' => {
                let matched = first_on_line.then(|| open.iter().rposition(|(_, indent)| *indent == line_indent)).flatten();
                match matched {
                    Some(k) => out.unclosed_braces.extend(open.drain(k..).skip(1).map(|(at, _)| at)),
                    None => {
                        open.pop();
                    }
                }
            }
            _ => {
                if out.full_width.is_none() {
                    if let Some((ascii, name)) = full_width(c) {
                        out.full_width = Some(match chars.peek() {
                            Some((_, '＞')) if c == '－' => FullWidth { at: i, typed: "－＞".into(), ascii: "->", name: "arrow" },
                            _ => FullWidth { at: i, typed: c.to_string(), ascii, name },
                        });
                    }
                }
            }
        }
    }
    if let Some(start) = string {
        out.unclosed_string.get_or_insert(start);
    }
    out.unclosed_braces.extend(open.into_iter().map(|(at, _)| at));
    out.unclosed_braces.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_left_open() {
        assert_eq!(scan("play \"a\" // \"x\n").unclosed_string, None);
        assert_eq!(scan("if x == \"1 {\n hangup\n").unclosed_string, Some(8));
        assert_eq!(scan("say digits \"a\\\"b\"").unclosed_string, None);
        assert_eq!(scan("transfer \"+86").unclosed_string, Some(9));
    }

    #[test]
    fn braces_left_open_are_found_where_they_opened() {
        assert_eq!(scan("step s {\n  goto m\n").unclosed_braces, vec![7]);
        // The `}` at column 0 closes the step, so the `if` is the one left open.
        let src = "step s {\n    if x {\n        hangup\n    \n    hangup\n}\n";
        assert_eq!(scan(src).unclosed_braces, vec![src.find("x {").unwrap() + 2]);
        assert_eq!(scan("step s { if x { hangup } }").unclosed_braces, Vec::<usize>::new());
        assert_eq!(scan("step s { play \"{\" }").unclosed_braces, Vec::<usize>::new());
    }

    #[test]
    fn full_width_punctuation_outside_strings() {
        let f = scan("key 1 －＞ s").full_width.unwrap();
        assert_eq!((f.at, f.typed.as_str(), f.ascii), (6, "－＞", "->"));
        assert_eq!(scan("var name：text").full_width.unwrap().ascii, ":");
        assert_eq!(scan("play \"（欢迎）\"").full_width, None);
        assert_eq!(scan("// 注释：x\nplay a").full_width, None);
    }
}
