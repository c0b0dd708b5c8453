//! The smallest scenario end to end against the reference server, the way
//! CI keeps the bench working. Nothing here asserts a timing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_chat-bench");

/// A reference server on a free port, killed when dropped.
struct Reference {
    child: Child,
    url: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_reference(extra: &[&str]) -> Reference {
    let mut child = Command::new(BENCH)
        .args(["reference", "--bind", "127.0.0.1:0", "--workers", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the reference server starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let url = lines.by_ref().map_while(Result::ok).find_map(|line| {
        line.split_whitespace()
            .find(|word| word.starts_with("http://"))
            .map(str::to_owned)
    });
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let mut reference = Reference {
        child,
        url: String::new(),
    };
    reference.url = url.expect("the reference server says where it listens");
    reference
}

fn fanout(server: &str) -> (Output, Value) {
    let output = Command::new(BENCH)
        .args(["fanout", "--server", server])
        .args(["--clients", "20", "--senders", "2", "--messages", "200"])
        .args(["--drain", "3", "--json"])
        .output()
        .expect("the bench runs");
    let summary = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not a JSON summary ({error}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, summary)
}

#[test]
fn the_ci_fanout_scenario_passes_against_the_reference_server() {
    let reference = start_reference(&[]);
    let (output, summary) = fanout(&reference.url);
    assert!(output.status.success(), "{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["acks"], 200, "{summary}");
    assert_eq!(summary["deliveries"], 4_000, "{summary}");
    assert_eq!(summary["expected_deliveries"], 4_000, "{summary}");
    assert_eq!(summary["missing"], 0, "{summary}");
}

#[test]
fn a_withheld_delivery_fails_the_run() {
    let reference = start_reference(&["--drop-every", "50"]);
    let (output, summary) = fanout(&reference.url);
    assert_eq!(output.status.code(), Some(1), "{summary}");
    assert_eq!(summary["ok"], false, "{summary}");
    // Seqs 50, 100, 150 and 200 never reach one client.
    assert_eq!(summary["missing"], 4, "{summary}");
    assert_eq!(summary["deliveries"], 3_996, "{summary}");
}
