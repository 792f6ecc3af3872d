//! Group commit: one task drains the queue of pending messages and commits whatever has
//! accumulated in one transaction, so many messages share one fsync. A message is
//! acknowledged only after its transaction committed; the hub publishes in commit order
//! right after, before the senders are answered.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{AppError, AppResult};
use crate::hub::{frames, Audience, Hub};
use crate::metrics::Metrics;
use crate::store::{Committed, NewMessage, Store};

struct Job {
    msg: NewMessage,
    enqueued: Instant,
    reply: oneshot::Sender<AppResult<Committed>>,
}

/// The sending side, cloned into every adapter.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Start the writer task. It stops after `shutdown` fires and everything already
    /// queued is committed; await the returned handle to know it has.
    pub fn start(
        store: Store,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        queue: usize,
        batch_max: usize,
        shutdown: CancellationToken,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let task = tokio::spawn(run(store, hub, metrics, rx, batch_max, shutdown));
        (Writer { tx }, task)
    }

    /// Commit one message durably; resolves after the commit (or with the reason it
    /// could not be stored).
    pub async fn commit(&self, msg: NewMessage) -> AppResult<Committed> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            msg,
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
    store: Store,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    shutdown: CancellationToken,
) {
    // Publishing and answering run on their own task, in commit order, so the next
    // batch is committing while the previous one is fanned out.
    let (done_tx, mut done_rx) = mpsc::channel::<Vec<(Job, AppResult<Committed>)>>(64);
    let publisher = tokio::spawn(async move {
        while let Some(done) = done_rx.recv().await {
            publish(&hub, done);
        }
    });
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
        let done = commit_batch(&store, &metrics, &mut batch).await;
        if done_tx.send(done).await.is_err() {
            tracing::error!("message publisher stopped");
        }
    }
    drop(done_tx);
    let _ = publisher.await;
    tracing::info!("message writer stopped; all accepted messages committed");
}

async fn commit_batch(
    store: &Store,
    metrics: &Metrics,
    batch: &mut Vec<Job>,
) -> Vec<(Job, AppResult<Committed>)> {
    let started = Instant::now();
    let results = {
        let mut conn = store.writer().await;
        let msgs: Vec<&NewMessage> = batch.iter().map(|j| &j.msg).collect();
        match store.commit_messages(&mut conn, &msgs).await {
            Ok(results) => results,
            Err(e) => {
                // Nothing of the batch was committed. Retry one by one so a single
                // bad item cannot fail the others.
                tracing::warn!(error = %e, size = msgs.len(), "batch commit failed; retrying items one by one");
                let mut results = Vec::with_capacity(msgs.len());
                for m in &msgs {
                    results.push(match store.commit_messages(&mut conn, &[m]).await {
                        Ok(mut r) => r.pop().unwrap_or_else(|| {
                            Err(AppError::Internal(anyhow::anyhow!("empty commit result")))
                        }),
                        Err(e) => Err(AppError::Internal(anyhow::Error::new(e))),
                    });
                }
                results
            }
        }
    };
    let now = Instant::now();
    metrics
        .commits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics.commit_batch.observe(batch.len() as f64);
    metrics
        .commit_seconds
        .observe(now.duration_since(started).as_secs_f64());
    for (job, result) in batch.iter().zip(&results) {
        if let Ok(c) = result {
            if c.duplicate {
                metrics
                    .messages_duplicate
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                metrics
                    .messages_committed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .ack_latency
                    .observe(now.duration_since(job.enqueued).as_secs_f64());
            }
        }
    }
    batch.drain(..).zip(results).collect()
}

/// Publish each committed message to the hub, then answer its sender.
fn publish(hub: &Hub, done: Vec<(Job, AppResult<Committed>)>) {
    for (job, result) in done {
        if let Ok(c) = &result {
            if !c.duplicate {
                let audience = if c.message.kind == "note" {
                    Audience::StaffOnly
                } else {
                    Audience::Everyone
                };
                hub.publish(
                    &[&c.conversation],
                    audience,
                    frames::message(&c.message),
                    None,
                );
                if c.reopened {
                    hub.publish(
                        &[&c.conversation],
                        Audience::StaffOnly,
                        frames::conversation("reopened", &c.conversation),
                        None,
                    );
                    hub.publish(
                        &[&c.conversation],
                        Audience::CitizenOnly,
                        frames::conversation_for_citizen("reopened", &c.conversation),
                        None,
                    );
                }
            }
        }
        // The sender may have gone away; its message is committed all the same.
        let _ = job.reply.send(result);
    }
}
