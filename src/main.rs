//! `yubin`: the command line. Thin: parsing and exit codes live here, the
//! work in the library crates.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::Failure::Usage(message)) => {
            eprintln!("yubin: {message}");
            ExitCode::from(2)
        }
        Err(cli::Failure::Exit(status, message)) => {
            eprintln!("yubin: {message}");
            ExitCode::from(status)
        }
        Err(cli::Failure::Runtime(error)) => {
            eprintln!("yubin: {error:#}");
            ExitCode::from(1)
        }
    }
}
