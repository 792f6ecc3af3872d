//! The domain: the one door every adapter goes through (HTTP handlers, the socket task,
//! the command line, messenger bridges). It owns every rule — who may do what, how a
//! message is numbered, when a conversation reopens, what is announced to whom — and
//! reaches the outside only through its seams: the [`ports::Store`] traits for
//! persistence, [`events::Publisher`] for live events, [`events::Connections`] for who is
//! connected, and the outbox for deliveries.

pub mod assigner;
pub mod attachments;
pub mod conversations;
pub mod emergency;
pub mod escalations;
pub mod events;
pub mod identity;
pub mod kb;
pub mod limits;
pub mod model;
pub mod outbox;
pub mod planner;
pub mod ports;
pub mod principal;
pub mod sessions;
pub mod setup;
pub mod telegram;
pub mod triage;
pub mod types;
pub mod webhooks;
pub mod workflow;
pub mod writer;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;

pub use principal::{Access, Principal};

/// What `/readyz` reports.
pub struct Readiness {
    pub database: bool,
    pub index: bool,
}

/// The domain services, cheap to clone (one pointer).
#[derive(Clone)]
pub struct Domain(Arc<Inner>);

impl std::ops::Deref for Domain {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What the domain holds; built once by the wiring (`crate::server`).
pub struct Inner {
    pub config: Arc<Config>,
    pub store: Arc<dyn ports::Store>,
    pub publisher: Arc<dyn events::Publisher>,
    pub connections: Arc<dyn events::Connections>,
    pub metrics: Arc<Metrics>,
    pub writer: writer::Writer,
    pub assigner: assigner::Assigner,
    pub presence: Arc<assigner::MergeQueue<types::AgentId>>,
    pub kb: kb::KbState,
    pub attachments: attachments::AttachmentState,
    pub identity: identity::IdentityVerifier,
    pub limits: Arc<limits::Limiters>,
    pub triage: triage::TriageState,
    /// The first-run setup token, while no staff account exists.
    pub setup: setup::SetupGate,
    /// Woken when rows are written to the outbox.
    pub outbox_wake: Arc<Notify>,
}

impl Domain {
    pub fn new(inner: Inner) -> Domain {
        Domain(Arc::new(inner))
    }

    /// Start the background workers that belong to the domain: auto-assignment,
    /// presence announcements, the search-gap recorder, upload clean-up.
    pub fn spawn_workers(&self, stop: &CancellationToken) {
        {
            let d = self.clone();
            self.assigner.clone().spawn(stop.clone(), move |m| {
                let d = d.clone();
                async move { d.auto_assign(m).await }
            });
        }
        {
            let d = self.clone();
            self.presence.clone().spawn(stop.clone(), move |a| {
                let d = d.clone();
                async move { d.announce_presence(a).await }
            });
        }
        self.spawn_gap_recorder(stop.clone());
        self.spawn_triage_reloader(stop.clone());
        self.spawn_reescalation(stop.clone());
        self.spawn_upload_gc(stop.clone());
    }

    /// Whether the database and the search index answer.
    pub async fn readiness(&self) -> Readiness {
        let database = match self.store.ping().await {
            Ok(()) => true,
            Err(e) => {
                e.log();
                false
            }
        };
        let engine = self.kb.engine.clone();
        let index = matches!(
            tokio::task::spawn_blocking(move || engine.doc_count()).await,
            Ok(Ok(_))
        );
        Readiness { database, index }
    }

    /// Wait until background work caused so far (auto-assignment, presence) is done.
    pub async fn settle(&self) {
        self.presence.settle().await;
        self.assigner.settle().await;
        self.presence.settle().await;
        self.assigner.settle().await;
    }
}
