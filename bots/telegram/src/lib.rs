//! `lingshi-telegram`: the Telegram bridge of Lingshi. A citizen writes to the bot in a
//! private chat; the bridge turns each update into a call on the [`Desk`] (the
//! helpdesk's port, implemented by the server with its domain services), and delivers
//! what the mission's staff write back to the chat — in order, paced within Telegram's
//! limits, across restarts — through the Bot API with teloxide.
//!
//! This crate knows Telegram and nothing of the server: the server depends on it and
//! implements [`Desk`]; it never depends on the server.
//!
//! - Updates arrive by long polling ([`Mode::Polling`], the offset kept durably by the
//!   desk) or by webhook ([`webhook_router`], secret token checked in constant time).
//!   Each update's effect is done once: a message's key is derived from the bot and
//!   the Telegram message, so a redelivered update finds the stored message; other
//!   effects are recorded as done by update id.
//! - Delivery follows the desk's durable per-conversation cursor: one node at a time
//!   (a lease), strictly in order per chat, paced by [`pacing::Pacer`], honouring
//!   `retry_after`, backing off on server and network errors.

pub mod desk;
mod failure;
mod inbound;
mod outbound;
pub mod pacing;
mod polling;
pub mod texts;
mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use teloxide::prelude::Requester;
use teloxide::Bot;
use tokio::sync::{watch, Notify, OnceCell};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use desk::*;
pub use webhook::router as webhook_router;

/// How updates reach the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Polling,
    Webhook,
}

/// Everything the bridge is configured with.
#[derive(Clone)]
pub struct Settings {
    /// The bot token; never logged.
    pub token: String,
    pub api_url: String,
    pub mode: Mode,
    /// Public URL of the webhook endpoint (webhook mode).
    pub webhook_url: String,
    /// Expected `X-Telegram-Bot-Api-Secret-Token` (webhook mode).
    pub secret_token: String,
    /// How long one `getUpdates` call waits for updates.
    pub poll_timeout: Duration,
    pub limits: pacing::Limits,
    /// This node's name in the lease.
    pub node: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api_url", &self.api_url)
            .field("mode", &self.mode)
            .field("webhook_url", &self.webhook_url)
            .field("poll_timeout", &self.poll_timeout)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The path of the webhook endpoint.
pub const WEBHOOK_PATH: &str = "/v1/telegram/webhook";

/// How long the lease lasts without renewal, and how often it is renewed.
const LEASE_TTL: Duration = Duration::from_secs(10);
const LEASE_RENEW: Duration = Duration::from_secs(3);
/// The lease's name.
pub const LEASE: &str = "telegram";

/// A cheap in-process signal from the server's event stream: a conversation has a new
/// message for its chat, or staff are typing in it. Delivery also polls, so a lost
/// nudge (or one on another node) only delays.
#[derive(Clone, Default)]
pub struct Nudges(Arc<NudgeInner>);

#[derive(Default)]
struct NudgeInner {
    deliver: Mutex<HashSet<String>>,
    typing: Mutex<HashSet<String>>,
    notify: Notify,
}

impl Nudges {
    pub fn new() -> Nudges {
        Nudges::default()
    }

    /// A message for the chat of `conversation` was committed.
    pub fn deliver(&self, conversation: String) {
        self.0
            .deliver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation);
        self.0.notify.notify_one();
    }

    /// Staff are typing in `conversation`.
    pub fn typing(&self, conversation: String) {
        self.0
            .typing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conversation);
        self.0.notify.notify_one();
    }

    fn take(&self) -> (Vec<String>, Vec<String>) {
        let d = std::mem::take(&mut *self.0.deliver.lock().unwrap_or_else(|p| p.into_inner()));
        let t = std::mem::take(&mut *self.0.typing.lock().unwrap_or_else(|p| p.into_inner()));
        (d.into_iter().collect(), t.into_iter().collect())
    }

    async fn notified(&self) {
        self.0.notify.notified().await
    }
}

/// The bot as the bridge knows it after `getMe`.
#[derive(Clone, Debug)]
struct Me {
    id: u64,
    username: String,
}

/// What the bridge's tasks and the webhook handler share.
pub(crate) struct Shared {
    bot: Bot,
    desk: Arc<dyn Desk>,
    settings: Settings,
    pacer: Arc<pacing::Pacer>,
    nudges: Nudges,
    me: OnceCell<Me>,
    /// Updates of one chat are handled one after the other (webhook calls may overlap).
    chat_locks: Vec<tokio::sync::Mutex<()>>,
    /// Transient failures per update id, so that one update cannot block forever.
    failures: Mutex<std::collections::HashMap<u32, u32>>,
}

impl Shared {
    fn redact(&self, text: &str) -> String {
        failure::redact(text, &self.settings.token)
    }
}

/// A running bridge.
pub struct Bridge {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Build the bot client and start the bridge's tasks (lease, polling in polling
    /// mode, delivery, clean-up). Nothing waits for Telegram to be reachable: the
    /// tasks retry.
    pub fn start(
        settings: Settings,
        desk: Arc<dyn Desk>,
        nudges: Nudges,
        stop: CancellationToken,
    ) -> anyhow::Result<Bridge> {
        let url = reqwest::Url::parse(&settings.api_url)
            .map_err(|e| anyhow::anyhow!("telegram api_url is not a URL: {e}"))?;
        let bot = Bot::new(settings.token.clone()).set_api_url(url);
        let shared = Arc::new(Shared {
            bot,
            desk,
            pacer: pacing::Pacer::new(settings.limits),
            settings,
            nudges,
            me: OnceCell::new(),
            chat_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            failures: Mutex::new(Default::default()),
        });
        let (leader_tx, leader_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(identify(shared.clone(), stop.clone())),
            tokio::spawn(keep_lease(shared.clone(), leader_tx, stop.clone())),
            tokio::spawn(outbound::run(
                shared.clone(),
                leader_rx.clone(),
                stop.clone(),
            )),
            tokio::spawn(housekeeping(shared.clone(), stop.clone())),
        ];
        if shared.settings.mode == Mode::Polling {
            tasks.push(tokio::spawn(polling::run(
                shared.clone(),
                leader_rx,
                stop.clone(),
            )));
        } else {
            tasks.push(tokio::spawn(set_webhook(shared.clone(), leader_rx, stop)));
        }
        tracing::info!(mode = ?shared.settings.mode, "telegram bridge started");
        Ok(Bridge { shared, tasks })
    }

    /// The webhook endpoint's handler state.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Wait for the tasks to end after `stop` fired: deliveries in flight finish and
    /// their cursors are saved.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        // Hand the lease over at once (a successor need not wait for it to expire).
        let s = &self.shared;
        if let Err(e) = s.desk.lease(&s.settings.node, Duration::ZERO).await {
            tracing::debug!(error = %e, "cannot release the telegram lease");
        }
    }
}

/// Learn the bot's id (message keys) and name (commands addressed to it).
async fn identify(shared: Arc<Shared>, stop: CancellationToken) {
    let mut attempt = 0;
    loop {
        match shared.bot.get_me().await {
            Ok(me) => {
                let me = Me {
                    id: me.id.0,
                    username: me.username.clone().unwrap_or_default(),
                };
                tracing::info!(bot = %me.username, "telegram bot identified");
                let _ = shared.me.set(me);
                return;
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %shared.redact(&e.to_string()), "telegram getMe failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(failure::backoff(attempt).min(Duration::from_secs(30))) => {}
                }
            }
        }
    }
}

/// Hold the lease while this node may poll and deliver; tell the tasks.
async fn keep_lease(shared: Arc<Shared>, leader: watch::Sender<bool>, stop: CancellationToken) {
    loop {
        let held = match shared.desk.lease(&shared.settings.node, LEASE_TTL).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the telegram lease");
                false
            }
        };
        if *leader.borrow() != held {
            tracing::info!(held, "telegram lease changed");
            let _ = leader.send(held);
        }
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = leader.send(false);
                return;
            }
            _ = tokio::time::sleep(LEASE_RENEW) => {}
        }
    }
}

/// Webhook mode: the lease holder registers the webhook (with the secret token).
async fn set_webhook(
    shared: Arc<Shared>,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    use teloxide::payloads::SetWebhookSetters;
    let url = match reqwest::Url::parse(&shared.settings.webhook_url) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "telegram webhook_url is not a URL; the webhook is not set");
            return;
        }
    };
    let mut attempt = 0;
    loop {
        if *leader.borrow_and_update() {
            let r = shared
                .bot
                .set_webhook(url.clone())
                .secret_token(shared.settings.secret_token.clone())
                .allowed_updates(polling::ALLOWED.to_vec())
                .await;
            match r {
                Ok(_) => {
                    tracing::info!("telegram webhook set");
                    return;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %shared.redact(&e.to_string()), "telegram setWebhook failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(failure::backoff(attempt)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = leader.changed() => if r.is_err() { return },
        }
    }
}

/// Hourly: forget handled updates Telegram can no longer redeliver.
async fn housekeeping(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        if let Err(e) = shared.desk.housekeeping().await {
            tracing::warn!(error = %e, "telegram clean-up failed");
        }
    }
}
