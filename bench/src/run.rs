//! One benchmark run: start the targets and the product, measure direct and tunnel, collect rows.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use crate::args::Args;
use crate::fdlimit::FdLimit;
use crate::measure_bulk::throughput;
use crate::measure_connrate::{ConnRate, conn_rate};
use crate::measure_http::{HttpRun, http_rate};
use crate::measure_latency::{BLOCKS, compare};
use crate::measure_memory::{Pids, with_open_tunnels};
use crate::report::progress;
use crate::results::{Results, Row};
use crate::rss::{PeakSampler, rss_kib};
use crate::targets::{self, Target};
use crate::{bins, machine, peers, servers, topology};

/// Pause after setup before the idle memory sample.
const SETTLE: Duration = Duration::from_secs(1);

/// Runs every measurement (and, with `peers`, the relays side by side); the product's processes
/// are killed before this returns (or fails).
pub(crate) async fn run(args: &Args, fds: FdLimit, peers: Option<&peers::Prepared>) -> Result<Results> {
    let machine = machine::facts();
    let bins = bins::locate()?;
    let servers = servers::start()?;
    progress("starting the hub, logging in alice and bob, exposing echo and sink, and http as a link");
    let mut topo = topology::start(&bins, servers.echo, servers.sink, servers.http).await?;
    let pids = Pids { hub: topo.hub.pid()?, bob: topo.echo.reach.pid()?, alice: topo.echo.expose.pid()? };
    tokio::time::sleep(SETTLE).await;
    let idle = [rss_kib(pids.hub)?, rss_kib(pids.bob)?, rss_kib(pids.alice)?];

    let peak = PeakSampler::start(pids.hub);
    let mut compared = Vec::new();
    compared.extend(bulk(args, servers.sink, topo.sink.addr()).await?);
    let (rows, debug_note) = bulk_debug(args, topo.sink.addr(), topo.sink_debug.addr()).await?;
    compared.extend(rows);
    let (rows, notes) = connections(args, servers.echo, topo.echo.addr()).await?;
    compared.extend(rows);
    compared.extend(latency(args, servers.echo, topo.echo.addr()).await?);
    let (rows, http_notes) = http(args, servers.http, &mut topo).await?;
    compared.extend(rows);
    let notes = notes.into_iter().chain(http_notes).chain([debug_note]).collect();
    let hub_peak = peak.finish();

    progress(&format!("memory with {} open tunnels", args.conns));
    let loaded = with_open_tunnels(topo.echo.addr(), args.conns, pids).await?;
    let side_by_side = match peers {
        Some(prepared) => Some(peers::run(args, prepared, &servers, &topo).await?),
        None => None,
    };
    drop(topo);

    let n = args.conns;
    let hub_idle_target = Target::BelowMib(targets::MAX_HUB_IDLE_MIB);
    let hub_tunnels_target = Target::BelowMib(targets::MAX_HUB_TUNNELS_MIB);
    let memory = vec![
        Row::memory("hub_idle", "Hub, idle after setup".into(), idle[0], hub_idle_target),
        Row::memory("hub_peak_load", "Hub, peak during the load runs above".into(), hub_peak, Target::None),
        Row::memory("hub_tunnels", format!("Hub, {n} open tunnels"), loaded.hub_kib, hub_tunnels_target),
        Row::memory(
            "hub_after_close",
            format!("Hub, after closing the {n} tunnels"),
            loaded.hub_after_close_kib,
            Target::BelowMib(crate::rss::mib(idle[0]) * targets::MAX_HUB_AFTER_CLOSE_OF_IDLE),
        ),
        Row::memory("bob_idle", "Bob's agent (reach echo), idle".into(), idle[1], Target::None),
        Row::memory("bob_tunnels", format!("Bob's agent (reach echo), {n} open tunnels"), loaded.bob_kib, Target::None),
        Row::memory("alice_idle", "Alice's agent (expose echo), idle".into(), idle[2], Target::None),
        Row::memory(
            "alice_tunnels",
            format!("Alice's agent (expose echo), {n} open tunnels"),
            loaded.alice_kib,
            Target::None,
        ),
    ];
    Ok(Results { machine, args: args.clone(), fds, bins, compared, memory, notes, side_by_side })
}

/// Bulk upload, 1 and 8 streams.
async fn bulk(args: &Args, direct: SocketAddr, tunnel: SocketAddr) -> Result<Vec<Row>> {
    let total = args.bulk_mib * 1024 * 1024;
    let target = Target::MinRatio(targets::MIN_THROUGHPUT_RATIO);
    let mut rows = Vec::new();
    for (streams, key, label) in [
        (1, "bulk_1_stream_mib_s", "Bulk upload, 1 stream (MiB/s)"),
        (8, "bulk_8_streams_mib_s", "Bulk upload, 8 streams (MiB/s)"),
    ] {
        progress(&format!("bulk upload of {} MiB over {streams} stream(s): direct, then tunnel", args.bulk_mib));
        let values = (throughput(direct, total, streams).await?, throughput(tunnel, total, streams).await?);
        rows.push(Row::pair(key, label, 1, values, target));
    }
    Ok(rows)
}

/// Bulk upload through the same sink exposed with and without `--debug`, 1 and 8 streams. Each
/// side is measured twice, alternating, and its best run kept, so both see the same conditions.
async fn bulk_debug(args: &Args, plain: SocketAddr, debug: SocketAddr) -> Result<(Vec<Row>, String)> {
    let total = args.bulk_mib * 1024 * 1024;
    let target = Target::MinRatio(targets::MIN_DEBUG_THROUGHPUT_RATIO);
    let mut rows = Vec::new();
    for (streams, key, label) in [
        (1, "bulk_1_stream_debug_mib_s", "Bulk 1 stream, --debug (MiB/s)"),
        (8, "bulk_8_streams_debug_mib_s", "Bulk 8 streams, --debug (MiB/s)"),
    ] {
        progress(&format!(
            "bulk upload of {} MiB over {streams} stream(s): tunnel without and with --debug, alternating twice",
            args.bulk_mib
        ));
        let (mut best_plain, mut best_debug) = (0.0f64, 0.0f64);
        for _ in 0..2 {
            best_plain = best_plain.max(throughput(plain, total, streams).await?);
            best_debug = best_debug.max(throughput(debug, total, streams).await?);
        }
        rows.push(Row::pair(key, label, 1, (best_plain, best_debug), target));
    }
    let note = "--debug rows: the Direct column is the same tunnel without --debug, the Tunnel column goes \
                through a --debug exposure of the same sink (every chunk offered to the capture; raw bytes, so \
                the parsers only count them)"
        .to_string();
    Ok((rows, note))
}

/// New connections per second and their failures (with the first error of each side as a note).
async fn connections(args: &Args, direct: SocketAddr, tunnel: SocketAddr) -> Result<(Vec<Row>, Vec<String>)> {
    progress(&format!("new connections for {} s each: direct, then tunnel", args.seconds));
    let seconds = Duration::from_secs(args.seconds);
    let (direct, tunnel) = (conn_rate(direct, seconds).await?, conn_rate(tunnel, seconds).await?);
    let rate_target = Target::MinRatio(targets::MIN_CONN_RATE_RATIO);
    let failures = (direct.failures as f64, tunnel.failures as f64);
    let rows = vec![
        Row::pair("new_conns_per_s", "New connections (conns/s)", 0, (direct.per_sec, tunnel.per_sec), rate_target),
        Row::pair("new_conn_failures", "New connections: failures", 0, failures, Target::NoFailures),
    ];
    let note = |side: &str, rate: &ConnRate| {
        rate.first_error.as_ref().map(|e| {
            format!("{side}: {} of {} new connections failed; first: {e}", rate.failures, rate.failures + rate.ok)
        })
    };
    let notes = [note("direct", &direct), note("tunnel", &tunnel)].into_iter().flatten().collect();
    Ok((rows, notes))
}

/// Round-trip latency percentiles.
async fn latency(args: &Args, direct: SocketAddr, tunnel: SocketAddr) -> Result<Vec<Row>> {
    progress(&format!(
        "latency, {} round trips after {} warm-up, direct and tunnel alternating in {BLOCKS} blocks",
        args.rounds, args.warmup
    ));
    let (d, t) = compare(direct, tunnel, args.rounds, args.warmup).await?;
    let p50_target = Target::MaxRatio(targets::MAX_P50_RATIO);
    Ok(vec![
        Row::pair("latency_p50_us", "Latency p50 (us)", 1, (d.p50_us, t.p50_us), p50_target),
        Row::pair("latency_p99_us", "Latency p99 (us)", 1, (d.p99_us, t.p99_us), Target::None),
        Row::pair("latency_mean_us", "Latency mean (us)", 1, (d.mean_us, t.mean_us), Target::None),
    ])
}

/// HTTP requests per second (keep-alive and new connection per request), direct and through the
/// public link, with the keep-alive run's latency and the failures of all four runs.
async fn http(args: &Args, direct: SocketAddr, topo: &mut topology::Topology) -> Result<(Vec<Row>, Vec<String>)> {
    let link = &topo.link;
    let seconds = Duration::from_secs(args.seconds);
    let host = direct.to_string();
    let mut runs = Vec::new();
    for (keep_alive, mode) in [(true, "keep-alive"), (false, "new connection per request")] {
        progress(&format!("HTTP {mode} for {} s each: direct, then through the link", args.seconds));
        let d = http_rate(direct, &host, seconds, keep_alive).await?;
        let t = http_rate(link.ingress, &link.host, seconds, keep_alive).await?;
        runs.push((mode, d, t));
    }
    let (ka_d, ka_t) = (&runs[0].1, &runs[0].2);
    let (nc_d, nc_t) = (&runs[1].1, &runs[1].2);
    let failures = ((ka_d.failures + nc_d.failures) as f64, (ka_t.failures + nc_t.failures) as f64);
    let rows = vec![
        Row::pair(
            "http_keepalive_req_s",
            "HTTP keep-alive (req/s)",
            0,
            (ka_d.per_sec, ka_t.per_sec),
            Target::MinRatio(targets::MIN_HTTP_KEEPALIVE_RATIO),
        ),
        Row::pair(
            "http_new_conn_req_s",
            "HTTP new conn per request (req/s)",
            0,
            (nc_d.per_sec, nc_t.per_sec),
            Target::MinRatio(targets::MIN_HTTP_NEW_CONN_RATIO),
        ),
        Row::pair("http_p50_us", "HTTP p50 (us)", 1, (ka_d.p50_us, ka_t.p50_us), Target::None),
        Row::pair("http_p99_us", "HTTP p99 (us)", 1, (ka_d.p99_us, ka_t.p99_us), Target::None),
        Row::single("http_p99_added_by_hub_us", "HTTP p99 added by hub (us)", 1, ka_t.p99_us - ka_d.p99_us)
            .with_target(Target::AtMost(targets::MAX_HTTP_P99_ADDED_US)),
        Row::pair("http_failures", "HTTP: failed requests", 0, failures, Target::NoFailures),
    ];
    let note = |side: &str, mode: &str, run: &HttpRun| {
        run.first_error.as_ref().map(|e| {
            format!("HTTP {mode}, {side}: {} of {} requests failed; first: {e}", run.failures, run.failures + run.ok)
        })
    };
    let mut notes: Vec<String> =
        runs.iter().flat_map(|(mode, d, t)| [note("direct", mode, d), note("link", mode, t)]).flatten().collect();
    if failures.1 > 0.0 {
        let logged = [("hub", topo.hub.warnings()), ("alice's link agent", topo.link.expose.warnings())];
        for (who, lines) in logged {
            notes.extend(lines.iter().take(3).map(|line| format!("{who} logged: {line}")));
        }
    }
    Ok((rows, notes))
}
