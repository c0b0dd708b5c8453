//! `chat-bench`: a load generator for the chat server, and a bare
//! reference server to measure it against.
//!
//! Each scenario sets itself up over the public API (registers users with a
//! random run prefix, logs in, creates rooms, opens WebSockets and joins),
//! drives load, and prints a summary table (or JSON with `--json`). It
//! exits with status 1 when the server broke a promise (a message missing,
//! duplicated, out of order, refused or unanswered, a socket dropped), and
//! 2 when the run itself could not be carried out.
//!
//! The bench is a client: it knows the wire (`chat-protocol`) and nothing
//! of the server's crates. `chat-bench reference` runs a server with the
//! same frames but no authentication, database or cryptography, so every
//! scenario can be run against both and given as a ratio to that ceiling.

mod api;
mod client;
mod e2e;
mod fanout;
mod faults;
mod fleet;
mod history;
mod idle;
mod login;
mod reference;
mod rooms;
mod search;
mod stats;
mod system;
mod words;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::stats::Report;

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load generator for the chat server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads of the bench's runtime; one per core by default.
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N clients in one room, S senders, fixed rate or flat out: deliveries/s,
    /// latency, exactly-once and in-order checks.
    Fanout(fanout::FanoutArgs),
    /// Many small rooms, every client sending flat out: durable messages/s.
    Rooms(rooms::RoomsArgs),
    /// N authenticated idle sockets: server memory per connection.
    Idle(idle::IdleArgs),
    /// KeyPackages claimed one user at a time, at a concurrency, until all
    /// are taken: claims/s, latency, none handed out twice.
    Claims(e2e::ClaimsArgs),
    /// Newest-page history requests at a concurrency: requests/s, latency.
    History(history::HistoryArgs),
    /// Rooms filled with Zipf text, then searches of four kinds: latency.
    Search(search::SearchArgs),
    /// WebSocket round trips, idle and during parallel logins.
    Login(login::LoginArgs),
    /// Two nodes on a PostgreSQL cluster and a Redis of the run's own,
    /// clients on both under steady load, one fault per row: what was
    /// sent, acked, delivered, lost, doubled, and the time to recover.
    Faults(faults::FaultsArgs),
    /// Run the bare reference server (no auth, no database, no crypto).
    Reference(reference::ReferenceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("chat-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command; `Ok(false)` when the server broke a promise.
fn run(cli: Cli) -> anyhow::Result<bool> {
    // Thousands of sockets need thousands of descriptors, on either side.
    let nofile = match system::raise_nofile_limit() {
        Ok(limit) => Some(limit),
        Err(error) => {
            eprintln!("warning: {error:#}");
            None
        }
    };
    let command = match cli.command {
        Command::Reference(args) => {
            reference::run(args)?;
            return Ok(true);
        }
        command => command,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    let command = match command {
        Command::Faults(args) => return runtime.block_on(faults::run(args)),
        command => command,
    };
    let (report, json): (Report, bool) = runtime.block_on(async move {
        anyhow::Ok(match command {
            Command::Fanout(args) => {
                let json = args.target.json;
                (fanout::run(args).await?, json)
            }
            Command::Rooms(args) => {
                let json = args.target.json;
                (rooms::run(args).await?, json)
            }
            Command::Idle(args) => {
                let json = args.target.json;
                (idle::run(args, nofile).await?, json)
            }
            Command::History(args) => {
                let json = args.target.json;
                (history::run(args).await?, json)
            }
            Command::Claims(args) => {
                let json = args.target.json;
                (e2e::claims(args).await?, json)
            }
            Command::Search(args) => {
                let json = args.target.json;
                (search::run(args).await?, json)
            }
            Command::Login(args) => {
                let json = args.target.json;
                (login::run(args).await?, json)
            }
            Command::Reference(_) | Command::Faults(_) => {
                anyhow::bail!("not a single-server scenario")
            }
        })
    })?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(report.ok())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_fault_matrix_of_the_ci_parses() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "faults",
            "--server-bin",
            "target/debug/chat-server",
            "--steady",
            "3",
            "--only",
            "redis-kill,node-kill",
        ])
        .expect("parses");
        let Command::Faults(args) = cli.command else {
            panic!("not faults");
        };
        assert_eq!(args.steady, 3.0);
        assert_eq!(args.redis_outage, 10.0);
        assert_eq!(
            args.only,
            [faults::Fault::RedisKill, faults::Fault::NodeKill]
        );
    }

    #[test]
    fn the_ci_scenario_parses() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "fanout",
            "--server",
            "http://127.0.0.1:9",
            "--clients",
            "20",
            "--senders",
            "2",
            "--messages",
            "200",
        ])
        .expect("parses");
        let Command::Fanout(args) = cli.command else {
            panic!("not fanout");
        };
        assert_eq!(
            (args.clients, args.senders, args.messages),
            (20, 2, Some(200))
        );
        assert_eq!(args.rate, 0.0);
    }
}
