//! Wiring: open the store and the index, build the domain around its seams (the store,
//! the hub as publisher, the couriers), start the workers, serve HTTP and WebSocket,
//! and shut down in order. The only module that knows every other one; nothing imports
//! it but `main`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::assembly::{lease_holder, node_name, open, Opened};
use crate::bridges::telegram::TelegramTap;
use crate::cluster::{Bus, Hooks};
use crate::config::{Config, TelegramMode};
use crate::domain::events::{Connections, Observed, Publisher};
use crate::domain::kb::indexer::Indexer;
use crate::domain::outbox::OutboxWorker;
use crate::http::listener::{connection_budget, ConnectionLimits};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    opened: Opened,
    stop_accepting: CancellationToken,
    stop_background: CancellationToken,
    serve_task: JoinHandle<()>,
    setup_token: Option<String>,
    telegram: Option<lingshi_telegram::Bridge>,
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
        let engine = crate::domain::kb::open_engine(&config)
            .await
            .map_err(|e| match e {
                lingshi_search::SearchError::Locked => anyhow::anyhow!(
                    "the search index {} is in use by another lingshi server; stop it or use another --data-dir",
                    crate::domain::kb::index_dir(&config).display()
                ),
                other => anyhow::anyhow!(
                    "cannot open the search index ({} backend): {other}",
                    config.search.backend
                ),
            })?;
        let node = node_name(&config)?;
        let stop_background = CancellationToken::new();
        // Several nodes: events and presence go through the bus, which feeds the hub.
        let bus = if config.cluster.nats_url.is_empty() {
            None
        } else {
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
        let (fanout, connections): (Arc<dyn Publisher>, Arc<dyn Connections>) = match &bus {
            Some(b) => (Arc::new(b.clone()), Arc::new(b.clone())),
            None => (hub.clone(), hub.clone()),
        };
        // The Telegram bridge is woken by the events of its conversations (those
        // committed on this node; the bridge's scan covers the others).
        let nudges = lingshi_telegram::Nudges::new();
        let publisher: Arc<dyn Publisher> = if config.telegram.enabled() {
            Arc::new(Observed {
                observers: vec![Arc::new(TelegramTap(nudges.clone()))],
                publisher: fanout,
            })
        } else {
            fanout
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
        let setup_token = domain
            .open_setup()
            .await
            .map_err(|e| anyhow::anyhow!("cannot count the staff accounts: {}", e.detail()))?;
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
            engine: engine.clone(),
            state_file: crate::domain::kb::index_state_file(&config),
        }
        .spawn(domain.kb.index_wake.clone(), stop_background.clone());
        crate::domain::kb::spawn_synonyms_reloader(
            config.clone(),
            engine.clone(),
            stop_background.clone(),
        );
        OutboxWorker {
            store: opened.store.clone(),
            courier: Arc::new(crate::outbound::Couriers::new(&config)?),
            // The bus on a cluster node: staff on every node hear of a delivery.
            publisher: domain.publisher.clone(),
            metrics: metrics.clone(),
            wake: domain.outbox_wake.clone(),
            node: lease_holder(&node),
            lease: Duration::from_secs(config.cluster.lease_ttl_secs),
        }
        .spawn(stop_background.clone());
        let telegram = if config.telegram.enabled() {
            Some(crate::bridges::telegram::start(
                &config,
                domain.clone(),
                nudges,
                stop_background.clone(),
                lease_holder(&node),
            )?)
        } else {
            None
        };
        let bridge_routes = telegram
            .as_ref()
            .filter(|_| config.telegram.mode == TelegramMode::Webhook)
            .map(lingshi_telegram::webhook_router);
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
        let app = crate::http::router_with(state.clone(), bridge_routes);
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
            setup_token,
            telegram,
            bus,
        })
    }

    /// The one-time token for creating the first administrator, when the server
    /// started without any staff account (used or not).
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    /// Where people reach this server: the bound address, with a wildcard address
    /// replaced by the loopback one (the best guess for the person who started it).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
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
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
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
        if let Some(bridge) = self.telegram.take() {
            // Sends in flight finish and save their cursors before the store closes.
            if tokio::time::timeout(Duration::from_secs(30), bridge.join())
                .await
                .is_err()
            {
                tracing::warn!("telegram bridge did not stop within 30 s");
            }
        }
        // Background tasks end on the cancellation at their next await; the search index
        // (and its lock) is released when the last of them lets go, so a server started
        // right after this one on the same data directory finds it free.
        let engine = Arc::downgrade(&self.state.domain.kb.engine);
        let Server { state, opened, .. } = self;
        drop(state);
        opened.close().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while engine.upgrade().is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Run until SIGTERM or Ctrl-C, then shut down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Listen for the signals before anything else: a SIGTERM that arrives while the
    // server is still starting (or importing the starter articles) must also end in a
    // graceful shutdown, never in the default action.
    let signals = ShutdownSignals::install()?;
    let server = Server::start(config).await?;
    if server.state.config.kb.import_starter {
        let n = server.state.domain.import_starter_kb().await.map_err(|e| {
            anyhow::anyhow!("cannot import the starter knowledge base: {}", e.detail())
        })?;
        if n > 0 {
            println!("lingshi: the knowledge base was empty; imported {n} starter articles");
        }
    }
    // On standard output, not in the logs: the setup token is a credential, and only
    // whoever started the server should see it.
    let base = server.base_url();
    println!("lingshi: agent console at {base}/console/");
    if let Some(token) = server.setup_token() {
        println!(
            "lingshi: no staff account yet; create the first administrator at {base}/console/#setup={token}"
        );
    }
    signals.recv().await;
    server.shutdown().await
}

/// SIGTERM and SIGINT (Ctrl-C), registered when installed.
struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(ShutdownSignals {
                term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
