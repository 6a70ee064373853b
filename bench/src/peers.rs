//! The `--peers` run: prepared before the async runtime exists (install the peers, enter the
//! network namespace), then direct, pconnect, rathole (tcp, noise) and bore through the same
//! workloads, side by side.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;

use crate::args::Args;
use crate::cpu::cpu_seconds;
use crate::measure_bulk::throughput;
use crate::measure_connrate::conn_rate;
use crate::measure_latency::{self, BLOCKS};
use crate::measure_ttfb::{self, CONNECTIONS};
use crate::netns::{self, Network};
use crate::peer_install::{self, PeerBins};
use crate::relay::{Path, Role, Running};
use crate::report::{line, progress};
use crate::servers::Servers;
use crate::side_by_side::{Line, PATHS, SideBySide};
use crate::topology::Topology;
use crate::{peer_bore, peer_rathole};

/// What [`prepare`] found: the installed peers and where the sockets live.
pub(crate) struct Prepared {
    bins: PeerBins,
    network: Network,
}

/// Installs the peers (unless already there) and, as root, moves the process into a private
/// network namespace. Runs at the start of `main`, single-threaded: entering the namespace
/// re-executes this program (see `netns`), which then finds the peers installed.
pub(crate) fn prepare() -> Result<Prepared> {
    let bins = peer_install::ensure(!netns::inside());
    let network = netns::enter()?;
    line(&format!("network: {}", network.describe()));
    Ok(Prepared { bins, network })
}

/// Measures every path with the same workloads. `servers` are the targets; `topo` is pconnect,
/// already running.
pub(crate) async fn run(args: &Args, prepared: &Prepared, servers: &Servers, topo: &Topology) -> Result<SideBySide> {
    let mut notes = prepared.bins.skipped.clone();
    let (echo, sink) = (servers.echo, servers.sink);
    let rathole_tcp = match &prepared.bins.rathole {
        Some(bin) => started("rathole-tcp", peer_rathole::start(bin, false, echo, sink), &mut notes).await,
        None => None,
    };
    let rathole_noise = match &prepared.bins.rathole {
        Some(bin) => started("rathole-noise", peer_rathole::start(bin, true, echo, sink), &mut notes).await,
        None => None,
    };
    let bore = match &prepared.bins.bore {
        Some(bin) => started("bore", peer_bore::start(bin, echo, sink), &mut notes).await,
        None => None,
    };
    let pconnect = Path {
        echo: topo.echo.addr(),
        sink: topo.sink.addr(),
        pids: vec![
            (Role::Entry, topo.sink.reach.pid()?),
            (Role::Server, topo.hub.pid()?),
            (Role::Service, topo.sink.expose.pid()?),
        ],
    };
    let direct = Path { echo, sink, pids: Vec::new() };
    let paths: [Option<Path>; PATHS.len()] = [
        Some(direct),
        Some(pconnect),
        rathole_tcp.as_ref().map(|r| r.path.clone()),
        rathole_noise.as_ref().map(|r| r.path.clone()),
        bore.as_ref().map(|r| r.path.clone()),
    ];

    let mut m = Measured::default();
    bulk(args, &paths, &mut m, &mut notes).await;
    connections(args, &paths, &mut m, &mut notes).await;
    latency(args, &paths, &mut m, &mut notes).await;
    ttfb(&paths, &mut m, &mut notes).await;
    drop((rathole_tcp, rathole_noise, bore));

    Ok(SideBySide {
        network: prepared.network.clone(),
        peers_dir: prepared.bins.dir.clone(),
        peer_versions: prepared.bins.versions.clone(),
        ran: paths.each_ref().map(Option::is_some),
        lines: m.lines(),
        notes,
    })
}

/// A peer that started, or a note saying why it is skipped.
async fn started(name: &str, start: impl Future<Output = Result<Running>>, notes: &mut Vec<String>) -> Option<Running> {
    progress(&format!("starting {name}"));
    match start.await {
        Ok(running) => Some(running),
        Err(e) => {
            let note = format!("{name}: could not start ({e:#}); skipped");
            line(&note);
            notes.push(note);
            None
        }
    }
}

type Cells = [Option<f64>; PATHS.len()];

/// Rounds of the bulk and new-connection runs; each figure is their median, as one run of either
/// moves by a fifth or more on a 2-core machine.
pub(crate) const ROUNDS: usize = 3;

/// The figures gathered so far, one cell per path.
#[derive(Default)]
struct Measured {
    mib_s: Cells,
    conns_s: Cells,
    conn_failures: Cells,
    p50: Cells,
    p99: Cells,
    ttfb_p50: Cells,
    ttfb_p99: Cells,
    cpu_total: Cells,
    cpu_server: Cells,
    cpu_entry: Cells,
    cpu_service: Cells,
}

impl Measured {
    fn lines(self) -> Vec<Line> {
        let line = |key, label, decimals, cells| Line { key, label, decimals, cells };
        vec![
            line("bulk_1_stream_mib_s", "Bulk upload, 1 stream (MiB/s)", 1, self.mib_s),
            line("new_conns_per_s", "New connections (conns/s)", 0, self.conns_s),
            line("new_conn_failures", "New connections: failures", 0, self.conn_failures),
            line("latency_p50_us", "Latency p50, 1 client (us)", 1, self.p50),
            line("latency_p99_us", "Latency p99, 1 client (us)", 1, self.p99),
            line("ttfb_p50_us", "First byte, new conn p50 (us)", 1, self.ttfb_p50),
            line("ttfb_p99_us", "First byte, new conn p99 (us)", 1, self.ttfb_p99),
            line("cpu_total_s_per_gib", "CPU s/GiB, all relay processes", 2, self.cpu_total),
            line("cpu_server_s_per_gib", "  server (pconnect: hub alone)", 2, self.cpu_server),
            line("cpu_entry_s_per_gib", "  reach agent (pconnect only)", 2, self.cpu_entry),
            line("cpu_service_s_per_gib", "  expose agent / client / local", 2, self.cpu_service),
        ]
    }
}

/// The paths that run, with their column.
fn running(paths: &[Option<Path>]) -> impl Iterator<Item = (usize, &Path)> {
    paths.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
}

/// Bulk upload over 1 stream per path, with the CPU time its relay processes spent on it: the
/// median of [`ROUNDS`] rounds, each round taking every path in turn.
async fn bulk(args: &Args, paths: &[Option<Path>], m: &mut Measured, notes: &mut Vec<String>) {
    let total = args.bulk_mib * 1024 * 1024;
    let gib = total as f64 / (1024.0 * 1024.0 * 1024.0);
    let mut rounds: Vec<Rounds> = vec![Rounds::default(); paths.len()];
    for round in 1..=ROUNDS {
        for (i, path) in running(paths) {
            if rounds[i].failed {
                continue;
            }
            progress(&format!(
                "{}: bulk upload of {} MiB over 1 stream, with CPU time (round {round} of {ROUNDS})",
                PATHS[i], args.bulk_mib
            ));
            let outcome = async {
                let before = cpu(&path.pids)?;
                let mib_s = throughput(path.sink, total, 1).await?;
                let after = cpu(&path.pids)?;
                anyhow::Ok((mib_s, before, after))
            }
            .await;
            let (mib_s, before, after) = match outcome {
                Ok(figures) => figures,
                Err(e) => {
                    notes.push(format!("{}: bulk upload failed: {e:#}", PATHS[i]));
                    rounds[i].failed = true;
                    continue;
                }
            };
            let per_gib = |role: Option<Role>| {
                let spent = path.pids.iter().zip(before.iter().zip(&after));
                let seconds: Vec<f64> =
                    spent.filter(|((r, _), _)| role.is_none_or(|role| *r == role)).map(|(_, (b, a))| a - b).collect();
                (!seconds.is_empty()).then(|| seconds.iter().sum::<f64>() / gib)
            };
            let r = &mut rounds[i];
            r.mib_s.push(mib_s);
            r.cpu_total.extend(per_gib(None));
            r.cpu_server.extend(per_gib(Some(Role::Server)));
            r.cpu_entry.extend(per_gib(Some(Role::Entry)));
            r.cpu_service.extend(per_gib(Some(Role::Service)));
        }
    }
    for (i, r) in rounds.into_iter().enumerate().filter(|(_, r)| !r.failed) {
        m.mib_s[i] = median(r.mib_s);
        m.cpu_total[i] = median(r.cpu_total);
        m.cpu_server[i] = median(r.cpu_server);
        m.cpu_entry[i] = median(r.cpu_entry);
        m.cpu_service[i] = median(r.cpu_service);
    }
}

/// One path's figures from each round of a measurement.
#[derive(Debug, Clone, Default)]
struct Rounds {
    mib_s: Vec<f64>,
    cpu_total: Vec<f64>,
    cpu_server: Vec<f64>,
    cpu_entry: Vec<f64>,
    cpu_service: Vec<f64>,
    conns_s: Vec<f64>,
    failures: f64,
    failed: bool,
}

/// The median of `figures` (the mean of the middle two when their number is even).
fn median(mut figures: Vec<f64>) -> Option<f64> {
    figures.sort_by(f64::total_cmp);
    let mid = figures.len() / 2;
    match figures.len() {
        0 => None,
        n if n % 2 == 1 => Some(figures[mid]),
        _ => Some((figures[mid - 1] + figures[mid]) / 2.0),
    }
}

fn cpu(pids: &[(Role, u32)]) -> Result<Vec<f64>> {
    pids.iter().map(|(_, pid)| cpu_seconds(*pid)).collect()
}

/// New connections per second per path, the median of [`ROUNDS`] rounds (each taking every path
/// in turn), and the failures of all rounds.
async fn connections(args: &Args, paths: &[Option<Path>], m: &mut Measured, notes: &mut Vec<String>) {
    let seconds = Duration::from_secs(args.seconds);
    let mut rounds: Vec<Rounds> = vec![Rounds::default(); paths.len()];
    for round in 1..=ROUNDS {
        for (i, path) in running(paths) {
            if rounds[i].failed {
                continue;
            }
            progress(&format!("{}: new connections for {} s (round {round} of {ROUNDS})", PATHS[i], args.seconds));
            match conn_rate(path.echo, seconds).await {
                Ok(rate) => {
                    rounds[i].conns_s.push(rate.per_sec);
                    rounds[i].failures += rate.failures as f64;
                    if let Some(e) = rate.first_error {
                        let total = rate.failures + rate.ok;
                        notes.push(format!(
                            "{}: {} of {total} new connections failed in round {round}; first: {e}",
                            PATHS[i], rate.failures
                        ));
                    }
                }
                Err(e) => {
                    notes.push(format!("{}: new connections failed: {e:#}", PATHS[i]));
                    rounds[i].failed = true;
                }
            }
        }
    }
    for (i, r) in rounds.into_iter().enumerate().filter(|(_, r)| !r.failed) {
        m.conns_s[i] = median(r.conns_s);
        m.conn_failures[i] = Some(r.failures);
    }
}

/// Round-trip latency over one kept connection per path, the paths alternating in blocks.
async fn latency(args: &Args, paths: &[Option<Path>], m: &mut Measured, notes: &mut Vec<String>) {
    progress(&format!(
        "latency, {} round trips per path after {} warm-up, all paths alternating in {BLOCKS} blocks",
        args.rounds, args.warmup
    ));
    let (columns, addrs): (Vec<usize>, Vec<_>) = running(paths).map(|(i, p)| (i, p.echo)).unzip();
    match measure_latency::alternate(&addrs, args.rounds, args.warmup).await {
        Ok(results) => {
            for (i, l) in columns.into_iter().zip(results) {
                (m.p50[i], m.p99[i]) = (Some(l.p50_us), Some(l.p99_us));
            }
        }
        Err(e) => notes.push(format!("latency run failed: {e:#}")),
    }
}

/// Time to first byte of a new connection, the paths alternating in blocks.
async fn ttfb(paths: &[Option<Path>], m: &mut Measured, notes: &mut Vec<String>) {
    progress(&format!("time to first byte, {CONNECTIONS} new connections per path, alternating in {BLOCKS} blocks"));
    let (columns, addrs): (Vec<usize>, Vec<_>) = running(paths).map(|(i, p)| (i, p.echo)).unzip();
    match measure_ttfb::alternate(&addrs).await {
        Ok(results) => {
            for (i, t) in columns.into_iter().zip(results) {
                (m.ttfb_p50[i], m.ttfb_p99[i]) = (Some(t.p50_us), Some(t.p99_us));
            }
        }
        Err(e) => notes.push(format!("time-to-first-byte run failed: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_figure_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![900.0, 100.0, 300.0]), Some(300.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
