//! Log setup both binaries share: one filter (`--log-level`, else `PCONNECT_LOG`, else the
//! binary's default), text or JSON lines on stderr, and colour only for a person at a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-12-04T15:21:19Z  WARN target: message key=value` (ANSI colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format '{other}': use text or json")),
        }
    }
}

/// The log flags both binaries take (global, so they go before or after the subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter on stderr: error, warn, info, debug, trace, off, or a full filter such as
    /// `warn,pconnect_hub::access=info` (the hub's access lines are at info). Overrides PCONNECT_LOG.
    /// Default: warn on the hub, off for the agent.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_filter)]
    pub log_level: Option<String>,
    /// Log lines as `text` (colour only on a terminal without NO_COLOR) or `json` (one object per line).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text", env = "PCONNECT_LOG_FORMAT")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the subscriber these flags describe, `default` when neither they nor
    /// `PCONNECT_LOG` say a level.
    pub fn init(&self, default: &str) {
        init(self.log_level.as_deref(), self.log_format, default);
    }
}

/// Parses a `--log-level` value: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
/// a full filter such as `warn,pconnect_hub::access=info`.
pub fn parse_filter(text: &str) -> Result<String, String> {
    EnvFilter::try_new(text).map(|_| text.to_owned()).map_err(|e| format!("not a log level or filter: {e}"))
}

/// Installs the process's subscriber. `level` (from `--log-level`) wins over `PCONNECT_LOG`, which
/// wins over `default`. Colour is used only when stderr is a terminal and `NO_COLOR` is unset.
pub fn init(level: Option<&str>, format: LogFormat, default: &str) {
    let filter = level
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_env("PCONNECT_LOG").ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(wants_colour()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Colour for a person at a terminal, unless `NO_COLOR` (<https://no-color.org>) says otherwise.
pub fn wants_colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_filters_parse_or_say_what_is_allowed() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("text or json"));
        assert_eq!(parse_filter("info").as_deref(), Ok("info"));
        assert!(parse_filter("warn,pconnect_hub::access=info").is_ok());
        assert!(parse_filter("loud=[").is_err());
    }
}
