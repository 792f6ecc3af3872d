//! Wiring: application state, starting the HTTP/WebSocket server, graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::attachments::{Attachments, Blobs};
use crate::auth::{IdentityVerifier, RateLimiter};
use crate::chat::{Chat, Writer};
use crate::config::Config;
use crate::hub::Hub;
use crate::kb::indexer::{state_file_for, Indexer};
use crate::kb::Kb;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a handler needs: one pointer, so every request and every socket task
/// holds a single reference rather than a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub config: Arc<Config>,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub chat: Chat,
    pub metrics: Arc<Metrics>,
    pub identity: Arc<IdentityVerifier>,
    pub session_limiter: Arc<RateLimiter>,
    pub attachments: Attachments,
    pub kb: Kb,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    stop_accepting: CancellationToken,
    stop_writer: CancellationToken,
    stop_background: CancellationToken,
    serve_task: JoinHandle<std::io::Result<()>>,
    writer_task: JoinHandle<()>,
}

impl Server {
    /// Open the data dir, apply migrations, bind `config.bind` (port 0 picks a free
    /// port) and start serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let config = Arc::new(config);
        let store = Store::open(&config.data_dir).await?;
        let identity = Arc::new(IdentityVerifier::from_config(&config.identity)?);
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(config.limits.outbound_queue));
        let engine = crate::kb::open_engine(&config).map_err(|e| match e {
            lingshi_search::SearchError::Locked => anyhow::anyhow!(
                "the search index {} is in use by another lingshi server; stop it or use another --data-dir",
                crate::kb::index_dir(&config).display()
            ),
            other => anyhow::anyhow!("cannot open the search index: {other}"),
        })?;
        let kb = Kb {
            store: store.clone(),
            engine: engine.clone(),
            index_wake: Arc::default(),
            suggest_slots: Arc::new(tokio::sync::Semaphore::new(2)),
            suggested_at: Arc::default(),
        };
        let stop_writer = CancellationToken::new();
        let (writer, writer_task) = Writer::start(
            store.clone(),
            hub.clone(),
            metrics.clone(),
            config.limits.write_queue,
            config.limits.commit_batch_max,
            stop_writer.clone(),
        );
        let attachments = Attachments {
            store: store.clone(),
            blobs: Blobs::open(&config.data_dir).context("cannot create the attachments folder")?,
            limits: Arc::new(lingshi_media::Limits {
                max_bytes: config.limits.image_max_bytes,
                max_pixels: config.limits.image_max_pixels,
                thumb_max_side: 512,
            }),
        };
        let stop_background = CancellationToken::new();
        attachments.clone().spawn_gc(
            Duration::from_secs(config.limits.unreferenced_upload_ttl_secs),
            Duration::from_secs(3600.min(config.limits.unreferenced_upload_ttl_secs.max(1))),
            stop_background.clone(),
        );
        let state = AppState(Arc::new(AppParts {
            attachments,
            chat: Chat {
                config: config.clone(),
                store: store.clone(),
                hub: hub.clone(),
                writer,
                assign_lock: Arc::default(),
                kb: kb.clone(),
            },
            kb: kb.clone(),
            session_limiter: Arc::new(RateLimiter::new(config.limits.sessions_per_minute)),
            config: config.clone(),
            store,
            hub,
            metrics,
            identity,
        }));
        state.hub.clone().spawn_heartbeat(
            Duration::from_secs(config.limits.ping_interval_secs),
            Duration::from_secs(config.limits.idle_timeout_secs),
            stop_background.clone(),
        );
        let indexer = Indexer {
            store: state.store.clone(),
            engine,
            state_file: state_file_for(&crate::kb::index_dir(&config)),
        };
        {
            // Catch up in the background: a first build of a large index must not hold
            // the chat back.
            let indexer = indexer.clone();
            let wake = kb.index_wake.clone();
            let stop = stop_background.clone();
            tokio::spawn(async move {
                if let Err(e) = indexer.start().await {
                    tracing::error!(error = ?e, "search index catch-up failed");
                }
                indexer.spawn(wake, stop);
            });
        }
        let listener = tokio::net::TcpListener::bind(config.bind_addr())
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let app = crate::http::router(state.clone());
        let stop_accepting = CancellationToken::new();
        let stop = stop_accepting.clone();
        let serve_task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        });
        tracing::info!(%addr, data_dir = %config.data_dir.display(), missions = config.missions.len(), "lingshi listening");
        Ok(Server {
            addr,
            state,
            stop_accepting,
            stop_writer,
            stop_background,
            serve_task,
            writer_task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stop accepting, close sockets with 1001, commit every accepted message, close
    /// the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down");
        self.state.hub.close_all();
        self.stop_accepting.cancel();
        // Sockets close themselves on the hub's signal; give them a moment to say 1001.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.state.metrics.open_sockets.load(Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match tokio::time::timeout(Duration::from_secs(10), self.serve_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish within 10 s"),
        }
        self.stop_background.cancel();
        self.stop_writer.cancel();
        self.writer_task
            .await
            .context("message writer task failed")?;
        self.state.store.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Run until SIGTERM or Ctrl-C, then shut down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    shutdown_signal().await;
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
