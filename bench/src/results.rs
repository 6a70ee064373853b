//! The results of a run: table rows with their targets, and their JSON form.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use crate::args::Args;
use crate::bins::Bins;
use crate::fdlimit::FdLimit;
use crate::machine::Machine;
use crate::side_by_side::SideBySide;
use crate::targets::Target;

/// One measured quantity: direct (when it has a direct counterpart) and through the tunnel.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Stable JSON key.
    pub(crate) key: &'static str,
    /// Label in the table, with the unit.
    pub(crate) label: String,
    /// Decimals shown in the table.
    pub(crate) decimals: usize,
    pub(crate) direct: Option<f64>,
    pub(crate) tunnel: f64,
    pub(crate) target: Target,
}

impl Row {
    /// A direct-versus-tunnel row.
    pub(crate) fn pair(key: &'static str, label: &str, decimals: usize, values: (f64, f64), target: Target) -> Row {
        let (direct, tunnel) = values;
        Row { key, label: label.to_owned(), decimals, direct: Some(direct), tunnel, target }
    }

    /// A row with only the tunnel-side figure and no target.
    pub(crate) fn single(key: &'static str, label: &str, decimals: usize, value: f64) -> Row {
        Row { key, label: label.to_owned(), decimals, direct: None, tunnel: value, target: Target::None }
    }

    /// This row, judged against `target`.
    pub(crate) fn with_target(self, target: Target) -> Row {
        Row { target, ..self }
    }

    /// A memory row: one process's RSS, given in KiB, shown in MiB.
    pub(crate) fn memory(key: &'static str, label: String, kib: u64, target: Target) -> Row {
        Row { key, label, decimals: 1, direct: None, tunnel: crate::rss::mib(kib), target }
    }

    /// tunnel / direct, when there is a direct value.
    pub(crate) fn ratio(&self) -> Option<f64> {
        self.direct.filter(|d| *d > 0.0).map(|d| self.tunnel / d)
    }

    /// PASS (`Some(true)`), MISS (`Some(false)`) or no target.
    pub(crate) fn verdict(&self) -> Option<bool> {
        self.target.check(self.direct, self.tunnel)
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "direct": self.direct,
            "tunnel": self.tunnel,
            "ratio": self.ratio(),
            "target": match self.target { Target::None => Value::Null, t => Value::from(t.text()) },
            "pass": self.verdict(),
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) args: Args,
    pub(crate) fds: FdLimit,
    pub(crate) bins: Bins,
    /// Direct versus tunnel.
    pub(crate) compared: Vec<Row>,
    /// Resident memory of the product's processes.
    pub(crate) memory: Vec<Row>,
    /// Extra facts worth reading (e.g. the first connection error).
    pub(crate) notes: Vec<String>,
    /// pconnect next to rathole and bore (`--peers`).
    pub(crate) side_by_side: Option<SideBySide>,
}

impl Results {
    /// (targets met, targets checked).
    pub(crate) fn score(&self) -> (usize, usize) {
        let verdicts: Vec<bool> = self.compared.iter().chain(&self.memory).filter_map(Row::verdict).collect();
        (verdicts.iter().filter(|v| **v).count(), verdicts.len())
    }

    fn to_json(&self) -> Value {
        let rows = |rows: &[Row]| rows.iter().map(|r| (r.key.to_owned(), r.to_json())).collect::<Map<_, _>>();
        let (met, checked) = self.score();
        json!({
            "machine": {"nproc": self.machine.nproc, "cpu": self.machine.cpu, "kernel": self.machine.kernel, "loadavg": self.machine.loadavg},
            "settings": {
                "bulk_mib": self.args.bulk_mib,
                "seconds": self.args.seconds,
                "rounds": self.args.rounds,
                "warmup": self.args.warmup,
                "conns": self.args.conns,
                "peers": self.args.peers,
            },
            "open_files": {"before": self.fds.before, "after": self.fds.after},
            "binaries": {"hub": self.bins.hub, "connect": self.bins.connect},
            "compared": rows(&self.compared),
            "memory_mib": rows(&self.memory),
            "notes": self.notes,
            "targets": {"met": met, "checked": checked},
            "relays_side_by_side": self.side_by_side.as_ref().map(SideBySide::to_json),
        })
    }
}

/// Writes the results as pretty JSON.
pub(crate) fn write_json(results: &Results, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&results.to_json())?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}
