use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::{self, Next};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http, web};
use chat_domain::RoomName;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::TransportConfig;
use crate::error::ApiError;
use crate::fanout::{Fanout, LocalFanout};
use crate::hub::Hub;
use crate::limits::Limiter;
use crate::metrics::Limit;
use crate::openapi::ApiDoc;
use crate::redis_fanout::RedisFanout;
use crate::routes;
use crate::session;
use crate::state::{AppState, Limiters, Services};
use crate::writer;

/// Why the server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database is unreachable or not migrated.
    #[error("could not load the `general` room (has the database been migrated?)")]
    Storage(#[from] chat_storage::StorageError),
    /// The database has no `general` room.
    #[error("the database has no `general` room; run the migrations")]
    NoGeneralRoom,
    /// The Redis URL is not valid.
    #[error(transparent)]
    Broker(#[from] crate::redis_fanout::BrokerError),
    /// The address could not be bound.
    #[error("could not listen on {address}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The chat routes and their shared state, ready to mount into any
/// `actix_web::App` with [`ChatService::configure`].
#[derive(Debug, Clone)]
pub struct ChatService {
    state: AppState,
    writer_task: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl ChatService {
    /// Builds the service: with the Redis fan-out when the configuration
    /// names Redis, in-process otherwise. Needs a migrated database. Must be
    /// called inside a Tokio runtime: it starts the writer task.
    pub async fn new(
        config: TransportConfig,
        services: Services,
    ) -> Result<ChatService, BuildError> {
        let hub = Hub::new();
        let shutdown = CancellationToken::new();
        let fanout: Arc<dyn Fanout> = match &config.redis_url {
            Some(url) => Arc::new(RedisFanout::start(
                url,
                &config.redis_namespace,
                config.redis_backlog,
                hub.clone(),
                services.store.clone(),
                shutdown.child_token(),
            )?),
            None => Arc::new(LocalFanout::new(hub.clone())),
        };
        ChatService::assemble(config, services, hub, fanout, shutdown).await
    }

    /// Builds the service on a given hub and fan-out (a broker-backed
    /// fan-out delivers into `hub` on every node).
    pub async fn with_fanout(
        config: TransportConfig,
        services: Services,
        hub: Hub,
        fanout: Arc<dyn Fanout>,
    ) -> Result<ChatService, BuildError> {
        ChatService::assemble(config, services, hub, fanout, CancellationToken::new()).await
    }

    async fn assemble(
        config: TransportConfig,
        services: Services,
        hub: Hub,
        fanout: Arc<dyn Fanout>,
        shutdown: CancellationToken,
    ) -> Result<ChatService, BuildError> {
        // Before anything is counted.
        crate::metrics::install();
        let general = services
            .store
            .room_by_name(&RoomName::general())
            .await?
            .ok_or(BuildError::NoGeneralRoom)?;
        let lanes = if services.store.writes_in_parallel() {
            config.writer_lanes.max(1)
        } else {
            1
        };
        if config.outbound_queue < config.writer_max_batch.saturating_mul(lanes + 1) {
            tracing::warn!(
                outbound_queue = config.outbound_queue,
                writer_max_batch = config.writer_max_batch,
                writer_lanes = lanes,
                "the outbound queue is smaller than the writer's batch times (lanes + 1): \
                 busy commits can disconnect every socket of a room as too slow"
            );
        }
        // The writers run on this thread: their connections are opened now,
        // in this thread's shard of the pool, rather than by the first
        // messages, which would wait for them.
        if let Err(error) = services.store.warm_up(lanes).await {
            tracing::warn!(error = %crate::error::Chain(&error), "could not open the writers' database connections ahead");
        }
        let (writer, writer_task) = writer::spawn(
            &services.store,
            &fanout,
            writer::WriterConfig {
                max_batch: config.writer_max_batch,
                queue: config.writer_queue,
                lanes,
            },
            &shutdown.child_token(),
        );
        crate::recheck::spawn(
            services.store.clone(),
            hub.clone(),
            config
                .recheck_interval
                .max(std::time::Duration::from_millis(100)),
            shutdown.child_token(),
        );
        let limiters = config.rate_limits.map(|limits| {
            Arc::new(Limiters {
                register: Limiter::new(limits.register, Limit::Register),
                login: Limiter::new(limits.login, Limit::Login),
                key_package_claims: Limiter::new(
                    limits.key_package_claims,
                    Limit::KeyPackageClaims,
                ),
            })
        });
        let state = AppState {
            limiters,
            gauges: Arc::new(crate::metrics::Gauges::new()),
            store: services.store,
            hasher: services.hasher,
            tokens: services.tokens,
            hub,
            fanout,
            writer,
            config: Arc::new(config),
            general: Arc::new(general),
            shutdown,
        };
        Ok(ChatService {
            state,
            writer_task: Arc::new(std::sync::Mutex::new(Some(writer_task))),
        })
    }

    /// Mounts every route: REST, the WebSocket, OpenAPI JSON, Swagger UI at
    /// `/docs` and ReDoc at `/redoc`, and `/metrics` unless it has a
    /// listener of its own (`TransportConfig::metrics_bind`).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let limit = self.state.config.max_body_bytes;
        if self.state.config.metrics_bind.is_none() {
            cfg.service(routes::metrics::metrics);
        }
        cfg.app_data(web::Data::new(self.state.clone()))
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .configure(routes::configure)
            .service(session::upgrade)
            .service(web::redirect("/docs", "/docs/"))
            .service(
                SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", ApiDoc::openapi()),
            );
    }

    /// Mounts `/metrics` alone, for a listener of its own.
    pub fn configure_metrics(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.state.clone()))
            .service(routes::metrics::metrics);
    }

    /// Starts an orderly shutdown: sockets are closed with 1001 and the
    /// writer stores what is queued, then stops. Waits at most `grace`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.state.shutdown.cancel();
        let task = self
            .writer_task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("the writer did not finish within the grace period");
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &TransportConfig {
        &self.state.config
    }
}

pub(crate) fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match error {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("request body is larger than {limit} bytes")).into()
        }
        JsonPayloadError::ContentType => ApiError::Unprocessable(
            "expected a JSON body with Content-Type: application/json".to_owned(),
        )
        .into(),
        other => ApiError::Unprocessable(format!("invalid JSON body: {other}")).into(),
    }
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::invalid_query(error).into()
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Unprocessable(format!("invalid path: {error}")).into()
}

fn cors(origins: &[String]) -> Cors {
    // Tokens travel in a header, never in cookies, so credentials are not
    // allowed; with no origins configured, no other site may call us.
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| {
            if origin == "*" {
                cors.allow_any_origin()
            } else {
                cors.allowed_origin(origin)
            }
        })
        .allowed_methods([http::Method::GET, http::Method::POST])
        .allowed_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
        .max_age(3600)
}

/// The whole server: the chat service on its own listener, and `/metrics`
/// on another when so configured.
pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The metrics listener's address and server, when it has its own.
    metrics: Option<(SocketAddr, Server)>,
    service: ChatService,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the server.
    pub async fn build(
        config: TransportConfig,
        services: Services,
    ) -> Result<Application, BuildError> {
        let service = ChatService::new(config, services).await?;
        Application::from_service(service)
    }

    /// Serves an already built [`ChatService`].
    pub fn from_service(service: ChatService) -> Result<Application, BuildError> {
        let config = service.config().clone();
        let bind_error = |source| BuildError::Bind {
            address: config.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let app_service = service.clone();
        let origins = config.cors_origins.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(cors(&origins))
                .wrap(middleware::from_fn(log_request))
                .wrap(middleware::from_fn(crate::metrics::observe_http))
                .configure(|cfg| app_service.configure(cfg))
                .default_service(web::to(not_found))
        })
        .workers(config.workers.max(1))
        .disable_signals()
        .shutdown_timeout(config.shutdown_grace.as_secs().max(1))
        .listen(listener)
        .map_err(bind_error)?
        .run();
        let metrics = match &config.metrics_bind {
            Some(bind) => Some(metrics_server(&service, bind)?),
            None => None,
        };
        Ok(Application {
            address,
            server,
            metrics,
            service,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address `/metrics` listens on, when it has a listener of its own.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(address, _)| *address)
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes every
    /// socket with 1001, stores what is queued and finishes in-flight
    /// requests within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let grace = self.service.config().shutdown_grace;
        let mut server = std::pin::pin!(self.server);
        let (metrics_handle, metrics) = match self.metrics {
            Some((_, metrics)) => (Some(metrics.handle()), Some(metrics)),
            None => (None, None),
        };
        let has_metrics = metrics.is_some();
        let mut metrics = std::pin::pin!(async move {
            match metrics {
                Some(metrics) => metrics.await,
                None => Ok(()),
            }
        });
        tokio::select! {
            result = &mut server => return result,
            result = &mut metrics, if has_metrics => return result,
            () = shutdown => {}
        }
        tracing::info!("shutting down");
        // The stop command is sent at once; the server future must keep
        // being polled to carry it out, while the sessions close and the
        // writer drains.
        drop(handle.stop(true));
        if let Some(metrics_handle) = metrics_handle {
            drop(metrics_handle.stop(true));
        }
        let (result, (), metrics_result) =
            tokio::join!(server, self.service.shutdown(grace), metrics);
        result.and(metrics_result)
    }
}

/// `/metrics` alone on a listener of its own at `bind`, with one worker.
fn metrics_server(service: &ChatService, bind: &str) -> Result<(SocketAddr, Server), BuildError> {
    let bind_error = |source| BuildError::Bind {
        address: bind.to_owned(),
        source,
    };
    let listener = TcpListener::bind(bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let service = service.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(|cfg| service.configure_metrics(cfg))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(bind_error)?
    .run();
    Ok((address, server))
}

/// Logs each request by method, path and status. The query string is left
/// out on purpose: the seed's clients put their token there.
async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = req.path().to_owned();
    let started = std::time::Instant::now();
    let response = next.call(req).await?;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("Not Found".to_owned()))
}
