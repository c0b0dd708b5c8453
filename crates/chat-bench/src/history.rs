//! `history`: newest-page requests (`GET /api/rooms/{room}/messages?limit=50`)
//! at a fixed concurrency; requests per second and latency. The room can
//! first be filled with K messages over WebSockets.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_protocol::rest::MessagePage;
use clap::Args;

use crate::api::{Api, RunNames};
use crate::fleet::{self, Target};
use crate::stats::{Percentiles, Report, per_second};
use crate::system::CpuSample;
use crate::words::Pad;

/// Options of the `history` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Seconds to send requests for.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Page size asked for.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: i64,
    /// Messages to add to the room first, over WebSockets, flat out.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed_messages: u64,
    /// Sockets that add the seed messages. Each receives every message of
    /// the room, so connections x window must stay well below the server's
    /// per-connection queue (1,024 frames by default) or the server drops
    /// the seeders as too slow.
    #[arg(long, default_value_t = 4)]
    pub(crate) seed_connections: usize,
    /// Unacknowledged seed messages per socket.
    #[arg(long, default_value_t = 64)]
    pub(crate) seed_window: usize,
    /// Use this room (created if missing) instead of a fresh one, e.g. to
    /// reuse a room seeded by an earlier run.
    #[arg(long)]
    pub(crate) room: Option<String>,
}

/// Runs the scenario.
pub(crate) async fn run(args: HistoryArgs) -> anyhow::Result<Report> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    let room = args.room.clone().unwrap_or_else(|| names.room("history"));
    eprintln!(
        "history: room {room}, {} concurrent requests for {} s",
        args.concurrency, args.duration
    );
    let tokens = fleet::accounts(&api, &names, 1, 1).await?;
    let token = tokens[0].clone();
    api.create_room(&token, &room).await?;
    let mut report = Report::new("history");
    report.add("server", args.target.server.as_str());
    report.add("room", room.as_str());
    if args.seed_messages > 0 {
        seed(&api, &tokens, &room, &args, &mut report).await?;
    }

    let url = api.page_url(&room, args.limit)?;
    let first: MessagePage = api
        .http()
        .get(url.clone())
        .bearer_auth(&token)
        .send()
        .await
        .context("the first page request failed")?
        .error_for_status()
        .context("the first page request was refused")?
        .json()
        .await
        .context("the first page is not a message page")?;
    report.add(
        "room_last_seq",
        first.messages.last().map_or(0, |message| message.seq),
    );
    report.add("page_messages", first.messages.len() as u64);

    eprintln!("  requesting pages...");
    let cpu_before = CpuSample::now(args.target.pid);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.duration.max(0.0));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (http, url, token) = (api.http().clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let mut outcome = Requests::default();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let response = http.get(url.clone()).bearer_auth(&token).send().await;
                    let result = match response {
                        Ok(response) if response.status().is_success() => response
                            .bytes()
                            .await
                            .map(|_| ())
                            .map_err(|error| format!("reading a page: {error}")),
                        Ok(response) => Err(format!("answered {}", response.status())),
                        Err(error) => Err(format!("request failed: {error}")),
                    };
                    match result {
                        Ok(()) => {
                            let micros = sent.elapsed().as_micros();
                            outcome
                                .latencies
                                .push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                        Err(error) => outcome.errors.push(error),
                    }
                }
                outcome
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for worker in workers {
        let outcome = worker.await.context("a request worker failed")?;
        latencies.extend(outcome.latencies);
        errors.extend(outcome.errors);
    }
    let elapsed = start.elapsed();
    let cpu_after = CpuSample::now(args.target.pid);
    let ok = latencies.len() as u64;
    report.add("concurrency", args.concurrency as u64);
    report.add("limit", args.limit);
    report.add("requests_ok", ok);
    report.add("requests_failed", errors.len() as u64);
    report.add("elapsed_s", elapsed.as_secs_f64());
    report.add("requests_per_s", per_second(ok, elapsed));
    report.latency("latency", &Percentiles::of_micros(latencies));
    cpu_after.add_rows_since(&cpu_before, "", &mut report);
    report.failures("requests failed", &errors);
    Ok(report)
}

#[derive(Debug, Default)]
struct Requests {
    latencies: Vec<u32>,
    errors: Vec<String>,
}

/// Adds `--seed-messages` messages to the room, printing progress.
async fn seed(
    api: &Api,
    tokens: &[String],
    room: &str,
    args: &HistoryArgs,
    report: &mut Report,
) -> anyhow::Result<()> {
    let connections = args.seed_connections.max(1);
    let seeding = fleet::Seeding {
        rooms: vec![room.to_owned()],
        senders: (0..connections).map(|_| (0, 0)).collect(),
        messages: args.seed_messages,
        window: args.seed_window,
        pad: Pad::None,
        connect_concurrency: args.target.connect_concurrency,
    };
    fleet::seed(api, tokens, seeding, report).await
}
