//! Command-line flags of the benchmark (hand-parsed: a handful of numeric options).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// What one run measures and how much.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// Bytes uploaded by each bulk run, in MiB.
    pub(crate) bulk_mib: u64,
    /// Duration of each new-connections-per-second run, in seconds.
    pub(crate) seconds: u64,
    /// Measured request/response rounds.
    pub(crate) rounds: usize,
    /// Unmeasured warm-up rounds before them.
    pub(crate) warmup: usize,
    /// Tunnels held open for the memory measurement.
    pub(crate) conns: usize,
    /// Where to write the results as JSON.
    pub(crate) json: Option<PathBuf>,
    /// Also measure rathole (tcp and noise) and bore side by side with pconnect.
    pub(crate) peers: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args { bulk_mib: 1024, seconds: 5, rounds: 20_000, warmup: 1_000, conns: 1_000, json: None, peers: false }
    }
}

impl Args {
    /// File descriptors the run needs: both ends of every held tunnel live in this process
    /// (client socket + echo server socket), plus headroom for the rest.
    pub(crate) fn needed_fds(&self) -> u64 {
        2 * self.conns as u64 + 512
    }
}

/// Result of parsing: run with these settings, or show the help.
pub(crate) enum Parsed {
    Run(Args),
    Help,
}

/// Parses the flags (`--name value` or `--name=value`).
pub(crate) fn parse(mut argv: impl Iterator<Item = String>) -> Result<Parsed> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if name == "--help" || name == "-h" {
            return Ok(Parsed::Help);
        }
        if name == "--peers" {
            if inline.is_some() {
                bail!("--peers takes no value (see --help)");
            }
            args.peers = true;
            continue;
        }
        let mut value =
            || inline.clone().or_else(|| argv.next()).with_context(|| format!("{name} needs a value (see --help)"));
        match name.as_str() {
            "--bulk-mib" => args.bulk_mib = positive(&name, &value()?)?,
            "--seconds" => args.seconds = positive(&name, &value()?)?,
            "--rounds" => args.rounds = positive(&name, &value()?)? as usize,
            "--warmup" => args.warmup = number(&name, &value()?)? as usize,
            "--conns" => args.conns = positive(&name, &value()?)? as usize,
            "--json" => args.json = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument `{other}` (see --help)"),
        }
    }
    Ok(Parsed::Run(args))
}

fn number(name: &str, value: &str) -> Result<u64> {
    value.parse().with_context(|| format!("{name} expects a whole number, got `{value}`"))
}

fn positive(name: &str, value: &str) -> Result<u64> {
    let n = number(name, value)?;
    if n == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::{Parsed, parse};

    fn run(argv: &[&str]) -> anyhow::Result<super::Args> {
        match parse(argv.iter().map(|s| (*s).to_owned()))? {
            Parsed::Run(args) => Ok(args),
            Parsed::Help => anyhow::bail!("help"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let args = run(&[]).unwrap();
        assert_eq!((args.bulk_mib, args.seconds, args.rounds, args.conns), (1024, 5, 20_000, 1_000));
        let args = run(&["--bulk-mib", "64", "--seconds=2", "--json", "out.json"]).unwrap();
        assert_eq!((args.bulk_mib, args.seconds), (64, 2));
        assert_eq!(args.json.unwrap().to_str(), Some("out.json"));
        assert!(run(&["--rounds", "0"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--seconds"]).is_err());
        assert!(matches!(parse(["--help".to_owned()].into_iter()), Ok(Parsed::Help)));
    }

    #[test]
    fn peers_is_a_switch() {
        assert!(!run(&[]).unwrap().peers);
        let args = run(&["--peers", "--bulk-mib", "8"]).unwrap();
        assert!(args.peers);
        assert_eq!(args.bulk_mib, 8);
        assert!(run(&["--peers=yes"]).is_err());
    }
}
