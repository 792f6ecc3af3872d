//! The port the bridge needs from the helpdesk. The bridge speaks Telegram; everything
//! else — who a chat is, what a message becomes, what the chat must be sent next, the
//! durable cursor, the lease — is behind this trait, implemented by the server with its
//! domain services. Types here are plain data so that this crate does not depend on
//! the server.

use std::time::Duration;

use async_trait::async_trait;

/// Why the desk could not do something.
#[derive(Clone, Debug, PartialEq)]
pub enum DeskError {
    /// The input was refused (empty, malformed, not allowed); the text says why, for
    /// logs. The chat gets the bridge's own wording.
    Refused(String),
    /// An image over the size or pixel limit.
    TooLarge(String),
    /// Not an image the desk accepts.
    Unsupported(String),
    /// Not now (shutting down, overloaded): try again later.
    Unavailable(String),
    /// A fault on the desk's side.
    Internal(String),
}

impl DeskError {
    /// Worth trying the same thing again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, DeskError::Unavailable(_) | DeskError::Internal(_))
    }
}

impl std::fmt::Display for DeskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeskError::Refused(m) => write!(f, "refused: {m}"),
            DeskError::TooLarge(m) => write!(f, "too large: {m}"),
            DeskError::Unsupported(m) => write!(f, "unsupported: {m}"),
            DeskError::Unavailable(m) => write!(f, "unavailable: {m}"),
            DeskError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

pub type DeskResult<T> = Result<T, DeskError>;

/// The person behind a private chat, as Telegram shows them (untrusted text).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatUser {
    pub chat_id: i64,
    pub display_name: Option<String>,
    /// Telegram's language code of the user (`zh-hans`, `en`, ...).
    pub language: Option<String>,
}

/// The languages the bot answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

/// What the desk knows about the citizen of a chat.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub lang: Lang,
    /// ISO 3166-1 alpha-2, when chosen.
    pub country: Option<String>,
    /// The chat was seen for the first time.
    pub new: bool,
}

/// What a citizen sent, ready for the desk.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    Text(String),
    /// The bytes as downloaded from Telegram; the desk checks and cleans them.
    Image {
        bytes: Vec<u8>,
        caption: String,
    },
    Location {
        lat: f64,
        lon: f64,
        accuracy_m: Option<f64>,
    },
}

/// What became of an inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// It had been stored before (a redelivered update).
    pub duplicate: bool,
}

/// A knowledge-base answer for `/search`.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub title: String,
    pub snippet: String,
    pub url: Option<String>,
}

/// An active safety alert for `/alerts`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertItem {
    pub title: String,
    pub summary: String,
    /// `low`, `medium`, `high`, `critical`.
    pub severity: Option<String>,
}

/// A conversation whose chat is behind.
#[derive(Clone, Debug, PartialEq)]
pub struct Backlog {
    pub conversation: String,
    pub chat_id: i64,
    /// What the chat has been sent up to (its durable cursor).
    pub cursor: i64,
}

/// Who a message to the chat is from.
#[derive(Clone, Debug, PartialEq)]
pub enum Author {
    /// A person of the mission, by the display name shown with messages.
    Staff(String),
    /// The service itself (guidance, transfers, alerts).
    Service,
}

/// An image to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRef {
    pub id: String,
    pub content_type: String,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
}

/// One message for the chat.
#[derive(Clone, Debug, PartialEq)]
pub struct OutItem {
    pub seq: i64,
    pub author: Author,
    /// The text, or the caption of the images (may be empty then).
    pub text: String,
    pub images: Vec<ImageRef>,
}

/// The next messages of a conversation for its chat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outgoing {
    pub items: Vec<OutItem>,
    /// How far the cursor may move once `items` are delivered.
    pub upto: i64,
}

/// The helpdesk as the bridge uses it.
#[async_trait]
pub trait Desk: Send + Sync + 'static {
    /// The citizen of a private chat, created on first contact.
    async fn citizen(&self, user: &ChatUser) -> DeskResult<Profile>;
    /// The countries offered on `/start`: (ISO code, the mission serving it).
    fn countries(&self) -> Vec<(String, String)>;
    /// Set the citizen's country; `None` is "another country".
    async fn set_country(&self, user: &ChatUser, country: Option<&str>) -> DeskResult<Profile>;
    async fn set_language(&self, user: &ChatUser, lang: Lang) -> DeskResult<Profile>;
    /// Store what the citizen sent as a message of their conversation, exactly like an
    /// app message. `key` (a UUID derived from the Telegram message) makes it
    /// idempotent: a redelivered update finds the stored message.
    async fn submit(&self, user: &ChatUser, key: &str, inbound: Inbound) -> DeskResult<Submitted>;
    /// Whether a message was stored under `key` already.
    async fn is_stored(&self, user: &ChatUser, key: &str) -> DeskResult<bool>;
    /// The citizen edited the message stored under `key`; `false` when there is none.
    async fn edit(&self, user: &ChatUser, key: &str, text: &str) -> DeskResult<bool>;
    /// Remember where the citizen is (a shared or live location).
    async fn set_location(
        &self,
        user: &ChatUser,
        lat: f64,
        lon: f64,
        accuracy_m: Option<f64>,
    ) -> DeskResult<()>;
    async fn search(&self, user: &ChatUser, words: &str) -> DeskResult<Vec<SearchHit>>;
    async fn alerts(&self, user: &ChatUser) -> DeskResult<Vec<AlertItem>>;
    /// The citizen asked for emergency help; returns what to tell them.
    async fn sos(&self, user: &ChatUser, key: &str) -> DeskResult<String>;
    /// Whether an update's effect is done already (a redelivery).
    async fn update_handled(&self, update_id: i64) -> DeskResult<bool>;
    /// Record that an update's effect is done.
    async fn update_done(&self, update_id: i64) -> DeskResult<()>;
    /// The next `getUpdates` offset, kept durably.
    async fn offset(&self) -> DeskResult<i64>;
    async fn set_offset(&self, offset: i64) -> DeskResult<()>;
    /// Take or renew the bridge's lease: one node polls and delivers at a time.
    async fn lease(&self, holder: &str, ttl: Duration) -> DeskResult<bool>;
    /// Conversations whose chat is behind.
    async fn backlog(&self, limit: usize) -> DeskResult<Vec<Backlog>>;
    /// The chat of a conversation and its cursor; `None` when it is not a Telegram
    /// conversation.
    async fn chat_of(&self, conversation: &str) -> DeskResult<Option<(i64, i64)>>;
    /// What the chat must be sent after `after`.
    async fn outgoing(&self, conversation: &str, after: i64, limit: usize) -> DeskResult<Outgoing>;
    /// Everything up to `seq` reached the chat (durable).
    async fn delivered(&self, conversation: &str, seq: i64) -> DeskResult<()>;
    /// The bytes of an image of the conversation.
    async fn image(&self, conversation: &str, image: &str) -> DeskResult<Vec<u8>>;
    /// Messages `first..=last` cannot reach the chat; tell the staff.
    async fn undeliverable(
        &self,
        conversation: &str,
        first: i64,
        last: i64,
        reason: &str,
    ) -> DeskResult<()>;
    /// Periodic clean-up (forget old handled updates).
    async fn housekeeping(&self) -> DeskResult<()>;
}
