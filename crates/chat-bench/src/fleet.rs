//! Setting up a run: accounts, rooms, and a fleet of connected clients with
//! their readers, and tearing it down again into reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::SinkExt;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{Api, RunNames};
use crate::client::{self, ClientReport, Reader, SendPlan, Shared, Sink};

/// The options every load scenario shares: where the server is, how to set
/// up, how to print.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The server under test.
    #[arg(
        long,
        env = "CHAT_BENCH_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    pub(crate) server: String,
    /// More nodes of the same deployment (same database and Redis):
    /// connections are spread round-robin over `--server` and these.
    #[arg(long = "also-server")]
    pub(crate) also_servers: Vec<String>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Accounts to register; connections share them round-robin. Default:
    /// one per connection, at most 200 (bcrypt makes each one slow).
    #[arg(long)]
    pub(crate) users: Option<usize>,
    /// Registrations and logins in flight at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) setup_concurrency: usize,
    /// The server's process id: its CPU time (and, for `idle`, its
    /// resident memory) is read from /proc.
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// WebSocket connections being opened at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) connect_concurrency: usize,
}

impl Target {
    /// The other nodes' APIs.
    pub(crate) fn other_nodes(&self) -> anyhow::Result<Vec<Api>> {
        self.also_servers.iter().map(|url| Api::new(url)).collect()
    }

    /// How many accounts a run with `connections` sockets registers.
    pub(crate) fn users_for(&self, connections: usize) -> usize {
        self.users.unwrap_or(200).min(connections).max(1)
    }
}

/// Prints `label: done/total` to stderr every second while a setup step
/// runs.
#[derive(Debug)]
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    label: String,
    started: Instant,
    printer: JoinHandle<()>,
}

impl Progress {
    /// Starts printing progress of `total` steps.
    pub(crate) fn start(label: impl Into<String>, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let label = label.into();
        let started = Instant::now();
        let printer = tokio::spawn({
            let done = Arc::clone(&done);
            let label = label.clone();
            async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    let count = done.load(Ordering::Relaxed);
                    let rate = count as f64 / started.elapsed().as_secs_f64();
                    eprintln!("  {label}: {count}/{total} ({rate:.0}/s)");
                }
            }
        });
        Progress {
            done,
            label,
            started,
            printer,
        }
    }

    /// The counter to advance.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }

    /// Stops printing and says how long the step took.
    pub(crate) fn finish(self) -> Duration {
        self.printer.abort();
        let elapsed = self.started.elapsed();
        eprintln!(
            "  {}: {} done in {:.1} s",
            self.label,
            self.done.load(Ordering::Relaxed),
            elapsed.as_secs_f64()
        );
        elapsed
    }
}

/// Registers `count` users and logs each in, `concurrency` at a time.
/// Returns their tokens in user order.
pub(crate) async fn accounts(
    api: &Api,
    names: &RunNames,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let progress = Progress::start("register + login", count as u64);
    let done = progress.counter();
    let password = names.password();
    let mut results: Vec<(usize, anyhow::Result<String>)> = stream::iter(0..count)
        .map(|index| {
            let (api, password, done) = (api.clone(), password.clone(), Arc::clone(&done));
            let username = names.user(index);
            async move {
                let token = async {
                    api.register(&username, &password).await?;
                    api.login(&username, &password).await
                }
                .await;
                done.fetch_add(1, Ordering::Relaxed);
                (index, token)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    progress.finish();
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, token)| token).collect()
}

/// Creates rooms, `concurrency` at a time.
pub(crate) async fn create_rooms(
    api: &Api,
    token: &str,
    rooms: &[String],
    concurrency: usize,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = stream::iter(rooms)
        .map(|room| api.create_room(token, room))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// One client to open: which account, which rooms, whether it sends with
/// a window of unacknowledged messages.
#[derive(Debug, Clone)]
pub(crate) struct ClientSpec {
    /// Index into the token list.
    pub(crate) account: usize,
    /// Indexes into the run's room list.
    pub(crate) rooms: Vec<usize>,
    /// Unacknowledged messages this client may have, if it sends flat out.
    pub(crate) window: Option<usize>,
}

/// A connected client: the writing half and the reader task.
#[derive(Debug)]
pub(crate) struct Client {
    /// The writing half; a sender task borrows it.
    pub(crate) sink: Option<Sink>,
    /// Flow-control credit for a flat-out sender.
    pub(crate) window: Option<Arc<Semaphore>>,
    /// The seq of its newest acknowledged message, kept by its reader.
    pub(crate) newest: Arc<AtomicI64>,
    reader: JoinHandle<ClientReport>,
    /// The rooms it joined (index, `last_seq` at the join).
    bases: Vec<(usize, i64)>,
}

/// Every client of a run.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// The clients that connected, in spec order.
    pub(crate) clients: Vec<Client>,
    /// The counters they share.
    pub(crate) shared: Arc<Shared>,
    /// The run's bench rooms.
    pub(crate) names: Arc<[String]>,
    /// Why clients could not connect (one entry per failure).
    pub(crate) failures: Vec<String>,
    /// How long connecting took.
    pub(crate) connect_time: Duration,
}

impl Fleet {
    /// Connects every spec, `concurrency` at a time, and starts its reader
    /// as soon as it has joined, so no socket sits unread during set-up.
    pub(crate) async fn open(
        api: &Api,
        others: &[Api],
        tokens: &[String],
        specs: Vec<ClientSpec>,
        names: Vec<String>,
        concurrency: usize,
    ) -> anyhow::Result<Fleet> {
        let names: Arc<[String]> = names.into();
        let shared = Arc::new(Shared::new(names.len()));
        // One list of socket URLs per node; client `i` goes to node
        // `i % nodes`.
        let urls = std::iter::once(api)
            .chain(others)
            .map(|node| {
                tokens
                    .iter()
                    .map(|token| node.ws_url(token))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let progress = Progress::start("connect + join", specs.len() as u64);
        let done = progress.counter();
        let mut results: Vec<(usize, anyhow::Result<Client>)> =
            stream::iter(specs.into_iter().enumerate())
                .map(|(index, spec)| {
                    let node = &urls[index % urls.len()];
                    let url = node[spec.account % node.len()].clone();
                    let (names, shared, done) =
                        (Arc::clone(&names), Arc::clone(&shared), Arc::clone(&done));
                    async move {
                        let client = open_one(&url, spec, names, shared).await;
                        done.fetch_add(1, Ordering::Relaxed);
                        (index, client)
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        let connect_time = progress.finish();
        results.sort_by_key(|(index, _)| *index);
        let mut clients = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for (_, result) in results {
            match result {
                Ok(client) => clients.push(client),
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        Ok(Fleet {
            clients,
            shared,
            names,
            failures,
            connect_time,
        })
    }

    /// Fails when any client could not connect.
    pub(crate) fn require_all(&self) -> anyhow::Result<()> {
        if let Some(first) = self.failures.first() {
            bail!(
                "{} of {} connections failed; the first: {first}",
                self.failures.len(),
                self.failures.len() + self.clients.len()
            );
        }
        Ok(())
    }

    /// Runs one sender per plan (client index, plan) until each is done,
    /// and hands the sockets back. Returns the messages sent and why
    /// senders stopped early.
    pub(crate) async fn send(&mut self, plans: Vec<(usize, SendPlan)>) -> (u64, Vec<String>) {
        let mut tasks = Vec::with_capacity(plans.len());
        for (index, plan) in plans {
            let Some(sink) = self
                .clients
                .get_mut(index)
                .and_then(|client| client.sink.take())
            else {
                continue;
            };
            let shared = Arc::clone(&self.shared);
            tasks.push((
                index,
                tokio::spawn(client::send_loop(index, sink, plan, shared)),
            ));
        }
        let mut sent = 0;
        let mut failures = Vec::new();
        for (index, task) in tasks {
            match task.await {
                Ok(report) => {
                    sent += report.sent;
                    failures.extend(report.failed);
                    self.clients[index].sink = Some(report.sink);
                }
                Err(error) => failures.push(format!("sender task failed: {error}")),
            }
        }
        (sent, failures)
    }

    /// Waits, until `deadline` at the latest, for every message sent to be
    /// answered and then for every stored message to reach every client.
    pub(crate) async fn drain(&self, deadline: Instant) {
        let shared = &self.shared;
        while shared.answered() < shared.sent.load(Ordering::Relaxed) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let expected = self.expected_deliveries();
        while shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Deliveries owed according to the acknowledged seqs: for each client
    /// and room, every seq after its join up to the highest acked.
    fn expected_deliveries(&self) -> u64 {
        let finals: Vec<i64> = self
            .shared
            .acked_seq
            .iter()
            .map(|seq| seq.load(Ordering::Relaxed))
            .collect();
        self.clients
            .iter()
            .flat_map(|client| client.bases.iter())
            .map(|(room, base)| (finals[*room] - base).max(0).unsigned_abs())
            .sum()
    }

    /// Stops every reader, closes every socket and returns the reports in
    /// client order.
    pub(crate) async fn finish(self) -> Finished {
        self.shared.stop();
        let mut reports = Vec::with_capacity(self.clients.len());
        let mut sinks = Vec::with_capacity(self.clients.len());
        for client in self.clients {
            let report = match client.reader.await {
                Ok(report) => report,
                Err(error) => ClientReport {
                    closed: Some(format!("reader task failed: {error}")),
                    ..ClientReport::default()
                },
            };
            reports.push(report);
            sinks.extend(client.sink);
        }
        close_all(sinks).await;
        Finished {
            reports,
            shared: self.shared,
            names: self.names,
        }
    }
}

async fn open_one(
    url: &str,
    spec: ClientSpec,
    names: Arc<[String]>,
    shared: Arc<Shared>,
) -> anyhow::Result<Client> {
    let room_names: Vec<String> = spec.rooms.iter().map(|room| names[*room].clone()).collect();
    let (ws, last_seqs) = client::connect(url, &room_names)
        .await
        .with_context(|| format!("client of {}", room_names.join(",")))?;
    let (sink, stream) = ws.split();
    let window = spec.window.map(|size| Arc::new(Semaphore::new(size)));
    let bases: Vec<(usize, i64)> = spec.rooms.iter().copied().zip(last_seqs).collect();
    let newest = Arc::new(AtomicI64::new(0));
    let reader = Reader::new(
        stream,
        bases.clone(),
        names,
        shared,
        window.clone(),
        Arc::clone(&newest),
    );
    Ok(Client {
        sink: Some(sink),
        window,
        newest,
        reader: tokio::spawn(reader.run()),
        bases,
    })
}

/// Sends a close frame on every socket, a few hundred at a time, and
/// drops them.
async fn close_all(sinks: Vec<Sink>) {
    stream::iter(sinks)
        .for_each_concurrent(256, |mut sink| async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(None))).await;
        })
        .await;
}

/// The reports of a finished run.
#[derive(Debug)]
pub(crate) struct Finished {
    /// One per client, in client order.
    pub(crate) reports: Vec<ClientReport>,
    /// The counters of the run.
    pub(crate) shared: Arc<Shared>,
    /// The run's bench rooms.
    pub(crate) names: Arc<[String]>,
}

/// What [`seed`] sends: `messages` in all, shared out evenly over the
/// senders, each `(account, room)` a socket of its own.
#[derive(Debug, Clone)]
pub(crate) struct Seeding {
    pub(crate) rooms: Vec<String>,
    /// Each sender's account (an index into the tokens) and room (an index
    /// into `rooms`).
    pub(crate) senders: Vec<(usize, usize)>,
    pub(crate) messages: u64,
    /// Unacknowledged messages per socket.
    pub(crate) window: usize,
    pub(crate) pad: crate::words::Pad,
    pub(crate) connect_concurrency: usize,
}

/// Fills rooms with messages over WebSockets, flat out, printing progress;
/// adds `seeded`, `seed_msgs_per_s` and any problem to `report`.
///
/// Each socket receives every message of its room, so sockets per room x
/// window must stay well below the server's per-connection queue (1,024
/// frames by default) or the server drops the seeders as too slow.
pub(crate) async fn seed(
    api: &Api,
    tokens: &[String],
    seeding: Seeding,
    report: &mut crate::stats::Report,
) -> anyhow::Result<()> {
    use crate::stats::{Tally, per_second};
    let connections = seeding.senders.len().max(1);
    eprintln!(
        "  seeding {} messages over {connections} sockets in {} rooms",
        seeding.messages,
        seeding.rooms.len()
    );
    let specs = seeding
        .senders
        .iter()
        .map(|&(account, room)| ClientSpec {
            account,
            rooms: vec![room],
            window: Some(seeding.window.max(1)),
        })
        .collect();
    let mut fleet = Fleet::open(
        api,
        &[],
        tokens,
        specs,
        seeding.rooms.clone(),
        seeding.connect_concurrency,
    )
    .await?;
    fleet.require_all()?;
    let start = Instant::now();
    let progress = tokio::spawn({
        let shared = Arc::clone(&fleet.shared);
        let total = seeding.messages;
        async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let acks = shared.acks.load(Ordering::Relaxed);
                eprintln!(
                    "  seeded {acks}/{total} ({:.0}/s)",
                    per_second(acks, start.elapsed())
                );
            }
        }
    });
    let plans = seeding
        .senders
        .iter()
        .enumerate()
        .map(|(index, &(_, room))| {
            let plan = SendPlan {
                room: seeding.rooms[room].clone(),
                rate: None,
                offset: Duration::ZERO,
                limit: Some(crate::fanout::share(seeding.messages, connections, index)),
                until: start + Duration::from_secs(24 * 3_600),
                window: fleet.clients[index].window.clone(),
                pad: seeding.pad.clone(),
                mix: crate::client::Mix::default(),
                newest: Arc::clone(&fleet.clients[index].newest),
                seal: None,
            };
            (index, plan)
        })
        .collect();
    let (sent, failures) = fleet.send(plans).await;
    fleet.drain(Instant::now() + Duration::from_secs(60)).await;
    progress.abort();
    let tally = Tally::of(fleet.finish().await);
    let ack_window = tally.last_ack.map_or(Duration::ZERO, |at| at - start);
    eprintln!(
        "  seeded {} messages in {:.1} s",
        tally.acks,
        ack_window.as_secs_f64()
    );
    report.add("seeded", tally.acks);
    report.add("seed_msgs_per_s", per_second(tally.acks, ack_window));
    for problem in tally.problems(sent) {
        report.problem(format!("seeding: {problem}"));
    }
    report.failures("seed senders stopped early", &failures);
    Ok(())
}
