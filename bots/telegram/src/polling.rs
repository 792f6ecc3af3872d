//! Long polling with a durable offset. The lease holder asks `getUpdates` from the
//! offset the desk keeps, handles the batch (chats in parallel, each chat's updates in
//! order), and only then moves the offset past what is done. A crash in between means
//! Telegram sends the batch again, and each update's effect is found done (message keys,
//! handled update ids), so nothing is lost and nothing happens twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use teloxide::payloads::{DeleteWebhookSetters, GetUpdatesSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update};
use teloxide::{ApiError, RequestError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::failure::backoff;
use crate::Shared;

/// The updates the bridge asks for.
pub const ALLOWED: &[AllowedUpdate] = &[
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
];

/// Chats handled at once within a batch.
const CHATS_AT_ONCE: usize = 16;

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    let mut webhook_cleared = false;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if !*leader.borrow_and_update() || shared.me.get().is_none() {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = leader.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        if !webhook_cleared {
            // getUpdates is refused while a webhook is set (a switch from webhook mode).
            match shared
                .bot
                .delete_webhook()
                .drop_pending_updates(false)
                .await
            {
                Ok(_) => webhook_cleared = true,
                Err(e) => {
                    tracing::warn!(error = %shared.redact(&e.to_string()), "telegram deleteWebhook failed")
                }
            }
        }
        let offset = match shared.desk.offset().await {
            Ok(o) => o,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot read the telegram offset");
                pause(&stop, backoff(failures)).await;
                continue;
            }
        };
        let timeout = shared.settings.poll_timeout.as_secs().clamp(1, 15) as u32;
        let request = shared
            .bot
            .get_updates()
            .offset(offset.clamp(0, i32::MAX as i64) as i32)
            .timeout(timeout)
            .limit(100)
            .allowed_updates(ALLOWED.to_vec());
        let updates = tokio::select! {
            _ = stop.cancelled() => return,
            r = request => r,
        };
        let updates = match updates {
            Ok(u) => u,
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    RequestError::RetryAfter(s) => s.duration(),
                    RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
                        Duration::from_secs(5)
                    }
                    RequestError::Api(ApiError::CantGetUpdates) => {
                        webhook_cleared = false;
                        Duration::from_secs(1)
                    }
                    _ => backoff(failures),
                };
                tracing::warn!(error = %shared.redact(&e.to_string()), retry_in_ms = wait.as_millis() as u64, "telegram getUpdates failed");
                pause(&stop, wait).await;
                continue;
            }
        };
        failures = 0;
        if updates.is_empty() {
            continue;
        }
        let next = handle_batch(&shared, updates).await;
        let moved = match next {
            Next::All(o) | Next::Upto(o) => o,
        };
        if moved > offset {
            if let Err(e) = shared.desk.set_offset(moved).await {
                tracing::warn!(error = %e, "cannot save the telegram offset; the batch will be seen again (without effect)");
            }
        }
        if let Next::Upto(_) = next {
            pause(&stop, Duration::from_secs(1)).await;
        }
    }
}

enum Next {
    /// Everything handled: the offset after the last update.
    All(i64),
    /// Something must be retried: the offset of the first update not handled.
    Upto(i64),
}

/// Handle a batch: chats in parallel, each chat in order, stopping a chat at its first
/// update that must be retried.
async fn handle_batch(shared: &Arc<Shared>, updates: Vec<Update>) -> Next {
    let last = updates.iter().map(|u| u.id.0 as i64).max().unwrap_or(0);
    let mut by_chat: BTreeMap<i64, Vec<Update>> = BTreeMap::new();
    for u in updates {
        let chat = u.chat().map(|c| c.id.0).unwrap_or(0);
        by_chat.entry(chat).or_default().push(u);
    }
    let first_failed: Vec<Option<i64>> = futures_util::stream::iter(by_chat.into_values())
        .map(|updates| {
            let shared = shared.clone();
            async move {
                for u in updates {
                    let id = u.id.0 as i64;
                    if shared.handle(u).await.is_err() {
                        return Some(id);
                    }
                }
                None
            }
        })
        .buffer_unordered(CHATS_AT_ONCE)
        .collect()
        .await;
    match first_failed.into_iter().flatten().min() {
        Some(id) => Next::Upto(id),
        None => Next::All(last + 1),
    }
}

async fn pause(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
