//! Latency percentiles, the tally of a run's client reports, and the
//! summary a scenario prints (a table, or JSON with `--json`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::fleet::Finished;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Percentiles {
    /// How many samples.
    pub(crate) count: usize,
    /// Median.
    pub(crate) p50: f64,
    /// 90th percentile.
    pub(crate) p90: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Largest sample.
    pub(crate) max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of samples in microseconds.
    pub(crate) fn of_micros(mut samples: Vec<u32>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |fraction: f64| {
            let rank = (fraction * samples.len() as f64).ceil() as usize;
            f64::from(samples[rank.clamp(1, samples.len()) - 1]) / 1_000.0
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Everything a run's clients saw, added up.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// `ack` frames.
    pub(crate) acks: u64,
    /// Messages answered with an `error` frame.
    pub(crate) refusals: u64,
    /// Messages stored in the bench rooms during the run: from the highest
    /// seq anyone saw back to the room's seq at the join.
    pub(crate) stored: u64,
    /// `message` frames received in bench rooms.
    pub(crate) deliveries: u64,
    /// Deliveries owed: every stored message to every client in its room.
    pub(crate) expected: u64,
    /// Seqs received twice by the same client.
    pub(crate) duplicates: u64,
    /// Seqs received after a higher one.
    pub(crate) out_of_order: u64,
    /// Seqs never received.
    pub(crate) missing: u64,
    /// Sockets that ended before the run did.
    pub(crate) closed: usize,
    /// Why the first of them ended.
    pub(crate) first_closed: Option<String>,
    /// `error` frames of any kind.
    pub(crate) errors: u64,
    /// The first one.
    pub(crate) first_error: Option<String>,
    /// Delivery latency.
    pub(crate) latency: Percentiles,
    /// Ack latency of messages.
    pub(crate) ack_latency: Percentiles,
    /// Ack latency of edits.
    pub(crate) edit_ack_latency: Percentiles,
    /// Ack latency of reactions added or taken back.
    pub(crate) reaction_ack_latency: Percentiles,
    /// Edits sent.
    pub(crate) edits_sent: u64,
    /// Reactions sent (added or taken back).
    pub(crate) reactions_sent: u64,
    /// When the last bench message arrived anywhere.
    pub(crate) last_delivery: Option<Instant>,
    /// When the last ack arrived anywhere.
    pub(crate) last_ack: Option<Instant>,
}

impl Tally {
    /// Adds up the reports of a finished run.
    pub(crate) fn of(finished: Finished) -> Tally {
        let rooms = finished.names.len();
        let mut finals: Vec<i64> = finished
            .shared
            .acked_seq
            .iter()
            .map(|seq| seq.load(Ordering::Relaxed))
            .collect();
        let mut bases: Vec<Option<i64>> = vec![None; rooms];
        for tracked in finished.reports.iter().flat_map(|report| &report.rooms) {
            finals[tracked.room] = finals[tracked.room].max(tracked.last);
            let base = &mut bases[tracked.room];
            *base = Some(base.map_or(tracked.base, |b| b.min(tracked.base)));
        }
        let mut tally = Tally {
            acks: finished.shared.acks.load(Ordering::Relaxed),
            refusals: finished.shared.refusals.load(Ordering::Relaxed),
            edits_sent: finished.shared.sent_edits.load(Ordering::Relaxed),
            reactions_sent: finished.shared.sent_reactions.load(Ordering::Relaxed),
            stored: bases
                .iter()
                .zip(&finals)
                .filter_map(|(base, last)| base.map(|base| (last - base).max(0).unsigned_abs()))
                .sum(),
            ..Tally::default()
        };
        let mut latencies = Vec::new();
        let mut ack_latencies = Vec::new();
        let mut edit_ack_latencies = Vec::new();
        let mut reaction_ack_latencies = Vec::new();
        for report in finished.reports {
            for tracked in &report.rooms {
                let owed = (finals[tracked.room] - tracked.base).max(0).unsigned_abs();
                tally.expected += owed;
                tally.deliveries += tracked.deliveries;
                tally.duplicates += tracked.duplicates;
                tally.out_of_order += tracked.out_of_order;
                tally.missing += tracked.missing(finals[tracked.room]);
            }
            if let Some(reason) = report.closed {
                tally.closed += 1;
                tally.first_closed.get_or_insert(reason);
            }
            tally.errors += report.errors;
            if let Some(error) = report.first_error {
                tally.first_error.get_or_insert(error);
            }
            tally.last_delivery = tally.last_delivery.max(report.last_delivery);
            tally.last_ack = tally.last_ack.max(report.last_ack);
            latencies.extend(report.latencies);
            ack_latencies.extend(report.ack_latencies);
            edit_ack_latencies.extend(report.edit_ack_latencies);
            reaction_ack_latencies.extend(report.reaction_ack_latencies);
        }
        tally.latency = Percentiles::of_micros(latencies);
        tally.ack_latency = Percentiles::of_micros(ack_latencies);
        tally.edit_ack_latency = Percentiles::of_micros(edit_ack_latencies);
        tally.reaction_ack_latency = Percentiles::of_micros(reaction_ack_latencies);
        tally
    }

    /// The broken promises: duplicates, reordering, missing messages,
    /// refused or unanswered messages, dropped sockets.
    pub(crate) fn problems(&self, sent: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.duplicates > 0 {
            problems.push(format!("{} duplicate deliveries", self.duplicates));
        }
        if self.out_of_order > 0 {
            problems.push(format!("{} deliveries out of seq order", self.out_of_order));
        }
        if self.missing > 0 {
            problems.push(format!("{} deliveries missing", self.missing));
        }
        if self.refusals > 0 {
            problems.push(format!("{} messages refused", self.refusals));
        }
        let answered = self.acks + self.refusals;
        if answered < sent {
            problems.push(format!(
                "{} messages never answered with an ack or error",
                sent - answered
            ));
        }
        if self.errors > 0 {
            problems.push(format!(
                "{} error frames; the first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.closed > 0 {
            problems.push(format!(
                "{} sockets ended early; the first: {}",
                self.closed,
                self.first_closed.as_deref().unwrap_or("?")
            ));
        }
        problems
    }

    /// The rows every message scenario reports, with rates measured from
    /// `start`.
    pub(crate) fn add_rows(&self, report: &mut Report, start: Instant, sent: u64) {
        let since_start = |at: Option<Instant>| at.map_or(Duration::ZERO, |at| at - start);
        let delivery_window = since_start(self.last_delivery);
        let ack_window = since_start(self.last_ack);
        report.add("messages_sent", sent);
        report.add("acks", self.acks);
        report.add("refused", self.refusals);
        report.add("stored", self.stored);
        report.add("durable_msgs_per_s", per_second(self.acks, ack_window));
        report.add("deliveries", self.deliveries);
        report.add("expected_deliveries", self.expected);
        report.add(
            "deliveries_per_s",
            per_second(self.deliveries, delivery_window),
        );
        report.add("delivery_window_s", delivery_window.as_secs_f64());
        report.latency("latency", &self.latency);
        report.latency("ack_latency", &self.ack_latency);
        if self.edits_sent + self.reactions_sent > 0 {
            // Of the frames sent, these changed messages; every ack above
            // counts a committed item, whatever its kind.
            report.add("edits_sent", self.edits_sent);
            report.add("reactions_sent", self.reactions_sent);
            report.latency("edit_ack_latency", &self.edit_ack_latency);
            report.latency("reaction_ack_latency", &self.reaction_ack_latency);
        }
        report.add("duplicates", self.duplicates);
        report.add("out_of_order", self.out_of_order);
        report.add("missing", self.missing);
        report.add("sockets_closed_early", self.closed as u64);
        for problem in self.problems(sent) {
            report.problem(problem);
        }
    }
}

/// `count` per second over `window`; 0 for an empty window.
pub(crate) fn per_second(count: u64, window: Duration) -> f64 {
    let seconds = window.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A scenario's summary: named figures in order, and the problems that
/// make the run fail.
#[derive(Debug)]
pub(crate) struct Report {
    scenario: &'static str,
    rows: Vec<(String, Value)>,
    problems: Vec<String>,
}

impl Report {
    /// An empty summary of `scenario`.
    pub(crate) fn new(scenario: &'static str) -> Report {
        Report {
            scenario,
            rows: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds a figure.
    pub(crate) fn add(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let value = match value.into() {
            // Three decimals are plenty; keep the JSON readable.
            Value::Number(number) if number.is_f64() => {
                let rounded = (number.as_f64().unwrap_or(0.0) * 1_000.0).round() / 1_000.0;
                json!(rounded)
            }
            other => other,
        };
        self.rows.push((key.into(), value));
    }

    /// Adds `<prefix>_p50_ms`, `_p90_ms`, `_p99_ms`, `_max_ms` and the
    /// sample count.
    pub(crate) fn latency(&mut self, prefix: &str, percentiles: &Percentiles) {
        self.add(format!("{prefix}_samples"), percentiles.count as u64);
        self.add(format!("{prefix}_p50_ms"), percentiles.p50);
        self.add(format!("{prefix}_p90_ms"), percentiles.p90);
        self.add(format!("{prefix}_p99_ms"), percentiles.p99);
        self.add(format!("{prefix}_max_ms"), percentiles.max);
    }

    /// Records a problem; the run then exits non-zero.
    pub(crate) fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    /// Records a problem for a list of failures, if there are any: how many
    /// and the first.
    pub(crate) fn failures(&mut self, what: &str, failures: &[String]) {
        if let Some(first) = failures.first() {
            self.problem(format!("{} {what}; the first: {first}", failures.len()));
        }
    }

    /// Whether the run had no problems.
    pub(crate) fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary as one JSON object.
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("scenario".to_owned(), json!(self.scenario));
        for (key, value) in &self.rows {
            object.insert(key.clone(), value.clone());
        }
        object.insert("problems".to_owned(), json!(self.problems));
        object.insert("ok".to_owned(), json!(self.ok()));
        Value::Object(object)
    }

    /// The summary as an aligned two-column table.
    pub(crate) fn to_table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(key, _)| key.len())
            .max()
            .unwrap_or(0);
        let mut table = format!("== {} ==\n", self.scenario);
        for (key, value) in &self.rows {
            table.push_str(&format!("{key:<width$}  {}\n", display(value)));
        }
        if self.problems.is_empty() {
            table.push_str("result: ok\n");
        } else {
            for problem in &self.problems {
                table.push_str(&format!("PROBLEM: {problem}\n"));
            }
            table.push_str("result: FAILED\n");
        }
        table
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_f64() => {
            let value = number.as_f64().unwrap_or(0.0);
            if value.abs() >= 100.0 {
                format!("{value:.0}")
            } else if value.abs() >= 1.0 {
                format!("{value:.2}")
            } else {
                format!("{value:.3}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        let p = Percentiles::of_micros(samples);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p90, 90.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
        assert_eq!(Percentiles::of_micros(vec![]), Percentiles::default());
        assert_eq!(Percentiles::of_micros(vec![1_500]).p99, 1.5);
    }

    #[test]
    fn a_report_with_a_problem_is_not_ok_in_either_form() {
        let mut report = Report::new("fanout");
        report.add("deliveries", 10u64);
        report.add("deliveries_per_s", 1234.5678);
        assert!(report.ok());
        report.problem("3 deliveries missing");
        assert!(!report.ok());
        let json = report.to_json();
        assert_eq!(json["deliveries_per_s"], json!(1234.568));
        assert_eq!(json["ok"], json!(false));
        let table = report.to_table();
        assert!(table.contains("deliveries_per_s  1235"), "{table}");
        assert!(table.contains("PROBLEM: 3 deliveries missing"), "{table}");
    }
}
