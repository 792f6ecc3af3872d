//! Wiring: open the store and the index, build the domain around its seams (the store,
//! the hub as publisher, the couriers), start the workers, serve HTTP and WebSocket,
//! and shut down in order. The only module that knows every other one; nothing imports
//! it but `main` and the command line.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::cluster::{Bus, Hooks};
use crate::config::Config;
use crate::domain::assigner::MergeQueue;
use crate::domain::attachments::AttachmentState;
use crate::domain::events::{Connections, Publisher};
use crate::domain::identity::IdentityVerifier;
use crate::domain::kb::indexer::{state_file_for, Indexer};
use crate::domain::kb::KbState;
use crate::domain::limits::Limiters;
use crate::domain::outbox::OutboxWorker;
use crate::domain::ports::Store;
use crate::domain::writer::{Writer, WriterParts};
use crate::domain::{Domain, Inner};
use crate::http::listener::{connection_budget, ConnectionLimits};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A domain with its writer running, for the command line and the server alike.
pub struct Opened {
    pub domain: Domain,
    pub store: Arc<dyn Store>,
    writer_stop: CancellationToken,
    writer_task: JoinHandle<()>,
}

impl Opened {
    /// Commit what was accepted and close the database.
    pub async fn close(self) -> anyhow::Result<()> {
        self.writer_stop.cancel();
        self.writer_task.await.context("writer task failed")?;
        self.store.close().await;
        Ok(())
    }
}

/// Open the store and build the domain around `publisher` and `connections` (the hub,
/// or the message bus in front of it on a cluster node; nothing for a command).
/// `engine` is the search index the domain searches (a command that must not hold the
/// index passes an empty one).
pub async fn open(
    config: Arc<Config>,
    publisher: Arc<dyn Publisher>,
    connections: Arc<dyn Connections>,
    metrics: Arc<Metrics>,
    engine: Arc<dyn lingshi_search::SearchEngine>,
) -> anyhow::Result<Opened> {
    let node = node_name(&config)?;
    let backend = crate::store::open(&config, &node).await?;
    let store = backend.store;
    let identity = IdentityVerifier::from_config(&config.identity)?;
    let triage = crate::domain::triage::TriageState::load(&config)?;
    let assigner = MergeQueue::new();
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let writer_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::start(
        WriterParts {
            store: store.clone(),
            config: config.clone(),
            publisher: publisher.clone(),
            metrics: metrics.clone(),
            assigner: assigner.clone(),
            outbox_wake: outbox_wake.clone(),
        },
        config.limits.write_queue,
        config.limits.commit_batch_max,
        writer_stop.clone(),
    );
    let attachments = AttachmentState {
        blobs: backend.blobs,
        limits: Arc::new(lingshi_media::Limits {
            max_bytes: config.limits.image_max_bytes,
            max_pixels: config.limits.image_max_pixels,
            thumb_max_side: 512,
        }),
    };
    let domain = Domain::new(Inner {
        limits: Arc::new(Limiters::new(&config.limits)),
        config,
        store: store.clone(),
        publisher,
        connections,
        metrics,
        writer,
        assigner,
        presence: MergeQueue::new(),
        kb: KbState::new(engine),
        attachments,
        identity,
        triage,
        outbox_wake,
    });
    Ok(Opened {
        domain,
        store,
        writer_stop,
        writer_task,
    })
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    opened: Opened,
    stop_accepting: CancellationToken,
    stop_background: CancellationToken,
    serve_task: JoinHandle<()>,
    bus: Option<Bus>,
}

impl Server {
    /// Open the data dir, apply migrations, bind `config.bind` (port 0 picks a free
    /// port) and start serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(config.limits.outbound_queue));
        let engine = crate::domain::kb::open_engine(&config).map_err(|e| match e {
            lingshi_search::SearchError::Locked => anyhow::anyhow!(
                "the search index {} is in use by another lingshi server; stop it or use another --data-dir",
                crate::domain::kb::index_dir(&config).display()
            ),
            other => anyhow::anyhow!("cannot open the search index: {other}"),
        })?;
        let stop_background = CancellationToken::new();
        // Several nodes: events and presence go through the bus, which feeds the hub.
        let bus = if config.cluster.nats_url.is_empty() {
            None
        } else {
            let node = node_name(&config)?;
            Some(
                Bus::start(
                    &config,
                    &node,
                    hub.clone(),
                    metrics.clone(),
                    stop_background.clone(),
                )
                .await?,
            )
        };
        let (publisher, connections): (Arc<dyn Publisher>, Arc<dyn Connections>) = match &bus {
            Some(b) => (Arc::new(b.clone()), Arc::new(b.clone())),
            None => (hub.clone(), hub.clone()),
        };
        let opened = open(
            config.clone(),
            publisher,
            connections,
            metrics.clone(),
            engine.clone(),
        )
        .await?;
        let domain = opened.domain.clone();
        if let Some(b) = &bus {
            let presence = domain.presence.clone();
            let limits = domain.limits.clone();
            b.set_hooks(Hooks {
                agent_changed: Box::new(move |a| presence.push(a)),
                limit_charged: Box::new(move |l, k, cost| limits.charge(l, k, cost)),
            });
            let mirror = b.clone();
            domain
                .limits
                .mirror_to(Arc::new(move |l, k, cost| mirror.charge_limit(l, k, cost)));
        }
        domain.spawn_workers(&stop_background);
        hub.clone().spawn_heartbeat(
            Duration::from_secs(config.limits.ping_interval_secs),
            Duration::from_secs(config.limits.idle_timeout_secs),
            stop_background.clone(),
        );
        // Catch up in the background: a first build of a large index must not hold
        // the chat back.
        Indexer {
            store: opened.store.clone(),
            engine,
            state_file: state_file_for(&crate::domain::kb::index_dir(&config)),
        }
        .spawn(domain.kb.index_wake.clone(), stop_background.clone());
        OutboxWorker {
            store: opened.store.clone(),
            courier: Arc::new(crate::outbound::Couriers::new(&config)?),
            // The bus on a cluster node: staff on every node hear of a delivery.
            publisher: domain.publisher.clone(),
            metrics: metrics.clone(),
            wake: domain.outbox_wake.clone(),
            node: lease_holder(&node_name(&config)?),
            lease: Duration::from_secs(config.cluster.lease_ttl_secs),
        }
        .spawn(stop_background.clone());
        let state = AppState::new(App {
            config: config.clone(),
            domain,
            hub,
            metrics,
        });
        let listener = tokio::net::TcpListener::bind(config.bind_addr())
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let app = crate::http::router(state.clone());
        let stop_accepting = CancellationToken::new();
        let stop = stop_accepting.clone();
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(config.limits.http_header_timeout_secs),
            per_address: config.limits.connections_per_address,
            total: match config.limits.connections_max {
                0 => connection_budget(),
                n => n,
            },
        };
        let serve_task = tokio::spawn(crate::http::listener::serve(listener, app, limits, stop));
        tracing::info!(%addr, data_dir = %config.data_dir.display(), missions = config.missions.len(), "lingshi listening");
        Ok(Server {
            addr,
            state,
            opened,
            stop_accepting,
            stop_background,
            serve_task,
            bus,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Wait until background work caused so far (auto-assignment, presence) is done;
    /// tests drive the workers with this instead of sleeping.
    pub async fn settle(&self) {
        self.state.domain.settle().await
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
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish within 10 s"),
        }
        if let Some(b) = &self.bus {
            b.leave().await;
        }
        self.stop_background.cancel();
        self.opened.close().await?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// This node's name: `cluster.node_name`, else the one kept in `DATA_DIR/node-id`
/// (the host name and a random suffix, made on first start). Tied to the data dir
/// because what the name stands for there (the search index the node keeps) lives in
/// the data dir too.
pub fn node_name(config: &Config) -> anyhow::Result<String> {
    if !config.cluster.node_name.is_empty() {
        return Ok(config.cluster.node_name.clone());
    }
    let path = config.data_dir.join("node-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_string());
        }
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into());
    let name = format!(
        "{host}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &name)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(name)
}

/// This process's name in worker leases: one per process, so a restarted node waits
/// for (or was handed back) its predecessor's lease instead of sharing it.
fn lease_holder(node: &str) -> String {
    format!("{node}:{}:{}", std::process::id(), uuid::Uuid::now_v7())
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
