//! The spec's performance targets and how a measurement is judged against them.

/// Tunnel throughput must reach this fraction of direct.
pub(crate) const MIN_THROUGHPUT_RATIO: f64 = 0.25;
/// Bulk throughput through a `--debug` service must reach this fraction of the same tunnel without it.
pub(crate) const MIN_DEBUG_THROUGHPUT_RATIO: f64 = 0.80;
/// Tunnel new connections per second must reach this fraction of direct.
pub(crate) const MIN_CONN_RATE_RATIO: f64 = 0.40;
/// HTTP keep-alive requests per second through a public link must reach this fraction of direct.
pub(crate) const MIN_HTTP_KEEPALIVE_RATIO: f64 = 0.50;
/// HTTP requests per second with a new connection each must reach this fraction of direct.
pub(crate) const MIN_HTTP_NEW_CONN_RATIO: f64 = 0.40;
/// Tunnel p50 latency may be at most this multiple of direct.
pub(crate) const MAX_P50_RATIO: f64 = 2.5;
/// Hub RSS when idle must stay below this (MiB).
pub(crate) const MAX_HUB_IDLE_MIB: f64 = 20.0;
/// Hub RSS with 1,000 open tunnels must stay below this (MiB).
pub(crate) const MAX_HUB_TUNNELS_MIB: f64 = 60.0;
/// Hub RSS after those tunnels closed must be back below idle times this.
pub(crate) const MAX_HUB_AFTER_CLOSE_OF_IDLE: f64 = 1.2;
/// Microseconds the public link may add to the HTTP keep-alive run's p99.
pub(crate) const MAX_HTTP_P99_ADDED_US: f64 = 500.0;

/// A target for one row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// tunnel / direct >= the value.
    MinRatio(f64),
    /// tunnel / direct <= the value.
    MaxRatio(f64),
    /// The value (MiB) stays strictly below the bound.
    BelowMib(f64),
    /// The value (a single figure, no direct column) is at most the bound.
    AtMost(f64),
    /// Direct and tunnel both had zero failures.
    NoFailures,
    /// Informational: no target.
    None,
}

impl Target {
    /// How the target reads in the table.
    pub(crate) fn text(self) -> String {
        match self {
            Target::MinRatio(r) => format!(">= {r:.2}x"),
            Target::MaxRatio(r) => format!("<= {r:.2}x"),
            Target::BelowMib(m) => format!("< {m:.1} MiB"),
            Target::AtMost(m) => format!("<= {m:.0}"),
            Target::NoFailures => "0".to_owned(),
            Target::None => "-".to_owned(),
        }
    }

    /// Whether the measurement meets the target (`None` when there is no target).
    pub(crate) fn check(self, direct: Option<f64>, tunnel: f64) -> Option<bool> {
        let ratio = direct.filter(|d| *d > 0.0).map(|d| tunnel / d);
        match self {
            Target::MinRatio(min) => Some(ratio.is_some_and(|r| r >= min)),
            Target::MaxRatio(max) => Some(ratio.is_some_and(|r| r <= max)),
            Target::BelowMib(max) => Some(tunnel < max),
            Target::AtMost(max) => Some(tunnel <= max),
            Target::NoFailures => Some(tunnel == 0.0 && direct.is_none_or(|d| d == 0.0)),
            Target::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn judges_ratios_bounds_and_failures() {
        assert_eq!(Target::MinRatio(0.25).check(Some(100.0), 25.0), Some(true));
        assert_eq!(Target::MinRatio(0.25).check(Some(100.0), 24.9), Some(false));
        assert_eq!(Target::MaxRatio(2.5).check(Some(10.0), 25.0), Some(true));
        assert_eq!(Target::MaxRatio(2.5).check(Some(10.0), 26.0), Some(false));
        assert_eq!(Target::BelowMib(20.0).check(None, 19.9), Some(true));
        assert_eq!(Target::AtMost(500.0).check(None, 500.0), Some(true));
        assert_eq!(Target::AtMost(500.0).check(None, 500.1), Some(false));
        assert_eq!(Target::BelowMib(20.0).check(None, 20.0), Some(false));
        assert_eq!(Target::NoFailures.check(Some(0.0), 0.0), Some(true));
        assert_eq!(Target::NoFailures.check(Some(0.0), 1.0), Some(false));
        assert_eq!(Target::None.check(Some(1.0), 1.0), None);
    }
}
