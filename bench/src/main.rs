//! `pconnect-bench`: measures the tunnel next to direct loopback in one run and prints a table.
//!
//! Thin entry point: parse the flags, prepare the peers (`--peers`), make room for the open
//! sockets, run, report.

mod args;
mod bins;
mod cpu;
mod fdlimit;
mod machine;
mod measure_bulk;
mod measure_connrate;
mod measure_http;
mod measure_latency;
mod measure_memory;
mod measure_ttfb;
mod netns;
mod peer_bore;
mod peer_install;
mod peer_rathole;
mod peers;
mod processes;
mod relay;
mod report;
mod results;
mod rss;
mod run;
mod servers;
mod side_by_side;
mod targets;
mod topology;

use std::process::ExitCode;

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report::error(&e);
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = match args::parse(std::env::args().skip(1))? {
        args::Parsed::Run(args) => args,
        args::Parsed::Help => {
            report::usage();
            return Ok(());
        }
    };
    // Before any thread exists: entering the network namespace re-executes this program.
    let peers = if args.peers { Some(peers::prepare()?) } else { None };
    let fds = fdlimit::ensure(args.needed_fds())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let results = runtime.block_on(run::run(&args, fds, peers.as_ref()))?;
    report::print(&results);
    if let Some(path) = &args.json {
        results::write_json(&results, path)?;
        report::wrote_json(path);
    }
    Ok(())
}
