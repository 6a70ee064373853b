//! Everything the benchmark prints: progress on stderr, the results table on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;

use crate::bins::BUILD_COMMAND;
use crate::measure_bulk::WRITE_SIZE;
use crate::measure_connrate::{PAYLOAD, WORKERS};
use crate::measure_http::WORKERS as HTTP_WORKERS;
use crate::measure_latency::BLOCKS;
use crate::measure_ttfb::{CONNECTIONS as TTFB_CONNECTIONS, REQUEST as TTFB_REQUEST};
use crate::peers::ROUNDS;
use crate::results::{Results, Row};
use crate::side_by_side::{DIRECT, PATHS, RATHOLE_TCP, SideBySide};

/// The `--help` text.
pub(crate) fn usage() {
    println!(
        "pconnect-bench: tunnel vs direct loopback, measured in the same run

Usage: pconnect-bench [--bulk-mib N] [--seconds N] [--rounds N] [--warmup N] [--conns N] [--json FILE] [--peers]

  --bulk-mib N   bytes uploaded per bulk run, in MiB (default 1024)
  --seconds N    duration of each new-connections and HTTP run (default 5)
  --rounds N     measured 1 KiB request/response round trips (default 20000)
  --warmup N     unmeasured round trips before them (default 1000)
  --conns N      tunnels held open for the memory measurement (default 1000)
  --json FILE    also write the results as JSON
  --peers        also measure rathole (tcp, noise) and bore side by side with pconnect; installs them
                 once with `cargo install` next to this binary (as root: in a private network namespace)

Needs the release binaries: {BUILD_COMMAND}"
    );
}

/// A progress line while the run goes on.
pub(crate) fn progress(what: &str) {
    eprintln!("... {what}");
}

/// A line of its own while the run goes on (e.g. a peer that is skipped, and why).
pub(crate) fn line(what: &str) {
    eprintln!("{what}");
}

/// The run failed.
pub(crate) fn error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

/// Where the JSON went.
pub(crate) fn wrote_json(path: &Path) {
    println!("\nResults written to {}", path.display());
}

/// The full report.
pub(crate) fn print(r: &Results) {
    let a = &r.args;
    let dir = r.bins.hub.parent().unwrap_or(Path::new(""));
    println!();
    println!("pconnect benchmark: tunnel vs direct loopback, same run");
    println!("  Tunnel:     client -> bob's agent (reach) -> hub (TLS + HTTP/2) -> alice's agent (expose) -> target");
    println!(
        "  HTTP rows:  client -> hub HTTP ingress (public link) -> tunnel -> alice's agent (expose --link) -> target"
    );
    println!(
        "  Machine:    nproc {}{}",
        r.machine.nproc,
        r.machine.cpu.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
    );
    println!("  Kernel:     {}", r.machine.kernel);
    if let Some(load) = &r.machine.loadavg {
        println!("  Load:       {load} (1/5/15-min load average at start; other work skews the numbers)");
    }
    println!("  Binaries:   {}/{{pconnect-hub,connect}}", dir.display());
    if r.fds.after == r.fds.before {
        println!("  Open files: soft limit {} (enough, unchanged)", r.fds.before);
    } else {
        println!(
            "  Open files: soft limit raised from {} to {} (prlimit on this process; children inherit it)",
            r.fds.before, r.fds.after
        );
    }
    println!(
        "  Settings:   bulk {} MiB in {} KiB writes; new conns {} s x {WORKERS} workers, {PAYLOAD} B echo each;",
        a.bulk_mib,
        WRITE_SIZE / 1024,
        a.seconds
    );
    println!(
        "              latency {} x 1 KiB round trips per side after {} warm-up, alternating in {BLOCKS} blocks;",
        a.rounds, a.warmup
    );
    println!(
        "              HTTP/1.1 GET {} s x {HTTP_WORKERS} workers, keep-alive then new conn per request;",
        a.seconds
    );
    println!("              memory with {} open tunnels", a.conns);
    println!();

    println!(
        "{:<34} {:>11} {:>11} {:>14} {:>10}  Result",
        "Measurement", "Direct", "Tunnel", "Tunnel/Direct", "Target"
    );
    println!("{}", "-".repeat(90));
    for row in &r.compared {
        let ratio = row.ratio().map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
        println!(
            "{:<34} {:>11} {:>11} {:>14} {:>10}  {}",
            row.label,
            value(row.direct, row.decimals),
            value(Some(row.tunnel), row.decimals),
            ratio,
            row.target.text(),
            verdict(row)
        );
    }
    println!();

    println!("{:<50} {:>9} {:>12}  Result", "Resident memory (VmRSS)", "MiB", "Target");
    println!("{}", "-".repeat(81));
    for row in &r.memory {
        println!(
            "{:<50} {:>9} {:>12}  {}",
            row.label,
            value(Some(row.tunnel), row.decimals),
            row.target.text(),
            verdict(row)
        );
    }
    println!();

    for note in &r.notes {
        println!("Note: {note}");
    }
    let (met, checked) = r.score();
    println!("Targets met: {met} of {checked}");
    if let Some(side) = &r.side_by_side {
        print_side_by_side(side, r);
    }
}

/// The `--peers` table: every path through the same workloads.
fn print_side_by_side(s: &SideBySide, r: &Results) {
    let a = &r.args;
    println!();
    println!("Relays side by side: the same targets through each path, same run");
    println!("  pconnect:   client -> reach agent -> hub (TLS + HTTP/2) -> expose agent -> target");
    println!("  rathole:    client -> rathole server -> rathole client -> target (tcp, and noise: encrypted)");
    println!("  bore:       client -> bore server -> bore local -> target (plain TCP; a new TCP connection to");
    println!("              the server's control port for each tunneled connection)");
    println!("  Network:    {}", s.network.describe());
    let versions = if s.peer_versions.is_empty() { "none".to_owned() } else { s.peer_versions.join(", ") };
    println!("  Peers:      {versions} in {}", s.peers_dir.join("bin").display());
    println!(
        "  Settings:   bulk {} MiB over 1 stream, CPU-seconds per GiB from /proc/<pid>/stat (utime+stime) of",
        a.bulk_mib
    );
    println!(
        "              each relay process before and after it; new conns {} s x {WORKERS} workers; both",
        a.seconds
    );
    println!("              the median of {ROUNDS} rounds, each round taking every path in turn;");
    println!(
        "              latency {} x 1 KiB round trips per path after {} warm-up; first byte: {TTFB_CONNECTIONS} new",
        a.rounds, a.warmup
    );
    println!(
        "              connections per path, connect + {TTFB_REQUEST} B echo request until the first answer byte;"
    );
    println!("              latency and first byte alternate between all paths in {BLOCKS} blocks");
    println!();
    print!("{:<31}", "Measurement");
    for path in PATHS {
        print!(" {path:>13}");
    }
    println!(" {:>10} {:>15}", "pc/direct", "pc/rathole-tcp");
    println!("{}", "-".repeat(31 + 14 * PATHS.len() + 27));
    for l in &s.lines {
        print!("{:<31}", l.label);
        for (cell, ran) in l.cells.iter().zip(s.ran) {
            let text = if ran { value(*cell, l.decimals) } else { "skipped".to_owned() };
            print!(" {text:>13}");
        }
        let ratio = |to| l.ratio(to).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
        println!(" {:>10} {:>15}", ratio(DIRECT), ratio(RATHOLE_TCP));
    }
    println!();
    println!("pc/direct, pc/rathole-tcp: pconnect's figure divided by direct's, by rathole-tcp's.");
    for note in &s.notes {
        println!("Note: {note}");
    }
}

fn value(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn verdict(row: &Row) -> &'static str {
    match row.verdict() {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "",
    }
}
