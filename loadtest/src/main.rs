//! `kreisel-loadtest`: see the crate documentation and `loadtest/README.md`.

use std::process::ExitCode;

use clap::Parser;
use kreisel_loadtest::cli::{Cli, Command};
use kreisel_loadtest::{report, run};

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
    let invocation = match cli.command.invocation() {
        Some(Ok(invocation)) => invocation,
        Some(Err(e)) => {
            eprintln!("kreisel-loadtest: {e}");
            return ExitCode::from(2);
        }
        None => return ExitCode::from(2),
    };
    let result = run::execute(invocation.plan, &invocation.options);
    if invocation.options.quiet {
        for e in &result.errors {
            eprintln!("kreisel-loadtest: {e}");
        }
    } else {
        print!("{}", result.table());
    }
    if let Some(path) = &invocation.json {
        let written = serde_json::to_string_pretty(&result)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
            });
        if let Err(e) = written {
            eprintln!("kreisel-loadtest: cannot write results: {e}");
            return ExitCode::from(4);
        }
    }
    ExitCode::from(result.status.exit_code() as u8)
}
