//! `ctdb-ipalloc CASEFILE`: runs one takeover test case (`ctdb-takeover-case 1`, see
//! `ctdbd/tests/data/takeover/FORMAT.md`) through [`ctdbd::ipalloc`] and prints each
//! step's allocation as `IP PNN` lines in output order, with a `[step N]` line before
//! each step when the case has several. The log lines are not printed; the table test
//! `tests/takeover_cases.rs` compares those.
//!
//! A missing or malformed file is reported with its name (and line) on standard
//! error, exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use ctdbd::ipalloc::case::Case;

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        bail!("usage: ctdb-ipalloc CASEFILE");
    };
    let path = PathBuf::from(path);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let case = Case::parse(&text, &path)?;
    let results = case.run();
    let several = results.len() > 1;
    for (step, allocation) in case.steps.iter().zip(&results) {
        if several {
            println!("[step {}]", step.number);
        }
        for assignment in &allocation.ips {
            println!("{assignment}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctdb-ipalloc: {e:#}");
            ExitCode::FAILURE
        }
    }
}
