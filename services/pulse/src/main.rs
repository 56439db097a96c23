//! `pulse`: hosts the Pulse services and is the operator's command line.
//!
//! `pulse up` runs every service in one process with embedded defaults;
//! `pulse serve <service>` runs one; the other commands are clients of a
//! running server, built on the shared `pulse-client` crate.

mod cli;
mod serve;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Up(args) => serve::run(None, args).await,
        cli::Command::Serve { service, args } => serve::run(Some(service), args).await,
        other => cli::run(other, cli.connection).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
