//! One benchmark run: start the targets and the product, measure direct and tunnel, collect rows.

use std::time::Duration;

use anyhow::Result;

use crate::args::Args;
use crate::fdlimit::FdLimit;
use crate::measure_bulk::throughput;
use crate::measure_connrate::conn_rate;
use crate::measure_latency::{BLOCKS, compare};
use crate::measure_memory::{Pids, with_open_tunnels};
use crate::report::progress;
use crate::results::{Results, Row};
use crate::rss::{PeakSampler, mib, rss_kib};
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
    let hub = topo.hub.pid()?;
    let pids = Pids {
        hub,
        bob: topo.echo.reach.pid()?,
        alice: topo.echo.expose.pid()?,
    };
    tokio::time::sleep(SETTLE).await;
    let (hub_idle, bob_idle, alice_idle) =
        (rss_kib(hub)?, rss_kib(pids.bob)?, rss_kib(pids.alice)?);

    let peak = PeakSampler::start(hub);
    let total = args.bulk_mib * 1024 * 1024;
    let mut compared = Vec::new();
    for streams in [1, 8] {
        progress(&format!(
            "bulk upload of {} MiB over {streams} stream(s): direct, then tunnel",
            args.bulk_mib
        ));
        let direct = throughput(servers.sink, total, streams).await?;
        let tunnel = throughput(topo.sink.addr(), total, streams).await?;
        let (key, label) = match streams {
            1 => ("bulk_1_stream_mib_s", "Bulk upload, 1 stream (MiB/s)"),
            _ => ("bulk_8_streams_mib_s", "Bulk upload, 8 streams (MiB/s)"),
        };
        compared.push(row(
            key,
            label,
            1,
            Some(direct),
            tunnel,
            Target::MinRatio(targets::MIN_THROUGHPUT_RATIO),
        ));
    }

    progress(&format!(
        "new connections for {} s each: direct, then tunnel",
        args.seconds
    ));
    let seconds = Duration::from_secs(args.seconds);
    let direct = conn_rate(servers.echo, seconds).await?;
    let tunnel = conn_rate(topo.echo.addr(), seconds).await?;
    let conn_target = Target::MinRatio(targets::MIN_CONN_RATE_RATIO);
    compared.push(row(
        "new_conns_per_s",
        "New connections (conns/s)",
        0,
        Some(direct.per_sec),
        tunnel.per_sec,
        conn_target,
    ));
    let (df, tf) = (direct.failures as f64, tunnel.failures as f64);
    compared.push(row(
        "new_conn_failures",
        "New connections: failures",
        0,
        Some(df),
        tf,
        Target::NoFailures,
    ));
    let mut notes = Vec::new();
    for (side, rate) in [("direct", &direct), ("tunnel", &tunnel)] {
        if let Some(e) = &rate.first_error {
            notes.push(format!(
                "{side}: {} of {} new connections failed; first: {e}",
                rate.failures,
                rate.failures + rate.ok
            ));
        }
    }

    progress(&format!(
        "latency, {} round trips after {} warm-up, direct and tunnel alternating in {BLOCKS} blocks",
        args.rounds, args.warmup
    ));
    let (direct, tunnel) =
        compare(servers.echo, topo.echo.addr(), args.rounds, args.warmup).await?;
    let p50 = Target::MaxRatio(targets::MAX_P50_RATIO);
    compared.push(row(
        "latency_p50_us",
        "Latency p50 (us)",
        1,
        Some(direct.p50_us),
        tunnel.p50_us,
        p50,
    ));
    compared.push(row(
        "latency_p99_us",
        "Latency p99 (us)",
        1,
        Some(direct.p99_us),
        tunnel.p99_us,
        Target::None,
    ));
    compared.push(row(
        "latency_mean_us",
        "Latency mean (us)",
        1,
        Some(direct.mean_us),
        tunnel.mean_us,
        Target::None,
    ));
    let hub_peak = peak.finish();

    progress(&format!("memory with {} open tunnels", args.conns));
    let loaded = with_open_tunnels(topo.echo.addr(), args.conns, pids).await?;
    drop(topo);

    let n = args.conns;
    let memory = vec![
        mem(
            "hub_idle",
            "Hub, idle after setup".to_owned(),
            hub_idle,
            Target::BelowMib(targets::MAX_HUB_IDLE_MIB),
        ),
        mem(
            "hub_peak_load",
            "Hub, peak during the load runs above".to_owned(),
            hub_peak,
            Target::None,
        ),
        mem(
            "hub_tunnels",
            format!("Hub, {n} open tunnels"),
            loaded.hub_kib,
            Target::BelowMib(targets::MAX_HUB_TUNNELS_MIB),
        ),
        mem(
            "hub_after_close",
            format!("Hub, after closing the {n} tunnels"),
            loaded.hub_after_close_kib,
            Target::None,
        ),
        mem(
            "bob_idle",
            "Bob's agent (reach echo), idle".to_owned(),
            bob_idle,
            Target::None,
        ),
        mem(
            "bob_tunnels",
            format!("Bob's agent (reach echo), {n} open tunnels"),
            loaded.bob_kib,
            Target::None,
        ),
        mem(
            "alice_idle",
            "Alice's agent (expose echo), idle".to_owned(),
            alice_idle,
            Target::None,
        ),
        mem(
            "alice_tunnels",
            format!("Alice's agent (expose echo), {n} open tunnels"),
            loaded.alice_kib,
            Target::None,
        ),
    ];
    Ok(Results {
        machine,
        args: args.clone(),
        fds,
        bins,
        compared,
        memory,
        notes,
    })
}

fn row(
    key: &'static str,
    label: &str,
    decimals: usize,
    direct: Option<f64>,
    tunnel: f64,
    target: Target,
) -> Row {
    Row {
        key,
        label: label.to_owned(),
        decimals,
        direct,
        tunnel,
        target,
    }
}

fn mem(key: &'static str, label: String, kib: u64, target: Target) -> Row {
    Row {
        key,
        label,
        decimals: 1,
        direct: None,
        tunnel: mib(kib),
        target,
    }
}
