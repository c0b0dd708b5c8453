//! `idle`: hold N authenticated sockets that say nothing, and measure what
//! they cost the server in resident memory (given its pid).

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::api::{Api, RunNames};
use crate::fleet::{self, ClientSpec, Fleet, Target};
use crate::stats::{Report, per_second};
use crate::system::{self, CpuSample};

/// Options of the `idle` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Sockets to open.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) clients: usize,
    /// Seconds to wait after the last socket opened before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) settle: f64,
    /// Seconds to hold the sockets after measuring (long enough for the
    /// server's heartbeat to visit each one), checking none is dropped.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) hold: f64,
}

/// Runs the scenario.
pub(crate) async fn run(args: IdleArgs, bench_nofile: Option<u64>) -> anyhow::Result<Report> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    let users = args.target.users_for(args.clients);
    eprintln!("idle: {} sockets ({users} users)", args.clients);
    let tokens = fleet::accounts(&api, &names, users, args.target.setup_concurrency).await?;
    let rss = |pid: Option<u32>| pid.map(system::rss_kib).transpose();
    let before = rss(args.target.pid)?;
    let specs = (0..args.clients)
        .map(|index| ClientSpec {
            account: index % users,
            rooms: Vec::new(),
            window: None,
        })
        .collect();
    let fleet = Fleet::open(
        &api,
        &[],
        &tokens,
        specs,
        Vec::new(),
        args.target.connect_concurrency,
    )
    .await?;
    let open = fleet.clients.len();
    let connect_time = fleet.connect_time;
    tokio::time::sleep(Duration::from_secs_f64(args.settle.max(0.0))).await;
    let after = rss(args.target.pid)?;
    eprintln!("  holding {open} sockets for {} s", args.hold);
    let cpu_before = CpuSample::now(args.target.pid);
    let mut peak = after;
    let hold = Duration::from_secs_f64(args.hold.max(0.0));
    let started = tokio::time::Instant::now();
    while started.elapsed() < hold {
        tokio::time::sleep(Duration::from_secs(1).min(hold)).await;
        peak = peak.max(rss(args.target.pid)?);
    }
    let end = rss(args.target.pid)?;
    let cpu_after = CpuSample::now(args.target.pid);
    let failures = fleet.failures.clone();
    let finished = fleet.finish().await;
    let closed: Vec<String> = finished
        .reports
        .iter()
        .filter_map(|report| report.closed.clone())
        .collect();

    let mut report = Report::new("idle");
    report.add("server", args.target.server.as_str());
    report.add("sockets_requested", args.clients as u64);
    report.add("sockets_open", open as u64);
    report.add("connect_failures", failures.len() as u64);
    report.add("users", users as u64);
    report.add("connect_s", connect_time.as_secs_f64());
    report.add("connects_per_s", per_second(open as u64, connect_time));
    report.add("sockets_closed_during_hold", closed.len() as u64);
    if let Some(limit) = bench_nofile {
        report.add("bench_nofile_limit", limit);
    }
    if let (Some(pid), Some(before), Some(after), Some(peak), Some(end)) =
        (args.target.pid, before, after, peak, end)
    {
        if let Some(limit) = system::nofile_limit_of(pid) {
            report.add("server_nofile_limit", limit);
        }
        report.add("server_rss_before_kib", before);
        report.add("server_rss_after_kib", after);
        report.add("server_rss_peak_kib", peak);
        report.add("server_rss_end_kib", end);
        let per_socket = (after as f64 - before as f64) / open.max(1) as f64;
        report.add("server_rss_per_socket_kib", per_socket);
    }
    cpu_after.add_rows_since(&cpu_before, "hold_", &mut report);
    report.failures("connections failed", &failures);
    report.failures("sockets closed while idle", &closed);
    Ok(report)
}
