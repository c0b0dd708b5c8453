//! Every metric the server exposes, by name, and the small functions that
//! record them, so that a call site elsewhere is one line. `GET /metrics`
//! renders them in Prometheus's text format; docs/OPERATIONS.md says what
//! each one means.
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
//! templates, methods, status codes, shard numbers), never a user's or a
//! room's name, nor a raw path.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::hub::Eviction;
use crate::state::AppState;

// Counters, for the whole process.
/// Messages stored by the writers (a resend of a stored one not counted).
const MESSAGES_COMMITTED: &str = "chat_messages_committed_total";
/// Frames written to WebSockets.
const FRAMES_DELIVERED: &str = "chat_frames_delivered_total";
/// Events dropped instead of delivered or published, by `reason`.
const FRAMES_DROPPED: &str = "chat_frames_dropped_total";
/// Sockets closed by the server, by `reason`.
const EVICTIONS: &str = "chat_evictions_total";
/// Requests and frames refused by a rate limit, by `limit`.
const RATE_LIMITED: &str = "chat_rate_limit_refusals_total";
/// Sign-in attempts, by `outcome`.
const SIGN_INS: &str = "chat_sign_ins_total";

// Histograms, for the whole process.
/// Messages per writer commit.
const COMMIT_BATCH: &str = "chat_commit_batch_size";
/// How long a writer commit took.
const COMMIT_SECONDS: &str = "chat_commit_seconds";
/// How long a history page took to answer, by `route`.
const HISTORY_SECONDS: &str = "chat_history_request_seconds";
/// How long an HTTP request took, by `method`, `route` and `status`.
const HTTP_SECONDS: &str = "chat_http_request_seconds";

// Gauges, per service.
/// Open WebSocket connections.
const CONNECTIONS: &str = "chat_websocket_connections";
/// Users with at least one open WebSocket.
const USERS: &str = "chat_authenticated_users";
/// Messages and changes waiting for the writers.
const WRITER_QUEUE: &str = "chat_writer_queue_depth";
/// The most that may wait for the writers.
const WRITER_QUEUE_CAPACITY: &str = "chat_writer_queue_capacity";
/// Database connections by `shard` and `state` (`in_use`, `idle`).
const POOL_CONNECTIONS: &str = "chat_db_pool_connections";
/// The most connections a `shard` holds.
const POOL_MAX: &str = "chat_db_pool_max_connections";
/// Callers waiting for a connection of a `shard`.
const POOL_WAITING: &str = "chat_db_pool_waiting";
/// Whether the link to Redis works, by `direction`.
const REDIS_LINK_UP: &str = "chat_redis_link_up";
/// Events waiting to be published to Redis.
const REDIS_PUBLISH_BACKLOG: &str = "chat_redis_publish_backlog";
/// The most events that may wait to be published to Redis.
const REDIS_PUBLISH_BACKLOG_CAPACITY: &str = "chat_redis_publish_backlog_capacity";
/// Always 1, labelled with the version.
const BUILD_INFO: &str = "chat_build_info";

/// Upper bounds of the latency histograms' buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the commit batch histogram's buckets, in messages.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

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
            let recorder = builder().build_recorder();
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

/// The recorder's configuration: histograms with buckets (so that
/// Prometheus can aggregate them across nodes), not summaries.
fn builder() -> PrometheusBuilder {
    let histograms = [
        (COMMIT_BATCH, BATCH_BUCKETS),
        (COMMIT_SECONDS, LATENCY_BUCKETS),
        (HISTORY_SECONDS, LATENCY_BUCKETS),
        (HTTP_SECONDS, LATENCY_BUCKETS),
    ];
    histograms
        .into_iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("the buckets are constants, and none is empty")
        })
}

/// Describes the process-wide counters and histograms.
fn describe_counters() {
    describe_counter!(
        MESSAGES_COMMITTED,
        Unit::Count,
        "Messages stored by the writers (a resend of a stored message is not counted)"
    );
    describe_counter!(
        FRAMES_DELIVERED,
        Unit::Count,
        "Frames written to WebSockets"
    );
    describe_counter!(
        FRAMES_DROPPED,
        Unit::Count,
        "Events dropped instead of delivered or published, by reason: slow_consumer (a socket's queue was full), broker_down (Redis unreachable), backlog_full (the publish backlog was full)"
    );
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "Sockets the server closed on its own, by reason: too_slow (a slow consumer whose queue overflowed), session_ended"
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Refusals by a rate limit, by limit: register, login, ws_frames"
    );
    describe_counter!(
        SIGN_INS,
        Unit::Count,
        "Sign-in attempts, by outcome: ok, refused (wrong name or password), disabled, rate_limited, invalid, unavailable, error"
    );
    describe_histogram!(COMMIT_BATCH, Unit::Count, "Messages per writer commit");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "How long a writer's commit of a batch took"
    );
    describe_histogram!(
        HISTORY_SECONDS,
        Unit::Seconds,
        "How long a history page took to answer, by route"
    );
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "How long an HTTP request took, by method, route template and status"
    );
}

/// Describes one service's gauges.
fn describe_gauges() {
    describe_gauge!(CONNECTIONS, Unit::Count, "Open WebSocket connections");
    describe_gauge!(
        USERS,
        Unit::Count,
        "Users with at least one open WebSocket on this node"
    );
    describe_gauge!(
        WRITER_QUEUE,
        Unit::Count,
        "Messages and changes waiting for the writers"
    );
    describe_gauge!(
        WRITER_QUEUE_CAPACITY,
        Unit::Count,
        "The most messages and changes that may wait for the writers; senders wait beyond it"
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Database connections of a pool shard, by state: in_use, idle"
    );
    describe_gauge!(
        POOL_MAX,
        Unit::Count,
        "The most database connections a pool shard holds"
    );
    describe_gauge!(
        POOL_WAITING,
        Unit::Count,
        "Callers waiting for a database connection of a pool shard"
    );
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

/// A message was stored.
pub(crate) fn message_committed() {
    counter!(MESSAGES_COMMITTED).increment(1);
}

/// A writer committed `batch` messages in `took`.
pub(crate) fn commit(batch: usize, took: Duration) {
    histogram!(COMMIT_BATCH).record(batch as f64);
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

/// A frame was written to a WebSocket.
pub(crate) fn frame_delivered() {
    counter!(FRAMES_DELIVERED).increment(1);
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// A socket's queue was full: its client reads too slowly.
    SlowConsumer,
    /// Redis was unreachable, so it could not be published.
    BrokerDown,
    /// The publish backlog was full.
    BacklogFull,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::SlowConsumer => "slow_consumer",
            Dropped::BrokerDown => "broker_down",
            Dropped::BacklogFull => "backlog_full",
        }
    }
}

/// `count` events were dropped for `reason`.
pub(crate) fn frames_dropped(reason: Dropped, count: usize) {
    if count > 0 {
        counter!(FRAMES_DROPPED, "reason" => reason.label()).increment(count as u64);
    }
}

/// The server closes a socket, for `why`.
pub(crate) fn evicted(why: Eviction) {
    let reason = match why {
        Eviction::TooSlow => "too_slow",
        Eviction::SessionEnded => "session_ended",
    };
    counter!(EVICTIONS, "reason" => reason).increment(1);
}

/// Which rate limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Sign-ups per address.
    Register,
    /// Sign-ins per address.
    Login,
    /// WebSocket frames per connection.
    WsFrames,
    /// KeyPackages claimed per user.
    KeyPackageClaims,
}

/// A rate limit refused a request or a frame.
pub(crate) fn rate_limited(limit: Limit) {
    let limit = match limit {
        Limit::Register => "register",
        Limit::Login => "login",
        Limit::WsFrames => "ws_frames",
        Limit::KeyPackageClaims => "key_package_claims",
    };
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// A sign-in ended with `result`.
pub(crate) fn sign_in<T>(result: &Result<T, crate::error::ApiError>) {
    use crate::error::ApiError;
    let outcome = match result {
        Ok(_) => "ok",
        Err(ApiError::Unauthorized(_)) => "refused",
        Err(ApiError::Forbidden(_)) => "disabled",
        Err(ApiError::TooManyRequests { .. }) => "rate_limited",
        Err(ApiError::Unprocessable(_) | ApiError::BadRequest(_)) => "invalid",
        Err(ApiError::Unavailable) => "unavailable",
        Err(_) => "error",
    };
    counter!(SIGN_INS, "outcome" => outcome).increment(1);
}

/// A sign-in whose body could not be read as a name and a password.
pub(crate) fn sign_in_unreadable() {
    counter!(SIGN_INS, "outcome" => "invalid").increment(1);
}

/// Times a history request from its start to the end of its handler, when
/// it is dropped.
#[derive(Debug)]
pub(crate) struct HistoryTimer {
    route: &'static str,
    started: Instant,
}

/// Starts timing a history request of `route` (a route template).
pub(crate) fn history_timer(route: &'static str) -> HistoryTimer {
    HistoryTimer {
        route,
        started: Instant::now(),
    }
}

impl Drop for HistoryTimer {
    fn drop(&mut self) {
        histogram!(HISTORY_SECONDS, "route" => self.route)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Records each request's latency by method, route template (`unmatched`
/// for a path no route has) and status.
pub(crate) async fn observe_http(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    histogram!(
        HTTP_SECONDS,
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// The method as a label: one of the few the server answers, or `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
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
    let (connections, users) = state.hub.counts();
    gauge!(CONNECTIONS).set(connections as f64);
    gauge!(USERS).set(users as f64);
    let (queued, capacity) = state.writer.queued();
    gauge!(WRITER_QUEUE).set(queued as f64);
    gauge!(WRITER_QUEUE_CAPACITY).set(capacity as f64);
    for (shard, status) in state.store.pool_status().into_iter().enumerate() {
        let shard = shard.to_string();
        gauge!(POOL_CONNECTIONS, "shard" => shard.clone(), "state" => "in_use")
            .set(status.in_use as f64);
        gauge!(POOL_CONNECTIONS, "shard" => shard.clone(), "state" => "idle")
            .set(status.idle as f64);
        gauge!(POOL_MAX, "shard" => shard.clone()).set(status.max as f64);
        gauge!(POOL_WAITING, "shard" => shard).set(status.waiting as f64);
    }
    if let Some(link) = state.fanout.broker() {
        let up = |yes: bool| if yes { 1.0 } else { 0.0 };
        gauge!(REDIS_LINK_UP, "direction" => "publish").set(up(link.publishing));
        gauge!(REDIS_LINK_UP, "direction" => "subscribe").set(up(link.subscribed));
        gauge!(REDIS_PUBLISH_BACKLOG).set(link.backlog as f64);
        gauge!(REDIS_PUBLISH_BACKLOG_CAPACITY).set(link.backlog_capacity as f64);
    }
}
