//! `fanout`: N clients in one room, S of them sending, at a fixed total
//! rate or flat out. Every client checks that each message arrives exactly
//! once and in seq order, and measures send-to-receive latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::api::{Api, RunNames};
use crate::client::{Mix, SendPlan};
use crate::fleet::{self, ClientSpec, Fleet, Target};
use crate::stats::{Report, Tally};
use crate::system::CpuSample;
use crate::words::Pad;

/// Options of the `fanout` scenario.
#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Connections in the room.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 1)]
    pub(crate) senders: usize,
    /// Messages per second over all senders; 0 sends flat out, each sender
    /// keeping at most --window messages unacknowledged.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Seconds to send for; 10 unless --messages is given.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Messages to send in all, split over the senders.
    #[arg(long)]
    pub(crate) messages: Option<u64>,
    /// Unacknowledged messages per flat-out sender. Every client receives
    /// every message, so senders x window must stay well below the
    /// server's per-connection queue (1,024 frames by default) or slow
    /// readers are dropped.
    #[arg(long, default_value_t = 32)]
    pub(crate) window: usize,
    /// Seconds to wait after sending for acks and deliveries still on their
    /// way.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) drain: f64,
    /// Extra characters appended to each message.
    #[arg(long, default_value_t = 0)]
    pub(crate) pad: usize,
    /// An end-to-end encrypted room: every account gets an MLS device in
    /// the room's group, and the senders encrypt each message (`chat-e2e`);
    /// readers do not decrypt, so the figures are the server's.
    #[arg(long)]
    pub(crate) encrypted: bool,
    #[command(flatten)]
    pub(crate) mix: MixArgs,
}

/// Edits and reactions mixed into a scenario's messages.
#[derive(Debug, Clone, Args)]
pub(crate) struct MixArgs {
    /// Percent of each sender's frames that edit its newest message.
    #[arg(long, default_value_t = 0)]
    pub(crate) edits: u8,
    /// Percent of each sender's frames that add or take back its reaction
    /// to its newest message (in turn).
    #[arg(long, default_value_t = 0)]
    pub(crate) reactions: u8,
}

impl MixArgs {
    /// The mix, if the percentages add up to 100 at most.
    pub(crate) fn mix(&self) -> anyhow::Result<Mix> {
        if u16::from(self.edits) + u16::from(self.reactions) > 100 {
            bail!("--edits and --reactions add up to more than 100 percent");
        }
        Ok(Mix {
            edits: self.edits,
            reactions: self.reactions,
        })
    }

    /// The mix in words, for the summary.
    pub(crate) fn describe(&self) -> String {
        format!("{}% edits, {}% reactions", self.edits, self.reactions)
    }
}

/// Splits `total` as evenly as possible over `parts`.
pub(crate) fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// How long to send for: the given duration, 10 s by default, or "until
/// the messages are sent" (an hour at most) when only a count is given.
pub(crate) fn sending_period(duration: Option<f64>, messages: Option<u64>) -> Duration {
    match (duration, messages) {
        (Some(seconds), _) => Duration::from_secs_f64(seconds.max(0.0)),
        (None, Some(_)) => Duration::from_secs(3_600),
        (None, None) => Duration::from_secs(10),
    }
}

/// Runs the scenario.
pub(crate) async fn run(args: FanoutArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.senders == 0 || args.senders > args.clients {
        bail!("need 1 <= --senders <= --clients");
    }
    if args.rate < 0.0 {
        bail!("--rate must be 0 (flat out) or positive");
    }
    let api = Api::new(&args.target.server)?;
    let others = args.target.other_nodes()?;
    let names = RunNames::new();
    let users = args.target.users_for(args.clients);
    eprintln!(
        "fanout: {} clients ({} users), {} senders, {}",
        args.clients,
        users,
        args.senders,
        mode(&args)
    );
    if args.encrypted && (args.mix.edits > 0 || args.mix.reactions > 0) {
        bail!("--encrypted takes messages only: edits are refused in encrypted rooms");
    }
    let tokens = fleet::accounts(&api, &names, users, args.target.setup_concurrency).await?;
    let room = names.room("fanout");
    if args.encrypted {
        crate::e2e::create_room(&api, &tokens[0], &room).await?;
    } else {
        api.create_room(&tokens[0], &room).await?;
    }
    let flat_out = args.rate == 0.0;
    let specs = (0..args.clients)
        .map(|index| ClientSpec {
            account: index % users,
            rooms: vec![0],
            window: (flat_out && index < args.senders).then_some(args.window.max(1)),
        })
        .collect();
    let mut fleet = Fleet::open(
        &api,
        &others,
        &tokens,
        specs,
        vec![room.clone()],
        args.target.connect_concurrency,
    )
    .await?;
    fleet.require_all()?;
    // Every account is a member now: the group can take them all.
    let sealing = if args.encrypted {
        eprintln!("  making the MLS group of {users} devices...");
        let started = Instant::now();
        let made = crate::e2e::group(&api, &names, &tokens, &room, args.senders.min(users)).await?;
        eprintln!("  group made in {:.1} s", started.elapsed().as_secs_f64());
        Some(made)
    } else {
        None
    };

    let cpu_before = CpuSample::now(args.target.pid);
    let start = Instant::now();
    let until = start + sending_period(args.duration, args.messages);
    let per_sender_rate = (!flat_out).then(|| args.rate / args.senders as f64);
    let mix = args.mix.mix()?;
    let plans = (0..args.senders)
        .map(|index| {
            let offset = per_sender_rate.map_or(Duration::ZERO, |rate| {
                Duration::from_secs_f64(index as f64 / args.senders as f64 / rate)
            });
            let plan = SendPlan {
                room: room.clone(),
                rate: per_sender_rate,
                offset,
                limit: args.messages.map(|total| share(total, args.senders, index)),
                until,
                window: fleet.clients[index].window.clone(),
                pad: pad(args.pad),
                mix,
                newest: Arc::clone(&fleet.clients[index].newest),
                seal: sealing
                    .as_ref()
                    .map(|(sealers, _, _)| sealers[index % sealers.len()].clone()),
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

    let mut report = Report::new("fanout");
    report.add("server", args.target.server.as_str());
    if !args.target.also_servers.is_empty() {
        report.add("other_nodes", args.target.also_servers.join(" "));
    }
    report.add("clients", args.clients as u64);
    report.add("users", users as u64);
    report.add("senders", args.senders as u64);
    report.add("mode", mode(&args));
    report.add("mix", args.mix.describe());
    report.add("encrypted", args.encrypted);
    if let Some((_, encrypt, decrypt)) = &sealing {
        report.add("client_encrypt_us", encrypt.as_secs_f64() * 1e6);
        report.add("client_decrypt_us", decrypt.as_secs_f64() * 1e6);
    }
    report.add("connect_s", connect_time.as_secs_f64());
    report.add("send_s", send_time.as_secs_f64());
    tally.add_rows(&mut report, start, sent);
    cpu_after.add_rows_since(&cpu_before, "", &mut report);
    report.failures("senders stopped early", &send_failures);
    Ok(report)
}

fn mode(args: &FanoutArgs) -> String {
    let amount = match (args.duration, args.messages) {
        (_, Some(messages)) => format!("{messages} messages"),
        (duration, None) => format!("{} s", sending_period(duration, None).as_secs_f64()),
    };
    if args.rate == 0.0 {
        format!("flat out (window {}), {amount}", args.window)
    } else {
        format!("{} msg/s, {amount}", args.rate)
    }
}

/// The padding appended to every message: a space and `length - 1` x's.
pub(crate) fn pad(length: usize) -> Pad {
    if length == 0 {
        Pad::None
    } else {
        Pad::Fixed(format!(" {}", "x".repeat(length - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_shared_out_evenly() {
        let shares: Vec<u64> = (0..3).map(|index| share(200, 3, index)).collect();
        assert_eq!(shares, [67, 67, 66]);
        assert_eq!(shares.iter().sum::<u64>(), 200);
        assert_eq!(share(5, 0, 0), 5);
    }

    #[test]
    fn a_message_count_alone_does_not_cut_sending_short() {
        assert_eq!(sending_period(None, None), Duration::from_secs(10));
        assert_eq!(
            sending_period(Some(2.5), Some(9)),
            Duration::from_millis(2_500)
        );
        assert!(sending_period(None, Some(200)) >= Duration::from_secs(600));
    }
}
