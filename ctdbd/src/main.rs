//! `ctdbd`: the ctdb-rs cluster daemon. Parses the command line and hands over to
//! [`ctdbd::daemon::run`]; prints start-up errors and picks the exit code.

use clap::Parser;

/// ctdb-rs cluster daemon, compatible with CTDB 4.17.
#[derive(Debug, Parser)]
#[command(name = "ctdbd", version)]
struct Cli {
    /// Run in the foreground and log to standard error.
    #[arg(short = 'i', long)]
    interactive: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match ctdbd::daemon::run(ctdbd::daemon::Options {
        interactive: cli.interactive,
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctdbd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
