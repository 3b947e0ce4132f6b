//! Assembling the service: state, router, middleware, and serving until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use latchkey_domain::ephemeral::{Ephemeral, FailurePolicy, LockoutPolicy};
use latchkey_domain::keyring::KeyRing;
use latchkey_domain::limits::Limits;
use latchkey_domain::mail::Mailer;
use latchkey_domain::passwords::{Hasher, Policy};
use latchkey_domain::tokens::Tokens;
use latchkey_domain::{Core, CoreSettings, Error};
use latchkey_store::Db;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::{Config, RedisFailure, Settings, cpu_count};
use crate::drain::{self, Drain};
use crate::state::{AppState, WebSettings};
use crate::{middleware as mw, routes, telemetry};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A built service: its router and the background work it owns.
#[derive(Debug)]
pub struct App {
    pub state: AppState,
    router: Router,
    reloader: tokio::task::JoinHandle<()>,
    /// The pruner (`LATCHKEY_PRUNE_INTERVAL`), if on.
    pruner: Option<tokio::task::JoinHandle<()>>,
    /// `LATCHKEY_SHUTDOWN_DRAIN`: how long [`serve`](Self::serve) drains after the signal.
    shutdown_drain: Duration,
}

impl Drop for App {
    fn drop(&mut self) {
        self.reloader.abort();
        if let Some(pruner) = &self.pruner {
            pruner.abort();
        }
    }
}

impl App {
    /// Connects to the backends, applies migrations, loads keys: everything that can
    /// fail does so here, before the listener accepts anything.
    pub async fn build(config: &Settings) -> anyhow::Result<Self> {
        let metrics = telemetry::prometheus();
        if config.is_development() {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating LATCHKEY_DATA_DIR {}", config.data_dir.display())
            })?;
        }
        let db = Db::connect(&config.database_url(), config.database_max_connections)
            .await
            .context("connecting to the database")?;
        db.migrate().await.context("applying migrations")?;

        let ephemeral = match &config.redis_url {
            Some(url) => {
                let failure = match config.rate_limit_redis_failure {
                    RedisFailure::Open => FailurePolicy::Open,
                    RedisFailure::Closed => FailurePolicy::Closed,
                };
                Ephemeral::redis(url, &config.redis_prefix, failure).await?
            }
            None => Ephemeral::memory(),
        };
        let keys = KeyRing::load(
            db.clone(),
            config.keys_dir(),
            config.manage_keys,
            config.signing_algorithm(),
            config.key_bits,
        )
        .await
        .context("loading signing keys")?;
        let tokens = Tokens::new(
            keys.clone(),
            ephemeral.clone(),
            config.issuer(),
            config.audience(),
            config.access_token_ttl,
            cpu_count(),
        );
        let hasher = Hasher::new(config.password_hash_concurrency()).await?;
        let policy = password_policy(config)?;
        let mailer = Mailer::new(
            config.smtp_url.as_deref(),
            &config.mail_from,
            config.outbox_dir(),
        )?;

        if config.is_development() {
            tracing::warn!(
                database = %config.database_url(),
                keys_dir = %config.keys_dir().display(),
                "development mode: embedded SQLite, in-process revocation list, rate limits and lockout, locally generated keys; set DATABASE_URL and REDIS_URL for production"
            );
        }
        let reloader = tokio::spawn(keys.clone().run_reloader(
            config.keys_reload_interval,
            config.database_url(),
            std::future::pending(),
        ));

        let pruner = config.prune_interval.0.map(|interval| {
            tokio::spawn(latchkey_domain::prune::run(
                db.clone(),
                latchkey_domain::prune::PruneSettings {
                    interval,
                    batch: config.prune_batch,
                },
            ))
        });

        let web = Arc::new(WebSettings {
            code_ttl: config.authorization_code_ttl,
            session_ttl: config.session_ttl,
            secure_cookies: config.issuer().starts_with("https://"),
            jwks_max_age: config.jwks_max_age,
            redis_configured: matches!(ephemeral, Ephemeral::Redis(_)),
            openapi_json: axum::body::Bytes::from(
                serde_json::to_vec(crate::openapi::document()).context("the OpenAPI document")?,
            ),
        });
        let state = AppState {
            core: Core {
                db,
                keys,
                tokens,
                hasher,
                policy,
                settings: Arc::new(CoreSettings {
                    issuer: config.issuer(),
                    refresh_ttl: config.refresh_token_ttl,
                    lockout: LockoutPolicy {
                        attempts: config.lockout_attempts,
                        window: config.lockout_window,
                        duration: config.lockout_duration,
                        max_duration: config.lockout_max_duration,
                    },
                    require_email_verification: config.require_email_verification(),
                    email_verification_ttl: config.email_verification_ttl,
                    password_reset_ttl: config.password_reset_ttl,
                }),
                limits: Arc::new(limits(config)),
                ephemeral,
                mailer,
            },
            web,
            metrics,
        };
        let router = router(state.clone(), config);
        Ok(Self {
            state,
            router,
            reloader,
            pruner,
            shutdown_drain: config.shutdown_drain,
        })
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves the API on `listener` and `/metrics` on `metrics` (when given) until
    /// `shutdown` resolves, drains for `shutdown_drain` (see [`crate::drain`]), then
    /// finishes the requests in flight. The metrics listener stays up until then, so the
    /// drain can be watched.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, issuer = %self.state.settings.issuer, "listening");
        let metrics = match metrics {
            Some(metrics) => {
                let addr = metrics.local_addr()?;
                tracing::info!(%addr, "metrics listening");
                let router = routes::meta::metrics_router(self.state.clone());
                Some(AbortOnDrop(tokio::spawn(async move {
                    if let Err(err) = axum::serve(metrics, router).await {
                        tracing::error!(error = %err, "metrics listener failed");
                    }
                })))
            }
            None => None,
        };
        let draining = Drain::default();
        // The peer address is what per-IP rate limits count against.
        let service = self
            .router
            .clone()
            .layer(middleware::from_fn_with_state(
                draining.clone(),
                drain::close_connections,
            ))
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(draining.after(shutdown, self.shutdown_drain))
            .await
            .context("serving HTTP")?;
        drop(metrics);
        // The key reloader and the pruner end before the pool closes, so neither meets a
        // closed pool (logged as a failed reload at every shutdown otherwise).
        self.reloader.abort();
        let _ = (&mut self.reloader).await;
        if let Some(pruner) = self.pruner.as_mut() {
            pruner.abort();
            let _ = pruner.await;
        }
        self.state.db.close().await;
        Ok(())
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState, config: &Config) -> Router {
    let api = Router::new()
        .merge(routes::meta::router())
        .merge(routes::wellknown::router())
        .merge(routes::auth::router())
        .merge(routes::email::router())
        .merge(routes::users::router())
        .merge(routes::admin::router())
        .merge(crate::oauth::router())
        .merge(crate::oidc::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), mw::by_ip))
        .fallback(|| async { crate::error::Error(Error::NotFound) })
        .method_not_allowed_fallback(|| async { crate::error::Error(Error::MethodNotAllowed) })
        .with_state(state);

    let mut security = vec![
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    if config.hsts() {
        security.push((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    let mut router = api;
    if let Some(cors) = cors_layer(&config.cors_origins()) {
        router = router.layer(cors);
    }
    let mut router = router
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(middleware::from_fn(mw::record_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(telemetry::make_span)
                        .on_response(telemetry::on_response),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    config.request_timeout,
                )),
        );
    // Outermost, so that every answer carries them: the 408 of the timeout and the CORS
    // preflight answers included (they are made by layers, not by a handler).
    for (name, value) in security {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([REQUEST_ID])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        // Any origin, never with credentials (browsers refuse the combination anyway).
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(base.allow_origin(list).allow_credentials(true))
}

/// The password policy the configuration asks for.
fn password_policy(config: &Config) -> anyhow::Result<Policy> {
    let mut policy = Policy::new(config.password_min_length);
    policy.require_uppercase = config.password_require_uppercase;
    policy.require_lowercase = config.password_require_lowercase;
    policy.require_digit = config.password_require_digit;
    policy.require_symbol = config.password_require_symbol;
    if let Some(path) = &config.password_reject_list {
        let extra = std::fs::read_to_string(path)
            .with_context(|| format!("PASSWORD_REJECT_LIST {}", path.display()))?;
        policy = policy.reject_also(&extra);
    }
    Ok(policy)
}

/// The rate limits the configuration asks for.
fn limits(config: &Config) -> Limits {
    Limits {
        default: config.rate_limit_default.0,
        routes: config.rate_limit_routes.0.iter().cloned().collect(),
        account: config.rate_limit_account.0,
        password: config.rate_limit_password.0,
        client: config.rate_limit_client.0,
        trusted_proxies: config.trusted_proxies.0.clone(),
    }
}
