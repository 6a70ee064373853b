//! CPU time of a process (`utime + stime` in `/proc/<pid>/stat`), read before and after a run.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Clock ticks per second assumed when `getconf CLK_TCK` cannot say (the usual Linux value).
const DEFAULT_TICKS: u64 = 100;

/// CPU seconds (user + system, all threads) `pid` has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_ticks(&stat).with_context(|| format!("unexpected contents of {path}"))?;
    Ok(ticks as f64 / ticks_per_second() as f64)
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
/// may hold spaces or `)`, so fields are counted after its last `)`: that rest starts with field 3
/// (state), which puts utime (field 14) and stime (field 15) at indices 11 and 12.
fn parse_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`, asked once.
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(DEFAULT_TICKS)
    })
}

#[cfg(test)]
mod tests {
    use super::{cpu_seconds, parse_ticks};

    #[test]
    fn reads_utime_and_stime() {
        let stat = "4242 (pconnect-hub) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 123 0 0";
        assert_eq!(parse_ticks(stat), Some(325));
        let odd = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0";
        assert_eq!(parse_ticks(odd), Some(7));
        assert_eq!(parse_ticks("7 (short) R 1 2"), None);
    }

    #[test]
    fn reads_its_own_process() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
