//! `anigo`: set the allocator's options, parse the command line, read the
//! configuration, start logging, and hand over to the library. Nothing
//! else lives here.

use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a GraphQL response allocates
/// thousands of small values, and with glibc's malloc allocation was a
/// quarter of a list query's instructions (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc options the process runs with unless its environment names
/// them. `ARENA_EAGER_COMMIT=0`: by default on Linux mimalloc commits its
/// arenas eagerly, and memory it frees there stays resident; off, the
/// server sat at 44 MiB instead of 76 MiB before any request and peaked at
/// 150 MiB instead of 183 MiB under `scripts/soak` (75 s), with no
/// throughput change `scripts/bench` could tell from its run-to-run noise.
const ALLOCATOR_OPTIONS: &[(&str, &str)] = &[("MIMALLOC_ARENA_EAGER_COMMIT", "0")];

fn main() -> ExitCode {
    with_allocator_options();
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

/// Runs this binary again with [`ALLOCATOR_OPTIONS`] added to its
/// environment, when any is missing: mimalloc reads its options from the
/// environment as the process starts, before `main`, and setting them
/// takes `unsafe` code this workspace forbids. The second run finds them
/// set (as does a process whose operator chose them) and goes on. Returns
/// only if the binary cannot be executed again; the process then runs
/// with mimalloc's defaults, which cost memory, not correctness.
fn with_allocator_options() {
    let missing: Vec<(&str, &str)> = ALLOCATOR_OPTIONS
        .iter()
        .copied()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(name) = args.next() {
        command.arg0(name);
    }
    command.args(args).envs(missing);
    let error = command.exec();
    eprintln!("cannot set the allocator's options (running with its defaults): {error}");
}
