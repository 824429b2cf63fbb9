//! Logging through `tracing`: human-readable or JSON lines on stderr,
//! filtered by `RUST_LOG`.
//!
//! Levels: `error` means someone must act, `warn` means degraded (e.g. Redis
//! down), `info` is lifecycle, `debug` is per request (cache hits and
//! misses), so load tests measure the server rather than the logger.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber writing to stderr. A second call (tests
/// building several apps) leaves the first in place.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    init_with_writer(config, std::io::stderr)
}

/// Installs the global subscriber writing to `writer` (tests capture logs).
pub fn init_with_writer<W>(config: &LogConfig, writer: W) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|err| anyhow::anyhow!("invalid RUST_LOG={:?}: {err}", config.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colours only on a terminal: escape codes in log files hurt grep.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // An Err here only means a subscriber is already installed.
    let _ = match config.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    Ok(())
}
