//! Logging for the binaries: `tracing` to stderr, filtered by `RUST_LOG`.

/// Sends `tracing` events to stderr, filtered by `RUST_LOG` or, when it is
/// unset or invalid, by `default_filter` (such as `"info"`).
pub fn init_logging(default_filter: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        // Colour codes only on a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
}
