//! `ctdb`: the ctdb-rs command-line tool, a drop-in for CTDB 4.17's `ctdb` (same
//! output, same exit codes) with `--json` and multi-node `-n` as extensions.
//!
//! `main` only parses the command line, arms the `-T` maximum-runtime watchdog,
//! runs the command (`commands::run`) and prints its outcome with its exit code.
//! The client lives in `client`, argument parsing in `cli`, each command in
//! `commands/`.

mod cli;
mod client;
mod commands;
mod tickle;
mod timefmt;

use std::io::Write;
use std::time::Duration;

/// Default `-T` when neither the option nor `CTDB_TIMEOUT` gives one (seconds).
const DEFAULT_MAX_RUNTIME: i32 = 120;

fn main() {
    let cli = match cli::Cli::parse_args(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let max_runtime = cli.global.maxruntime.unwrap_or_else(|| {
        std::env::var("CTDB_TIMEOUT")
            .ok()
            .and_then(|v| cli::parse_int(v.trim()).ok())
            .unwrap_or(DEFAULT_MAX_RUNTIME)
    });
    if max_runtime > 0 {
        // 4.17 uses an alarm: whatever the command is doing, it ends with this
        // message and status 1 once the limit is reached.
        let limit = Duration::from_secs(max_runtime as u64);
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("Maximum runtime exceeded - exiting");
            std::process::exit(1);
        });
    }
    let outcome = commands::run(&cli);
    // stderr first: where a command writes both (ipinfo of an unknown address), 4.17
    // reports the failed control before the explanation.
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(outcome.stdout.as_bytes());
    let _ = stdout.flush();
    let _ = std::io::stderr().write_all(outcome.stderr_after.as_bytes());
    std::process::exit(outcome.code);
}
