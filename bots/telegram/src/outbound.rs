//! Delivery to chats. The lease holder follows the desk's durable cursor of every
//! Telegram conversation: it loads what the chat must be sent next, sends it strictly
//! in order (one request in flight per chat), paced within Telegram's limits, and saves
//! the cursor right after Telegram confirmed each message, before the next one of that
//! chat goes. Woken by nudges from the server's events; a scan of the desk's backlog
//! every few seconds catches what a nudge missed (a restart, another node).
//!
//! Crash behaviour: Telegram has no idempotency key, so a message whose confirmation
//! arrived but whose cursor was not yet saved when the process died is sent again after
//! the restart. That window is one small write per message (the cursor is saved before
//! anything else happens in that chat), so at most one message per chat can be doubled
//! by a `kill -9`, and only if it lands in that window; nothing is ever lost. On a
//! graceful stop the sends in flight finish and their cursors are saved.
//!
//! Failures: `retry_after` is waited out; network and server errors back off (1 s,
//! 2 s, ... a minute) and retry without end; a message Telegram refuses is skipped and
//! a chat that cannot be reached (blocked, deleted) has its pending messages skipped —
//! both with a note to the conversation's staff.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use teloxide::payloads::{SendDocumentSetters, SendMessageSetters, SendPhotoSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatAction, ChatId, InputFile, ParseMode};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::desk::{ImageRef, OutItem};
use crate::failure::{backoff, Failure};
use crate::pacing::{Permit, Wait};
use crate::texts;
use crate::Shared;

/// How often the backlog is scanned when nothing nudges.
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// Conversations taken per scan.
const SCAN_LIMIT: usize = 5000;
/// Messages loaded per chat at a time.
const LOAD: usize = 20;
/// Loads per round, so that sending continues while a large backlog is loaded.
const LOADS_PER_ROUND: usize = 200;
/// Typing shows for about 5 s; refresh it at most this often per chat.
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// How long a graceful stop waits for sends in flight.
const DRAIN: Duration = Duration::from_secs(20);

/// Telegram's photo limits: larger images go as documents.
const PHOTO_MAX_BYTES: i64 = 10 * 1024 * 1024;
const PHOTO_MAX_SIDES: i64 = 10_000;
const PHOTO_MAX_RATIO: i64 = 20;

/// One request of a message.
#[derive(Clone, Debug, PartialEq)]
enum Call {
    Text(String),
    Image {
        image: ImageRef,
        caption: Option<String>,
        as_document: bool,
    },
}

fn photo_fits(i: &ImageRef) -> bool {
    let (w, h) = (i.width.max(1), i.height.max(1));
    i.bytes <= PHOTO_MAX_BYTES && w + h <= PHOTO_MAX_SIDES && w.max(h) <= w.min(h) * PHOTO_MAX_RATIO
}

/// The requests that carry one message: its text in pieces, or its images with the
/// caption on the first (and the text after them when it is too long for a caption).
fn plan(item: &OutItem) -> Vec<Call> {
    if item.images.is_empty() {
        return texts::render(&item.author, &item.text, texts::TEXT_MAX)
            .into_iter()
            .map(Call::Text)
            .collect();
    }
    let caption = texts::render(&item.author, &item.text, texts::CAPTION_MAX);
    let (caption, after) = if caption.len() == 1 {
        (caption.into_iter().next(), vec![])
    } else {
        (
            texts::render(&item.author, "", texts::CAPTION_MAX)
                .into_iter()
                .next(),
            texts::render(&item.author, &item.text, texts::TEXT_MAX),
        )
    };
    let mut calls: Vec<Call> = item
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| Call::Image {
            image: image.clone(),
            caption: if i == 0 { caption.clone() } else { None },
            as_document: !photo_fits(image),
        })
        .collect();
    calls.extend(after.into_iter().map(Call::Text));
    calls
}

struct Chat {
    chat_id: i64,
    /// What the chat has been sent up to.
    cursor: i64,
    /// `cursor` is ahead of what is saved (a save failed): nothing more is sent to this
    /// chat until it is saved.
    unsaved: bool,
    queue: VecDeque<OutItem>,
    /// How far the loaded batch reaches.
    upto: i64,
    in_flight: bool,
    /// Requests of the first queued message already done (a message of several).
    progress: usize,
    attempts: u32,
    not_before: Instant,
}

enum Outcome {
    Sent { cursor: i64, saved: bool },
    Failed { progress: usize, failure: Failure },
}

struct Done {
    conversation: String,
    outcome: Outcome,
}

struct Worker {
    shared: Arc<Shared>,
    chats: HashMap<String, Chat>,
    to_load: VecDeque<String>,
    queued: HashSet<String>,
    ready: BinaryHeap<Reverse<(Instant, u64, String)>>,
    order: u64,
    tasks: JoinSet<Done>,
    typing: HashMap<i64, Instant>,
    next_scan: Instant,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let mut w = Worker {
        shared,
        chats: HashMap::new(),
        to_load: VecDeque::new(),
        queued: HashSet::new(),
        ready: BinaryHeap::new(),
        order: 0,
        tasks: JoinSet::new(),
        typing: HashMap::new(),
        next_scan: Instant::now(),
    };
    loop {
        if stop.is_cancelled() {
            w.drain().await;
            return;
        }
        if !*leader.borrow_and_update() {
            w.drain().await;
            w.forget();
            tokio::select! {
                _ = stop.cancelled() => return,
                r = leader.changed() => if r.is_err() { return },
            }
            continue;
        }
        w.round().await;
        w.wait(&stop, &mut leader).await;
    }
}

impl Worker {
    fn forget(&mut self) {
        self.chats.clear();
        self.to_load.clear();
        self.queued.clear();
        self.ready.clear();
        self.next_scan = Instant::now();
    }

    /// Let the sends in flight finish (their cursors are saved by the send itself).
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(done))) => self.finished(done).await,
                Ok(Some(Err(e))) => tracing::error!(error = %e, "telegram send task failed"),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        in_flight = self.tasks.len(),
                        "telegram sends still in flight at shutdown"
                    );
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }

    fn push_ready(&mut self, conversation: &str, at: Instant) {
        self.order += 1;
        self.ready
            .push(Reverse((at, self.order, conversation.to_string())));
    }

    fn want_load(&mut self, conversation: &str) {
        if self.queued.insert(conversation.to_string()) {
            self.to_load.push_back(conversation.to_string());
        }
    }

    /// New messages may exist for this conversation's chat.
    async fn stale(&mut self, conversation: String) {
        if !self.chats.contains_key(&conversation) {
            match self.shared.desk.chat_of(&conversation).await {
                Ok(Some((chat_id, cursor))) => {
                    self.chats
                        .insert(conversation.clone(), Chat::new(chat_id, cursor));
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up a telegram chat; the scan will find it");
                    return;
                }
            }
        }
        self.want_load(&conversation);
    }

    async fn round(&mut self) {
        let (deliver, typing) = self.shared.nudges.take();
        for c in deliver {
            self.stale(c).await;
        }
        for c in typing {
            self.show_typing(c).await;
        }
        if Instant::now() >= self.next_scan {
            self.scan().await;
            self.next_scan = Instant::now() + SCAN_EVERY;
        }
        self.save_pending().await;
        self.load_some().await;
        self.schedule();
    }

    async fn scan(&mut self) {
        let backlog = match self.shared.desk.backlog(SCAN_LIMIT).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the telegram backlog");
                return;
            }
        };
        for b in backlog {
            match self.chats.get(&b.conversation) {
                Some(c) if c.in_flight || !c.queue.is_empty() => {}
                Some(_) => self.want_load(&b.conversation),
                None => {
                    self.chats
                        .insert(b.conversation.clone(), Chat::new(b.chat_id, b.cursor));
                    self.want_load(&b.conversation);
                }
            }
        }
    }

    /// Retry saving cursors whose save failed.
    async fn save_pending(&mut self) {
        let pending: Vec<(String, i64)> = self
            .chats
            .iter()
            .filter(|(_, c)| c.unsaved && !c.in_flight)
            .map(|(k, c)| (k.clone(), c.cursor))
            .collect();
        for (conversation, cursor) in pending {
            if self
                .shared
                .desk
                .delivered(&conversation, cursor)
                .await
                .is_ok()
            {
                if let Some(c) = self.chats.get_mut(&conversation) {
                    c.unsaved = false;
                }
                if self.chats[&conversation].queue.is_empty() {
                    self.want_load(&conversation);
                } else {
                    self.push_ready(&conversation, Instant::now());
                }
            }
        }
    }

    async fn load_some(&mut self) {
        for _ in 0..LOADS_PER_ROUND {
            let Some(conversation) = self.to_load.pop_front() else {
                return;
            };
            self.queued.remove(&conversation);
            let Some(chat) = self.chats.get(&conversation) else {
                continue;
            };
            if chat.in_flight || chat.unsaved || !chat.queue.is_empty() {
                continue;
            }
            let cursor = chat.cursor;
            match self.shared.desk.outgoing(&conversation, cursor, LOAD).await {
                Ok(o) if o.items.is_empty() => {
                    if o.upto > cursor {
                        // Only notes and the citizen's own messages: move past them.
                        match self.shared.desk.delivered(&conversation, o.upto).await {
                            Ok(()) => {
                                if let Some(c) = self.chats.get_mut(&conversation) {
                                    c.cursor = o.upto;
                                }
                                self.want_load(&conversation);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot save a telegram cursor")
                            }
                        }
                    } else {
                        // Up to date: forget the chat until it has something again.
                        self.chats.remove(&conversation);
                    }
                }
                Ok(o) => {
                    let at = {
                        let c = self.chats.get_mut(&conversation).expect("present");
                        c.queue = o.items.into();
                        c.upto = o.upto;
                        c.progress = 0;
                        c.not_before.max(Instant::now())
                    };
                    self.push_ready(&conversation, at);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load messages for a telegram chat; the scan retries");
                }
            }
        }
    }

    /// Start every send the limits allow now, oldest-ready chat first.
    fn schedule(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, order, conversation))) = self.ready.peek().cloned() {
            if at > now {
                return;
            }
            let Some(chat) = self.chats.get(&conversation) else {
                self.ready.pop();
                continue;
            };
            if chat.in_flight || chat.unsaved || chat.queue.is_empty() {
                self.ready.pop();
                continue;
            }
            if chat.not_before > now {
                self.ready.pop();
                let nb = chat.not_before;
                self.ready.push(Reverse((nb, order, conversation)));
                continue;
            }
            match self.shared.pacer.try_start(chat.chat_id, now) {
                Ok(permit) => {
                    self.ready.pop();
                    self.start(conversation, permit);
                }
                Err(Wait::Chat(when)) => {
                    self.ready.pop();
                    self.ready.push(Reverse((when, order, conversation)));
                }
                Err(Wait::Global(_)) => return,
            }
        }
    }

    fn start(&mut self, conversation: String, permit: Permit) {
        let chat = self.chats.get_mut(&conversation).expect("present");
        let item = chat.queue.front().cloned().expect("queued");
        let target = if chat.queue.len() == 1 {
            item.seq.max(chat.upto)
        } else {
            item.seq
        };
        chat.in_flight = true;
        let (shared, chat_id, progress) = (self.shared.clone(), chat.chat_id, chat.progress);
        self.tasks.spawn(async move {
            let outcome = send(
                &shared,
                &conversation,
                chat_id,
                &item,
                progress,
                target,
                permit,
            )
            .await;
            Done {
                conversation,
                outcome,
            }
        });
    }

    async fn finished(&mut self, done: Done) {
        let now = Instant::now();
        let conversation = done.conversation;
        let Some(chat) = self.chats.get_mut(&conversation) else {
            return;
        };
        chat.in_flight = false;
        match done.outcome {
            Outcome::Sent { cursor, saved } => {
                chat.queue.pop_front();
                chat.progress = 0;
                chat.attempts = 0;
                chat.cursor = chat.cursor.max(cursor);
                chat.unsaved = !saved;
                if chat.unsaved {
                    return;
                }
                if chat.queue.is_empty() {
                    self.want_load(&conversation);
                } else {
                    self.push_ready(&conversation, now);
                }
            }
            Outcome::Failed { progress, failure } => {
                chat.progress = progress;
                match failure {
                    Failure::RetryAfter(d) => {
                        tracing::info!(
                            retry_after_ms = d.as_millis() as u64,
                            "telegram asked to slow down"
                        );
                        chat.not_before = now + d;
                        let at = chat.not_before;
                        self.push_ready(&conversation, at);
                    }
                    Failure::Transient(why) => {
                        chat.attempts += 1;
                        let wait = backoff(chat.attempts);
                        chat.not_before = now + wait;
                        tracing::warn!(attempts = chat.attempts, retry_in_ms = wait.as_millis() as u64, error = %self.shared.redact(&why), "telegram delivery failed; retrying");
                        let at = chat.not_before;
                        self.push_ready(&conversation, at);
                    }
                    Failure::Rejected(why) => {
                        let head = chat.queue.front().map(|i| i.seq).unwrap_or(chat.cursor);
                        let target = if chat.queue.len() <= 1 {
                            head.max(chat.upto)
                        } else {
                            head
                        };
                        self.give_up(&conversation, head, target, &why, false).await;
                    }
                    Failure::ChatGone(why) => {
                        let head = chat.queue.front().map(|i| i.seq).unwrap_or(chat.cursor);
                        let last = chat
                            .queue
                            .back()
                            .map(|i| i.seq)
                            .unwrap_or(head)
                            .max(chat.upto);
                        self.give_up(&conversation, head, last, &why, true).await;
                    }
                }
            }
        }
    }

    /// Messages that will not reach the chat: tell the staff, then move past them.
    async fn give_up(&mut self, conversation: &str, first: i64, last: i64, why: &str, all: bool) {
        let why = self.shared.redact(why);
        tracing::warn!(first, last, reason = %why, "telegram messages not deliverable");
        let desk = &self.shared.desk;
        let noted = desk.undeliverable(conversation, first, last, &why).await;
        let saved = match noted {
            Ok(()) => desk.delivered(conversation, last).await,
            Err(e) => Err(e),
        };
        let Some(chat) = self.chats.get_mut(conversation) else {
            return;
        };
        match saved {
            Ok(()) => {
                chat.cursor = chat.cursor.max(last);
                chat.progress = 0;
                chat.attempts = 0;
                if all {
                    chat.queue.clear();
                } else {
                    chat.queue.pop_front();
                }
                if chat.queue.is_empty() {
                    self.want_load(conversation);
                } else {
                    self.push_ready(conversation, Instant::now());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record undeliverable telegram messages; retrying");
                chat.attempts += 1;
                chat.not_before = Instant::now() + backoff(chat.attempts);
                let at = chat.not_before;
                self.push_ready(conversation, at);
            }
        }
    }

    /// Show "typing…" in the chat, skipped when the global window is full.
    async fn show_typing(&mut self, conversation: String) {
        let chat_id = match self.chats.get(&conversation) {
            Some(c) => c.chat_id,
            None => match self.shared.desk.chat_of(&conversation).await {
                Ok(Some((chat, _))) => chat,
                _ => return,
            },
        };
        let now = Instant::now();
        if self
            .typing
            .get(&chat_id)
            .is_some_and(|t| now.duration_since(*t) < TYPING_EVERY)
        {
            return;
        }
        let Some(permit) = self.shared.pacer.try_start_extra(now) else {
            return;
        };
        if self.typing.len() > 10_000 {
            self.typing
                .retain(|_, t| now.duration_since(*t) < TYPING_EVERY);
        }
        self.typing.insert(chat_id, now);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let r = shared
                .bot
                .send_chat_action(ChatId(chat_id), ChatAction::Typing)
                .await;
            drop(permit);
            if let Err(e) = r {
                tracing::debug!(error = %shared.redact(&e.to_string()), "telegram chat action failed");
            }
        });
    }

    async fn wait(&mut self, stop: &CancellationToken, leader: &mut watch::Receiver<bool>) {
        let now = Instant::now();
        let mut until = self.next_scan;
        if let Some(Reverse((at, _, _))) = self.ready.peek() {
            // A full global window re-checks shortly; the pacer knows no better time.
            until = until.min((*at).max(now + Duration::from_millis(5)));
        }
        if !self.to_load.is_empty() {
            until = now;
        }
        let shared = self.shared.clone();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {}
            _ = leader.changed() => {}
            Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                match done {
                    Ok(done) => self.finished(done).await,
                    Err(e) => tracing::error!(error = %e, "telegram send task failed"),
                }
            }
            _ = shared.nudges.notified() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

impl Chat {
    fn new(chat_id: i64, cursor: i64) -> Chat {
        Chat {
            chat_id,
            cursor,
            unsaved: false,
            queue: VecDeque::new(),
            upto: cursor,
            in_flight: false,
            progress: 0,
            attempts: 0,
            not_before: Instant::now(),
        }
    }
}

/// Send one message (its remaining requests), then save the cursor.
async fn send(
    shared: &Arc<Shared>,
    conversation: &str,
    chat_id: i64,
    item: &OutItem,
    progress: usize,
    target: i64,
    permit: Permit,
) -> Outcome {
    let calls = plan(item);
    let mut permit = Some(permit);
    for (i, call) in calls.iter().enumerate().skip(progress) {
        let p = match permit.take() {
            Some(p) => p,
            None => shared.pacer.start(chat_id).await,
        };
        let r = perform(shared, conversation, chat_id, call).await;
        drop(p);
        if let Err(failure) = r {
            return Outcome::Failed {
                progress: i,
                failure,
            };
        }
    }
    drop(permit);
    // Saved before anything else is sent to this chat: the window in which a crash
    // doubles a message is this one write.
    let mut saved = false;
    for attempt in 0..3 {
        match shared.desk.delivered(conversation, target).await {
            Ok(()) => {
                saved = true;
                break;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "cannot save a telegram cursor");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    Outcome::Sent {
        cursor: target,
        saved,
    }
}

async fn perform(
    shared: &Arc<Shared>,
    conversation: &str,
    chat_id: i64,
    call: &Call,
) -> Result<(), Failure> {
    let chat = ChatId(chat_id);
    let r = match call {
        Call::Text(html) => shared
            .bot
            .send_message(chat, html.clone())
            .parse_mode(ParseMode::Html)
            .await
            .map(|_| ()),
        Call::Image {
            image,
            caption,
            as_document,
        } => {
            let bytes = match shared.desk.image(conversation, &image.id).await {
                Ok(b) => b,
                Err(e) if e.is_transient() => return Err(Failure::Transient(e.to_string())),
                Err(e) => return Err(Failure::Rejected(format!("the image cannot be read: {e}"))),
            };
            let ext = match image.content_type.as_str() {
                "image/png" => "png",
                "image/webp" => "webp",
                "image/gif" => "gif",
                _ => "jpg",
            };
            let file = InputFile::memory(bytes).file_name(format!("{}.{ext}", image.id));
            if *as_document {
                let mut req = shared.bot.send_document(chat, file);
                if let Some(c) = caption {
                    req = req.caption(c.clone()).parse_mode(ParseMode::Html);
                }
                req.await.map(|_| ())
            } else {
                let mut req = shared.bot.send_photo(chat, file);
                if let Some(c) = caption {
                    req = req.caption(c.clone()).parse_mode(ParseMode::Html);
                }
                req.await.map(|_| ())
            }
        }
    };
    r.map_err(|e| Failure::classify(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::Author;

    fn image(w: i64, h: i64, bytes: i64) -> ImageRef {
        ImageRef {
            id: "img".into(),
            content_type: "image/jpeg".into(),
            bytes,
            width: w,
            height: h,
        }
    }

    #[test]
    fn texts_are_one_request_per_piece() {
        let item = OutItem {
            seq: 3,
            author: Author::Staff("Li".into()),
            text: "hello".into(),
            images: vec![],
        };
        assert_eq!(plan(&item), vec![Call::Text("<b>Li</b>\nhello".into())]);
    }

    #[test]
    fn images_carry_the_caption_once_and_oversized_ones_go_as_documents() {
        let item = OutItem {
            seq: 4,
            author: Author::Staff("Li".into()),
            text: "your form".into(),
            images: vec![image(800, 600, 1000), image(20_000, 300, 1000)],
        };
        let calls = plan(&item);
        assert_eq!(calls.len(), 2);
        assert!(
            matches!(&calls[0], Call::Image { caption: Some(c), as_document: false, .. } if c.contains("your form"))
        );
        assert!(matches!(
            &calls[1],
            Call::Image {
                caption: None,
                as_document: true,
                ..
            }
        ));
        let long = OutItem {
            text: "x".repeat(2000),
            ..item
        };
        let calls = plan(&long);
        assert_eq!(calls.len(), 3);
        assert!(matches!(&calls[2], Call::Text(t) if t.contains("xxx")));
    }
}
