//! Typed settings: built-in defaults, then the config file, then `LINGSHI_*` environment
//! variables (nested keys with `__`, e.g. `LINGSHI_LIMITS__TEXT_MAX_CHARS=2000`).
//!
//! Everything is validated once at start so that a bad deployment fails loudly with a
//! message a person can act on, instead of misrouting a citizen's message later.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// A value that must never appear in logs or error messages (HMAC keys and the like).
#[derive(Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

/// Accept any scalar: an all-digit key from the environment arrives as a number.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Describe configuration errors without the offending values, which may be secrets.
fn describe(e: figment::Error) -> String {
    use figment::error::Kind;
    e.into_iter()
        .map(|e| {
            let what = match &e.kind {
                Kind::InvalidType(_, exp) => format!("has the wrong type (expected {exp})"),
                Kind::InvalidValue(_, exp) => format!("has an invalid value (expected {exp})"),
                Kind::InvalidLength(_, exp) => format!("has the wrong length (expected {exp})"),
                Kind::UnknownVariant(_, exp) => {
                    format!("is not one of the allowed values ({})", exp.join(", "))
                }
                other => other.to_string(),
            };
            let key = if e.path.is_empty() {
                "the configuration".to_string()
            } else {
                format!("setting `{}`", e.path.join("."))
            };
            match &e.metadata {
                Some(m) => format!("{key} {what} (from {})", m.name),
                None => format!("{key} {what}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value; grep for it when auditing secret use.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

/// An embassy or consulate and the countries whose citizens it serves.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Mission {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// The mission's 24-hour duty (consular protection) phone, told to citizens in an
    /// emergency.
    #[serde(default)]
    pub duty_phone: String,
    /// The local emergency number of each covered country (`BE = "112"`), told to
    /// citizens in an emergency before anything else.
    #[serde(default)]
    pub emergency_numbers: std::collections::BTreeMap<String, String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

impl Default for Mission {
    fn default() -> Self {
        Mission {
            id: String::new(),
            name: String::new(),
            countries: vec![],
            timezone: default_timezone(),
            duty_phone: String::new(),
            emergency_numbers: Default::default(),
        }
    }
}

/// The 12308 hotline: where escalations are delivered.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Hotline {
    /// Empty: escalations are recorded and shown to staff, not delivered.
    pub url: String,
    /// `whsec_<base64>`: signs deliveries and verifies the hotline's acknowledgements.
    pub secret: Secret,
    /// Not acknowledged within this: re-escalated, and the default mission alerted too.
    pub reescalate_after_secs: u64,
}

impl Default for Hotline {
    fn default() -> Self {
        Hotline {
            url: String::new(),
            secret: Secret::default(),
            reescalate_after_secs: 120,
        }
    }
}

/// Triage of citizens' messages.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct TriageSettings {
    /// A rules file replacing the built-in `config/triage.toml`; re-read when it
    /// changes. Empty: the built-in rules.
    pub rules_file: PathBuf,
}

/// A subscriber to domain events, delivered through the outbox with Standard Webhooks
/// signatures.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Webhook {
    /// Stable name; deliveries are recorded against it.
    pub name: String,
    pub url: String,
    /// `whsec_<base64>`: the signing key.
    pub secret: Secret,
    /// Event types (`conversation.created`, `message.created`, ...), or `*`.
    pub events: Vec<String>,
}

/// Limits that protect the server and other users from one client.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Limits {
    /// Characters (not bytes) in a text message or note.
    pub text_max_chars: usize,
    /// Largest WebSocket frame accepted; bigger ones get a `too_large` error frame.
    pub frame_max_bytes: usize,
    /// Client frames per second per socket before `rate_limited`.
    pub frames_per_second: u32,
    /// Seconds a new socket has to send `hello`.
    pub hello_timeout_secs: u64,
    /// Seconds of silence after which a socket is considered dead.
    pub idle_timeout_secs: u64,
    /// Seconds between server pings on an otherwise idle socket.
    pub ping_interval_secs: u64,
    /// Frames queued for one socket before the client is declared too slow (close 4008).
    /// Agents receive their whole mission's traffic in commit-sized bursts, so this is
    /// well above `commit_batch_max`; the queue takes memory only while it holds frames.
    pub outbound_queue: usize,
    /// Session creations allowed per client address per minute (burst of the same size).
    pub sessions_per_minute: u32,
    /// Largest HTTP JSON body.
    pub http_body_max_bytes: usize,
    /// Messages waiting for the commit writer before senders are told to retry.
    pub write_queue: usize,
    /// Most messages committed in one transaction.
    pub commit_batch_max: usize,
    /// Largest image upload.
    pub image_max_bytes: usize,
    /// Most pixels (width × height) an image may claim.
    pub image_max_pixels: u64,
    /// Uploads that no message references are removed after this long.
    pub unreferenced_upload_ttl_secs: u64,
    /// Uploads one person may make per minute.
    pub uploads_per_minute: u32,
    /// Upload bytes one client address may send per hour.
    pub upload_bytes_per_address_per_hour: u64,
    /// Bytes of uploads one person may hold that no message uses yet.
    pub unreferenced_upload_bytes_per_person: u64,
    /// Bytes of uploads no message uses, for everyone together; beyond it uploads wait.
    pub unreferenced_upload_bytes_max: u64,
    /// Seconds a connection has to send a request's headers (also closes idle
    /// keep-alive connections and clients trickling headers).
    pub http_header_timeout_secs: u64,
    /// Seconds a request (body included) may take; uploads get four times this.
    pub http_request_timeout_secs: u64,
    /// Connections one client address may hold at once.
    pub connections_per_address: usize,
    /// Connections in all; 0 = as many as the open-file limit allows, minus a reserve.
    pub connections_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            text_max_chars: 4000,
            frame_max_bytes: 64 * 1024,
            frames_per_second: 20,
            hello_timeout_secs: 10,
            idle_timeout_secs: 60,
            ping_interval_secs: 25,
            outbound_queue: 4096,
            sessions_per_minute: 30,
            http_body_max_bytes: 256 * 1024,
            write_queue: 16_384,
            commit_batch_max: 512,
            image_max_bytes: 10 * 1024 * 1024,
            image_max_pixels: 40_000_000,
            unreferenced_upload_ttl_secs: 24 * 3600,
            uploads_per_minute: 10,
            upload_bytes_per_address_per_hour: 200 * 1024 * 1024,
            unreferenced_upload_bytes_per_person: 50 * 1024 * 1024,
            unreferenced_upload_bytes_max: 2 * 1024 * 1024 * 1024,
            http_header_timeout_secs: 10,
            http_request_timeout_secs: 30,
            connections_per_address: 1024,
            connections_max: 0,
        }
    }
}

/// How citizens' `identity_token` JWTs from the app's identity service are verified.
/// Leave all keys empty to accept guest sessions only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Identity {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Secret,
    /// PEM public key for RS256 tokens.
    pub rs256_public_key_pem: String,
    /// PEM public key for ES256 tokens.
    pub es256_public_key_pem: String,
    /// Expected `iss`, checked when set.
    pub issuer: String,
    /// Expected `aud`, checked when set.
    pub audience: String,
}

/// Session lifetimes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Sessions {
    pub agent_ttl_hours: u64,
    pub citizen_ttl_days: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            agent_ttl_hours: 12,
            citizen_ttl_days: 30,
        }
    }
}

/// Knowledge-base settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct KbSettings {
    /// Extra search synonyms (groups of equivalent words across languages) added to
    /// the ones shipped in the binary; empty = none. Editors change it without a
    /// rebuild or a restart: the server reloads it when it changes.
    pub synonyms_file: PathBuf,
    /// `lingshi serve` fills an empty knowledge base with the starter articles shipped
    /// in the binary, so search works on the first run; off for a mission that wants
    /// to start from nothing.
    pub import_starter: bool,
}

impl Default for KbSettings {
    fn default() -> Self {
        KbSettings {
            synonyms_file: PathBuf::new(),
            import_starter: true,
        }
    }
}

/// Which engine answers searches. The embedded index needs nothing else; Meilisearch
/// suits deployments that already run it or run several nodes over one index.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SearchSettings {
    /// `embedded` (the index in the data dir) or `meilisearch`.
    pub backend: String,
    /// Meilisearch server URL.
    pub url: String,
    /// Meilisearch API key (search, documents, settings, tasks and index rights).
    pub api_key: Secret,
    /// Meilisearch index uid; one index holds every locale.
    pub index: String,
    /// Seconds between checks of `kb.synonyms_file` for changes; 0 = load it at start only.
    pub synonyms_reload_secs: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            backend: "embedded".into(),
            url: "http://127.0.0.1:7700".into(),
            api_key: Secret::default(),
            index: "lingshi_articles".into(),
            synonyms_reload_secs: 10,
        }
    }
}

/// How the Telegram bridge receives updates.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// Long polling with `getUpdates`: nothing has to reach the server from outside.
    #[default]
    Polling,
    /// Telegram POSTs updates to `/v1/telegram/webhook`.
    Webhook,
}

/// The Telegram bridge. With an empty token it is off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Telegram {
    /// The bot token from @BotFather.
    pub token: Secret,
    pub mode: TelegramMode,
    /// Base URL of the Bot API; a local Bot API server or a test double may stand in.
    pub api_url: String,
    /// Public URL of `/v1/telegram/webhook` (webhook mode).
    pub webhook_url: String,
    /// Checked against `X-Telegram-Bot-Api-Secret-Token` on every webhook call.
    pub secret_token: Secret,
    /// Seconds a `getUpdates` long poll waits; below the Bot API client's 17 s timeout.
    pub poll_timeout_secs: u64,
    /// Messages per second to one chat once its burst is spent (Telegram: about 1).
    pub chat_per_second: f64,
    /// Messages sent to one chat back to back before pacing starts.
    pub chat_burst: u32,
    /// Messages per second to all chats together (Telegram: about 30).
    pub global_per_second: u32,
    /// Link of a knowledge-base article in `/search` answers, with `{slug}` and
    /// `{locale}` filled in; empty: no links.
    pub article_url: String,
}

impl Default for Telegram {
    fn default() -> Self {
        Telegram {
            token: Secret::default(),
            mode: TelegramMode::Polling,
            api_url: "https://api.telegram.org".into(),
            webhook_url: String::new(),
            secret_token: Secret::default(),
            poll_timeout_secs: 10,
            chat_per_second: 1.0,
            chat_burst: 2,
            global_per_second: 30,
            article_url: String::new(),
        }
    }
}

impl Telegram {
    pub fn enabled(&self) -> bool {
        !self.token.is_empty()
    }
}

/// Running several nodes behind a load balancer (with `database_url` on Postgres).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Cluster {
    /// `nats://host:4222` of the message bus that carries live events between nodes;
    /// empty = this node is alone (nothing leaves the process).
    pub nats_url: String,
    /// First token of every subject this deployment uses on the bus, so several
    /// deployments (or test runs) can share one NATS server.
    pub subject_prefix: String,
    /// This node's name in logs, leases and the index-follower table; empty = the
    /// name kept in `DATA_DIR/node-id` (created on first start).
    pub node_name: String,
    /// Seconds a node's presence report (which agents have sockets on it) stays valid
    /// without a refresh; a node that stops reporting is treated as gone.
    pub presence_ttl_secs: u64,
    /// Seconds a node holds a worker lease (the outbox) without renewing it: how long
    /// the work waits when the holder dies.
    pub lease_ttl_secs: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            nats_url: String::new(),
            subject_prefix: "lingshi".into(),
            node_name: String::new(),
            presence_ttl_secs: 15,
            lease_ttl_secs: 10,
        }
    }
}

/// The whole configuration of one Lingshi process.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    /// `postgres://user:password@host/db` to keep everything in Postgres (several
    /// nodes can then share it); empty = SQLite in `data_dir`.
    pub database_url: Secret,
    /// Connections this node keeps open to Postgres.
    pub database_max_connections: u32,
    /// SQLite: the write-ahead log's size (MiB) past which a commit folds it into the
    /// database file itself. The background checkpointer keeps it shorter whenever
    /// writes pause; this bounds it when they never do (a long import, a surge).
    pub sqlite_wal_max_mib: u32,
    /// `text` for people, `json` for log shippers.
    pub log_format: String,
    /// tracing filter, e.g. `info,lingshi=debug`; `RUST_LOG` wins when set.
    pub log_level: String,
    pub default_mission: String,
    pub missions: Vec<Mission>,
    pub limits: Limits,
    pub identity: Identity,
    pub sessions: Sessions,
    pub kb: KbSettings,
    pub search: SearchSettings,
    pub webhooks: Vec<Webhook>,
    pub cluster: Cluster,
    pub telegram: Telegram,
    pub hotline: Hotline,
    pub triage: TriageSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: Secret::default(),
            database_max_connections: 16,
            sqlite_wal_max_mib: 128,
            log_format: "text".into(),
            log_level: "info".into(),
            default_mission: "mfa".into(),
            missions: vec![Mission {
                id: "mfa".into(),
                name: "Consular Protection Center, Ministry of Foreign Affairs".into(),
                countries: vec![],
                timezone: "Asia/Shanghai".into(),
                duty_phone: "+86-10-12308".into(),
                ..Mission::default()
            }],
            limits: Limits::default(),
            identity: Identity::default(),
            sessions: Sessions::default(),
            kb: KbSettings::default(),
            search: SearchSettings::default(),
            webhooks: vec![],
            cluster: Cluster::default(),
            telegram: Telegram::default(),
            hotline: Hotline::default(),
            triage: TriageSettings::default(),
        }
    }
}

/// Why the configuration cannot be used. Messages name the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load defaults → `file` (when given, or `config/lingshi.toml` when it exists) → env.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Load(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                fig = fig.merge(Toml::file(path));
            }
            None => {
                let default = Path::new("config/lingshi.toml");
                if default.exists() {
                    fig = fig.merge(Toml::file(default));
                }
            }
        }
        fig = fig.merge(Env::prefixed("LINGSHI_").split("__"));
        let config: Config = fig.extract().map_err(|e| ConfigError::Load(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Check everything that could misroute or endanger a conversation later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.bind.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "bind address {:?} is not IP:PORT (for example 127.0.0.1:8080 or 0.0.0.0:8080)",
                self.bind
            ));
        }
        if self.missions.is_empty() {
            return bad("no [[missions]] configured; add at least the default mission".into());
        }
        let mut ids = HashMap::new();
        let mut owner: HashMap<String, &str> = HashMap::new();
        for m in &self.missions {
            if m.id.is_empty()
                || !m
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return bad(format!(
                    "mission id {:?} must be lowercase letters, digits, '-' or '_'",
                    m.id
                ));
            }
            if ids.insert(m.id.clone(), ()).is_some() {
                return bad(format!("mission id {:?} is configured twice", m.id));
            }
            if m.name.trim().is_empty() {
                return bad(format!("mission {:?} has no name", m.id));
            }
            for c in &m.countries {
                if !is_country_code(c) {
                    return bad(format!(
                        "mission {:?}: country {:?} is not an ISO 3166-1 alpha-2 code like \"BE\"",
                        m.id, c
                    ));
                }
                if let Some(other) = owner.insert(c.clone(), &m.id) {
                    return bad(format!(
                        "country {c} is claimed by missions {other:?} and {:?}; a country belongs to one mission",
                        m.id
                    ));
                }
            }
        }
        if !ids.contains_key(&self.default_mission) {
            let known: Vec<&str> = self.missions.iter().map(|m| m.id.as_str()).collect();
            return bad(format!(
                "default_mission {:?} is not a configured mission (known: {})",
                self.default_mission,
                known.join(", ")
            ));
        }
        let l = &self.limits;
        if l.text_max_chars == 0
            || l.frame_max_bytes < 1024
            || l.frames_per_second == 0
            || l.outbound_queue == 0
            || l.sessions_per_minute == 0
            || l.write_queue == 0
            || l.commit_batch_max == 0
            || l.image_max_bytes == 0
            || l.image_max_pixels == 0
            || l.unreferenced_upload_ttl_secs == 0
            || l.ping_interval_secs == 0
            || l.idle_timeout_secs <= l.ping_interval_secs
            || l.http_header_timeout_secs == 0
            || l.http_request_timeout_secs == 0
            || l.connections_per_address == 0
            || l.uploads_per_minute == 0
            || l.upload_bytes_per_address_per_hour == 0
        {
            return bad("limits: every limit must be positive, frame_max_bytes at least 1024, and idle_timeout_secs larger than ping_interval_secs".into());
        }
        let mut names = Vec::new();
        for w in &self.webhooks {
            if w.name.is_empty()
                || !w
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!(
                    "webhook name {:?} must be letters, digits, '-' or '_'",
                    w.name
                ));
            }
            if names.contains(&&w.name) {
                return bad(format!("webhook {:?} is configured twice", w.name));
            }
            names.push(&w.name);
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return bad(format!(
                    "webhook {:?}: url must be http:// or https://",
                    w.name
                ));
            }
            if signing_key(&w.secret).is_none() {
                return bad(format!(
                    "webhook {:?}: secret must be whsec_ followed by base64",
                    w.name
                ));
            }
        }
        let url = self.database_url.expose();
        if !(url.is_empty() || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return bad(
                "database_url must start with postgres:// (or be empty for SQLite in data_dir)"
                    .into(),
            );
        }
        if self.database_max_connections < 2 {
            return bad("database_max_connections must be at least 2".into());
        }
        if !(1..=4096).contains(&self.sqlite_wal_max_mib) {
            return bad("sqlite_wal_max_mib must be between 1 and 4096".into());
        }
        let c = &self.cluster;
        if !c.nats_url.is_empty() && self.database_url.is_empty() {
            return bad("cluster.nats_url is set but database_url is empty: several nodes must share one Postgres database (SQLite serves one node)".into());
        }
        if c.subject_prefix.is_empty()
            || !c
                .subject_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return bad(format!(
                "cluster.subject_prefix {:?} must be letters, digits, '-' or '_'",
                c.subject_prefix
            ));
        }
        if c.presence_ttl_secs < 3 || c.lease_ttl_secs < 3 {
            return bad(
                "cluster.presence_ttl_secs and cluster.lease_ttl_secs must be at least 3".into(),
            );
        }
        self.validate_telegram()?;
        if !self.hotline.url.is_empty() {
            if !(self.hotline.url.starts_with("http://")
                || self.hotline.url.starts_with("https://"))
            {
                return bad("hotline.url must be http:// or https://".into());
            }
            if signing_key(&self.hotline.secret).is_none() {
                return bad("hotline.secret must be whsec_ followed by base64".into());
            }
        }
        if self.hotline.reescalate_after_secs < 5 {
            return bad("hotline.reescalate_after_secs must be at least 5".into());
        }
        for m in &self.missions {
            for c in m.emergency_numbers.keys() {
                if !m.countries.contains(c) && m.id != self.default_mission {
                    return bad(format!(
                        "mission {:?}: emergency_numbers names {c}, which it does not cover",
                        m.id
                    ));
                }
            }
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(format!(
                "log_format {:?} must be \"text\" or \"json\"",
                self.log_format
            ));
        }
        match self.search.backend.as_str() {
            "embedded" => {}
            "meilisearch" => {
                let s = &self.search;
                if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                    return bad(
                        "search.url must be the http:// or https:// URL of the Meilisearch server"
                            .into(),
                    );
                }
                if s.index.is_empty()
                    || !s
                        .index
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return bad(format!(
                        "search.index {:?} must be letters, digits, '-' or '_'",
                        s.index
                    ));
                }
                if !s
                    .api_key
                    .expose()
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b))
                {
                    return bad("search.api_key must be printable ASCII without spaces".into());
                }
            }
            other => {
                return bad(format!(
                    "search.backend {other:?} must be \"embedded\" or \"meilisearch\""
                ))
            }
        }
        Ok(())
    }

    fn validate_telegram(&self) -> Result<(), ConfigError> {
        let t = &self.telegram;
        let bad = |m: &str| Err(ConfigError::Invalid(format!("telegram: {m}")));
        if !t.enabled() {
            return Ok(());
        }
        let token = t.token.expose();
        if token.len() > 200 || token.contains(|c: char| c.is_whitespace() || c == '/') {
            return bad("token must be the bot token from @BotFather (no spaces or slashes)");
        }
        if !(t.api_url.starts_with("http://") || t.api_url.starts_with("https://")) {
            return bad("api_url must be an http:// or https:// URL");
        }
        if t.poll_timeout_secs == 0 || t.poll_timeout_secs > 15 {
            return bad("poll_timeout_secs must be between 1 and 15 (the Bot API client gives up after 17 s)");
        }
        if !(t.chat_per_second > 0.0 && t.chat_per_second <= 30.0)
            || t.chat_burst == 0
            || t.global_per_second == 0
            || t.global_per_second > 1000
        {
            return bad("chat_per_second must be above 0 (at most 30), chat_burst and global_per_second at least 1");
        }
        if t.mode == TelegramMode::Webhook {
            if !(t.webhook_url.starts_with("https://") || t.webhook_url.starts_with("http://")) {
                return bad("mode \"webhook\" needs webhook_url, the public https:// URL of /v1/telegram/webhook");
            }
            let s = t.secret_token.expose();
            if s.is_empty()
                || s.len() > 256
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return bad(
                    "mode \"webhook\" needs secret_token: 1 to 256 letters, digits, '_' or '-'",
                );
            }
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> SocketAddr {
        self.bind.parse().expect("validated at load")
    }

    pub fn mission(&self, id: &str) -> Option<&Mission> {
        self.missions.iter().find(|m| m.id == id)
    }

    /// The mission that serves citizens in `country`, else the default mission.
    pub fn route(&self, country: Option<&str>) -> &Mission {
        country
            .and_then(|c| {
                self.missions
                    .iter()
                    .find(|m| m.countries.iter().any(|mc| mc.eq_ignore_ascii_case(c)))
            })
            .or_else(|| self.mission(&self.default_mission))
            .expect("default mission validated at load")
    }
}

/// The HMAC key of a Standard Webhooks secret (`whsec_<base64>`).
pub fn signing_key(secret: &Secret) -> Option<Vec<u8>> {
    use base64::Engine;
    let b64 = secret.expose().strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (!key.is_empty()).then_some(key)
}

/// ISO 3166-1 alpha-2 shape: two ASCII uppercase letters.
pub fn is_country_code(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_missions() -> Config {
        let mut c = Config::default();
        c.missions.push(Mission {
            id: "be".into(),
            name: "Embassy in Belgium".into(),
            countries: vec!["BE".into()],
            timezone: "Europe/Brussels".into(),
            ..Mission::default()
        });
        c
    }

    #[test]
    fn routes_by_country_and_falls_back() {
        let c = with_missions();
        assert_eq!(c.route(Some("BE")).id, "be");
        assert_eq!(c.route(Some("be")).id, "be");
        assert_eq!(c.route(Some("FR")).id, "mfa");
        assert_eq!(c.route(None).id, "mfa");
    }

    #[test]
    fn rejects_unknown_default_mission() {
        let mut c = with_missions();
        c.default_mission = "nowhere".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("nowhere") && e.contains("known: mfa, be"), "{e}");
    }

    #[test]
    fn bounds_the_sqlite_log_setting() {
        let mut c = with_missions();
        assert!(c.validate().is_ok());
        c.sqlite_wal_max_mib = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sqlite_wal_max_mib"), "{e}");
    }

    #[test]
    fn rejects_country_claimed_twice() {
        let mut c = with_missions();
        c.missions.push(Mission {
            id: "be2".into(),
            name: "Consulate".into(),
            countries: vec!["BE".into()],
            timezone: "UTC".into(),
            ..Mission::default()
        });
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("country BE is claimed"), "{e}");
    }

    #[test]
    fn rejects_bad_bind() {
        let mut c = with_missions();
        c.bind = "localhost".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bind address"));
    }

    #[test]
    fn telegram_is_off_without_a_token_and_checked_with_one() {
        let mut c = with_missions();
        assert!(!c.telegram.enabled());
        c.validate().unwrap();
        c.telegram.token = Secret::new("123456:ABC-def");
        c.validate().unwrap();
        c.telegram.mode = TelegramMode::Webhook;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("webhook_url"), "{e}");
        c.telegram.webhook_url = "https://bot.example/v1/telegram/webhook".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("secret_token"), "{e}");
        c.telegram.secret_token = Secret::new("bad secret!");
        assert!(c.validate().is_err());
        c.telegram.secret_token = Secret::new("s3cr3t_-token");
        c.validate().unwrap();
        c.telegram.poll_timeout_secs = 30;
        assert!(c.validate().unwrap_err().to_string().contains("17 s"));
        assert!(!format!("{c:?}").contains("ABC-def"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn secrets_do_not_print() {
        let mut c = Config::default();
        c.identity.hs256_secret = Secret::new("hunter2");
        c.database_url = Secret::new("postgres://lingshi:hunter3@db/lingshi");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("hunter3"));
    }

    #[test]
    fn a_bus_needs_a_shared_database() {
        let mut c = with_missions();
        c.cluster.nats_url = "nats://127.0.0.1:4222".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("database_url is empty"), "{e}");
        c.database_url = Secret::new("postgres://db/lingshi");
        c.validate().unwrap();
        c.database_url = Secret::new("mysql://db/lingshi");
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("postgres://"));
    }
}
