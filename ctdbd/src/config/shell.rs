//! Reading one line of a shell fragment as a variable assignment, for
//! [`super::script_options`] and [`super::legacy`]. Both files are sourced by `sh` in
//! CTDB; we accept the subset people write in them and never run anything.
//!
//! Accepted: blank lines and `#` comments; `NAME=value`, with an optional leading
//! `export `, where the value is one shell word made of unquoted text, `'single quoted'`
//! text (literal) and `"double quoted"` text (where `\` escapes `$`, `` ` ``, `"` and
//! `\`), followed by nothing or a `#` comment. Refused: anything that would expand
//! (`$`, `` ` `` outside single quotes), a second command on the line, unterminated
//! quotes, and spaces around `=`. A line that is not an assignment at all (`ulimit -n
//! 4096`) comes back as [`ShellLine::Command`] for the caller to judge.

/// What one line of a shell fragment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ShellLine<'a> {
    /// Blank or a comment.
    Blank,
    /// `NAME=value`, the value with quoting removed.
    Assignment {
        /// The variable name.
        name: &'a str,
        /// The value after quote removal.
        value: String,
    },
    /// Some other command, by its first word.
    Command(&'a str),
}

const ONE_ASSIGNMENT: &str = "one `NAME=value` assignment, optionally followed by a # comment";
const NO_EXPANSION: &str = "a literal value (no $ or ` expansions; use single quotes)";

/// Classifies one line (without its newline). `Err` carries what was expected.
pub(super) fn parse_line(line: &str) -> Result<ShellLine<'_>, &'static str> {
    let line = line.trim_matches([' ', '\t', '\r']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(ShellLine::Blank);
    }
    let (name, rest) = split_name(line);
    if name.is_empty() {
        return Ok(ShellLine::Command(first_word(line)));
    }
    let Some(value_text) = rest.strip_prefix('=') else {
        if rest.trim_start_matches([' ', '\t']).starts_with('=') {
            return Err("no spaces around '=' (NAME=value)");
        }
        return Ok(ShellLine::Command(first_word(line)));
    };
    let (value, after) = shell_word(value_text)?;
    let after = after.trim_start_matches([' ', '\t', '\r']);
    if !after.is_empty() && !after.starts_with('#') {
        return Err(ONE_ASSIGNMENT);
    }
    Ok(ShellLine::Assignment { name, value })
}

/// Splits a trimmed line into the variable name it starts with (after an optional
/// `export `; empty if it does not start with one) and the rest. Callers use the name to
/// decide whether a line that fails to parse concerns them.
pub(super) fn split_name(line: &str) -> (&str, &str) {
    let body = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with([' ', '\t']))
        .map_or(line, |rest| rest.trim_start_matches([' ', '\t']));
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    body.split_at(name_len)
}

fn first_word(line: &str) -> &str {
    line.split([' ', '\t', ';']).next().unwrap_or(line)
}

/// Reads one shell word from the start of `text`, returning it unquoted and the text
/// after it.
fn shell_word(text: &str) -> Result<(String, &str), &'static str> {
    let mut word = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => return Ok((word, &text[i..])),
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, other)) => word.push(other),
                    None => return Err("a closing single quote"),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e @ ('$' | '`' | '"' | '\\'))) => word.push(e),
                        Some((_, other)) => {
                            word.push('\\');
                            word.push(other);
                        }
                        None => return Err("a closing double quote"),
                    },
                    Some((_, '$' | '`')) => return Err(NO_EXPANSION),
                    Some((_, other)) => word.push(other),
                    None => return Err("a closing double quote"),
                }
            },
            '\\' => match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                None => return Err("the value on one line"),
            },
            '$' | '`' => return Err(NO_EXPANSION),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => return Err(ONE_ASSIGNMENT),
            other => word.push(other),
        }
    }
    Ok((word, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign<'a>(name: &'a str, value: &str) -> ShellLine<'a> {
        ShellLine::Assignment {
            name,
            value: value.into(),
        }
    }

    #[test]
    fn assignments_and_quoting() {
        for (line, want) in [
            ("A=b", assign("A", "b")),
            ("  A=b  ", assign("A", "b")),
            ("A=", assign("A", "")),
            ("A=\"\"", assign("A", "")),
            ("export A=b", assign("A", "b")),
            ("export\tA='x y'", assign("A", "x y")),
            ("A=\"x y\" # comment", assign("A", "x y")),
            ("A='$HOME' ", assign("A", "$HOME")),
            ("A=\"a\\\"b\\$c\\\\d\\n\"", assign("A", "a\"b$c\\d\\n")),
            ("A=x\"y z\"'w'", assign("A", "xy zw")),
            ("A=a\\ b", assign("A", "a b")),
            ("A=a#b", assign("A", "a#b")),
            ("_a1=1", assign("_a1", "1")),
            ("A=b\r", assign("A", "b")),
            ("exported=1", assign("exported", "1")),
        ] {
            assert_eq!(parse_line(line), Ok(want), "{line:?}");
        }
    }

    #[test]
    fn blanks_and_commands() {
        assert_eq!(parse_line(""), Ok(ShellLine::Blank));
        assert_eq!(parse_line("   # x=1"), Ok(ShellLine::Blank));
        assert_eq!(
            parse_line("ulimit -n 4096"),
            Ok(ShellLine::Command("ulimit"))
        );
        assert_eq!(parse_line("1A=2"), Ok(ShellLine::Command("1A=2")));
        assert_eq!(parse_line("export A"), Ok(ShellLine::Command("export")));
        assert_eq!(parse_line("fi"), Ok(ShellLine::Command("fi")));
        assert_eq!(parse_line("[ -f x ] && y"), Ok(ShellLine::Command("[")));
    }

    #[test]
    fn refusals() {
        for line in [
            "A = b",
            "A =b",
            "A='b",
            "A=\"b",
            "A=\"b\\",
            "A=$B",
            "A=\"$B\"",
            "A=`id`",
            "A=b c",
            "A=b; export A",
            "A=b && c",
            "A=b\\",
        ] {
            assert!(parse_line(line).is_err(), "{line:?}");
        }
    }
}
