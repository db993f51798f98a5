//! The line reader CTDB uses for `ctdb.conf` and `ctdb.tunables` (Samba's "tini"
//! format), shared by [`super::conf`] and [`super::tunables_file`].
//!
//! Rules, as CTDB 4.17 applies them: leading whitespace is skipped; a line whose first
//! other character is `#` or `;` is a comment; blank lines are skipped; a line ending in
//! `\` (optionally followed by one whitespace character) continues on the next line;
//! inside a line every run of whitespace shrinks to its first character. A line starting
//! with `[` is a section header whose name runs to the first `]` (not trimmed; the rest
//! of the line is ignored). Any other line splits at its first `=` into a name and a
//! value, each trimmed. Comments are only whole lines: `#` after a value is part of it.

/// One logical line of an INI-style file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IniItem {
    /// `[name]`.
    Section(String),
    /// `name = value`, both trimmed; either may be empty.
    Param {
        /// Text before the first `=`.
        name: String,
        /// Text after the first `=`.
        value: String,
    },
    /// A `[` line without `]`.
    UnclosedSection,
    /// A line with no `=` (CTDB ignores these in `ctdb.conf`; we report them).
    NoEquals(String),
}

/// C's `isspace` in the "C" locale, which is what the C reader tests with.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Splits `text` into logical lines, each with the 1-based number of the physical line
/// it starts on.
pub(super) fn items(text: &str) -> Vec<(usize, IniItem)> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((index, raw)) = lines.next() {
        let first = raw.trim_start_matches(is_c_space);
        if first.is_empty() || first.starts_with('#') || first.starts_with(';') {
            continue;
        }
        let mut buf = String::new();
        let mut piece = first;
        loop {
            for c in piece.chars() {
                let previous_space = buf.chars().next_back().is_some_and(is_c_space);
                if !(previous_space && is_c_space(c)) {
                    buf.push(c);
                }
            }
            // A trailing backslash, or backslash plus one (collapsed) space, joins the
            // next physical line on; the reader drops both characters.
            let continued = if buf.ends_with('\\') {
                buf.pop();
                true
            } else {
                let mut tail = buf.chars().rev();
                match (tail.next(), tail.next()) {
                    (Some(c), Some('\\')) if is_c_space(c) => {
                        buf.pop();
                        buf.pop();
                        true
                    }
                    _ => false,
                }
            };
            if !continued {
                break;
            }
            match lines.next() {
                Some((_, next)) => piece = next,
                None => break,
            }
        }
        out.push((index + 1, classify(&buf)));
    }
    out
}

fn classify(line: &str) -> IniItem {
    if let Some(rest) = line.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, _ignored)) => IniItem::Section(name.to_owned()),
            None => IniItem::UnclosedSection,
        };
    }
    match line.split_once('=') {
        Some((name, value)) => IniItem::Param {
            name: name.trim_matches(is_c_space).to_owned(),
            value: value.trim_matches(is_c_space).to_owned(),
        },
        None => IniItem::NoEquals(line.trim_matches(is_c_space).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: &str) -> IniItem {
        IniItem::Param {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn comments_blanks_and_whitespace_follow_ctdb() {
        let text = "# c\n\n  ; c2\n[logging]  junk\n\tlog   level =   NOTICE \r\n   \nx = a # b\n";
        assert_eq!(
            items(text),
            vec![
                (4, IniItem::Section("logging".into())),
                (5, param("log level", "NOTICE")),
                (7, param("x", "a # b")),
            ]
        );
    }

    #[test]
    fn continuation_joins_lines_and_keeps_first_line_number() {
        let text = "\n[cluster]\ncluster lock = /a/b\\\n   c\nk = v\\ \nw\nlast = x\\";
        assert_eq!(
            items(text),
            vec![
                (2, IniItem::Section("cluster".into())),
                (3, param("cluster lock", "/a/b c")),
                (5, param("k", "vw")),
                (7, param("last", "x")),
            ]
        );
    }

    #[test]
    fn odd_lines_are_classified() {
        assert_eq!(
            items("[ a ]\n[open\nno equals here\n= v\nk =\nk=a=b"),
            vec![
                (1, IniItem::Section(" a ".into())),
                (2, IniItem::UnclosedSection),
                (3, IniItem::NoEquals("no equals here".into())),
                (4, param("", "v")),
                (5, param("k", "")),
                (6, param("k", "a=b")),
            ]
        );
    }

    #[test]
    fn whitespace_runs_keep_their_first_character() {
        assert_eq!(items("a\t \tb = c  \t d"), vec![(1, param("a\tb", "c d"))]);
    }
}
