//! Command-line parsing: the global options of 4.17's `ctdb` (parsed by popt there),
//! our `--json` and multi-node `-n` extensions, and popt's error and usage texts.
//!
//! clap does the parsing; its errors are mapped to the words popt prints
//! (`Invalid option all: invalid numeric value`), since scripts compare them. Options
//! may come before or after the command, as popt permutes arguments; `--` ends
//! option parsing. The command words stay plain strings here: each command checks
//! its own arguments in `commands/`, because 4.17 does that only after contacting
//! the daemon.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

/// Which nodes a command runs on (`-n`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeSpec {
    /// One node, as 4.17 accepts.
    Single(u32),
    /// Our extension: every node that is neither DELETED nor DISCONNECTED.
    All,
    /// Our extension: these nodes, in this order.
    List(Vec<u32>),
}

/// Why an option value was refused, in popt's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a number (or trailing junk).
    #[error("invalid numeric value")]
    NotNumeric,
    /// Outside the C `int` range.
    #[error("number too large or too small")]
    OutOfRange,
}

/// popt's `POPT_ARG_INT`: `strtol` with base 0 over the whole text, within `int`.
pub fn parse_int(text: &str) -> Result<i32, ValueError> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits.trim_start_matches([' ', '\t']);
    let (radix, body) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return Err(ValueError::NotNumeric);
    }
    let magnitude = i128::from_str_radix(body, radix).map_err(|_| ValueError::OutOfRange)?;
    let value = if negative { -magnitude } else { magnitude };
    i32::try_from(value).map_err(|_| ValueError::OutOfRange)
}

impl NodeSpec {
    /// Parses `-n`: an integer (as popt would), `all`, or a comma-separated list.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        if text == "all" {
            return Ok(Self::All);
        }
        if text.contains(',') {
            return text
                .split(',')
                .map(|item| parse_int(item).map(|v| v as u32))
                .collect::<Result<Vec<_>, _>>()
                .map(Self::List);
        }
        // A negative int wraps to a large PNN, as C's cast to uint32_t does.
        parse_int(text).map(|v| Self::Single(v as u32))
    }
}

/// The global options, in 4.17's set plus `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct GlobalOpts {
    /// debug level
    #[arg(short = 'd', long = "debug", value_name = "STRING")]
    pub debug: Option<String>,
    /// timelimit (in seconds)
    #[arg(short = 't', long = "timelimit", value_parser = parse_int)]
    pub timelimit: Option<i32>,
    /// node specification - integer
    #[arg(short = 'n', long = "node", value_parser = NodeSpec::parse, allow_hyphen_values = true)]
    pub node: Option<NodeSpec>,
    /// enable machine readable output
    #[arg(short = 'Y')]
    pub machine_y: bool,
    /// specify separator for machine readable output
    #[arg(short = 'x', long = "separator")]
    pub separator: Option<String>,
    /// enable machine parsable output with separator |
    #[arg(short = 'X')]
    pub machine: bool,
    /// enable verbose output
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// die if runtime exceeds this limit (in seconds)
    #[arg(short = 'T', long = "maxruntime", value_parser = parse_int)]
    pub maxruntime: Option<i32>,
    /// print one JSON document (ctdb-rs extension)
    #[arg(long = "json")]
    pub json: bool,
    /// Show this help message
    #[arg(short = '?', long = "help")]
    pub help: bool,
    /// Display brief usage message
    #[arg(long = "usage")]
    pub usage: bool,
}

impl GlobalOpts {
    /// The separator for machine-readable output, if `-X` or `-Y` asked for it
    /// (`-x` alone changes nothing, §9.1).
    pub fn machine_separator(&self) -> Option<String> {
        if self.machine {
            Some("|".to_owned())
        } else if self.machine_y {
            Some(self.separator.clone().unwrap_or_else(|| "|".to_owned()))
        } else {
            None
        }
    }
}

/// Everything on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "ctdb",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Global options.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The command and its arguments.
    pub words: Vec<String>,
}

/// A command line popt would refuse: the message, for stderr, and exit status 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

impl Cli {
    /// Parses arguments (without the program name) as 4.17's popt setup would.
    pub fn parse_args<I, S>(args: I) -> Result<Self, ArgError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let argv: Vec<std::ffi::OsString> = std::iter::once(std::ffi::OsString::from("ctdb"))
            .chain(args.into_iter().map(Into::into))
            .collect();
        // popt names a valueless option as typed; it can only be the last word.
        let last = argv
            .last()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::try_parse_from(&argv).map_err(|e| popt_message(e, &argv[1..], &last))
    }
}

/// The letters of the short options [`GlobalOpts`] knows.
const SHORT_OPTIONS: &str = "?dtnYxXvT";

/// Rewrites a clap error in popt's words.
fn popt_message(err: clap::Error, words: &[std::ffi::OsString], last_word: &str) -> ArgError {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let option_name = || {
        context(ContextKind::InvalidArg)
            .map(|arg| arg.split([' ', '=', '<']).next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let text = match err.kind() {
        ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let reason = std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_else(|| ValueError::NotNumeric.to_string());
            format!("Invalid option {value}: {reason}")
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals => {
            let option = if last_word.starts_with('-') {
                last_word.to_owned()
            } else {
                option_name()
            };
            format!("Invalid option {option}: missing argument")
        }
        ErrorKind::UnknownArgument => {
            // popt names the whole word: `--bogus=3`, or a cluster of short
            // options (`-Xq`, `-61157`) where clap names the first unknown letter.
            let name = option_name();
            let text = |w: &std::ffi::OsString| w.to_string_lossy().into_owned();
            let word = if name.starts_with("--") {
                words
                    .iter()
                    .map(text)
                    .find(|w| *w == name || w.starts_with(&format!("{name}=")))
            } else {
                let letter = name.chars().nth(1);
                words.iter().map(text).find(|w| {
                    w.starts_with('-')
                        && !w.starts_with("--")
                        && letter.is_some_and(|c| w[1..].contains(c))
                        && w[1..].chars().any(|c| !SHORT_OPTIONS.contains(c))
                })
            };
            format!(
                "Invalid option {}: unknown option",
                word.as_deref().unwrap_or(&name)
            )
        }
        _ => format!("Invalid option: {}", err.kind()),
    };
    ArgError(text)
}

/// The brief usage block listing the options, in the layout 4.17 prints above a
/// command's usage line.
pub const BRIEF_USAGE: &str = "\
Usage: [-?YXv] [-?|--help] [--usage] [-d|--debug=STRING]
        [-t|--timelimit=INT] [-n|--node=INT] [-Y] [-x|--separator=CHAR]
        [-X] [-v|--verbose] [-T|--maxruntime=INT]
";

/// The option help block (our wording): all of `--help`, and the start of a bare
/// `ctdb`'s usage.
pub const OPTION_HELP: &str = "\
Usage: [OPTION...]
  -d, --debug=STRING       log level of this tool
  -t, --timelimit=INT      seconds to wait for each answer
  -n, --node=INT           node to ask: a pnn, a list 0,2 or all
  -Y                       machine-readable output, separator from -x
  -x, --separator=CHAR     separator of machine-readable output
  -X                       machine-readable output separated by |
  -v, --verbose            more detail
  -T, --maxruntime=INT     give up after this many seconds in all
      --json               print one JSON document (ctdb-rs extension)

Help options:
  -?, --help               print this help
      --usage              print a short usage summary
";

/// One line of the command table: name, argument synopsis, summary.
pub fn command_line(name: &str, args: &str, summary: &str) -> String {
    format!("  {name:<15} {args:<27}  {summary}\n")
}

/// The text printed for a bare `ctdb`: options, then every command.
pub fn full_usage() -> String {
    let mut text = String::from(OPTION_HELP);
    text.push_str("\nCommands:\n");
    for (name, args, summary) in crate::commands::COMMANDS {
        text.push_str(&command_line(name, args, summary));
    }
    text
}

/// What 4.17 prints (stdout, exit 1) when a command's arguments are wrong.
pub fn command_usage(name: &str) -> String {
    let mut text = String::from(BRIEF_USAGE);
    text.push_str("\nCommands:\n");
    if let Some((name, args, summary)) = crate::commands::COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
    {
        text.push_str(&command_line(name, args, summary));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, ArgError> {
        Cli::parse_args(args.iter().copied())
    }

    #[test]
    fn node_all_and_lists_are_accepted() {
        let cli = parse(&["-n", "all", "ping"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::All));
        assert_eq!(cli.words, ["ping"]);
        let cli = parse(&["ping", "-n", "0,2"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::List(vec![0, 2])));
        let cli = parse(&["-n0", "pnn"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::Single(0)));
        let cli = parse(&["--node=0x1", "pnn"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::Single(1)));
        // popt takes a negative number as the value (-1: "no node given").
        let cli = parse(&["-n", "-1", "scriptstatus"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::Single(u32::MAX)));
        assert_eq!(cli.words, ["scriptstatus"]);
        assert_eq!(
            parse(&["-n", "-X", "ping"]).unwrap_err().0,
            "Invalid option -X: invalid numeric value"
        );
    }

    #[test]
    fn options_after_the_command_are_global() {
        let cli = parse(&["ip", "all", "-X", "-v", "-t", "3", "--json"]).unwrap();
        assert_eq!(cli.words, ["ip", "all"]);
        assert!(cli.global.machine && cli.global.verbose && cli.global.json);
        assert_eq!(cli.global.timelimit, Some(3));
        let cli = parse(&["-Y", "ip", "-x", ","]).unwrap();
        assert_eq!(cli.global.machine_separator().as_deref(), Some(","));
        let cli = parse(&["-x", ",", "ip"]).unwrap();
        assert_eq!(cli.global.machine_separator(), None);
        let cli = parse(&["-Xv", "ip"]).unwrap();
        assert!(cli.global.machine && cli.global.verbose);
    }

    #[test]
    fn repeated_options_keep_the_last() {
        let cli = parse(&["-n", "1", "-n", "2", "ping"]).unwrap();
        assert_eq!(cli.global.node, Some(NodeSpec::Single(2)));
    }

    #[test]
    fn double_dash_ends_options() {
        let cli = parse(&["process-exists", "--", "-5"]).unwrap();
        assert_eq!(cli.words, ["process-exists", "-5"]);
    }

    #[test]
    fn bad_values_use_popt_messages() {
        assert_eq!(
            parse(&["-n", "x", "ping"]).unwrap_err().0,
            "Invalid option x: invalid numeric value"
        );
        assert_eq!(
            parse(&["-n", "1,x", "ping"]).unwrap_err().0,
            "Invalid option 1,x: invalid numeric value"
        );
        assert_eq!(
            parse(&["-n", "4294967296", "ping"]).unwrap_err().0,
            "Invalid option 4294967296: number too large or too small"
        );
        assert_eq!(
            parse(&["-t", "x", "ping"]).unwrap_err().0,
            "Invalid option x: invalid numeric value"
        );
        assert_eq!(
            parse(&["ping", "-n"]).unwrap_err().0,
            "Invalid option -n: missing argument"
        );
        assert_eq!(
            parse(&["-q", "ping"]).unwrap_err().0,
            "Invalid option -q: unknown option"
        );
        assert_eq!(
            parse(&["setvar", "EnableBans", "-1"]).unwrap_err().0,
            "Invalid option -1: unknown option"
        );
        for word in ["-61157", "-Xq", "-qX", "-vX9", "--bogus", "--bogus=3"] {
            assert_eq!(
                parse(&["-v", "checktcpport", word]).unwrap_err().0,
                format!("Invalid option {word}: unknown option")
            );
        }
    }

    #[test]
    fn popt_integers() {
        assert_eq!(parse_int("010"), Ok(8));
        assert_eq!(parse_int("0x1f"), Ok(31));
        assert_eq!(parse_int("-1"), Ok(-1));
        assert_eq!(parse_int("12abc"), Err(ValueError::NotNumeric));
        assert_eq!(parse_int(""), Err(ValueError::NotNumeric));
        assert_eq!(parse_int("2147483648"), Err(ValueError::OutOfRange));
    }

    #[test]
    fn command_usage_has_4_17_layout_with_our_summary() {
        let expected = "\
Usage: [-?YXv] [-?|--help] [--usage] [-d|--debug=STRING]
        [-t|--timelimit=INT] [-n|--node=INT] [-Y] [-x|--separator=CHAR]
        [-X] [-v|--verbose] [-T|--maxruntime=INT]

Commands:
  getvar          <name>                       print one tunable
";
        assert_eq!(command_usage("getvar"), expected);
        assert!(command_usage("runstate").ends_with(
            "  runstate        [setup|first_recovery|startup|running]  print the daemon's run state, or check it is one of those given\n"
        ));
    }
}
