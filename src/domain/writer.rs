//! Group commit. One task drains the queue of pending requests (messages and workflow
//! changes) and commits whatever has accumulated in one transaction, so many messages
//! share one fsync. A request is answered only after its transaction committed; its
//! events are published in commit order right before.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::assigner::Assigner;
use super::events::Publisher;
use super::planner::{self, Load, Outcome, Plan, Request};
use super::ports::Store;
use super::types::now;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;

struct Job {
    request: Request,
    enqueued: Instant,
    reply: oneshot::Sender<AppResult<Outcome>>,
}

/// The sending side, cloned into every domain service.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// What the writer needs around it.
pub struct WriterParts {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub publisher: Arc<dyn Publisher>,
    pub metrics: Arc<Metrics>,
    pub assigner: Assigner,
    /// Woken when a commit wrote outbox rows.
    pub outbox_wake: Arc<Notify>,
}

impl Writer {
    /// Start the writer task. It stops after `shutdown` fires and everything already
    /// queued is committed; await the returned handle to know it has.
    pub fn start(
        parts: WriterParts,
        queue: usize,
        batch_max: usize,
        shutdown: CancellationToken,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let task = tokio::spawn(run(parts, rx, batch_max, shutdown));
        (Writer { tx }, task)
    }

    /// Commit one request durably; resolves after the commit with what it did, or with
    /// the reason it could not be done.
    pub async fn submit(&self, request: Request) -> AppResult<Outcome> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            request,
            enqueued: Instant::now(),
            reply,
        };
        self.tx
            .send(job)
            .await
            .map_err(|_| AppError::Unavailable("the server is shutting down; retry".into()))?;
        rx.await
            .map_err(|_| AppError::Unavailable("the server is shutting down; retry".into()))?
    }
}

async fn run(
    parts: WriterParts,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    shutdown: CancellationToken,
) {
    let parts = Arc::new(parts);
    // Publishing and answering run on their own task, in commit order, so the next
    // batch is committing while the previous one is fanned out.
    let (done_tx, mut done_rx) = mpsc::channel::<(Vec<Job>, Plan)>(64);
    let publisher = {
        let parts = parts.clone();
        tokio::spawn(async move {
            while let Some((jobs, plan)) = done_rx.recv().await {
                publish(&parts, jobs, plan);
            }
        })
    };
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            _ = shutdown.cancelled() => {
                // Refuse new work, then commit what was already accepted.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let plan = commit_batch(&parts, &batch).await;
        let jobs = std::mem::replace(&mut batch, Vec::with_capacity(batch_max));
        if done_tx.send((jobs, plan)).await.is_err() {
            tracing::error!("message publisher stopped");
        }
    }
    drop(done_tx);
    let _ = publisher.await;
    tracing::info!("writer stopped; every accepted request committed");
}

async fn commit_once(parts: &WriterParts, requests: Vec<Request>) -> AppResult<Plan> {
    let load = Load::for_requests(&requests);
    let config = parts.config.clone();
    parts
        .store
        .commit(
            load,
            Box::new(move |loaded| planner::plan(&requests, loaded, &config, now())),
        )
        .await
}

async fn commit_batch(parts: &WriterParts, batch: &[Job]) -> Plan {
    let started = Instant::now();
    let requests: Vec<Request> = batch.iter().map(|j| j.request.clone()).collect();
    let plan = match commit_once(parts, requests).await {
        Ok(plan) => plan,
        Err(e) => {
            // Nothing of the batch was written. Retry one by one so a single bad item
            // cannot fail the others.
            tracing::warn!(error = %e.detail(), size = batch.len(), "batch commit failed; retrying items one by one");
            let mut plan = Plan::default();
            for job in batch {
                match commit_once(parts, vec![job.request.clone()]).await {
                    Ok(mut one) => {
                        plan.outcomes.push(one.outcomes.pop().unwrap_or_else(|| {
                            Err(AppError::Internal(anyhow::anyhow!("empty commit result")))
                        }));
                        plan.writes.messages.append(&mut one.writes.messages);
                        plan.writes
                            .conversations
                            .append(&mut one.writes.conversations);
                        plan.writes.audit.append(&mut one.writes.audit);
                        plan.writes.outbox.append(&mut one.writes.outbox);
                        plan.wake.append(&mut one.wake);
                    }
                    Err(e) => plan.outcomes.push(Err(e)),
                }
            }
            plan
        }
    };
    let m = &parts.metrics;
    let now = Instant::now();
    m.commits.fetch_add(1, Relaxed);
    m.commit_batch.observe(batch.len() as f64);
    m.commit_seconds
        .observe(now.duration_since(started).as_secs_f64());
    for (job, outcome) in batch.iter().zip(&plan.outcomes) {
        if let Ok(o) = outcome {
            if o.duplicate {
                m.messages_duplicate.fetch_add(1, Relaxed);
            } else if o.message.is_some() {
                m.messages_committed.fetch_add(1, Relaxed);
                m.ack_latency
                    .observe(now.duration_since(job.enqueued).as_secs_f64());
            }
        }
    }
    plan
}

/// Publish each outcome's events in commit order, then answer its sender.
fn publish(parts: &WriterParts, jobs: Vec<Job>, mut plan: Plan) {
    if !plan.writes.outbox.is_empty() {
        parts.outbox_wake.notify_one();
    }
    for m in plan.wake.drain(..) {
        parts.assigner.push(m);
    }
    for (job, mut outcome) in jobs.into_iter().zip(plan.outcomes) {
        if let Ok(o) = &mut outcome {
            for e in o.events.drain(..) {
                parts.publisher.publish(e);
            }
        }
        // The sender may have gone away; its request is committed all the same.
        let _ = job.reply.send(outcome);
    }
}
