//! Every metric the server exposes, by name, and the small functions that
//! record them, so that a call site elsewhere is one line. `GET /metrics`
//! renders them in Prometheus's text format.
//!
//! Counters and histograms go through the `metrics` facade into one
//! Prometheus recorder per process, installed the first time a service is
//! built: a process may run several services (tests start many), and the
//! facade has one global recorder, so they share it and their counts add
//! up. Gauges that describe one service's state (its sockets, its writer's
//! queue, its database pool, its link to Redis) are read from that service
//! when `/metrics` is scraped, into a recorder of the service's own
//! ([`Gauges`]), so two services in one process never overwrite each
//! other's; `/metrics` renders both.
//!
//! Labels take a few fixed values each (reasons, outcomes, route
//! templates, status codes, shard numbers), never a user's or a room's
//! name, nor a raw path.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{Unit, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::state::AppState;

/// Events dropped on the way to the other nodes, by `reason`.
const FRAMES_DROPPED: &str = "chat_frames_dropped_total";
/// Whether the link to Redis works, by `direction`.
const REDIS_LINK_UP: &str = "chat_redis_link_up";
/// Events waiting to be published to Redis.
const REDIS_PUBLISH_BACKLOG: &str = "chat_redis_publish_backlog";
/// The most events that may wait to be published to Redis.
const REDIS_PUBLISH_BACKLOG_CAPACITY: &str = "chat_redis_publish_backlog_capacity";
/// Always 1, labelled with the version.
const BUILD_INFO: &str = "chat_build_info";

/// How often the recorder's histograms are folded in, whether or not
/// anyone scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use; `None` when another
/// recorder was installed first (an embedder's), which then gets every
/// counter and histogram instead.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder is installed in this process: it gets the \
                     counters and histograms, and /metrics shows only the gauges"
                );
                return None;
            }
            describe_counters();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "could not start the metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

/// Describes the process-wide counters and histograms.
fn describe_counters() {
    describe_counter!(
        FRAMES_DROPPED,
        Unit::Count,
        "Events dropped instead of delivered or published, by reason: slow_consumer (a socket's queue was full), broker_down (Redis unreachable), backlog_full (the publish backlog was full)"
    );
}

/// Describes one service's gauges.
fn describe_gauges() {
    describe_gauge!(
        REDIS_LINK_UP,
        "1 while the link to Redis works, by direction: publish, subscribe"
    );
    describe_gauge!(
        REDIS_PUBLISH_BACKLOG,
        Unit::Count,
        "Events waiting to be published to Redis"
    );
    describe_gauge!(
        REDIS_PUBLISH_BACKLOG_CAPACITY,
        Unit::Count,
        "The most events that may wait to be published to Redis (CHAT_REDIS_BACKLOG)"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the server's version is a label");
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Redis was unreachable, so it could not be published.
    BrokerDown,
    /// The publish backlog was full.
    BacklogFull,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::BrokerDown => "broker_down",
            Dropped::BacklogFull => "backlog_full",
        }
    }
}

/// `count` events were dropped for `reason`.
pub(crate) fn frames_dropped(reason: Dropped, count: usize) {
    if count > 0 {
        ::metrics::counter!(FRAMES_DROPPED, "reason" => reason.label()).increment(count as u64);
    }
}

/// One service's gauges, in a recorder of its own.
#[derive(Debug)]
pub(crate) struct Gauges {
    recorder: PrometheusRecorder,
}

impl Gauges {
    pub(crate) fn new() -> Gauges {
        let recorder = PrometheusBuilder::new().build_recorder();
        ::metrics::with_local_recorder(&recorder, describe_gauges);
        Gauges { recorder }
    }
}

/// The metrics in Prometheus's text format: `state`'s gauges as they are
/// now, then the process's counters and histograms.
pub(crate) fn render(state: &AppState) -> String {
    ::metrics::with_local_recorder(&state.gauges.recorder, || sample(state));
    let mut text = state.gauges.recorder.handle().render();
    if let Some(handle) = install() {
        text.push_str(&handle.render());
    }
    text
}

/// Sets the gauges that describe `state` as it is now.
fn sample(state: &AppState) {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    if let Some(link) = state.fanout.broker() {
        let up = |yes: bool| if yes { 1.0 } else { 0.0 };
        gauge!(REDIS_LINK_UP, "direction" => "publish").set(up(link.publishing));
        gauge!(REDIS_LINK_UP, "direction" => "subscribe").set(up(link.subscribed));
        gauge!(REDIS_PUBLISH_BACKLOG).set(link.backlog as f64);
        gauge!(REDIS_PUBLISH_BACKLOG_CAPACITY).set(link.backlog_capacity as f64);
    }
}
