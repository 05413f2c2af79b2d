//! The `hookcast-load` command: parse arguments, run (or serve as a child process), print one JSON summary.

use std::process::ExitCode;

use hookcast_load::args::{self, Command, USAGE};

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("hookcast-load {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    if cfg.child.is_some() {
        return match hookcast_load::run::run_child(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    match hookcast_load::run(&cfg) {
        Ok(summary) => match serde_json::to_string_pretty(&summary) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&hookcast_load::Error::Runtime(e.to_string())),
        },
        Err(e) => fail(&e),
    }
}

fn fail(e: &hookcast_load::Error) -> ExitCode {
    eprintln!("hookcast-load: error: {e}");
    ExitCode::from(e.exit_code())
}
