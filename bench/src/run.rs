//! One benchmark run: start the targets and the product, measure direct and tunnel, collect rows.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;

use crate::args::Args;
use crate::fdlimit::FdLimit;
use crate::measure_bulk::throughput;
use crate::measure_connrate::{ConnRate, conn_rate};
use crate::measure_latency::{BLOCKS, compare};
use crate::measure_memory::{Pids, with_open_tunnels};
use crate::report::progress;
use crate::results::{Results, Row};
use crate::rss::{PeakSampler, rss_kib};
use crate::targets::{self, Target};
use crate::{bins, machine, servers, topology};

/// Pause after setup before the idle memory sample.
const SETTLE: Duration = Duration::from_secs(1);

/// Runs every measurement; the product's processes are killed before this returns (or fails).
pub(crate) async fn run(args: &Args, fds: FdLimit) -> Result<Results> {
    let machine = machine::facts();
    let bins = bins::locate()?;
    let servers = servers::start()?;
    progress("starting the hub, logging in alice and bob, exposing echo and sink");
    let topo = topology::start(&bins, servers.echo, servers.sink).await?;
    let pids = Pids { hub: topo.hub.pid()?, bob: topo.echo.reach.pid()?, alice: topo.echo.expose.pid()? };
    tokio::time::sleep(SETTLE).await;
    let idle = [rss_kib(pids.hub)?, rss_kib(pids.bob)?, rss_kib(pids.alice)?];

    let peak = PeakSampler::start(pids.hub);
    let mut compared = Vec::new();
    compared.extend(bulk(args, servers.sink, topo.sink.addr()).await?);
    let (rows, notes) = connections(args, servers.echo, topo.echo.addr()).await?;
    compared.extend(rows);
    compared.extend(latency(args, servers.echo, topo.echo.addr()).await?);
    let hub_peak = peak.finish();

    progress(&format!("memory with {} open tunnels", args.conns));
    let loaded = with_open_tunnels(topo.echo.addr(), args.conns, pids).await?;
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
            Target::None,
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
    Ok(Results { machine, args: args.clone(), fds, bins, compared, memory, notes })
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
