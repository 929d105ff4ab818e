//! `kreisel-loadtest`: see the crate documentation and `loadtest/README.md`.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use kreisel_loadtest::cli::{Cli, Command};
use kreisel_loadtest::{report, run, slow, timeline};
use serde::Serialize;

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
        })
}

/// Why a run did not start: the first errors (they usually repeat).
fn did_not_start(what: &str, status: impl std::fmt::Debug, errors: &[String]) {
    eprintln!("kreisel-loadtest: {what} did not start ({status:?}):");
    for e in errors.iter().take(5) {
        eprintln!("  {e}");
    }
    if errors.len() > 5 {
        eprintln!("  ... and {} more", errors.len() - 5);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Report(args) = &cli.command {
        return match report::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kreisel-loadtest report: {e}");
                ExitCode::from(4)
            }
        };
    }
    if let Command::Slow(args) = &cli.command {
        let report = match slow::run(args) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("kreisel-loadtest: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(run) = report.runs.iter().find(|r| !r.started) {
            did_not_start(&run.case, run.status, &run.errors);
        }
        if args.common.quiet {
            for run in report.runs.iter().filter(|r| r.started) {
                for e in &run.errors {
                    eprintln!("kreisel-loadtest: {e}");
                }
            }
        } else if report.runs.iter().any(|r| r.started) {
            print!("{}", report.table());
        }
        if let Some(path) = &args.common.json {
            if let Err(e) = write_json(path, &report) {
                eprintln!("kreisel-loadtest: cannot write results: {e}");
                return ExitCode::from(4);
            }
        }
        return ExitCode::from(report.exit_code() as u8);
    }
    let invocation = match cli.command.invocation() {
        Some(Ok(invocation)) => invocation,
        Some(Err(e)) => {
            eprintln!("kreisel-loadtest: {e}");
            return ExitCode::from(2);
        }
        None => return ExitCode::from(2),
    };
    let result = run::execute(invocation.plan, &invocation.options);
    if !result.started {
        // A run that never started has no figures to show: its errors say why.
        did_not_start(&result.scenario, result.status, &result.errors);
    } else if invocation.options.quiet {
        for e in &result.errors {
            eprintln!("kreisel-loadtest: {e}");
        }
    } else {
        print!("{}", result.table());
    }
    if let Some(path) = &invocation.json {
        if let Err(e) = write_json(path, &result) {
            eprintln!("kreisel-loadtest: cannot write results: {e}");
            return ExitCode::from(4);
        }
    }
    if let (Command::Soak(args), true) = (&cli.command, result.started) {
        if let Some(path) = &args.watch.svg {
            if let Err(e) = timeline::plot_soak(&result, path) {
                eprintln!("kreisel-loadtest: cannot write the chart: {e}");
                return ExitCode::from(4);
            }
        }
    }
    ExitCode::from(result.status.exit_code() as u8)
}
