//! Logging setup. Logs go to stderr; `RUST_LOG` overrides the configured level.

use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Install the global subscriber once (later calls are ignored, as in tests).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
