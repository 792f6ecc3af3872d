//! Assembly: open the store and build the domain around its seams (the store, a
//! publisher, the connections, the search engine), with its writer running. The
//! server's wiring and the command line both start here; nothing else does.

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::assigner::MergeQueue;
use crate::domain::attachments::AttachmentState;
use crate::domain::events::{Connections, Publisher};
use crate::domain::identity::IdentityVerifier;
use crate::domain::kb::KbState;
use crate::domain::limits::Limiters;
use crate::domain::ports::Store;
use crate::domain::writer::{Writer, WriterParts};
use crate::domain::{Domain, Inner};
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

/// Open the store and build the domain around `publisher` and `connections` (the hub
/// for a server, or the message bus in front of it on a cluster node; nothing for a
/// command). `engine` is the search index the domain
/// searches (a command that must not hold the index passes an empty one).
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
        setup: Default::default(),
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

/// This node's stable name: `cluster.node_name`, or one made up once and kept in the
/// data dir (so a restarted node is the same node to the index queue's followers).
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
pub fn lease_holder(node: &str) -> String {
    format!("{node}:{}:{}", std::process::id(), uuid::Uuid::now_v7())
}
