//! Faults: PostgreSQL killed in the middle of a burst. The test owns a
//! throw-away PostgreSQL cluster (initdb and pg_ctl on a free port), never
//! the shared one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chat_crypto::{FernetKey, KeyRing};
use serde_json::{Value, json};

use crate::helpers::{TestApp, Tweaks};

/// A PostgreSQL cluster of this test's own.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

/// The PostgreSQL server binaries, if installed.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb
/// refuses to run as root).
fn run(tool: &Path, args: &[&str]) -> Result<()> {
    let as_root = std::env::var("USER").as_deref() == Ok("root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout == b"0\n");
    let output = if as_root {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(tool)
            .args(args)
            .output()?
    } else {
        Command::new(tool).args(args).output()?
    };
    ensure!(
        output.status.success(),
        "{} {:?} failed: {}",
        tool.display(),
        args,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

impl Cluster {
    fn create(bin: PathBuf) -> Result<Cluster> {
        let data = std::env::temp_dir().join(chat_storage::testing::unique_name());
        std::fs::create_dir_all(&data)?;
        // The cluster belongs to `postgres`, who must be able to write it.
        let _ = Command::new("chown").arg("postgres:").arg(&data).status();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data_arg = data.to_string_lossy().into_owned();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &data_arg,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let cluster = Cluster { bin, data, port };
        cluster.start()?;
        Ok(cluster)
    }

    fn start(&self) -> Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        let data = self.data.to_string_lossy().into_owned();
        let log = self.data.join("log").to_string_lossy().into_owned();
        run(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
    }

    /// Starts again after a kill. The killed server's backends take a moment
    /// to notice and exit; until they have, a new postmaster refuses to
    /// start on the same data directory.
    async fn restart_after_kill(&self) -> Result<()> {
        let mut last = None;
        for _ in 0..40 {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let log = std::fs::read_to_string(self.data.join("log")).unwrap_or_default();
        let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
        bail!("PostgreSQL did not restart: {last:?}\n{tail}")
    }

    /// `kill -9` of the postmaster.
    fn kill(&self) -> Result<()> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))?;
        let pid = pid_file
            .lines()
            .next()
            .context("empty postmaster.pid")?
            .trim();
        let status = Command::new("kill").args(["-9", pid]).status()?;
        ensure!(status.success(), "kill -9 {pid} failed");
        // The children notice their parent is gone and exit; wait for the
        // port to close.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("PostgreSQL still answers after kill -9")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = run(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_burst_loses_no_acknowledged_message() -> Result<()> {
    let Some(bin) = postgres_bin() else {
        assert!(
            std::env::var("CHAT_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "CHAT_TEST_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries are installed"
        );
        eprintln!("skipped: no PostgreSQL server binaries in /usr/lib/postgresql");
        return Ok(());
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::create(bin)).await??;
    let url = cluster.url("postgres");
    let app = TestApp::spawn_node(
        &url,
        KeyRing::new(FernetKey::generate(), Vec::new()),
        Tweaks::default(),
    )
    .await?;
    let result = burst_through_an_outage(&app, &cluster).await;
    app.stop().await;
    drop(cluster);
    result
}

async fn burst_through_an_outage(app: &TestApp, cluster: &Cluster) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    let total = 60;
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();

    // First half, then the database dies with messages in flight.
    for i in 0..total / 2 {
        client.send(json!({"type": "message", "content": format!("m{i}"), "client_id": format!("c{i}")})).await?;
    }
    cluster.kill()?;
    for i in total / 2..total {
        client.send(json!({"type": "message", "content": format!("m{i}"), "client_id": format!("c{i}")})).await?;
    }
    // Every message is either acknowledged or refused, never silently lost.
    while acked.len() + refused.len() < total {
        let frame = client.recv().await?;
        let id = frame["client_id"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str() {
            Some("ack") => {
                acked.insert(id, frame["seq"].as_i64().unwrap_or(-1));
            }
            Some("error") => {
                assert_eq!(frame["code"], "unavailable", "{frame}");
                refused.insert(id);
            }
            _ => {}
        }
    }
    assert!(!refused.is_empty(), "the outage refused nothing");

    // While it is down, REST says 503 with a detail and the process lives.
    let history = app.get_authed("/api/chat/messages", &token).await?;
    assert_eq!(history.status(), 503);
    let body: Value = history.json().await?;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("database")),
        "{body}"
    );
    assert_eq!(app.http.get(app.url("/ready")).send().await?.status(), 503);
    assert_eq!(app.http.get(app.url("/health")).send().await?.status(), 200);

    // PostgreSQL comes back; the server recovers by itself.
    cluster.restart_after_kill().await?;
    let mut ready = false;
    for _ in 0..100 {
        if app.http.get(app.url("/ready")).send().await?.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(ready, "the server did not recover");

    // The client resends what was refused, with the same client ids.
    for id in &refused {
        let number = id.trim_start_matches('c');
        let ack = client
            .send_acked("general", &format!("m{number}"), id)
            .await?;
        acked.insert(id.clone(), ack["seq"].as_i64().unwrap_or(-1));
    }

    // Every acknowledged message is in the history exactly once, numbered
    // without gaps.
    let items: Vec<Value> = app
        .get_authed("/api/chat/messages?limit=200", &token)
        .await?
        .json()
        .await?;
    let contents: Vec<&str> = items.iter().filter_map(|i| i["content"].as_str()).collect();
    let unique: BTreeSet<&str> = contents.iter().copied().collect();
    assert_eq!(contents.len(), total, "history: {contents:?}");
    assert_eq!(unique.len(), total);
    let mut seqs: Vec<i64> = acked.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=i64::try_from(total)?).collect::<Vec<i64>>());
    Ok(())
}
