//! Value types parsed once at the edge: ids, country codes, locales and the closed sets
//! of the contract (roles, statuses, priorities, message kinds, channels, presence).
//! Everything past an adapter holds these instead of strings, so a value that reached
//! the domain is known to be valid and cannot be misspelled further in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

/// A point in time. Stored and shown as RFC 3339 UTC with microseconds, which sorts
/// correctly as text in every backend.
pub type Timestamp = DateTime<Utc>;

/// The contract's time format: RFC 3339, UTC, microseconds.
pub fn fmt_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parse an RFC 3339 time (any offset) into UTC.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Now, truncated to the microseconds the stores keep, so a value read back equals the
/// value written.
pub fn now() -> Timestamp {
    let t = Utc::now();
    t - chrono::Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 1000))
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            /// Parse an id from a path or body; any malformed value is "not found",
            /// which is what the caller answers for an unknown id too.
            pub fn parse(s: &str) -> Result<Self, AppError> {
                Uuid::try_parse(s.trim())
                    .map($name)
                    .map_err(|_| AppError::not_found($what))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A conversation between one citizen and a mission.
    ConversationId,
    "conversation"
);
uuid_id!(
    /// A stored message.
    MessageId,
    "message"
);
uuid_id!(
    /// A citizen (guest or bound to an identity).
    CitizenId,
    "citizen"
);
uuid_id!(
    /// A staff account (agent, editor or admin).
    AgentId,
    "agent"
);
uuid_id!(
    /// An uploaded image.
    AttachmentId,
    "attachment"
);
uuid_id!(
    /// A knowledge-base article (one locale of a slug).
    ArticleId,
    "article"
);
uuid_id!(
    /// A canned response.
    CannedId,
    "canned response"
);
uuid_id!(
    /// An escalation of a conversation to the hotline.
    EscalationId,
    "escalation"
);
uuid_id!(
    /// A row of the transactional outbox; its id is the webhook id receivers dedup on.
    OutboxId,
    "outbox event"
);

/// Either kind of signed-in person; used where citizens and staff share a field
/// (message senders, read markers, uploads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonId(pub Uuid);

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl From<CitizenId> for PersonId {
    fn from(c: CitizenId) -> Self {
        PersonId(c.0)
    }
}

impl From<AgentId> for PersonId {
    fn from(a: AgentId) -> Self {
        PersonId(a.0)
    }
}

/// The sender's idempotency key. The contract makes it a UUID the client generates;
/// it is kept exactly as sent (the ack echoes it back byte for byte).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let s = s.trim();
        if s.len() > 64 || Uuid::try_parse(s).is_err() {
            return Err(AppError::invalid(
                "client_msg_id is required: a UUID you generate for each message",
            ));
        }
        Ok(ClientMsgId(s.to_string()))
    }

    /// A value read back from storage, written by [`ClientMsgId::parse`] earlier.
    pub fn from_stored(s: String) -> Self {
        ClientMsgId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A mission id from the configuration (`be`, `mfa`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MissionId(String);

impl MissionId {
    /// Only the configuration creates mission ids; it validates their shape.
    pub fn new(s: impl Into<String>) -> Self {
        MissionId(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&crate::config::Mission> for MissionId {
    fn from(m: &crate::config::Mission) -> Self {
        MissionId(m.id.clone())
    }
}

impl fmt::Display for MissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for MissionId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// ISO 3166-1 alpha-2, uppercase (`BE`). Parsed case-insensitively at the edge.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() != 2 || !b.iter().all(|c| c.is_ascii_alphabetic()) {
            return Err(AppError::invalid(format!(
                "country {s:?} is not an ISO 3166-1 alpha-2 code like BE"
            )));
        }
        Ok(CountryCode([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
        ]))
    }

    /// An optional country from a request: absent or blank is "none", anything else
    /// must be a country code (the same rule on every endpoint).
    pub fn parse_opt(s: Option<&str>) -> Result<Option<Self>, AppError> {
        match s.map(str::trim) {
            None | Some("") => Ok(None),
            Some(c) => Self::parse(c).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII letters")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CountryCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A BCP 47 language tag (`zh-CN`, `en`), shape-checked, kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let l = s.trim();
        let ok = !l.is_empty()
            && l.len() <= 35
            && l.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !ok {
            return Err(AppError::invalid(format!(
                "locale {s:?} is not a BCP 47 tag like zh-CN or en"
            )));
        }
        Ok(Locale(l.to_string()))
    }

    /// Absent or blank is "none"; anything else must be a language tag.
    pub fn parse_opt(s: Option<&str>) -> Result<Option<Self>, AppError> {
        match s.map(str::trim) {
            None | Some("") => Ok(None),
            Some(l) => Self::parse(l).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary language, lowercase (`zh`, `en`).
    pub fn language(&self) -> String {
        self.0
            .split('-')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    pub fn is_chinese(&self) -> bool {
        self.language() == "zh"
    }
}

impl<'de> Deserialize<'de> for Locale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Locale::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A closed set of contract words: `as_str`, `FromStr` (with an error naming the
/// allowed values), serde as those words.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// Parse a value of a request; the error lists what is allowed.
            pub fn parse(s: &str) -> Result<Self, AppError> {
                s.parse()
            }
        }

        impl FromStr for $name {
            type Err = AppError;
            fn from_str(s: &str) -> Result<Self, AppError> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(AppError::invalid(format!(
                        concat!($what, " {:?} must be one of: {}"),
                        s,
                        [$($word),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<str>::deserialize(d)?;
                s.parse().map_err(|e: AppError| serde::de::Error::custom(e.to_string()))
            }
        }
    };
}

word_enum!(
    /// What a staff account may do. Citizens are not a role of this enum: they are a
    /// different kind of principal.
    Role, "role" { Agent = "agent", Editor = "editor", Admin = "admin" }
);
word_enum!(
    /// Where a conversation is in its life.
    Status, "status" { Open = "open", Assigned = "assigned", Resolved = "resolved" }
);
word_enum!(
    /// How urgently a conversation needs an agent; orders the queue.
    Priority, "priority" { Normal = "normal", Urgent = "urgent", Emergency = "emergency" }
);
word_enum!(
    /// What a message is. Notes are staff-only.
    MessageKind, "kind" { Text = "text", Image = "image", Note = "note", System = "system" }
);
word_enum!(
    /// Who wrote a message.
    SenderKind, "sender kind" { Citizen = "citizen", Agent = "agent", Bot = "bot", System = "system" }
);
word_enum!(
    /// How the citizen reaches the mission.
    Channel, "channel" { App = "app", Web = "web", Telegram = "telegram" }
);
word_enum!(
    /// What an agent chose; without an open socket they are offline whatever they chose.
    PresenceChoice, "status" { Online = "online", Away = "away" }
);
word_enum!(
    /// An agent's presence as colleagues and auto-assignment see it.
    Presence, "presence" { Online = "online", Away = "away", Offline = "offline" }
);
word_enum!(
    /// Kinds of knowledge-base articles.
    Category, "category" {
        Guide = "guide",
        Faq = "faq",
        SafetyAlert = "safety_alert",
        Announcement = "announcement",
        VisaPolicy = "visa_policy",
        DocumentPolicy = "document_policy",
        EmergencyContacts = "emergency_contacts",
    }
);
word_enum!(
    /// Where an article is in its editorial life.
    ArticleStatus, "status" { Draft = "draft", Published = "published", Archived = "archived" }
);
word_enum!(
    /// Why a conversation was escalated to the hotline.
    EscalationReason, "reason" { Sos = "sos", Triage = "triage" }
);
word_enum!(
    /// Where an escalation is: waiting for delivery, delivered to the hotline,
    /// acknowledged by the hotline or an agent, resolved with the conversation.
    EscalationState, "state" {
        Pending = "pending",
        Delivered = "delivered",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
    }
);
word_enum!(
    /// How serious a safety alert is.
    Severity, "severity" { Low = "low", Medium = "medium", High = "high", Critical = "critical" }
);

impl Priority {
    /// Queue rank: higher is served first.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Emergency => 2,
            Priority::Urgent => 1,
            Priority::Normal => 0,
        }
    }

    pub fn from_rank(rank: i64) -> Option<Priority> {
        match rank {
            2 => Some(Priority::Emergency),
            1 => Some(Priority::Urgent),
            0 => Some(Priority::Normal),
            _ => None,
        }
    }
}

impl EscalationState {
    /// Still needs someone: every state but resolved.
    pub fn is_open(self) -> bool {
        self != EscalationState::Resolved
    }

    /// Nobody has taken it yet: re-escalation keeps alerting.
    pub fn unacknowledged(self) -> bool {
        matches!(self, EscalationState::Pending | EscalationState::Delivered)
    }
}

impl Severity {
    pub fn rank(self) -> u8 {
        match self {
            Severity::Critical => 4,
            Severity::High => 3,
            Severity::Medium => 2,
            Severity::Low => 1,
        }
    }
}

impl MessageKind {
    /// The one rule for note visibility: notes are for staff, never for citizens, on
    /// every path (live frames, history, replay, bridges).
    pub fn citizen_may_see(self) -> bool {
        self != MessageKind::Note
    }
}

impl Presence {
    /// Offline without sockets, else what the agent chose.
    pub fn effective(sockets: u32, chosen: PresenceChoice) -> Presence {
        match (sockets, chosen) {
            (0, _) => Presence::Offline,
            (_, PresenceChoice::Away) => Presence::Away,
            _ => Presence::Online,
        }
    }
}

/// A point on Earth as a citizen shares it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

impl GeoPoint {
    pub fn parse(lat: f64, lon: f64, accuracy_m: Option<f64>) -> Result<Self, AppError> {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(AppError::invalid(
                "lat must be in -90..90 and lon in -180..180",
            ));
        }
        if accuracy_m.is_some_and(|a| !(0.0..=1_000_000.0).contains(&a)) {
            return Err(AppError::invalid(
                "accuracy_m must be between 0 and 1,000,000",
            ));
        }
        Ok(GeoPoint {
            lat,
            lon,
            accuracy_m,
        })
    }

    /// Great-circle distance in kilometres.
    pub fn distance_km(&self, lat: f64, lon: f64) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), lat.to_radians());
        let dp = (lat - self.lat).to_radians();
        let dl = (lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0088 * a.sqrt().asin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_errors_list_values() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()).unwrap(), *p);
        }
        let e = Priority::parse("high").unwrap_err().to_string();
        assert!(e.contains("normal, urgent, emergency"), "{e}");
        let v: Status = serde_json::from_str("\"resolved\"").unwrap();
        assert_eq!(v, Status::Resolved);
        assert!(serde_json::from_str::<Status>("\"closed\"").is_err());
    }

    #[test]
    fn countries_and_locales_parse_once() {
        assert_eq!(CountryCode::parse(" be ").unwrap().as_str(), "BE");
        assert!(CountryCode::parse("BEL").is_err());
        assert!(CountryCode::parse("").is_err());
        assert_eq!(CountryCode::parse_opt(Some("")).unwrap(), None);
        assert_eq!(Locale::parse("zh-CN").unwrap().language(), "zh");
        assert!(Locale::parse("zh_CN").is_err());
        assert_eq!(Locale::parse_opt(Some(" ")).unwrap(), None);
    }

    #[test]
    fn ids_parse_or_are_not_found() {
        let id = ConversationId::new();
        assert_eq!(ConversationId::parse(&id.to_string()).unwrap(), id);
        assert!(matches!(
            ConversationId::parse("nope"),
            Err(AppError::NotFound(_))
        ));
        assert!(ClientMsgId::parse("not-a-uuid").is_err());
        assert!(ClientMsgId::parse(&uuid::Uuid::now_v7().to_string()).is_ok());
    }

    #[test]
    fn notes_are_staff_only() {
        assert!(!MessageKind::Note.citizen_may_see());
        assert!(MessageKind::System.citizen_may_see());
    }

    #[test]
    fn now_round_trips_through_text() {
        let t = now();
        assert_eq!(parse_time(&fmt_time(t)).unwrap(), t);
    }
}
