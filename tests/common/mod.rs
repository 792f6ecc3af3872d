//! Test fixture: a real server on 127.0.0.1:0 with its own SQLite file in a temp dir
//! (or, with `LINGSHI_TEST_BACKEND=postgres`, its own database in a throwaway Postgres
//! cluster: see `services.rs`), driven over real HTTP (reqwest) and WebSocket
//! (tokio-tungstenite) clients. Staff accounts are created with the real
//! `lingshi agent add` command.
//!
//! Set `TEST_LOG=1` to see the server's logs.
#![allow(dead_code)]

pub mod hooks;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lingshi::config::{Config, Mission, Secret};
use lingshi::server::Server;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "correct-horse-battery";

pub fn missions() -> Vec<Mission> {
    let m = |id: &str, name: &str, countries: &[&str]| Mission {
        id: id.into(),
        name: name.into(),
        countries: countries.iter().map(|c| c.to_string()).collect(),
        timezone: "UTC".into(),
        duty_phone: format!("+00-{id}-duty"),
        emergency_numbers: countries
            .iter()
            .map(|c| (c.to_string(), format!("{c}-emergency")))
            .collect(),
    };
    vec![
        m("mfa", "Consular Protection Center", &[]),
        m("be", "Embassy in Belgium", &["BE", "LU"]),
        m("et", "Embassy in Ethiopia", &["ET"]),
        m("us", "Embassy in the United States", &["US"]),
    ]
}

/// A fresh Postgres database when the suite runs on Postgres, else `None` (SQLite).
pub fn test_database_url() -> Option<String> {
    if !services::postgres_backend() {
        return None;
    }
    match services::postgres() {
        Some(pg) => Some(pg.fresh_database()),
        None => {
            eprintln!("SKIP Postgres: LINGSHI_TEST_BACKEND=postgres but Postgres is not installed; this test runs on SQLite");
            None
        }
    }
}

/// The configuration tests run with: generous session limits, short hello timeout;
/// on Postgres, a database of its own.
pub fn test_config(data_dir: &Path) -> Config {
    let mut c = Config {
        bind: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        missions: missions(),
        ..Config::default()
    };
    if let Some(url) = test_database_url() {
        c.database_url = Secret::new(url);
        c.database_max_connections = 8;
    }
    c.limits.sessions_per_minute = 100_000;
    c.kb.synonyms_file = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/knowledge-base/synonyms.toml"
    ));
    c.limits.hello_timeout_secs = 2;
    c
}

/// Write `config` as a TOML file for the binary.
pub fn write_config_file(dir: &Path, config: &Config) -> PathBuf {
    let path = dir.join("lingshi.toml");
    let mut text = format!(
        "bind = {:?}\ndata_dir = {:?}\ndefault_mission = {:?}\nsqlite_wal_max_mib = {}\n",
        config.bind,
        config.data_dir.display().to_string(),
        config.default_mission,
        config.sqlite_wal_max_mib
    );
    if !config.database_url.is_empty() {
        text.push_str(&format!(
            "database_url = {:?}\ndatabase_max_connections = {}\n",
            config.database_url.expose(),
            config.database_max_connections
        ));
    }
    for m in &config.missions {
        text.push_str(&format!(
            "[[missions]]\nid = {:?}\nname = {:?}\ncountries = {:?}\ntimezone = {:?}\nduty_phone = {:?}\n",
            m.id, m.name, m.countries, m.timezone, m.duty_phone
        ));
        if !m.emergency_numbers.is_empty() {
            text.push_str("[missions.emergency_numbers]\n");
            for (c, n) in &m.emergency_numbers {
                text.push_str(&format!("{c} = {n:?}\n"));
            }
        }
    }
    let l = &config.limits;
    text.push_str(&format!(
        "[limits]\nsessions_per_minute = {}\nhello_timeout_secs = {}\nframes_per_second = {}\noutbound_queue = {}\n",
        l.sessions_per_minute, l.hello_timeout_secs, l.frames_per_second, l.outbound_queue
    ));
    text.push_str(&format!(
        "[kb]\nsynonyms_file = {:?}\n",
        config.kb.synonyms_file.display().to_string()
    ));
    // The command line must reach the same search backend as the server: with the
    // embedded index in its place it would apply (and prune) the index queue itself.
    let se = &config.search;
    if se.backend != lingshi::config::SearchSettings::default().backend {
        text.push_str(&format!(
            "[search]\nbackend = {:?}\nurl = {:?}\napi_key = {:?}\nindex = {:?}\n",
            se.backend,
            se.url,
            se.api_key.expose(),
            se.index
        ));
    }
    let cl = &config.cluster;
    if !cl.nats_url.is_empty() {
        text.push_str(&format!(
            "[cluster]\nnats_url = {:?}\nsubject_prefix = {:?}\npresence_ttl_secs = {}\nlease_ttl_secs = {}\n",
            cl.nats_url, cl.subject_prefix, cl.presence_ttl_secs, cl.lease_ttl_secs
        ));
        if !cl.node_name.is_empty() {
            text.push_str(&format!("node_name = {:?}\n", cl.node_name));
        }
    }
    if !config.hotline.url.is_empty() {
        text.push_str(&format!(
            "[hotline]\nurl = {:?}\nsecret = {:?}\nreescalate_after_secs = {}\n",
            config.hotline.url,
            config.hotline.secret.expose(),
            config.hotline.reescalate_after_secs
        ));
    }
    if !config.identity.hs256_secret.is_empty() {
        text.push_str(&format!(
            "[identity]\nhs256_secret = {:?}\n",
            config.identity.hs256_secret.expose()
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,lingshi=debug")
            .with_test_writer()
            .try_init();
    }
}

pub struct TestApp {
    pub server: Option<Server>,
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub config: Config,
    pub config_file: PathBuf,
    pub dir: tempfile::TempDir,
}

pub struct Staff {
    pub id: String,
    pub token: String,
    pub email: String,
}

pub struct Citizen {
    pub id: String,
    pub token: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&dir.path().join("data"));
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// Start a server with exactly `config` (its data dir inside `dir`).
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestApp {
        init_logs();
        let config_file = write_config_file(dir.path(), &config);
        let server = Server::start(config.clone()).await.expect("server starts");
        let addr = server.addr();
        TestApp {
            server: Some(server),
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            config,
            config_file,
            dir,
        }
    }

    /// Wait until the server's background work caused so far (auto-assignment,
    /// presence) is done: assert on "nothing happened" only after this.
    pub async fn settle(&self) {
        self.server.as_ref().expect("server running").settle().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Run `lingshi agent add` against this app's data dir.
    pub async fn add_staff(&self, email: &str, name: &str, missions: &str, role: &str) -> String {
        let out = run_cli(
            &self.config_file,
            &[
                "agent",
                "add",
                "--email",
                email,
                "--name",
                name,
                "--mission",
                missions,
                "--role",
                role,
                "--password-stdin",
            ],
            Some(PASSWORD),
        )
        .await;
        assert!(
            out.status.success(),
            "agent add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout
            .split_whitespace()
            .nth(2)
            .expect("id printed")
            .to_string()
    }

    /// Create a staff account and sign it in.
    pub async fn staff(&self, email: &str, missions: &str, role: &str) -> Staff {
        let id = self.add_staff(email, email, missions, role).await;
        let r = self
            .post_json(
                "/v1/agent/sessions",
                None,
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.0, 200, "agent sign-in: {}", r.1);
        assert_eq!(r.1["agent"]["id"], id.as_str());
        Staff {
            id,
            token: r.1["token"].as_str().unwrap().to_string(),
            email: email.to_string(),
        }
    }

    pub async fn citizen(&self, name: &str, country: Option<&str>) -> Citizen {
        let mut body = json!({"display_name": name, "locale": "zh-CN"});
        if let Some(c) = country {
            body["country"] = json!(c);
        }
        let r = self.post_json("/v1/citizen/sessions", None, &body).await;
        assert_eq!(r.0, 200, "citizen session: {}", r.1);
        Citizen {
            id: r.1["citizen"]["id"].as_str().unwrap().to_string(),
            token: r.1["token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_pair(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_pair(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_pair(req.send().await.unwrap()).await
    }

    /// Any method, with an optional JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        into_pair(req.send().await.unwrap()).await
    }

    /// Start (or fetch) the citizen's conversation.
    pub async fn conversation(&self, c: &Citizen) -> Value {
        let r = self
            .post_json("/v1/conversations", Some(&c.token), &json!({}))
            .await;
        assert!(r.0 == 200 || r.0 == 201, "start conversation: {r:?}");
        r.1
    }

    /// The id of the citizen's open conversation (started if there is none).
    pub async fn conversation_id(&self, c: &Citizen) -> String {
        self.conversation(c).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn send_http(&self, token: &str, conv: &str, cmid: &str, body: &str) -> (u16, Value) {
        self.post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(token),
            &json!({"client_msg_id": cmid, "body": body}),
        )
        .await
    }

    pub async fn messages(&self, token: &str, conv: &str, query: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!("/v1/conversations/{conv}/messages?{query}"),
                Some(token),
            )
            .await;
        assert_eq!(r.0, 200, "messages: {}", r.1);
        r.1["messages"].as_array().unwrap().clone()
    }

    pub async fn ws(&self, token: &str) -> Ws {
        Ws::connect(&self.ws_url(), token, json!({})).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

pub async fn into_pair(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

/// Run the real `lingshi` binary, optionally feeding stdin.
pub async fn run_cli(
    config_file: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lingshi"));
    cmd.arg("--config").arg(config_file).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("lingshi binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(format!("{s}\n").as_bytes()).await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that speaks the contract's frames.
pub struct Ws {
    pub stream: WsStream,
    pub welcome: Value,
}

pub enum Next {
    Frame(Value),
    Closed(Option<CloseFrame>),
    Timeout,
}

impl Ws {
    /// Connect and say hello; panics unless `welcome` comes back.
    pub async fn connect(url: &str, token: &str, resume: Value) -> Ws {
        let mut stream = Self::raw(url).await;
        stream
            .send(Message::text(
                json!({"type": "hello", "token": token, "resume": resume}).to_string(),
            ))
            .await
            .unwrap();
        let mut ws = Ws {
            stream,
            welcome: Value::Null,
        };
        match ws.next(Duration::from_secs(5)).await {
            Next::Frame(f) if f["type"] == "welcome" => ws.welcome = f,
            Next::Frame(f) => panic!("expected welcome, got {f}"),
            Next::Closed(c) => panic!("closed instead of welcome: {c:?}"),
            Next::Timeout => panic!("no welcome"),
        }
        ws
    }

    pub async fn raw(url: &str) -> WsStream {
        tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects")
            .0
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, s: String) {
        self.stream.send(Message::text(s)).await.unwrap();
    }

    /// The next JSON frame (pings answered and skipped), a close, or a timeout.
    pub async fn next(&mut self, within: Duration) -> Next {
        next_frame(&mut self.stream, within).await
    }

    /// The next frame of `ty`, skipping others; panics on close or timeout.
    pub async fn expect(&mut self, ty: &str) -> Value {
        self.expect_within(ty, Duration::from_secs(5)).await
    }

    /// [`expect`](Self::expect) with a deadline of one's own.
    pub async fn expect_within(&mut self, ty: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Frame(f) if f["type"] == ty => return f,
                Next::Frame(_) => continue,
                Next::Closed(c) => panic!("socket closed while waiting for {ty}: {c:?}"),
                Next::Timeout => panic!("no {ty} frame within {within:?}"),
            }
        }
    }

    /// Frames received within `window` (for asserting something did NOT arrive).
    pub async fn collect(&mut self, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = vec![];
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left).await {
                Next::Frame(f) => out.push(f),
                _ => return out,
            }
        }
    }

    /// Send a text message and return its ack.
    pub async fn send_message(&mut self, conv: Option<&str>, cmid: &str, body: &str) -> Value {
        let mut f = json!({"type": "send", "client_msg_id": cmid, "kind": "text", "body": body});
        if let Some(c) = conv {
            f["conversation_id"] = json!(c);
        }
        self.send(f).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Frame(f) if f["type"] == "ack" && f["client_msg_id"] == cmid => return f,
                Next::Frame(f) if f["type"] == "error" => panic!("send refused: {f}"),
                Next::Frame(_) => continue,
                Next::Closed(c) => panic!("closed while waiting for ack: {c:?}"),
                Next::Timeout => panic!("no ack for {cmid}"),
            }
        }
    }

    /// Wait for the server to close the socket; returns the close code.
    pub async fn closed(&mut self, within: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Frame(_) => continue,
                Next::Closed(c) => return c.map(|c| u16::from(c.code)),
                Next::Timeout => panic!("socket not closed within {within:?}"),
            }
        }
    }
}

pub async fn next_frame(stream: &mut WsStream, within: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => return Next::Timeout,
            Ok(None) => return Next::Closed(None),
            Ok(Some(Err(_))) => return Next::Closed(None),
            Ok(Some(Ok(Message::Text(t)))) => {
                return Next::Frame(serde_json::from_str(t.as_str()).expect("server sends JSON"))
            }
            Ok(Some(Ok(Message::Close(c)))) => return Next::Closed(c),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

pub fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The `lingshi serve` child process and where it listens.
pub struct ServerProc {
    pub child: tokio::process::Child,
    pub base: String,
    pub addr: String,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Start `lingshi --config FILE serve --bind 127.0.0.1:PORT` and wait for `/readyz`.
/// Retries on another port if the chosen one was taken in the meantime.
pub async fn start_server(config_file: &Path, dir: &Path, name: &str) -> ServerProc {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for attempt in 0..5 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = dir.join(format!("{name}-{attempt}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lingshi"))
            .arg("--config")
            .arg(config_file)
            .arg("serve")
            .arg("--bind")
            .arg(&addr)
            .current_dir(dir)
            .env_remove("LINGSHI_BIND")
            .env_remove("LINGSHI_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("lingshi binary runs");
        let base = format!("http://{addr}");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log_text = tail(&log);
                if log_text.contains("cannot listen") {
                    break; // port taken by someone else: try another
                }
                panic!("lingshi serve exited early with {status}:\n{log_text}");
            }
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().as_u16() == 200 {
                    return ServerProc {
                        child,
                        base,
                        addr,
                        log,
                    };
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                panic!("lingshi serve not ready within 90 s:\n{}", tail(&log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("could not find a free port for lingshi serve");
}

/// Every message of a conversation, paging with `after_seq`.
pub async fn all_messages(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    conv: &str,
) -> Vec<Value> {
    let mut out: Vec<Value> = vec![];
    let mut after = 0;
    loop {
        let r = http
            .get(format!(
                "{base}/v1/conversations/{conv}/messages?after_seq={after}&limit=200"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (s, body) = into_pair(r).await;
        assert_eq!(s, 200, "messages: {body}");
        let page = body["messages"].as_array().unwrap().clone();
        assert!(page.len() <= 200, "a page holds at most 200 messages");
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().unwrap();
        out.extend(page);
    }
    out
}

// ----- images ------------------------------------------------------------------------

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, 120, (y % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A JPEG carrying an EXIF segment with GPS coordinates (and a camera model string).
pub fn jpeg_with_gps() -> Vec<u8> {
    let mut tiff: Vec<u8> = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes()); // IFD0 at 8
                                     // IFD0: 2 entries: Model (ASCII, offset), GPSInfo (LONG -> GPS IFD).
    let ifd0_len = 2 + 2 * 12 + 4;
    let model = b"SECRET-CAMERA-MODEL\0";
    let model_off = 8 + ifd0_len as u32;
    let gps_off = model_off + model.len() as u32;
    tiff.extend(2u16.to_le_bytes());
    tiff.extend(0x0110u16.to_le_bytes());
    tiff.extend(2u16.to_le_bytes());
    tiff.extend((model.len() as u32).to_le_bytes());
    tiff.extend(model_off.to_le_bytes());
    tiff.extend(0x8825u16.to_le_bytes());
    tiff.extend(4u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(gps_off.to_le_bytes());
    tiff.extend(0u32.to_le_bytes());
    tiff.extend(model);
    // GPS IFD: LatitudeRef 'N', Latitude 50/1 51/1 1234/100.
    let gps_len = 2 + 2 * 12 + 4;
    let lat_off = gps_off + gps_len as u32;
    tiff.extend(2u16.to_le_bytes());
    tiff.extend(0x0001u16.to_le_bytes());
    tiff.extend(2u16.to_le_bytes());
    tiff.extend(2u32.to_le_bytes());
    tiff.extend(*b"N\0\0\0");
    tiff.extend(0x0002u16.to_le_bytes());
    tiff.extend(5u16.to_le_bytes());
    tiff.extend(3u32.to_le_bytes());
    tiff.extend(lat_off.to_le_bytes());
    tiff.extend(0u32.to_le_bytes());
    for (n, d) in [(50u32, 1u32), (51, 1), (1234, 100)] {
        tiff.extend(n.to_le_bytes());
        tiff.extend(d.to_le_bytes());
    }
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let plain = jpeg(64, 48);
    let mut out = plain[..2].to_vec(); // SOI
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&plain[2..]);
    out
}

/// A new citizen session (in Belgium) on the server at `base` (one started as a
/// separate process): its token.
pub async fn citizen_session(http: &reqwest::Client, base: &str, name: &str) -> String {
    let (s, v) = into_pair(
        http.post(format!("{base}/v1/citizen/sessions"))
            .json(&json!({"display_name": name, "country": "BE"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// A new citizen (in Belgium) with an open conversation on the server at `base` (one
/// started as a separate process): its token and the conversation id.
pub async fn citizen_with_conversation(
    http: &reqwest::Client,
    base: &str,
    name: &str,
) -> (String, String) {
    let token = citizen_session(http, base, name).await;
    let (s, c) = into_pair(
        http.post(format!("{base}/v1/conversations"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    (token, c["id"].as_str().unwrap().to_string())
}
