//! The transactional outbox. A change that must be told to the outside (a webhook
//! subscriber, the 12308 hotline) writes an outbox row in the same transaction as the
//! change itself; this worker delivers the rows afterwards, at least once, with
//! backoff and jitter, across restarts and crashes. A row's id is the delivery id the
//! receiver deduplicates on, so a retry never looks like a new event.
//!
//! How a row reaches its destination (HTTP, signing) is the courier's business, an
//! adapter outside the domain; the domain decides what is sent, when, and how often.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::events::{EscalationEvent, Event, Publisher};
use super::model::OutboxRow;
use super::ports::Store;
use super::types::*;
use super::webhooks::HOTLINE;
use crate::metrics::Metrics;

/// The result of one delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Delivered,
    /// Try again; `after` is what the receiver asked for (`Retry-After`).
    Retry {
        after: Option<Duration>,
        error: String,
    },
}

/// Delivers one row to its destination (an adapter: HTTP with signatures).
#[async_trait]
pub trait Courier: Send + Sync {
    async fn deliver(&self, row: &OutboxRow) -> Delivery;
}

/// Delay before the attempt after `attempts` failed ones: about 5 s, 15 s, 30 s, 60 s,
/// then every 2 minutes, with ±10 % jitter so many failed rows do not retry in step; a
/// receiver's `Retry-After` wins (capped at an hour).
pub fn retry_delay(attempts: i64, retry_after: Option<Duration>) -> Duration {
    let base = match attempts {
        i64::MIN..=1 => 5.0,
        2 => 15.0,
        3 => 30.0,
        4 => 60.0,
        _ => 120.0,
    };
    let jitter = 0.9 + rand::random::<f64>() * 0.2;
    let scheduled = Duration::from_secs_f64(base * jitter);
    match retry_after {
        Some(ra) => ra
            .min(Duration::from_secs(3600))
            .max(Duration::from_secs(1)),
        None => scheduled,
    }
}

/// Rows taken per round.
const BATCH: i64 = 64;
/// Rows in flight at once.
const CONCURRENCY: usize = 16;

/// The worker: takes the outbox lease (one node delivers at a time), delivers due rows,
/// records each result, and sleeps until woken by a commit or the next due row.
pub struct OutboxWorker {
    pub store: Arc<dyn Store>,
    pub courier: Arc<dyn Courier>,
    /// Tells staff when an escalation reached the hotline.
    pub publisher: Arc<dyn Publisher>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// This node's name in the lease table.
    pub node: String,
    /// How long the lease holds without renewal (renewed every round, at least every
    /// 500 ms): how long deliveries wait when the holding node dies.
    pub lease: Duration,
}

impl OutboxWorker {
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let busy = match self.round().await {
                    Ok(n) => n as i64 >= BATCH,
                    Err(e) => {
                        e.log();
                        false
                    }
                };
                if busy && !stop.is_cancelled() {
                    continue;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            // Hand the lease back (expired now) so another node takes over at once.
            if let Err(e) = self.store.acquire_lease("outbox", &self.node, now()).await {
                e.log();
            }
        })
    }

    /// One round: returns how many rows were attempted.
    pub async fn round(&self) -> crate::error::AppResult<usize> {
        let now = now();
        let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
        if !self
            .store
            .acquire_lease("outbox", &self.node, until)
            .await?
        {
            return Ok(0);
        }
        let stats = self.store.outbox_stats().await?;
        self.metrics.outbox_pending.store(stats.pending, Relaxed);
        self.metrics.outbox_failing.store(stats.failing, Relaxed);
        self.metrics.outbox_oldest_pending_ms.store(
            stats
                .oldest_pending
                .map(|t| (now - t).num_milliseconds().max(0))
                .unwrap_or(0),
            Relaxed,
        );
        let rows = self.store.due_outbox(now, BATCH).await?;
        let n = rows.len();
        futures_util::stream::iter(rows)
            .for_each_concurrent(CONCURRENCY, |row| async move {
                let result = self.courier.deliver(&row).await;
                if row.destination == HOTLINE {
                    self.escalation_attempt(&row, &result).await;
                }
                let recorded = match result {
                    Delivery::Delivered => {
                        let at = super::types::now();
                        self.metrics.outbox_delivered.fetch_add(1, Relaxed);
                        let lag = (at - row.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                        self.metrics.outbox_delivery_seconds.observe(lag);
                        tracing::debug!(id = %row.id, destination = %row.destination, attempts = row.attempts + 1, "outbox row delivered");
                        self.store.outbox_delivered(row.id, at).await
                    }
                    Delivery::Retry { after, error } => {
                        let attempts = row.attempts + 1;
                        let delay = retry_delay(attempts, after);
                        self.metrics.outbox_failures.fetch_add(1, Relaxed);
                        tracing::warn!(id = %row.id, destination = %row.destination, attempts, retry_in_s = delay.as_secs(), %error, "outbox delivery failed");
                        let next = super::types::now()
                            + chrono::Duration::from_std(delay).unwrap_or_default();
                        self.store
                            .outbox_failed(row.id, attempts, next, &error)
                            .await
                    }
                };
                if let Err(e) = recorded {
                    e.log();
                }
            })
            .await;
        Ok(n)
    }
}

impl OutboxWorker {
    /// Count a delivery attempt of an escalation event; the first delivery of its
    /// creation marks it delivered and tells its mission's staff.
    async fn escalation_attempt(&self, row: &OutboxRow, result: &Delivery) {
        let Some(id) = row
            .subject
            .as_deref()
            .and_then(|s| EscalationId::parse(s).ok())
        else {
            return;
        };
        let delivered = matches!(result, Delivery::Delivered).then(super::types::now);
        match self.store.record_escalation_attempt(id, delivered).await {
            Ok(Some(e)) => {
                if let Some(at) = e.delivered_at {
                    let secs = (at - e.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    self.metrics.escalation_delivery_seconds.observe(secs);
                }
                self.publisher.publish(Event::Escalation {
                    kind: EscalationEvent::Delivered,
                    missions: vec![e.mission_id.clone()],
                    escalation: e,
                });
            }
            Ok(None) => {}
            Err(e) => e.log(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_settle_and_honour_retry_after() {
        let secs = |a| retry_delay(a, None).as_secs_f64();
        assert!((4.5..=5.5).contains(&secs(1)));
        assert!((13.5..=16.5).contains(&secs(2)));
        assert!((27.0..=33.0).contains(&secs(3)));
        assert!((54.0..=66.0).contains(&secs(4)));
        assert!((108.0..=132.0).contains(&secs(9)));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(99_999))),
            Duration::from_secs(3600)
        );
    }
}
