//! The processes a fault matrix owns and breaks: a PostgreSQL cluster of its
//! own (initdb and pg_ctl on a free port, never the machine's), a
//! redis-server on a free port, two `chat-server` nodes, and, where the
//! machine allows it, a network namespace for the second node with one
//! veth link for everything and another for Redis alone, so that the link
//! to Redis can be cut while the node stays reachable.
//!
//! Everything is stopped and removed when the [`Lab`] is dropped.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::system;

/// Where each piece listens and what the lab is built from.
#[derive(Debug, Clone)]
pub(crate) struct LabConfig {
    /// The `chat-server` binary.
    pub(crate) server_bin: PathBuf,
    /// The `redis-server` binary.
    pub(crate) redis_bin: PathBuf,
    /// PostgreSQL's server binaries (`initdb`, `pg_ctl`).
    pub(crate) pg_bin: PathBuf,
    /// Whether to try a network namespace for the second node.
    pub(crate) netns: bool,
    /// `CHAT_WS_QUEUE` of both nodes.
    pub(crate) ws_queue: usize,
    /// Where the logs, the cluster and the nodes' data go.
    pub(crate) dir: PathBuf,
}

/// The host's end of the namespace's links and the namespace's own
/// addresses.
const HOST_APP: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 1);
const NS_APP: Ipv4Addr = Ipv4Addr::new(10, 213, 1, 2);
const HOST_REDIS: Ipv4Addr = Ipv4Addr::new(10, 213, 2, 1);
const NS_REDIS: Ipv4Addr = Ipv4Addr::new(10, 213, 2, 2);

/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the matrix runs on.
#[derive(Debug)]
pub(crate) struct Lab {
    // Fields drop in this order: the nodes before what they use.
    /// Node 0 on the host, node 1 in the namespace when there is one.
    pub(crate) nodes: Vec<Node>,
    /// The lab's Redis.
    pub(crate) redis: Redis,
    /// The lab's PostgreSQL cluster.
    pub(crate) postgres: Postgres,
    /// The second node's namespace, or why there is none.
    pub(crate) netns: Result<Netns, String>,
    config: LabConfig,
    secrets: Vec<(String, String)>,
    database_url_host: String,
    database_url_ns: String,
}

impl Lab {
    /// Sets up the namespace, starts PostgreSQL and Redis, creates and
    /// migrates the database and starts both nodes.
    pub(crate) fn start(config: LabConfig) -> anyhow::Result<Lab> {
        fs::create_dir_all(&config.dir)
            .with_context(|| format!("could not create {}", config.dir.display()))?;
        let netns = if config.netns {
            Netns::create().map_err(|error| format!("{error:#}"))
        } else {
            Err("disabled with --no-netns".to_owned())
        };
        if let Err(reason) = &netns {
            eprintln!("faults: no network namespace for node 1: {reason}");
        }
        let with_ns = netns.is_ok();
        let postgres = Postgres::create(&config.pg_bin, &config.dir.join("pg"), with_ns)?;
        let redis = Redis::start(&config.redis_bin, &config.dir, with_ns)?;
        let database = "chat_faults";
        postgres.create_database(database)?;
        let database_url_host = postgres.url(Ipv4Addr::LOCALHOST, database);
        let database_url_ns = postgres.url(HOST_APP, database);
        let secrets = generate_secrets(&config.server_bin)?;
        let migrate = Command::new(&config.server_bin)
            .arg("migrate")
            .env("DATABASE_URL", &database_url_host)
            .env("CHAT_LOG", "warn")
            .envs(secrets.iter().map(|(k, v)| (k, v)))
            .output()
            .context("could not run chat-server migrate")?;
        ensure!(
            migrate.status.success(),
            "chat-server migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let mut lab = Lab {
            config,
            netns,
            postgres,
            redis,
            nodes: Vec::new(),
            secrets,
            database_url_host,
            database_url_ns,
        };
        for index in 0..2 {
            let node = lab.spawn_node(index, None)?;
            lab.nodes.push(node);
        }
        for node in &lab.nodes {
            node.wait_ready()?;
        }
        Ok(lab)
    }

    /// Starts node `index` (on `port`, or a free one).
    fn spawn_node(&self, index: usize, port: Option<u16>) -> anyhow::Result<Node> {
        let in_ns = index == 1 && self.netns.is_ok();
        let (ip, database_url, redis_ip) = if in_ns {
            (NS_APP, &self.database_url_ns, HOST_REDIS)
        } else {
            (
                Ipv4Addr::LOCALHOST,
                &self.database_url_host,
                Ipv4Addr::LOCALHOST,
            )
        };
        let port = match port {
            Some(port) => port,
            // In the namespace any port is free; on the host ask for one.
            None if in_ns => 8000,
            None => free_port()?,
        };
        let data_dir = self.config.dir.join(format!("node{index}"));
        fs::create_dir_all(&data_dir)?;
        let log_path = self.config.dir.join(format!("node{index}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("could not open {}", log_path.display()))?;
        let mut command = match (&self.netns, in_ns) {
            (Ok(netns), true) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &netns.name])
                    .arg(&self.config.server_bin);
                command
            }
            _ => Command::new(&self.config.server_bin),
        };
        // Each writer's commit may queue a batch for a socket; the queue
        // must hold a batch from every writer at once.
        let batch = (self.config.ws_queue / 5).max(1);
        command
            .arg("serve")
            .env("CHAT_BIND", format!("{ip}:{port}"))
            .env("DATABASE_URL", database_url)
            .env(
                "REDIS_URL",
                format!("redis://{redis_ip}:{}", self.redis.port),
            )
            .env("CHAT_DATA_DIR", &data_dir)
            .env("CHAT_BCRYPT_COST", "10")
            .env("CHAT_RATE_LIMIT", "off")
            .env("CHAT_LOG", "warn")
            .env("CHAT_WS_QUEUE", self.config.ws_queue.to_string())
            .env("CHAT_WRITER_MAX_BATCH", batch.to_string())
            .env("CHAT_SHUTDOWN_GRACE_SECS", "1")
            .envs(self.secrets.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", self.config.server_bin.display()))?;
        Ok(Node {
            index,
            addr: SocketAddr::from((ip, port)),
            child: Some(child),
            log: log_path,
            in_netns: in_ns,
        })
    }

    /// Kills node `index` with SIGKILL.
    pub(crate) fn kill_node(&mut self, index: usize) -> anyhow::Result<()> {
        self.nodes[index].kill()
    }

    /// Starts node `index` again on its port, after a kill.
    pub(crate) fn restart_node(&mut self, index: usize) -> anyhow::Result<()> {
        let port = self.nodes[index].addr.port();
        self.nodes[index].kill()?;
        let node = self.spawn_node(index, Some(port))?;
        node.wait_ready()?;
        self.nodes[index] = node;
        Ok(())
    }

    /// The process ids of the nodes that run.
    pub(crate) fn node_pids(&self) -> Vec<Option<u32>> {
        self.nodes.iter().map(Node::pid).collect()
    }

    /// The last lines of every node's log.
    pub(crate) fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(lines).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node{} log ---\n{}\n", node.index, tail.join("\n"))
            })
            .collect()
    }
}

/// One `chat-server` process.
#[derive(Debug)]
pub(crate) struct Node {
    /// 0 or 1.
    pub(crate) index: usize,
    /// Where it listens, as the bench reaches it.
    pub(crate) addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    /// Whether it runs in the network namespace.
    pub(crate) in_netns: bool,
}

impl Node {
    /// `http://addr`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("could not kill a node")?;
            child.wait().context("could not reap a node")?;
        }
        Ok(())
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if ready(self.addr) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        bail!(
            "node{} did not become ready on {} within {} s; its log:\n{log}",
            self.index,
            self.addr,
            START_TIMEOUT.as_secs()
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `GET /ready` answers 200, with a plain HTTP/1.0 request (the
/// lab is set up before the bench's runtime has anything to do).
fn ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /ready HTTP/1.0\r\nHost: bench\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && answer.ends_with(b" 200")
}

/// A redis-server of the lab's own.
#[derive(Debug)]
pub(crate) struct Redis {
    bin: PathBuf,
    /// Its port.
    pub(crate) port: u16,
    binds: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start(bin: &Path, dir: &Path, with_ns: bool) -> anyhow::Result<Redis> {
        let binds = if with_ns {
            format!("127.0.0.1 {HOST_REDIS}")
        } else {
            "127.0.0.1".to_owned()
        };
        let mut redis = Redis {
            bin: bin.to_owned(),
            port: free_port()?,
            binds,
            dir: dir.to_owned(),
            child: None,
        };
        redis.restart()?;
        Ok(redis)
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("could not kill redis-server")?;
            child.wait().context("could not reap redis-server")?;
        }
        Ok(())
    }

    /// Starts it (again) on its port, empty, and waits until it listens.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", &self.binds])
            .args(["--save", "", "--appendonly", "no"])
            // It listens on loopback and the lab's own link only; protected
            // mode would refuse the namespace's node.
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {}", self.bin.display()))?;
        self.child = Some(child);
        wait_listening(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), "Redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A PostgreSQL cluster of the lab's own.
#[derive(Debug)]
pub(crate) struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Its port.
    pub(crate) port: u16,
    listen: String,
}

impl Postgres {
    fn create(bin: &Path, data: &Path, with_ns: bool) -> anyhow::Result<Postgres> {
        fs::create_dir_all(data)?;
        // The cluster belongs to `postgres` when we are root (initdb
        // refuses to run as root), who must be able to write it.
        if is_root() {
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(data.parent().unwrap_or(data))
                .status()?;
            ensure!(
                status.success(),
                "could not give {} to postgres",
                data.display()
            );
        }
        let data_arg = data.to_string_lossy().into_owned();
        run_pg(
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
        let listen = if with_ns {
            // The namespace's node reaches the cluster over its link.
            let hba = data.join("pg_hba.conf");
            let mut rules = fs::read_to_string(&hba)?;
            rules.push_str(&format!("host all all {NS_APP}/32 trust\n"));
            fs::write(&hba, rules)?;
            format!("127.0.0.1,{HOST_APP}")
        } else {
            "127.0.0.1".to_owned()
        };
        let cluster = Postgres {
            bin: bin.to_owned(),
            data: data.to_owned(),
            port: free_port()?,
            listen,
        };
        cluster.start()?;
        Ok(cluster)
    }

    fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c max_connections=200",
            self.port,
            self.listen,
            self.data.display()
        );
        let data = self.data.to_string_lossy().into_owned();
        let log = self.data.join("log").to_string_lossy().into_owned();
        run_pg(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
        .map(|_| ())
    }

    /// `kill -9` of the postmaster; returns once the port is closed.
    pub(crate) fn kill(&self) -> anyhow::Result<()> {
        let pid_file = fs::read_to_string(self.data.join("postmaster.pid"))?;
        let pid = pid_file
            .lines()
            .next()
            .context("empty postmaster.pid")?
            .trim()
            .to_owned();
        let status = Command::new("kill").args(["-9", &pid]).status()?;
        ensure!(status.success(), "kill -9 {pid} failed");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        for _ in 0..100 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("PostgreSQL still answers after kill -9")
    }

    /// Starts again after a kill. The killed server's backends take a
    /// moment to exit; until they have, a new postmaster refuses the data
    /// directory.
    pub(crate) fn restart_after_kill(&self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..80 {
            match self.start() {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("PostgreSQL did not restart: {last:?}")
    }

    fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .or_else(|_| {
                Command::new("psql")
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .args(["-U", "postgres", "-d", "postgres"])
                    .args(["-c", &format!("CREATE DATABASE {name}")])
                    .output()
            })
            .context("could not run psql")?;
        ensure!(
            output.status.success(),
            "could not create the database: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn url(&self, host: Ipv4Addr, database: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = run_pg(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// The newest PostgreSQL server binaries under /usr/lib/postgresql.
pub(crate) fn find_pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout == b"0\n")
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn run_pg(tool: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(tool)
            .args(args)
            .output()
    } else {
        Command::new(tool).args(args).output()
    }
    .with_context(|| format!("could not run {}", tool.display()))?;
    ensure!(
        output.status.success(),
        "{} {args:?} failed: {}",
        tool.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// A network namespace with two veth links to the host: one the node is
/// reached on and reaches PostgreSQL on, one it reaches Redis on.
#[derive(Debug)]
pub(crate) struct Netns {
    /// The namespace's name.
    pub(crate) name: String,
    app_link: String,
    redis_link: String,
}

impl Netns {
    fn create() -> anyhow::Result<Netns> {
        let id = std::process::id();
        let netns = Netns {
            name: format!("chatfaults{id}"),
            app_link: format!("cfa{id}"),
            redis_link: format!("cfr{id}"),
        };
        ip(&["netns", "add", &netns.name])?;
        // From here on, Drop removes what was made.
        let ns = netns.name.as_str();
        for (link, host, inner) in [
            (&netns.app_link, HOST_APP, NS_APP),
            (&netns.redis_link, HOST_REDIS, NS_REDIS),
        ] {
            let peer = format!("{link}n");
            ip(&["link", "add", link, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", ns])?;
            ip(&["addr", "add", &format!("{host}/24"), "dev", link])?;
            ip(&["link", "set", link, "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{inner}/24"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", ns, "link", "set", &peer, "up"])?;
        }
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Takes the host's end of the Redis link down: packets between the
    /// node and Redis are dropped, without a reset on either side.
    pub(crate) fn cut_redis(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.redis_link, "down"])
    }

    /// Brings the Redis link back.
    pub(crate) fn restore_redis(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.redis_link, "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Removing the namespace removes the veth ends inside it, and with
        // them their pairs on the host.
        let _ = ip(&["netns", "delete", &self.name]);
        for link in [&self.app_link, &self.redis_link] {
            let _ = Command::new("ip")
                .args(["link", "delete", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("could not run ip (iproute2)")?;
    ensure!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// A port nothing listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr}")
}

/// `SECRET_KEY`, `ENCRYPTION_KEY` and `SEARCH_KEY` shared by both nodes, from
/// `chat-server gen-key`.
fn generate_secrets(server_bin: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new(server_bin)
        .arg("gen-key")
        .output()
        .context("could not run chat-server gen-key")?;
    ensure!(output.status.success(), "chat-server gen-key failed");
    let text = String::from_utf8(output.stdout).context("gen-key printed no text")?;
    let secrets: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    ensure!(
        secrets.iter().any(|(key, _)| key == "SECRET_KEY")
            && secrets.iter().any(|(key, _)| key == "ENCRYPTION_KEY"),
        "chat-server gen-key did not print both keys"
    );
    Ok(secrets)
}

/// Resident memory of each process, in MiB; `None` for one not running.
pub(crate) fn rss_mib(pids: &[Option<u32>]) -> Vec<Option<f64>> {
    pids.iter()
        .map(|pid| {
            pid.and_then(|pid| system::rss_kib(pid).ok())
                .map(|kib| kib as f64 / 1024.0)
        })
        .collect()
}
