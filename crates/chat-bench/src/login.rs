//! `login`: WebSocket round trips (`ping` -> `pong`) on a few sockets, first
//! on a quiet server, then while parallel logins keep bcrypt busy. The
//! ratio of the two p99s shows whether password hashing starves the
//! sockets.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_protocol::ws::{ClientFrame, ServerFrame};
use clap::Args;
use futures_util::SinkExt;

use crate::api::{Api, RunNames};
use crate::client::{self, Ws};
use crate::fleet::{self, Target};
use crate::stats::{Percentiles, Report, per_second};
use crate::system::CpuSample;

/// How long one ping may wait for its pong.
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the `login` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Sockets that ping.
    #[arg(long, default_value_t = 4)]
    pub(crate) sockets: usize,
    /// Milliseconds between one pong and the next ping, per socket.
    #[arg(long, default_value_t = 10)]
    pub(crate) interval_ms: u64,
    /// Seconds of each phase (baseline, then under logins).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Logins running at once in the second phase, each in a loop.
    #[arg(long, default_value_t = 20)]
    pub(crate) logins: usize,
}

/// Runs the scenario.
pub(crate) async fn run(args: LoginArgs) -> anyhow::Result<Report> {
    if args.sockets == 0 {
        bail!("--sockets must be at least 1");
    }
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    eprintln!(
        "login: {} pinging sockets, then with {} parallel logins, {} s each",
        args.sockets, args.logins, args.duration
    );
    let tokens = fleet::accounts(&api, &names, 1, 1).await?;
    let url = api.ws_url(&tokens[0])?;
    let mut sockets = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let (ws, _) = client::connect(&url, &[]).await?;
        sockets.push(ws);
    }
    let phase = Duration::from_secs_f64(args.duration.max(0.0));
    let interval = Duration::from_millis(args.interval_ms);

    eprintln!("  baseline...");
    let cpu_start = CpuSample::now(args.target.pid);
    let (sockets, baseline) = ping_phase(sockets, phase, interval).await?;
    let cpu_baseline = CpuSample::now(args.target.pid);

    eprintln!("  under logins...");
    let until = Instant::now() + phase + Duration::from_millis(500);
    let username = names.user(0);
    let password = names.password();
    let login_tasks: Vec<_> = (0..args.logins)
        .map(|_| {
            let (api, username, password) = (api.clone(), username.clone(), password.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    match api.login(&username, &password).await {
                        Ok(_) => latencies
                            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX)),
                        Err(error) => errors.push(format!("{error:#}")),
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    // Let the logins get going before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logins_started = Instant::now();
    let cpu_loaded_start = CpuSample::now(args.target.pid);
    let (sockets, loaded) = ping_phase(sockets, phase, interval).await?;
    let cpu_loaded = CpuSample::now(args.target.pid);
    let mut login_latencies = Vec::new();
    let mut login_errors = Vec::new();
    for task in login_tasks {
        let (latencies, errors) = task.await.context("a login task failed")?;
        login_latencies.extend(latencies);
        login_errors.extend(errors);
    }
    let login_time = logins_started.elapsed() + Duration::from_millis(500);
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }

    let baseline = Percentiles::of_micros(baseline);
    let loaded = Percentiles::of_micros(loaded);
    let logins = login_latencies.len() as u64;
    let mut report = Report::new("login");
    report.add("server", args.target.server.as_str());
    report.add("sockets", args.sockets as u64);
    report.add("ping_interval_ms", args.interval_ms);
    report.latency("baseline_rtt", &baseline);
    report.add("parallel_logins", args.logins as u64);
    report.latency("loaded_rtt", &loaded);
    report.add(
        "p99_ratio",
        if baseline.p99 > 0.0 {
            loaded.p99 / baseline.p99
        } else {
            0.0
        },
    );
    report.add("logins", logins);
    report.add("logins_per_s", per_second(logins, login_time));
    report.latency("login", &Percentiles::of_micros(login_latencies));
    cpu_baseline.add_rows_since(&cpu_start, "baseline_", &mut report);
    cpu_loaded.add_rows_since(&cpu_loaded_start, "loaded_", &mut report);
    report.failures("logins failed", &login_errors);
    Ok(report)
}

/// Pings on every socket for `period`, each socket waiting `interval`
/// between a pong and its next ping. Returns the sockets and the round
/// trips in microseconds.
async fn ping_phase(
    sockets: Vec<Ws>,
    period: Duration,
    interval: Duration,
) -> anyhow::Result<(Vec<Ws>, Vec<u32>)> {
    let until = Instant::now() + period;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut rtts = Vec::new();
                let ping = client::encode(&ClientFrame::Ping)?;
                while Instant::now() < until {
                    tokio::time::sleep(interval).await;
                    let sent = Instant::now();
                    ws.send(ping.clone())
                        .await
                        .context("could not send a ping")?;
                    tokio::time::timeout(PONG_TIMEOUT, async {
                        loop {
                            if let ServerFrame::Pong = client::next_frame(&mut ws).await? {
                                return anyhow::Ok(());
                            }
                        }
                    })
                    .await
                    .context("no pong within 10 s")??;
                    rtts.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                anyhow::Ok((ws, rtts))
            })
        })
        .collect();
    let mut sockets = Vec::new();
    let mut rtts = Vec::new();
    for task in tasks {
        let (ws, samples) = task.await.context("a ping task failed")??;
        sockets.push(ws);
        rtts.extend(samples);
    }
    Ok((sockets, rtts))
}
