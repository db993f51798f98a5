//! CTDB's IP allocation cases, replayed against [`ctdbd::ipalloc`].
//!
//! Given: every `*.case` file in `ctdbd/tests/data/takeover/cases/`
//! (format and semantics in `../FORMAT.md`), derived from CTDB 4.17.12's
//! `ctdb/tests/UNIT/takeover` scripts.
//!
//! When: each case's steps run in order, a `previous_step` step taking the actual
//! result of the step before it (as the original scripts fed `$_out` back in).
//!
//! Then: each step's allocation equals its `[expect]` rows, row for row and in order,
//! and its log lines at the case's log level equal its `[log]` lines. Every mismatch
//! of every case is reported (file, case, step, expected beside actual) before the
//! test fails. A new case is a new file; this runner does not change.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ctdbd::ipalloc::case::Case;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/takeover/cases")
}

/// Lines side by side, marking the ones that differ.
fn side_by_side(expected: &[String], actual: &[String]) -> String {
    let width = expected.iter().map(String::len).max().unwrap_or(0).max(8);
    let mut out = format!("    {:<width$} | actual\n", "expected");
    for i in 0..expected.len().max(actual.len()) {
        let e = expected.get(i).map_or("<none>", String::as_str);
        let a = actual.get(i).map_or("<none>", String::as_str);
        let mark = if e == a { ' ' } else { '!' };
        writeln!(out, "  {mark} {e:<width$} | {a}").expect("writing to a String");
    }
    out
}

/// Runs one case file; returns a report of every mismatch (empty if it passed).
fn check(path: &Path) -> String {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return format!("{}: cannot read: {e}\n", path.display()),
    };
    let case = match Case::parse(&text, path) {
        Ok(case) => case,
        Err(e) => return format!("{e}\n"),
    };
    let mut report = String::new();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if case.name != stem {
        writeln!(
            report,
            "{}: name {:?} is not the file name",
            path.display(),
            case.name
        )
        .expect("writing to a String");
    }
    for (step, result) in case.steps.iter().zip(case.run()) {
        let where_ = format!(
            "{} (case {}, step {}{})",
            path.display(),
            case.name,
            step.number,
            if step.title.is_empty() {
                String::new()
            } else {
                format!(": {}", step.title)
            }
        );
        let expected: Vec<String> = step.expect.iter().map(ToString::to_string).collect();
        let actual: Vec<String> = result.ips.iter().map(ToString::to_string).collect();
        if expected != actual {
            write!(
                report,
                "{where_}: allocation differs\n{}",
                side_by_side(&expected, &actual)
            )
            .expect("writing to a String");
        }
        let actual_log: Vec<String> = result.log.iter().map(|l| l.text.clone()).collect();
        if step.log != actual_log {
            write!(
                report,
                "{where_}: log at {} differs\n{}",
                case.log_level.name(),
                side_by_side(&step.log, &actual_log)
            )
            .expect("writing to a String");
        }
    }
    report
}

#[test]
fn takeover_cases() {
    let dir = cases_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the takeover cases must be at {} (ctdbd/tests/data/takeover/cases in the repository): {e}",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("listing the cases directory").path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .case files in {}", dir.display());

    let mut failed = Vec::new();
    let mut report = String::new();
    for file in &files {
        let problems = check(file);
        if !problems.is_empty() {
            failed.push(
                file.file_name()
                    .expect("a file")
                    .to_string_lossy()
                    .into_owned(),
            );
            report.push_str(&problems);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} takeover cases failed: {}\n\n{report}",
        failed.len(),
        files.len(),
        failed.join(", ")
    );
    eprintln!("{} takeover cases passed", files.len());
}

/// The runner itself: a wrong expectation is reported with file, case, step and both
/// sides, and log differences are reported too.
#[test]
fn mismatch_report_names_the_case_and_shows_both_sides() {
    let text = "\
format = ctdb-takeover-case 1
name = det.900
description = one node, wrong expectation
algorithm = det
source = test
env = CTDB_IP_ALGORITHM=det
loglevel = NOTICE
loglevel_source = env
no_ip_takeover = 0
no_ip_failback = 0
steps = 1
[step 1]
title =
node_count = 1
node_flags = 0
node_states = HEALTHY
runstates = RUNNING
input_mode = shared
input_from = literal
log_lines = 0
expect_count = 2
[nodes]
0 0x00 HEALTHY RUNNING yes
[ips]
10.0.0.1 -1 *
10.0.0.2 0 *
[log]
[expect]
10.0.0.2 0
10.0.0.1 -1
";
    let dir = std::env::temp_dir().join(format!("takeover-cases-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating a temporary directory");
    let path = dir.join("det.900.case");
    fs::write(&path, text).expect("writing the case");
    let report = check(&path);
    fs::remove_dir_all(&dir).expect("removing the temporary directory");

    assert!(
        report.contains("det.900.case (case det.900, step 1): allocation differs"),
        "{report}"
    );
    assert!(report.contains("! 10.0.0.1 -1"), "{report}");
    assert!(report.contains("| 10.0.0.1 0"), "{report}");
    assert!(report.contains("log at NOTICE differs"), "{report}");
    assert!(
        report.contains("| Deterministic IPs enabled. Resetting all ip allocations"),
        "{report}"
    );
}
