//! `rooms`: many small rooms, every client sending flat out with a bounded
//! window of unacknowledged messages. The figure that matters is durable
//! messages per second: acks, each of which means a committed message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::api::{Api, RunNames};
use crate::client::SendPlan;
use crate::fanout::{MixArgs, pad};
use crate::fleet::{self, ClientSpec, Fleet, Target};
use crate::stats::{Report, Tally};
use crate::system::CpuSample;
use crate::words::{Pad, Vocabulary};

/// Words in the vocabulary of `--words`.
pub(crate) const VOCABULARY_WORDS: usize = 20_000;

/// Options of the `rooms` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct RoomsArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Number of rooms.
    #[arg(long, default_value_t = 500)]
    pub(crate) rooms: usize,
    /// Clients per room; every one of them sends.
    #[arg(long, default_value_t = 4)]
    pub(crate) per_room: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Unacknowledged messages per client.
    #[arg(long, default_value_t = 32)]
    pub(crate) window: usize,
    /// Seconds to wait after sending for acks and deliveries still on their
    /// way.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain: f64,
    /// Extra characters appended to each message.
    #[arg(long, default_value_t = 0)]
    pub(crate) pad: usize,
    /// Instead of `--pad`, about this many words per message, drawn from a
    /// 20,000-word vocabulary with Zipf frequencies (text for the search
    /// index to work on).
    #[arg(long, default_value_t = 0, conflicts_with = "pad")]
    pub(crate) words: usize,
    #[command(flatten)]
    pub(crate) mix: MixArgs,
    /// Give a room's clients one account (room index modulo the users),
    /// instead of spreading neighbouring clients over accounts. A membership
    /// reaches every socket of its user, so with spread accounts a socket
    /// also receives the rooms its account's other sockets joined; with
    /// `--users` equal to `--rooms` and this, every socket receives its one
    /// room, as with servers that subscribe only the joining socket.
    #[arg(long)]
    pub(crate) account_per_room: bool,
}

/// Runs the scenario.
pub(crate) async fn run(args: RoomsArgs) -> anyhow::Result<Report> {
    if args.rooms == 0 || args.per_room == 0 {
        bail!("need at least one room and one client per room");
    }
    let api = Api::new(&args.target.server)?;
    let names = RunNames::new();
    let clients = args.rooms * args.per_room;
    let users = args.target.users_for(clients);
    eprintln!(
        "rooms: {} rooms x {} clients ({} users), flat out, window {}, {} s",
        args.rooms, args.per_room, users, args.window, args.duration
    );
    let tokens = fleet::accounts(&api, &names, users, args.target.setup_concurrency).await?;
    let rooms: Vec<String> = (0..args.rooms)
        .map(|index| names.room(&format!("r{index}")))
        .collect();
    fleet::create_rooms(&api, &tokens[0], &rooms, args.target.setup_concurrency).await?;
    // Neighbouring clients go to different accounts and the same room, so
    // a room's members are different users.
    let specs = (0..clients)
        .map(|index| ClientSpec {
            account: if args.account_per_room {
                (index / args.per_room) % users
            } else {
                index % users
            },
            rooms: vec![index / args.per_room],
            window: Some(args.window.max(1)),
        })
        .collect();
    let mut fleet = Fleet::open(
        &api,
        &[],
        &tokens,
        specs,
        rooms.clone(),
        args.target.connect_concurrency,
    )
    .await?;
    fleet.require_all()?;

    let cpu_before = CpuSample::now(args.target.pid);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.duration.max(0.0));
    let mix = args.mix.mix()?;
    let vocabulary = Arc::new(Vocabulary::zipf(VOCABULARY_WORDS, 1.0));
    let plans = (0..clients)
        .map(|index| {
            let plan = SendPlan {
                room: rooms[index / args.per_room].clone(),
                rate: None,
                offset: Duration::ZERO,
                limit: None,
                until,
                window: fleet.clients[index].window.clone(),
                pad: if args.words > 0 {
                    Pad::Words {
                        vocabulary: Arc::clone(&vocabulary),
                        mean: args.words,
                    }
                } else {
                    pad(args.pad)
                },
                mix,
                newest: Arc::clone(&fleet.clients[index].newest),
                seal: None,
            };
            (index, plan)
        })
        .collect();
    eprintln!("  sending...");
    let (sent, send_failures) = fleet.send(plans).await;
    let send_time = start.elapsed();
    eprintln!(
        "  sent {sent} in {:.1} s; draining",
        send_time.as_secs_f64()
    );
    fleet
        .drain(Instant::now() + Duration::from_secs_f64(args.drain.max(0.0)))
        .await;
    let cpu_after = CpuSample::now(args.target.pid);
    let connect_time = fleet.connect_time;
    let tally = Tally::of(fleet.finish().await);

    let mut report = Report::new("rooms");
    report.add("server", args.target.server.as_str());
    report.add("rooms", args.rooms as u64);
    report.add("clients_per_room", args.per_room as u64);
    report.add("clients", clients as u64);
    report.add("users", users as u64);
    report.add("window", args.window as u64);
    report.add("words_per_message", args.words as u64);
    report.add("connect_s", connect_time.as_secs_f64());
    report.add("send_s", send_time.as_secs_f64());
    tally.add_rows(&mut report, start, sent);
    cpu_after.add_rows_since(&cpu_before, "", &mut report);
    report.failures("senders stopped early", &send_failures);
    Ok(report)
}
