//! Assembly: open the store and build the domain around its seams (the store, a
//! publisher, the connections, the search engine), with its writer running. The
//! server's wiring and the command line both start here; nothing else does.

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::assigner::MergeQueue;
use crate::domain::attachments::{AttachmentState, Blobs};
use crate::domain::events::{Connections, Publisher};
use crate::domain::identity::IdentityVerifier;
use crate::domain::kb::KbState;
use crate::domain::limits::Limiters;
use crate::domain::ports::Store;
use crate::domain::writer::{Writer, WriterParts};
use crate::domain::{Domain, Inner};
use crate::metrics::Metrics;
use crate::store::SqliteStore;

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
/// for a server, nothing for a command). `engine` is the search index the domain
/// searches (a command that must not hold the index passes an empty one).
pub async fn open(
    config: Arc<Config>,
    publisher: Arc<dyn Publisher>,
    connections: Arc<dyn Connections>,
    metrics: Arc<Metrics>,
    engine: Arc<dyn lingshi_search::SearchEngine>,
) -> anyhow::Result<Opened> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir).await?);
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
        blobs: Blobs::open(&config.data_dir).context("cannot create the attachments folder")?,
        limits: Arc::new(lingshi_media::Limits {
            max_bytes: config.limits.image_max_bytes,
            max_pixels: config.limits.image_max_pixels,
            thumb_max_side: 512,
        }),
    };
    let domain = Domain::new(Inner {
        limits: Limiters::new(&config.limits),
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
