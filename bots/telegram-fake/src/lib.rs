//! `lingshi-telegram-fake`: a local stand-in for the Telegram Bot API, speaking its
//! envelope (`{"ok": true, "result": …}` / `{"ok": false, "error_code", "description",
//! "parameters"}`) on `/bot<token>/<method>` and `/file/bot<token>/<path>`, so that
//! the bridge is tested and benchmarked through the real teloxide client.
//!
//! It queues updates for `getUpdates` (offset confirmation, long poll), records every
//! call, accepts JSON and multipart bodies (`sendPhoto`, `sendDocument`,
//! `setWebhook`), serves files for `getFile`, and can enforce Telegram's published
//! limits (per chat: a rate after a short burst; overall: a count per second), answering
//! 429 with `parameters.retry_after` when they are exceeded. Failures can be scripted
//! per chat (429, 5xx, "blocked by the user", "chat not found") or for every send.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Limits the fake enforces on `sendMessage`, `sendPhoto` and `sendDocument`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Per chat: a token bucket of `chat_burst` refilled at `chat_per_second`.
    pub chat_per_second: f64,
    pub chat_burst: f64,
    /// Overall: at most this many sends in any one-second window.
    pub global_per_second: usize,
}

impl Limits {
    /// Telegram's published limits: about one message a second per chat (with a short
    /// burst) and thirty a second overall.
    pub fn telegram() -> Limits {
        Limits {
            chat_per_second: 1.0,
            chat_burst: 3.0,
            global_per_second: 30,
        }
    }
}

/// A scripted answer to a send.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// 429 with `parameters.retry_after`.
    RetryAfter(u64),
    /// 500 Internal Server Error.
    ServerError,
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 400 "Bad Request: chat not found".
    ChatNotFound,
}

/// A send the fake accepted.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `sendmessage`, `sendphoto`, `senddocument` (lower case).
    pub method: String,
    pub chat_id: i64,
    pub text: Option<String>,
    pub caption: Option<String>,
    pub parse_mode: Option<String>,
    /// The uploaded file of a photo or document.
    pub file: Option<Vec<u8>>,
    pub reply_markup: Option<Value>,
    pub at: Instant,
    pub message_id: i64,
}

/// Any call, accepted or not.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub params: Value,
    pub at: Instant,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    next_update: i64,
    next_message: i64,
    next_file: u64,
    /// Updates not yet confirmed (a `getUpdates` with a higher offset confirms).
    updates: VecDeque<Value>,
    /// Every update ever queued.
    history: Vec<Value>,
    sent: Vec<Sent>,
    calls: Vec<Call>,
    files: HashMap<String, (String, Vec<u8>)>,
    scripted: HashMap<i64, VecDeque<Failure>>,
    outage: Option<Failure>,
    limits: Option<Limits>,
    window: VecDeque<Instant>,
    buckets: HashMap<i64, (f64, Instant)>,
    too_many: u64,
    webhook: Option<(String, String)>,
}

struct Shared {
    token: String,
    bot_id: i64,
    username: String,
    inner: Mutex<Inner>,
    new_update: Notify,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(status: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(s) = retry_after {
        body["parameters"] = json!({"retry_after": s});
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

fn failure_response(f: &Failure) -> (u16, Response) {
    match f {
        Failure::RetryAfter(s) => (
            429,
            fail(
                429,
                &format!("Too Many Requests: retry after {s}"),
                Some(*s),
            ),
        ),
        Failure::ServerError => (500, fail(500, "Internal Server Error", None)),
        Failure::Blocked => (
            403,
            fail(403, "Forbidden: bot was blocked by the user", None),
        ),
        Failure::ChatNotFound => (400, fail(400, "Bad Request: chat not found", None)),
    }
}

/// A Telegram user for a private chat id (a private chat's id is its user's id).
pub fn user(chat: i64) -> Value {
    json!({"id": chat, "is_bot": false, "first_name": format!("User{chat}"), "language_code": "zh-hans"})
}

fn private_chat(chat: i64) -> Value {
    json!({"id": chat, "type": "private", "first_name": format!("User{chat}")})
}

impl FakeTelegram {
    /// Start on 127.0.0.1 (a free port) for `token`.
    pub async fn start(token: &str) -> FakeTelegram {
        let shared = Arc::new(Shared {
            token: token.to_string(),
            bot_id: token
                .split(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(4242),
            username: "lingshi_test_bot".into(),
            inner: Mutex::new(Inner {
                next_update: 1000,
                next_message: 1,
                ..Default::default()
            }),
            new_update: Notify::new(),
        });
        let app = Router::new()
            .route("/file/{bot}/{*path}", get(file))
            .route("/{bot}/{method}", any(method))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Bot API");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTelegram { shared, addr }
    }

    /// The base URL to give the client (`api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bot_id(&self) -> i64 {
        self.shared.bot_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enforce limits on sends (or stop enforcing with `None`).
    pub fn set_limits(&self, limits: Option<Limits>) {
        self.lock().limits = limits;
    }

    /// Fail every send with `f` until cleared.
    pub fn set_outage(&self, f: Option<Failure>) {
        self.lock().outage = f;
    }

    /// Fail the next send to `chat` with `f` (several calls queue up).
    pub fn fail_next(&self, chat: i64, f: Failure) {
        self.lock().scripted.entry(chat).or_default().push_back(f);
    }

    /// 429s answered because the limits were exceeded (not scripted ones).
    pub fn too_many(&self) -> u64 {
        self.lock().too_many
    }

    /// Every accepted send, in arrival order.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().sent.clone()
    }

    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.lock()
            .sent
            .iter()
            .filter(|s| s.chat_id == chat)
            .cloned()
            .collect()
    }

    /// Every call of `method` (lower case), accepted or not.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The webhook registered with `setWebhook`: (url, secret token).
    pub fn webhook(&self) -> Option<(String, String)> {
        self.lock().webhook.clone()
    }

    /// Queue every update ever queued again, as Telegram does for a client that asks
    /// with an old offset (it never confirmed them).
    pub fn redeliver_all(&self) {
        let mut i = self.lock();
        let mut all: Vec<Value> = i.history.clone();
        all.sort_by_key(|u| u["update_id"].as_i64().unwrap_or(0));
        i.updates = all.into();
        drop(i);
        self.shared.new_update.notify_waiters();
    }

    /// Updates queued and not yet confirmed by a later offset.
    pub fn unconfirmed(&self) -> usize {
        self.lock().updates.len()
    }

    /// Wait until `pred` holds for the accepted sends, or panic after `within`.
    pub async fn wait_for(&self, within: Duration, what: &str, pred: impl Fn(&[Sent]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if pred(&self.lock().sent) {
                return;
            }
            if Instant::now() > deadline {
                let sent: Vec<String> = self
                    .sent()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} {:?}",
                            s.method,
                            s.chat_id,
                            s.text.as_ref().or(s.caption.as_ref())
                        )
                    })
                    .collect();
                panic!("fake Telegram: {what} not seen within {within:?}; sent so far: {sent:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Make an update (not queued), with the next update id: for webhook tests.
    pub fn make_update(&self, kind: &str, body: Value) -> Value {
        let mut i = self.lock();
        i.next_update += 1;
        json!({"update_id": i.next_update, kind: body})
    }

    /// Queue an update for `getUpdates`; returns its id.
    pub fn push_update(&self, kind: &str, body: Value) -> i64 {
        let u = self.make_update(kind, body);
        let id = u["update_id"].as_i64().unwrap_or(0);
        let mut i = self.lock();
        i.history.push(u.clone());
        i.updates.push_back(u);
        drop(i);
        self.shared.new_update.notify_waiters();
        id
    }

    fn next_message_id(&self) -> i64 {
        let mut i = self.lock();
        i.next_message += 1;
        i.next_message
    }

    /// A message of a private chat with the given content fields; returns
    /// (the message JSON, its message id).
    pub fn private_message(&self, chat: i64, content: Value) -> (Value, i64) {
        let id = self.next_message_id();
        let mut m = json!({
            "message_id": id,
            "date": unix_now(),
            "chat": private_chat(chat),
            "from": user(chat),
        });
        if let (Some(m), Some(c)) = (m.as_object_mut(), content.as_object()) {
            for (k, v) in c {
                m.insert(k.clone(), v.clone());
            }
        }
        (m, id)
    }

    /// Queue a text message from a private chat; returns its message id.
    pub fn text(&self, chat: i64, text: &str) -> i64 {
        let (m, id) = self.private_message(chat, json!({"text": text}));
        self.push_update("message", m);
        id
    }

    /// Register a file for `getFile`; returns its file id.
    pub fn add_file(&self, bytes: Vec<u8>, name: &str) -> String {
        let mut i = self.lock();
        i.next_file += 1;
        let id = format!("file-{}", i.next_file);
        let path = format!("photos/{}-{name}", i.next_file);
        i.files.insert(id.clone(), (path, bytes));
        id
    }

    /// Queue a photo (one size, the file registered) with an optional caption.
    pub fn photo(&self, chat: i64, bytes: Vec<u8>, caption: Option<&str>) -> i64 {
        let size = bytes.len();
        let small = self.add_file(vec![0; 10], "thumb.jpg");
        let id = self.add_file(bytes, "photo.jpg");
        let mut content = json!({"photo": [
            {"file_id": small, "file_unique_id": format!("u{small}"), "file_size": 10, "width": 90, "height": 60},
            {"file_id": id, "file_unique_id": format!("u{id}"), "file_size": size, "width": 1280, "height": 960},
        ]});
        if let Some(c) = caption {
            content["caption"] = json!(c);
        }
        let (m, mid) = self.private_message(chat, content);
        self.push_update("message", m);
        mid
    }

    /// Queue a document; `size` overrides the size Telegram reports (big files).
    pub fn document(
        &self,
        chat: i64,
        bytes: Vec<u8>,
        mime: &str,
        name: &str,
        size: Option<u64>,
    ) -> i64 {
        let reported = size.unwrap_or(bytes.len() as u64);
        let id = self.add_file(bytes, name);
        let (m, mid) = self.private_message(
            chat,
            json!({"document": {"file_id": id, "file_unique_id": format!("u{id}"), "file_size": reported,
                   "file_name": name, "mime_type": mime}}),
        );
        self.push_update("message", m);
        mid
    }

    /// Queue a shared location.
    pub fn location(&self, chat: i64, lat: f64, lon: f64) -> i64 {
        let (m, id) = self.private_message(
            chat,
            json!({"location": {"latitude": lat, "longitude": lon, "horizontal_accuracy": 25.0}}),
        );
        self.push_update("message", m);
        id
    }

    /// Queue an edit of a text message.
    pub fn edit_text(&self, chat: i64, message_id: i64, text: &str) {
        let m = json!({
            "message_id": message_id,
            "date": unix_now() - 5,
            "edit_date": unix_now(),
            "chat": private_chat(chat),
            "from": user(chat),
            "text": text,
        });
        self.push_update("edited_message", m);
    }

    /// Queue a press of an inline button under one of the bot's messages.
    pub fn callback(&self, chat: i64, data: &str) {
        let bot = json!({"id": self.shared.bot_id, "is_bot": true, "first_name": "Lingshi", "username": self.shared.username});
        let q = json!({
            "id": format!("cb{}", self.next_message_id()),
            "from": user(chat),
            "chat_instance": format!("ci{chat}"),
            "data": data,
            "message": {"message_id": 1, "date": unix_now(), "chat": private_chat(chat), "from": bot, "text": "…"},
        });
        self.push_update("callback_query", q);
    }

    /// A message in a group chat from `from` (a user id); the update JSON, not queued.
    pub fn group_message(&self, group: i64, from: i64, text: &str) -> Value {
        let id = self.next_message_id();
        json!({
            "message_id": id,
            "date": unix_now(),
            "chat": {"id": group, "type": "group", "title": "Travellers"},
            "from": user(from),
            "text": text,
        })
    }
}

/// What a request carried: its parameters, and an uploaded file if any.
async fn params(req: Request) -> (Value, Option<Vec<u8>>) {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if ct.starts_with("multipart/form-data") {
        let mut out = serde_json::Map::new();
        let mut file = None;
        if let Ok(mut mp) = Multipart::from_request(req, &()).await {
            while let Ok(Some(field)) = mp.next_field().await {
                let name = field.name().unwrap_or("").to_string();
                let is_file = field.file_name().is_some();
                let bytes = field.bytes().await.unwrap_or_default();
                if is_file {
                    file = Some(bytes.to_vec());
                    out.insert(name, json!("<file>"));
                } else {
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    let v = serde_json::from_str::<Value>(&text)
                        .ok()
                        .filter(|v| v.is_object() || v.is_array() || v.is_number())
                        .unwrap_or(Value::String(text));
                    out.insert(name, v);
                }
            }
        }
        (Value::Object(out), file)
    } else {
        let body = Bytes::from_request(req, &()).await.unwrap_or_default();
        (
            serde_json::from_slice(&body).unwrap_or_else(|_| json!({})),
            None,
        )
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

async fn file(State(s): State<Arc<Shared>>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot != format!("bot{}", s.token) {
        return fail(401, "Unauthorized", None);
    }
    let i = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    match i.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn method(
    State(s): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    req: Request,
) -> Response {
    let method = method.to_ascii_lowercase();
    let (params, upload) = params(req).await;
    if bot != format!("bot{}", s.token) {
        return fail(401, "Unauthorized", None);
    }
    let (status, resp) = match method.as_str() {
        "getupdates" => (200, get_updates(&s, &params).await),
        "sendmessage" | "sendphoto" | "senddocument" => send(&s, &method, &params, upload),
        "getme" => (
            200,
            ok(
                json!({"id": s.bot_id, "is_bot": true, "first_name": "Lingshi", "username": s.username,
                      "can_join_groups": false, "can_read_all_group_messages": false,
                      "supports_inline_queries": false, "has_main_web_app": false}),
            ),
        ),
        "getfile" => {
            let id = params["file_id"].as_str().unwrap_or("").to_string();
            let i = s.inner.lock().unwrap_or_else(|p| p.into_inner());
            match i.files.get(&id) {
                Some((path, bytes)) => (
                    200,
                    ok(
                        json!({"file_id": id, "file_unique_id": format!("u{id}"), "file_size": bytes.len(), "file_path": path}),
                    ),
                ),
                None => (400, fail(400, "Bad Request: invalid file_id", None)),
            }
        }
        "setwebhook" => {
            let url = params["url"].as_str().unwrap_or("").to_string();
            let secret = params["secret_token"].as_str().unwrap_or("").to_string();
            s.inner.lock().unwrap_or_else(|p| p.into_inner()).webhook = Some((url, secret));
            (200, ok(json!(true)))
        }
        "deletewebhook" => {
            s.inner.lock().unwrap_or_else(|p| p.into_inner()).webhook = None;
            (200, ok(json!(true)))
        }
        "sendchataction" | "answercallbackquery" | "editmessagereplymarkup" => {
            (200, ok(json!(true)))
        }
        _ => (404, fail(404, "Not Found: method not found", None)),
    };
    if method != "getupdates" {
        s.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .push(Call {
                method,
                params,
                at: Instant::now(),
                status,
            });
    }
    resp
}

async fn get_updates(s: &Shared, params: &Value) -> Response {
    let offset = as_i64(&params["offset"]).unwrap_or(0);
    let timeout = as_i64(&params["timeout"]).unwrap_or(0).clamp(0, 50) as u64;
    let limit = as_i64(&params["limit"]).unwrap_or(100).clamp(1, 100) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = s.new_update.notified();
        {
            let mut i = s.inner.lock().unwrap_or_else(|p| p.into_inner());
            while i
                .updates
                .front()
                .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
            {
                i.updates.pop_front();
            }
            if !i.updates.is_empty() {
                let batch: Vec<Value> = i.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn send(s: &Shared, method: &str, params: &Value, upload: Option<Vec<u8>>) -> (u16, Response) {
    let chat = as_i64(&params["chat_id"]).unwrap_or(0);
    let now = Instant::now();
    let mut i = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(f) = i.outage.clone() {
        return failure_response(&f);
    }
    if let Some(f) = i.scripted.get_mut(&chat).and_then(|q| q.pop_front()) {
        return failure_response(&f);
    }
    if let Some(l) = i.limits {
        while i
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            i.window.pop_front();
        }
        if i.window.len() >= l.global_per_second {
            i.too_many += 1;
            return failure_response(&Failure::RetryAfter(1));
        }
        let (tokens, at) = i.buckets.get(&chat).copied().unwrap_or((l.chat_burst, now));
        let tokens =
            (tokens + now.duration_since(at).as_secs_f64() * l.chat_per_second).min(l.chat_burst);
        if tokens < 1.0 {
            i.too_many += 1;
            let wait = ((1.0 - tokens) / l.chat_per_second).ceil().max(1.0) as u64;
            return failure_response(&Failure::RetryAfter(wait));
        }
        i.buckets.insert(chat, (tokens - 1.0, now));
        i.window.push_back(now);
    }
    i.next_message += 1;
    let message_id = i.next_message;
    let text = params["text"].as_str().map(str::to_string);
    let caption = params["caption"].as_str().map(str::to_string);
    let mut result = json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": private_chat(chat),
        "from": {"id": s.bot_id, "is_bot": true, "first_name": "Lingshi", "username": s.username},
    });
    match method {
        "sendmessage" => result["text"] = json!(text.clone().unwrap_or_default()),
        "sendphoto" => {
            result["photo"] = json!([{"file_id": format!("sent{message_id}"), "file_unique_id": format!("us{message_id}"),
                                     "file_size": upload.as_ref().map_or(0, Vec::len), "width": 1, "height": 1}]);
        }
        _ => {
            result["document"] = json!({"file_id": format!("sent{message_id}"), "file_unique_id": format!("us{message_id}"),
                                        "file_size": upload.as_ref().map_or(0, Vec::len)});
        }
    }
    if let Some(c) = &caption {
        result["caption"] = json!(c);
    }
    i.sent.push(Sent {
        method: method.to_string(),
        chat_id: chat,
        text,
        caption,
        parse_mode: params["parse_mode"].as_str().map(str::to_string),
        file: upload,
        reply_markup: params.get("reply_markup").cloned(),
        at: now,
        message_id,
    });
    (200, ok(result))
}
