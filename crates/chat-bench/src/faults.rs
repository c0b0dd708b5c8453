//! `faults`: the fault matrix. Two `chat-server` nodes on one PostgreSQL
//! database and one Redis, all owned by the run (see [`lab`]), clients on
//! both nodes under a steady load, and one fault per row: Redis killed and
//! restarted, a node killed with SIGKILL, PostgreSQL killed and restarted, a
//! client that stops reading on each node, and the link between a node and
//! Redis cut.
//!
//! Every row has a room of its own and clients that joined it before the
//! fault. A client whose socket ends opens another, on its own node if it
//! answers and on the other one otherwise, and sends `resume` with the last
//! seq it has, as a real client would. After each row the run checks that
//! every client received every item of the room from its join on exactly
//! once and in seq order (the same bookkeeping as every scenario, in
//! [`crate::client`]), and that the room's history over REST holds every
//! seq with no gap, and at least as many messages as were acknowledged.
//! The run exits with status 1 when any row lost, doubled or reordered
//! anything, or did not recover.

mod lab;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, block_in_place};

use crate::api::{Api, RunNames};
use crate::client::{self, ClientReport, Reader, SendPlan, Shared, Ws};
use crate::fanout::pad;
use crate::fleet::{self, Finished};
use crate::stats::Tally;

use self::lab::{Lab, LabConfig};

/// One row of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Fault {
    /// Redis killed with SIGKILL, started again after --redis-outage s.
    RedisKill,
    /// Node 0 killed with SIGKILL; its clients move to node 1.
    NodeKill,
    /// PostgreSQL killed with kill -9, started again after
    /// --postgres-outage s.
    PostgresKill,
    /// A new client on each node that never reads, until the node
    /// evicts it; it then reconnects and resumes.
    SlowConsumer,
    /// The link between node 1 and Redis cut for --cut s (node 1 runs in a
    /// network namespace of the run's own).
    NetworkCut,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::RedisKill => "redis-kill",
            Fault::NodeKill => "node-kill",
            Fault::PostgresKill => "postgres-kill",
            Fault::SlowConsumer => "slow-consumer",
            Fault::NetworkCut => "network-cut",
        }
    }
}

/// Which nodes have senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SendersOn {
    /// Node 0 only.
    Node0,
    /// Both nodes.
    Both,
}

/// Options of the `faults` matrix.
#[derive(Debug, Clone, Args)]
pub(crate) struct FaultsArgs {
    /// The chat-server binary both nodes run.
    #[arg(long, default_value = "target/debug/chat-server")]
    pub(crate) server_bin: PathBuf,
    /// The redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_bin: PathBuf,
    /// The directory of PostgreSQL's initdb, pg_ctl and psql; the newest
    /// under /usr/lib/postgresql by default.
    #[arg(long)]
    pub(crate) pg_bin: Option<PathBuf>,
    /// The rows to run, comma-separated; all of them by default.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<Fault>,
    /// Connections per node in each row's room.
    #[arg(long, default_value_t = 6)]
    pub(crate) clients_per_node: usize,
    /// Of those, how many send.
    #[arg(long, default_value_t = 2)]
    pub(crate) senders_per_node: usize,
    /// Which nodes' clients send. With `node0`, what node 1's clients
    /// receive crosses Redis (or is read from the database after a gap);
    /// with `both`, each node also sees the other's seqs in its own
    /// messages, and fills gaps from the database without waiting for
    /// Redis.
    #[arg(long, value_enum, default_value_t = SendersOn::Node0)]
    pub(crate) senders_on: SendersOn,
    /// Messages per second over all senders.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) rate: f64,
    /// Seconds of steady load before each fault; twice as long is sent
    /// after it.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) steady: f64,
    /// Seconds Redis stays down.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) redis_outage: f64,
    /// Seconds PostgreSQL stays down.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) postgres_outage: f64,
    /// Seconds the link between node 1 and Redis stays cut.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) cut: f64,
    /// Seconds a row may take to recover before it fails.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) recovery_timeout: f64,
    /// Frames queued per socket on the nodes (`CHAT_WS_QUEUE`): small, so
    /// that a client that stops reading is evicted within seconds.
    #[arg(long, default_value_t = 512)]
    pub(crate) ws_queue: usize,
    /// Characters added to each message in the slow-consumer row, to fill
    /// the stopped clients' buffers sooner: the kernel holds megabytes of
    /// a socket's unread frames before the node's queue starts to fill.
    #[arg(long, default_value_t = 3500)]
    pub(crate) slow_pad: usize,
    /// Messages per second over all senders in the slow-consumer row.
    #[arg(long, default_value_t = 250.0)]
    pub(crate) slow_rate: f64,
    /// Seconds the slow-consumer row waits for both stopped clients to be
    /// evicted (and sends for, at most, meanwhile).
    #[arg(long, default_value_t = 20.0)]
    pub(crate) slow_wait: f64,
    /// Run node 1 on the host, without a network namespace (the
    /// network-cut row is then skipped).
    #[arg(long)]
    pub(crate) no_netns: bool,
    /// Keep the nodes' logs (in a directory the run prints).
    #[arg(long)]
    pub(crate) keep_logs: bool,
    /// Print the matrix as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// What one row measured.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Row {
    /// The fault.
    pub(crate) fault: String,
    /// Why the row did not run, if it did not.
    pub(crate) skipped: Option<String>,
    /// Messages written to sockets.
    pub(crate) sent: u64,
    /// Messages acknowledged (stored).
    pub(crate) acked: u64,
    /// Messages answered with an error frame (e.g. `unavailable` while
    /// PostgreSQL is down): not stored, and the sender knows it.
    pub(crate) refused: u64,
    /// Messages with no answer: in flight on a socket that ended.
    pub(crate) unanswered: u64,
    /// Items the room gained while the clients were in it.
    pub(crate) stored: u64,
    /// Items delivered to clients.
    pub(crate) delivered: u64,
    /// Deliveries owed: every stored item to every client, from its join.
    pub(crate) expected: u64,
    /// Deliveries owed that never came.
    pub(crate) lost: u64,
    /// Items a client received twice.
    pub(crate) duplicated: u64,
    /// Items received after a higher seq.
    pub(crate) out_of_order: u64,
    /// Seqs missing from the room's history over REST.
    pub(crate) history_gaps: u64,
    /// Bench messages in the room's history.
    pub(crate) history_messages: u64,
    /// Delivery latency, 99th percentile, ms.
    pub(crate) latency_p99_ms: f64,
    /// The slowest delivery, ms.
    pub(crate) latency_max_ms: f64,
    /// Sockets opened again after one ended.
    pub(crate) reconnects: u64,
    /// How long the fault lasted, seconds.
    pub(crate) fault_s: f64,
    /// From the end of the fault until a message sent after it was
    /// acknowledged and every client had everything up to it, seconds.
    pub(crate) recover_s: Option<f64>,
    /// The longest time without any acknowledgement, seconds.
    pub(crate) longest_ack_gap_s: f64,
    /// Resident memory of each node before the fault, MiB.
    pub(crate) rss_before_mib: Vec<Option<f64>>,
    /// The most each node used during the fault, MiB.
    pub(crate) rss_during_mib: Vec<Option<f64>>,
    /// Each node's after the row, MiB.
    pub(crate) rss_after_mib: Vec<Option<f64>>,
    /// Events the nodes dropped instead of publishing to Redis.
    pub(crate) publishes_dropped: u64,
    /// Sockets the nodes closed as too slow.
    pub(crate) evicted_too_slow: u64,
    /// What else there is to say.
    pub(crate) notes: Vec<String>,
    /// The broken promises; empty when the row passed.
    pub(crate) problems: Vec<String>,
}

impl Row {
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs the matrix; `Ok(false)` when a row failed.
pub(crate) async fn run(args: FaultsArgs) -> anyhow::Result<bool> {
    if args.senders_per_node == 0 || args.senders_per_node > args.clients_per_node {
        bail!("need 1 <= --senders-per-node <= --clients-per-node");
    }
    if args.rate <= 0.0 || args.slow_rate <= 0.0 {
        bail!("--rate and --slow-rate must be positive");
    }
    let pg_bin = match &args.pg_bin {
        Some(bin) => bin.clone(),
        None => lab::find_pg_bin()
            .context("no PostgreSQL server binaries under /usr/lib/postgresql; give --pg-bin")?,
    };
    let names = RunNames::new();
    let dir = std::env::temp_dir().join(format!("chat-faults-{}", names.room("lab")));
    let config = LabConfig {
        server_bin: args.server_bin.clone(),
        redis_bin: args.redis_bin.clone(),
        pg_bin,
        netns: !args.no_netns,
        ws_queue: args.ws_queue,
        dir: dir.clone(),
    };
    let faults = if args.only.is_empty() {
        vec![
            Fault::RedisKill,
            Fault::NodeKill,
            Fault::PostgresKill,
            Fault::SlowConsumer,
            Fault::NetworkCut,
        ]
    } else {
        args.only.clone()
    };
    let started = Instant::now();
    let mut lab = block_in_place(|| Lab::start(config))?;
    eprintln!(
        "faults: nodes at {} and {}{}, Redis on port {}, PostgreSQL on port {}; logs in {}",
        lab.nodes[0].url(),
        lab.nodes[1].url(),
        if lab.nodes[1].in_netns {
            " (in a network namespace)"
        } else {
            ""
        },
        lab.redis.port,
        lab.postgres.port,
        dir.display()
    );
    // On Ctrl-C, stop here so that the lab is taken down (processes, the
    // cluster, the namespace) rather than left behind.
    let result = tokio::select! {
        result = matrix(&args, &mut lab, &names, &faults) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if result.as_ref().is_ok_and(|rows| !rows.iter().all(Row::ok)) {
        eprint!("{}", lab.log_tails(20));
    }
    drop(lab);
    if args.keep_logs {
        eprintln!("faults: logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let rows = result?;
    let ok = rows.iter().all(Row::ok);
    if args.json {
        let document = json!({
            "scenario": "faults",
            "clients_per_node": args.clients_per_node,
            "senders_per_node": args.senders_per_node,
            "senders_on": args.senders_on,
            "rate": args.rate,
            "total_s": started.elapsed().as_secs_f64(),
            "rows": rows,
            "ok": ok,
        });
        println!("{document}");
    } else {
        print!("{}", table(&rows));
        println!("total: {:.0} s", started.elapsed().as_secs_f64());
        println!("result: {}", if ok { "ok" } else { "FAILED" });
    }
    Ok(ok)
}

/// Sets up the accounts and runs every row in turn.
async fn matrix(
    args: &FaultsArgs,
    lab: &mut Lab,
    names: &RunNames,
    faults: &[Fault],
) -> anyhow::Result<Vec<Row>> {
    let api = Api::new(&lab.nodes[0].url())?;
    // One account per connection, and one for each node's slow client.
    let users = 2 * args.clients_per_node + 2;
    let tokens = fleet::accounts(&api, names, users, 8).await?;
    let mut rows = Vec::new();
    for &fault in faults {
        eprintln!("faults: {}", fault.name());
        let row = if fault == Fault::NetworkCut
            && let Err(reason) = &lab.netns
        {
            Row {
                fault: fault.name().to_owned(),
                skipped: Some(format!("no network namespace: {reason}")),
                ..Row::default()
            }
        } else {
            wait_healthy(lab).await?;
            let row = Phase::new(args, lab, names, &tokens, fault)?
                .run(lab)
                .await?;
            if fault == Fault::NodeKill {
                block_in_place(|| lab.restart_node(0))?;
            }
            row
        };
        eprintln!(
            "  {}: {}",
            row.fault,
            if row.skipped.is_some() {
                "skipped"
            } else if row.ok() {
                "ok"
            } else {
                "FAILED"
            }
        );
        rows.push(row);
    }
    Ok(rows)
}

/// How long a row waits for both nodes to report a working database and
/// Redis link before it starts.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until both nodes answer `/ready` with `"status":"ok"`: every row
/// starts from a whole cluster.
async fn wait_healthy(lab: &Lab) -> anyhow::Result<()> {
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    for node in &lab.nodes {
        let api = Api::new(&node.url())?;
        let mut last;
        loop {
            let answer = async {
                let response = api
                    .http()
                    .get(api.url("/ready")?)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await?;
                anyhow::Ok(response.text().await?)
            }
            .await;
            match answer {
                Ok(body)
                    if serde_json::from_str::<Value>(&body)
                        .is_ok_and(|ready| ready["status"] == json!("ok")) =>
                {
                    break;
                }
                Ok(body) => last = body,
                Err(error) => last = format!("{error:#}"),
            }
            if Instant::now() > deadline {
                bail!(
                    "node{} at {} is not ready with its Redis link: {last}",
                    node.index,
                    node.url()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// One row in progress.
struct Phase<'a> {
    args: &'a FaultsArgs,
    fault: Fault,
    room: String,
    names: Arc<[String]>,
    shared: Arc<Shared>,
    /// Each node's API.
    apis: Vec<Api>,
    /// WebSocket URLs per account, one per node.
    urls: Vec<Vec<String>>,
    tokens: &'a [String],
    /// Each client's contiguous seq, kept by its reader.
    progress: Vec<Arc<AtomicI64>>,
    tasks: Vec<JoinHandle<Driven>>,
    pids: Arc<Mutex<Vec<Option<u32>>>>,
}

impl<'a> Phase<'a> {
    fn new(
        args: &'a FaultsArgs,
        lab: &Lab,
        names: &RunNames,
        tokens: &'a [String],
        fault: Fault,
    ) -> anyhow::Result<Phase<'a>> {
        let room = names.room(fault.name());
        let apis = lab
            .nodes
            .iter()
            .map(|node| Api::new(&node.url()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let urls = tokens
            .iter()
            .map(|token| apis.iter().map(|api| api.ws_url(token)).collect())
            .collect::<anyhow::Result<Vec<Vec<String>>>>()?;
        Ok(Phase {
            args,
            fault,
            room: room.clone(),
            names: vec![room].into(),
            shared: Arc::new(Shared::new(1)),
            apis,
            urls,
            tokens,
            progress: Vec::new(),
            tasks: Vec::new(),
            pids: Arc::new(Mutex::new(lab.node_pids())),
        })
    }

    /// Opens a client of account `account` on node `home`, joined to the
    /// room, and starts driving it.
    async fn open(
        &mut self,
        account: usize,
        home: usize,
        plan: Option<SendPlan>,
        gate: Option<watch::Receiver<bool>>,
    ) -> anyhow::Result<()> {
        let urls = self.urls[account].clone();
        let (ws, last_seqs) = client::connect(&urls[home], std::slice::from_ref(&self.room))
            .await
            .with_context(|| format!("client {account} could not join on node {home}"))?;
        let base = last_seqs.first().copied().unwrap_or(0);
        let progress = Arc::new(AtomicI64::new(base));
        self.progress.push(Arc::clone(&progress));
        let driver = Driver {
            client: account,
            urls,
            home,
            plan,
            gate,
            names: Arc::clone(&self.names),
            shared: Arc::clone(&self.shared),
            progress,
        };
        self.tasks.push(tokio::spawn(driver.run(ws, base)));
        Ok(())
    }

    async fn run(mut self, lab: &mut Lab) -> anyhow::Result<Row> {
        let args = self.args;
        let steady = Duration::from_secs_f64(args.steady.max(0.5));
        let nominal = Duration::from_secs_f64(match self.fault {
            Fault::RedisKill => args.redis_outage,
            Fault::NodeKill => 0.0,
            Fault::PostgresKill => args.postgres_outage,
            // The time the stopped clients take to be evicted.
            Fault::SlowConsumer => args.slow_wait,
            Fault::NetworkCut => args.cut,
        });
        let (pad, rate) = if self.fault == Fault::SlowConsumer {
            (pad(args.slow_pad), args.slow_rate)
        } else {
            (crate::words::Pad::None, args.rate)
        };
        self.apis[0]
            .create_room(&self.tokens[0], &self.room)
            .await?;

        let start = Instant::now();
        let until = start + steady + nominal + 2 * steady;
        let sending_nodes = match args.senders_on {
            SendersOn::Node0 => 1,
            SendersOn::Both => 2,
        };
        let senders = sending_nodes * args.senders_per_node;
        let per_sender = rate / senders as f64;
        for index in 0..2 * args.clients_per_node {
            let home = index % 2;
            let sends = home < sending_nodes && index / 2 < args.senders_per_node;
            let plan = sends.then(|| SendPlan {
                room: self.room.clone(),
                rate: Some(per_sender),
                offset: Duration::from_secs_f64(index as f64 / senders as f64 / per_sender),
                limit: None,
                until,
                window: None,
                pad: pad.clone(),
                mix: client::Mix::default(),
                newest: Arc::new(AtomicI64::new(0)),
                seal: None,
            });
            self.open(index, home, plan, None).await?;
        }
        let sampler = Sampler::start(Arc::clone(&self.shared), Arc::clone(&self.pids));

        tokio::time::sleep_until((start + steady).into()).await;
        let mut row = Row {
            fault: self.fault.name().to_owned(),
            rss_before_mib: lab::rss_mib(&lab.node_pids()),
            ..Row::default()
        };
        let counters_before = self.counters().await;
        let fault_start = Instant::now();
        let healed = self.inject(lab, &mut row).await?;
        row.fault_s = (healed - fault_start).as_secs_f64();
        *lock(&self.pids) = lab.node_pids();

        let recovery_deadline = healed + Duration::from_secs_f64(args.recovery_timeout);
        row.recover_s = self.recovery(healed, recovery_deadline).await;
        if row.recover_s.is_none() {
            row.problems.push(format!(
                "not recovered {} s after the fault ended",
                args.recovery_timeout
            ));
        }
        tokio::time::sleep_until(until.into()).await;
        self.drain(Instant::now() + Duration::from_secs_f64(args.recovery_timeout))
            .await;
        let counters_after = self.counters().await;
        row.rss_after_mib = lab::rss_mib(&lab.node_pids());
        let samples = sampler.stop().await;
        row.rss_during_mib = samples.peak_rss(fault_start, healed, lab.nodes.len());
        row.longest_ack_gap_s = samples.longest_ack_gap(start, until).as_secs_f64();
        row.publishes_dropped = counters_after.dropped_since(&counters_before);
        row.evicted_too_slow = counters_after.evicted_since(&counters_before);

        self.shared.stop();
        let mut reports = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            let driven = task.await.context("a client task failed")?;
            row.reconnects += driven.reconnects;
            row.notes.extend(driven.failures);
            reports.push(driven.report);
        }
        let sent = self.shared.sent.load(Ordering::Relaxed);
        let tally = Tally::of(Finished {
            reports,
            shared: Arc::clone(&self.shared),
            names: Arc::clone(&self.names),
        });
        row.sent = sent;
        row.acked = tally.acks;
        row.refused = tally.refusals;
        row.unanswered = sent.saturating_sub(tally.acks + tally.refusals);
        row.stored = tally.stored;
        row.delivered = tally.deliveries;
        row.expected = tally.expected;
        row.lost = tally.missing;
        row.duplicated = tally.duplicates;
        row.out_of_order = tally.out_of_order;
        row.latency_p99_ms = tally.latency.p99;
        row.latency_max_ms = tally.latency.max;
        if tally.missing + tally.duplicates + tally.out_of_order > 0 {
            row.problems.push(format!(
                "{} lost, {} duplicated, {} out of order",
                tally.missing, tally.duplicates, tally.out_of_order
            ));
        }
        if tally.closed > 0 {
            row.problems.push(format!(
                "{} clients ended without a socket; the first: {}",
                tally.closed,
                tally.first_closed.as_deref().unwrap_or("?")
            ));
        }
        if let Some(error) = &tally.first_error {
            row.notes
                .push(format!("{} error frames; the first: {error}", tally.errors));
        }
        let final_seq = self.shared.acked_seq[0].load(Ordering::Relaxed);
        self.check_history(&mut row, final_seq).await?;
        Ok(row)
    }

    /// Breaks something, mends it and returns when it was mended.
    async fn inject(&mut self, lab: &mut Lab, row: &mut Row) -> anyhow::Result<Instant> {
        let args = self.args;
        match self.fault {
            Fault::RedisKill => {
                block_in_place(|| lab.redis.kill())?;
                let pids = Arc::clone(&self.pids);
                *lock(&pids) = lab.node_pids();
                tokio::time::sleep(Duration::from_secs_f64(args.redis_outage)).await;
                block_in_place(|| lab.redis.restart())?;
                if let Some(pid) = lab.redis.pid() {
                    row.notes
                        .push(format!("Redis killed and started again as pid {pid}"));
                }
                Ok(Instant::now())
            }
            Fault::NodeKill => {
                block_in_place(|| lab.kill_node(0))?;
                *lock(&self.pids) = lab.node_pids();
                Ok(Instant::now())
            }
            Fault::PostgresKill => {
                block_in_place(|| lab.postgres.kill())?;
                tokio::time::sleep(Duration::from_secs_f64(args.postgres_outage)).await;
                block_in_place(|| lab.postgres.restart_after_kill())?;
                Ok(Instant::now())
            }
            Fault::SlowConsumer => {
                let before = self.counters().await;
                let (release, gate) = watch::channel(false);
                let slow = 2 * args.clients_per_node;
                for home in 0..2 {
                    self.open(slow + home, home, None, Some(gate.clone()))
                        .await?;
                }
                let started = Instant::now();
                let deadline = started + Duration::from_secs_f64(args.slow_wait);
                loop {
                    let now = self.counters().await;
                    let evicted: Vec<u64> = now
                        .evictions
                        .iter()
                        .zip(&before.evictions)
                        .map(|(now, then)| now.saturating_sub(*then))
                        .collect();
                    if evicted.iter().all(|count| *count > 0) {
                        row.notes.push(format!(
                            "each node evicted its stopped client within {:.1} s",
                            started.elapsed().as_secs_f64()
                        ));
                        break;
                    }
                    if Instant::now() > deadline {
                        row.problems.push(format!(
                            "stopped clients not evicted within {} s (evictions per node: {evicted:?})",
                            args.slow_wait
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // The stopped clients read again: what the node had sent
                // them, the close, then a new socket and `resume`.
                release.send_replace(true);
                Ok(Instant::now())
            }
            Fault::NetworkCut => {
                let netns = lab
                    .netns
                    .as_ref()
                    .map_err(|reason| anyhow::anyhow!("no network namespace: {reason}"))?;
                block_in_place(|| netns.cut_redis())?;
                tokio::time::sleep(Duration::from_secs_f64(args.cut)).await;
                block_in_place(|| netns.restore_redis())?;
                Ok(Instant::now())
            }
        }
    }

    /// Waits until a message acknowledged after `healed` reached every
    /// client, with everything before it; the time it took.
    async fn recovery(&self, healed: Instant, deadline: Instant) -> Option<f64> {
        let acks = self.shared.acks.load(Ordering::Relaxed);
        while self.shared.acks.load(Ordering::Relaxed) == acks {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let target = self.shared.acked_seq[0].load(Ordering::Relaxed);
        while self.min_progress() < target {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(healed.elapsed().as_secs_f64())
    }

    /// After sending: waits for every client to have everything
    /// acknowledged, then for stragglers (and any duplicate) to arrive.
    async fn drain(&self, deadline: Instant) {
        let target = self.shared.acked_seq[0].load(Ordering::Relaxed);
        while self.min_progress() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Items stored without an ack (in flight when a socket ended) may
        // follow the last acknowledged one.
        let settle = Instant::now() + Duration::from_secs(2);
        while self.min_progress() < self.max_progress() && Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    fn min_progress(&self) -> i64 {
        self.progress
            .iter()
            .map(|seq| seq.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn max_progress(&self) -> i64 {
        self.progress
            .iter()
            .map(|seq| seq.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Both nodes' drop and eviction counters (0 for a node that does not
    /// answer).
    async fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for api in &self.apis {
            let text = metrics_text(api).await.unwrap_or_default();
            counters.dropped.push(
                counter(&text, "chat_frames_dropped_total", "broker_down")
                    + counter(&text, "chat_frames_dropped_total", "backlog_full"),
            );
            counters
                .evictions
                .push(counter(&text, "chat_evictions_total", "too_slow"));
        }
        counters
    }

    /// Reads the room's history over REST, oldest first, and checks that it
    /// holds every seq up to `final_seq` once and at least as many bench
    /// messages as were acknowledged.
    async fn check_history(&self, row: &mut Row, final_seq: i64) -> anyhow::Result<()> {
        let api = &self.apis[1];
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let mut url = api.url(&format!("/api/rooms/{}/messages", self.room))?;
            url.query_pairs_mut()
                .append_pair("after", &after.to_string())
                .append_pair("limit", "200");
            let page: Value = api
                .http()
                .get(url)
                .bearer_auth(&self.tokens[0])
                .send()
                .await
                .context("could not read the room's history")?
                .error_for_status()
                .context("the history request failed")?
                .json()
                .await
                .context("the history page is not JSON")?;
            let items = page["messages"].as_array().cloned().unwrap_or_default();
            for item in &items {
                let Some(seq) = item["seq"].as_i64() else {
                    bail!("a history item without a seq: {item}");
                };
                seqs.push(seq);
                if item["content"]
                    .as_str()
                    .is_some_and(|content| content.starts_with("bench "))
                {
                    row.history_messages += 1;
                }
                after = after.max(seq);
            }
            if items.is_empty() || page["has_more"] != json!(true) {
                break;
            }
        }
        let first = seqs.first().copied().unwrap_or(1);
        let last = seqs.last().copied().unwrap_or(0);
        let mut expected = first;
        for seq in &seqs {
            if *seq != expected {
                row.history_gaps += (*seq - expected).max(0).unsigned_abs();
            }
            expected = seq + 1;
        }
        if first != 1 {
            row.history_gaps += (first - 1).max(0).unsigned_abs();
        }
        if last < final_seq {
            row.history_gaps += (final_seq - last).unsigned_abs();
        }
        if row.history_gaps > 0 {
            row.problems.push(format!(
                "{} seqs missing from history (1 to {final_seq})",
                row.history_gaps
            ));
        }
        if row.history_messages < row.acked {
            row.problems.push(format!(
                "history holds {} bench messages, fewer than the {} acknowledged",
                row.history_messages, row.acked
            ));
        }
        Ok(())
    }
}

/// One client of a row: reads (and sends, if it is a sender) until the
/// row ends, and when its socket ends, opens another and resumes.
struct Driver {
    client: usize,
    /// Its WebSocket URL on each node.
    urls: Vec<String>,
    /// The node it is on.
    home: usize,
    plan: Option<SendPlan>,
    /// For a client that stops reading: reading starts when this turns
    /// true.
    gate: Option<watch::Receiver<bool>>,
    names: Arc<[String]>,
    shared: Arc<Shared>,
    progress: Arc<AtomicI64>,
}

/// What a client did over a row.
struct Driven {
    report: ClientReport,
    reconnects: u64,
    failures: Vec<String>,
}

/// How often a client whose socket ended tries to open another.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

impl Driver {
    async fn run(mut self, mut ws: Ws, base: i64) -> Driven {
        let mut report = ClientReport {
            rooms: vec![client::Tracked::new(0, base)],
            ..ClientReport::default()
        };
        let mut reconnects = 0;
        let mut failures = Vec::new();
        if let Some(gate) = &mut self.gate {
            // Stop reading: nothing is taken off this socket until the gate
            // opens.
            let _ = gate.wait_for(|open| *open).await;
        }
        let newest = self.plan.as_ref().map_or_else(
            || Arc::new(AtomicI64::new(0)),
            |plan| Arc::clone(&plan.newest),
        );
        loop {
            let (sink, stream) = ws.split();
            let reader = Reader::resumed(
                stream,
                report,
                Arc::clone(&self.names),
                Arc::clone(&self.shared),
                None,
                Arc::clone(&newest),
            )
            .with_progress(Arc::clone(&self.progress));
            let reader = tokio::spawn(reader.run());
            let sender = match &self.plan {
                Some(plan) if Instant::now() < plan.until => Some(tokio::spawn(client::send_loop(
                    self.client,
                    sink,
                    plan.clone(),
                    Arc::clone(&self.shared),
                ))),
                _ => None,
            };
            report = match reader.await {
                Ok(report) => report,
                Err(error) => {
                    failures.push(format!("client {}: reader failed: {error}", self.client));
                    return Driven {
                        report: ClientReport::default(),
                        reconnects,
                        failures,
                    };
                }
            };
            if self.shared.stopped() || report.closed.is_none() {
                if let Some(sender) = sender
                    && let Ok(mut sent) = sender.await
                {
                    let _ = sent.sink.send(tungstenite_close()).await;
                }
                return Driven {
                    report,
                    reconnects,
                    failures,
                };
            }
            // The socket ended under the client; its sender's next write
            // fails, and what it had in flight stays unanswered.
            if let Some(sender) = sender {
                sender.abort();
            }
            let last = report.rooms.first().map_or(base, |tracked| tracked.last);
            match self.reopen(last).await {
                Some(reopened) => {
                    report.closed = None;
                    reconnects += 1;
                    ws = reopened;
                }
                None => {
                    return Driven {
                        report,
                        reconnects,
                        failures,
                    };
                }
            }
        }
    }

    /// Opens a socket on its node, or on the other if its own does not
    /// answer, and resumes the room after `last`; `None` if the row ended
    /// first.
    async fn reopen(&mut self, last: i64) -> Option<Ws> {
        let rooms = [(self.names[0].clone(), last)];
        loop {
            for node in [self.home, 1 - self.home] {
                match client::reconnect(&self.urls[node], &rooms).await {
                    Ok(ws) => {
                        self.home = node;
                        return Some(ws);
                    }
                    Err(_) if self.shared.stopped() => return None,
                    Err(_) => {}
                }
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
}

fn tungstenite_close() -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::Close(None)
}

/// Drop and eviction counters of each node.
#[derive(Debug, Default)]
struct Counters {
    dropped: Vec<u64>,
    evictions: Vec<u64>,
}

impl Counters {
    /// Counters restart with a node: a lower value is a new count.
    fn since(now: &[u64], then: &[u64]) -> u64 {
        now.iter()
            .zip(then)
            .map(|(now, then)| if now >= then { now - then } else { *now })
            .sum()
    }

    fn dropped_since(&self, earlier: &Counters) -> u64 {
        Counters::since(&self.dropped, &earlier.dropped)
    }

    fn evicted_since(&self, earlier: &Counters) -> u64 {
        Counters::since(&self.evictions, &earlier.evictions)
    }
}

async fn metrics_text(api: &Api) -> anyhow::Result<String> {
    let response = api
        .http()
        .get(api.url("/metrics")?)
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.text().await?)
}

/// The value of counter `name` with `reason="<reason>"` in Prometheus's
/// text format; 0 when absent.
fn counter(text: &str, name: &str, reason: &str) -> u64 {
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter(|line| line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Acks and resident memory, sampled through a row.
#[derive(Debug, Default)]
struct Samples {
    acks: Vec<(Instant, u64)>,
    rss: Vec<(Instant, Vec<Option<f64>>)>,
}

impl Samples {
    /// The most each node used between `from` and `to`, MiB.
    fn peak_rss(&self, from: Instant, to: Instant, nodes: usize) -> Vec<Option<f64>> {
        let mut peak = vec![None; nodes];
        for (at, values) in &self.rss {
            if *at < from || *at > to {
                continue;
            }
            for (peak, value) in peak.iter_mut().zip(values) {
                if let Some(value) = value {
                    *peak = Some(peak.map_or(*value, |p: f64| p.max(*value)));
                }
            }
        }
        peak
    }

    /// The longest time between `from` and `to` in which the ack count
    /// did not grow.
    fn longest_ack_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut longest = Duration::ZERO;
        let mut last_growth: Option<(Instant, u64)> = None;
        for &(at, acks) in &self.acks {
            if at < from || at > to {
                continue;
            }
            match last_growth {
                Some((since, count)) if acks == count => longest = longest.max(at - since),
                _ => last_growth = Some((at, acks)),
            }
        }
        longest
    }
}

/// Takes samples every 100 ms until stopped.
struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Samples>,
}

impl Sampler {
    fn start(shared: Arc<Shared>, pids: Arc<Mutex<Vec<Option<u32>>>>) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return samples,
                }
                let now = Instant::now();
                samples
                    .acks
                    .push((now, shared.acks.load(Ordering::Relaxed)));
                let pids = lock(&pids).clone();
                samples.rss.push((now, lab::rss_mib(&pids)));
            }
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Samples {
        self.stop.send_replace(true);
        self.task.await.unwrap_or_default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The matrix as a table, then each row's notes and problems.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "fault          sent  acked  refused  unanswered  delivered  lost  dup  ooo  hist_gaps  reconnects  fault_s  recover_s  ack_gap_s  p99_ms  max_ms  rss_mib node0 before/during/after  node1 before/during/after  result\n",
    );
    let mib = |value: &Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let triple = |row: &Row, node: usize| {
        format!(
            "{}/{}/{}",
            mib(row.rss_before_mib.get(node).unwrap_or(&None)),
            mib(row.rss_during_mib.get(node).unwrap_or(&None)),
            mib(row.rss_after_mib.get(node).unwrap_or(&None))
        )
    };
    for row in rows {
        if let Some(reason) = &row.skipped {
            out.push_str(&format!("{:<13}  skipped: {reason}\n", row.fault));
            continue;
        }
        out.push_str(&format!(
            "{:<13} {:>5} {:>6} {:>8} {:>11} {:>10} {:>5} {:>4} {:>4} {:>10} {:>11} {:>8.1} {:>10} {:>10.2} {:>7.0} {:>7.0}  {:>32}  {:>25}  {}\n",
            row.fault,
            row.sent,
            row.acked,
            row.refused,
            row.unanswered,
            row.delivered,
            row.lost,
            row.duplicated,
            row.out_of_order,
            row.history_gaps,
            row.reconnects,
            row.fault_s,
            row.recover_s.map_or("never".to_owned(), |s| format!("{s:.2}")),
            row.longest_ack_gap_s,
            row.latency_p99_ms,
            row.latency_max_ms,
            triple(row, 0),
            triple(row, 1),
            if row.ok() { "ok" } else { "FAILED" },
        ));
    }
    for row in rows.iter().filter(|row| row.skipped.is_none()) {
        out.push_str(&format!(
            "{}: {} items stored, {} deliveries owed, {} bench messages in history, {} publishes dropped, {} evicted as too slow\n",
            row.fault,
            row.stored,
            row.expected,
            row.history_messages,
            row.publishes_dropped,
            row.evicted_too_slow
        ));
        for note in &row.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        for problem in &row.problems {
            out.push_str(&format!("  PROBLEM: {problem}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_metrics_text() {
        let text = "# TYPE chat_evictions_total counter\n\
                    chat_evictions_total{reason=\"too_slow\"} 3\n\
                    chat_evictions_total{reason=\"session_ended\"} 7\n\
                    chat_frames_dropped_total{reason=\"broker_down\"} 12\n\
                    chat_frames_dropped_total_other{reason=\"broker_down\"} 99\n";
        assert_eq!(counter(text, "chat_evictions_total", "too_slow"), 3);
        assert_eq!(
            counter(text, "chat_frames_dropped_total", "broker_down"),
            12
        );
        assert_eq!(
            counter(text, "chat_frames_dropped_total", "backlog_full"),
            0
        );
    }

    #[test]
    fn a_restarted_node_counts_from_zero() {
        let before = Counters {
            dropped: vec![10, 5],
            evictions: vec![0, 0],
        };
        let after = Counters {
            dropped: vec![14, 2],
            evictions: vec![1, 1],
        };
        assert_eq!(after.dropped_since(&before), 4 + 2);
        assert_eq!(after.evicted_since(&before), 2);
    }

    #[test]
    fn the_longest_ack_gap_is_the_longest_time_without_growth() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let samples = Samples {
            acks: vec![
                (at(0), 1),
                (at(100), 2),
                (at(200), 2),
                (at(900), 2),
                (at(1000), 3),
                (at(1100), 3),
            ],
            rss: vec![
                (at(0), vec![Some(10.0), None]),
                (at(500), vec![Some(30.0), Some(5.0)]),
                (at(2000), vec![Some(90.0), Some(6.0)]),
            ],
        };
        assert_eq!(
            samples.longest_ack_gap(at(0), at(2000)),
            Duration::from_millis(800)
        );
        assert_eq!(
            samples.peak_rss(at(0), at(1000), 2),
            vec![Some(30.0), Some(5.0)]
        );
    }
}
