//! The "Relays side by side" results: one figure per path for each workload, with pconnect's
//! ratios to direct and to rathole-tcp, and their JSON form.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::netns::Network;

/// The paths, in column order.
pub(crate) const PATHS: [&str; 5] = ["direct", "pconnect", "rathole-tcp", "rathole-noise", "bore"];
/// Column indices the ratios use.
pub(crate) const DIRECT: usize = 0;
pub(crate) const PCONNECT: usize = 1;
pub(crate) const RATHOLE_TCP: usize = 2;

/// One measured quantity across the paths (`None`: not measured, not applicable or failed).
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Stable JSON key.
    pub(crate) key: &'static str,
    /// Label in the table, with the unit.
    pub(crate) label: &'static str,
    /// Decimals shown in the table.
    pub(crate) decimals: usize,
    pub(crate) cells: [Option<f64>; PATHS.len()],
}

impl Line {
    /// pconnect / the path in column `to`, when both have a figure.
    pub(crate) fn ratio(&self, to: usize) -> Option<f64> {
        let base = self.cells[to].filter(|b| *b > 0.0)?;
        self.cells[PCONNECT].map(|p| p / base)
    }

    fn to_json(&self) -> Value {
        let mut row: Map<String, Value> =
            PATHS.iter().zip(self.cells).map(|(p, c)| ((*p).to_owned(), c.into())).collect();
        row.insert("label".into(), self.label.into());
        row.insert("pconnect_vs_direct".into(), self.ratio(DIRECT).into());
        row.insert("pconnect_vs_rathole_tcp".into(), self.ratio(RATHOLE_TCP).into());
        Value::Object(row)
    }
}

/// Everything the side-by-side run produced.
#[derive(Debug, Clone)]
pub(crate) struct SideBySide {
    pub(crate) network: Network,
    /// Where the peers are installed, and their versions.
    pub(crate) peers_dir: PathBuf,
    pub(crate) peer_versions: Vec<String>,
    /// Which paths ran (the others were skipped).
    pub(crate) ran: [bool; PATHS.len()],
    pub(crate) lines: Vec<Line>,
    /// Skipped peers and failed measurements, one sentence each.
    pub(crate) notes: Vec<String>,
}

impl SideBySide {
    pub(crate) fn to_json(&self) -> Value {
        let ran: Vec<&str> = PATHS.iter().zip(self.ran).filter(|(_, ran)| *ran).map(|(p, _)| *p).collect();
        let lines: Map<String, Value> = self.lines.iter().map(|l| (l.key.to_owned(), l.to_json())).collect();
        json!({
            "network": self.network.describe(),
            "peers_dir": self.peers_dir,
            "peer_versions": self.peer_versions,
            "paths": ran,
            "bulk_and_conns_median_of_rounds": crate::peers::ROUNDS,
            "rows": lines,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{DIRECT, Line, RATHOLE_TCP};

    #[test]
    fn ratios_need_both_figures() {
        let line =
            Line { key: "k", label: "l", decimals: 0, cells: [Some(200.0), Some(100.0), Some(50.0), None, None] };
        assert_eq!(line.ratio(DIRECT), Some(0.5));
        assert_eq!(line.ratio(RATHOLE_TCP), Some(2.0));
        assert_eq!(line.ratio(3), None);
        let json = line.to_json();
        assert_eq!(json["pconnect"], 100.0);
        assert_eq!(json["bore"], serde_json::Value::Null);
        assert_eq!(json["pconnect_vs_rathole_tcp"], 2.0);
    }
}
