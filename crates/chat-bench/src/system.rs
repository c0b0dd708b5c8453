//! What the bench reads from the operating system: a process's resident
//! memory and file-descriptor limit, its own descriptor limit, and where
//! the machine's CPU time went during a measurement.

use std::fs;
use std::time::Instant;

use anyhow::Context;

use crate::stats::Report;

/// The resident set size of process `pid`, in KiB (`VmRSS` in
/// `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("could not read {path}"))?;
    parse_rss_kib(&status).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft "Max open files" limit of process `pid`, as written in
/// `/proc/<pid>/limits`.
pub(crate) fn nofile_limit_of(pid: u32) -> Option<String> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3).map(str::to_owned)
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit and returns
/// the new soft limit. Thousands of sockets need thousands of descriptors.
pub(crate) fn raise_nofile_limit() -> anyhow::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX).context("could not raise RLIMIT_NOFILE")
}

/// Clock ticks per second in `/proc` (`USER_HZ`), 100 on every Linux
/// architecture the bench runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far by the server, the bench, PostgreSQL and the whole
/// machine, in clock ticks. Two samples give how many cores each kept busy
/// in between; the rest of the machine (other work sharing it) is the
/// difference.
#[derive(Debug, Clone)]
pub(crate) struct CpuSample {
    at: Instant,
    server: Option<u64>,
    bench: Option<u64>,
    postgres: u64,
    machine: Option<u64>,
}

impl CpuSample {
    /// A sample now; `server` is the server's pid, if known.
    pub(crate) fn now(server: Option<u32>) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: server.and_then(|pid| process_ticks(&pid.to_string())),
            bench: process_ticks("self"),
            postgres: postgres_ticks(),
            machine: machine_busy_ticks(),
        }
    }

    /// Adds `<prefix>cpu_*_cores` rows: cores kept busy since `earlier`.
    pub(crate) fn add_rows_since(&self, earlier: &CpuSample, prefix: &str, report: &mut Report) {
        let seconds = (self.at - earlier.at).as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let cores =
            |now: u64, then: u64| now.saturating_sub(then) as f64 / TICKS_PER_SECOND / seconds;
        let server = self
            .server
            .zip(earlier.server)
            .map(|(now, then)| cores(now, then));
        let bench = self
            .bench
            .zip(earlier.bench)
            .map(|(now, then)| cores(now, then));
        let postgres = cores(self.postgres, earlier.postgres);
        if let Some(server) = server {
            report.add(format!("{prefix}cpu_server_cores"), server);
        }
        if let Some(bench) = bench {
            report.add(format!("{prefix}cpu_bench_cores"), bench);
        }
        report.add(format!("{prefix}cpu_postgres_cores"), postgres);
        if let Some((now, then)) = self.machine.zip(earlier.machine) {
            let machine = cores(now, then);
            report.add(format!("{prefix}cpu_machine_busy_cores"), machine);
            let known = server.unwrap_or(0.0) + bench.unwrap_or(0.0) + postgres;
            report.add(
                format!("{prefix}cpu_other_cores"),
                (machine - known).max(0.0),
            );
        }
    }
}

/// User plus system ticks of a process (`self` or a pid).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_ticks(&stat)
}

fn parse_process_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses; fields resume after
    // the last ')'. utime and stime are fields 14 and 15, the 12th and 13th
    // after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Ticks of every process named `postgres` (the server and its backends).
fn postgres_ticks() -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let comm = fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim_end() == "postgres").then(|| process_ticks(&name))?
        })
        .sum()
}

/// Busy ticks of all cores together: everything but idle and iowait.
fn machine_busy_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat)
}

fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = fields.iter().sum();
    Some(total - fields.get(3)? - fields.get(4)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_file() {
        let status = "Name:\tchat-server\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_kib(status), Some(12_345));
        assert_eq!(parse_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_are_read_from_proc_stat_lines() {
        let process = "1234 (chat server) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_process_ticks(process), Some(300));
        let machine = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(machine), Some(161));
    }

    #[test]
    fn this_process_has_a_resident_size_and_a_descriptor_limit() {
        let me = std::process::id();
        assert!(rss_kib(me).expect("our own status") > 0);
        assert!(nofile_limit_of(me).is_some());
    }
}
