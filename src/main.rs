//! `anigo`: parse the command line, read the configuration, start logging,
//! and hand over to the library. Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a GraphQL response allocates
/// thousands of small values, and with glibc's malloc allocation was a
/// quarter of a list query's instructions (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = anigo::cli::Cli::parse();
    let config = match anigo::config::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            // One line naming the variable, the value and what is expected.
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = anigo::telemetry::init(&config.log) {
        eprintln!("{err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "Fatal error");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
