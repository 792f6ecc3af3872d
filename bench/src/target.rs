//! The server under test: a `lingshi serve` child, the relay baseline child, or a
//! server someone else started (`--url`). Plus the HTTP, CLI and WebSocket clients.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::util;

pub const PASSWORD: &str = "bench-password-123";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lingshi,
    Relay,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Lingshi => "lingshi",
            Kind::Relay => "baseline",
        }
    }
}

/// How to start (or find) a Lingshi server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub server_bin: PathBuf,
    /// A running server instead of a child.
    pub url: Option<String>,
    pub pid: Option<u32>,
    /// Config and data dir of the running server (for the CLI: agents, kb import).
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// The repository (for knowledge-base/synonyms.toml).
    pub repo: PathBuf,
    pub log_level: String,
}

pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub base: String,
    pub ws_url: String,
    pub pid: Option<u32>,
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub server_bin: PathBuf,
    pub log_file: Option<PathBuf>,
    /// Time from exec to ready (children only).
    pub start_time: Option<Duration>,
    child: Option<std::process::Child>,
    _tmp: Option<tempfile::TempDir>,
}

/// Where a started server keeps its data and how it meets other nodes (empty: SQLite
/// in its data dir, alone).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    pub subject_prefix: Option<String>,
    pub node_name: Option<String>,
}

/// The missions config the bench runs with (shape of config/lingshi.toml).
pub fn write_config(dir: &Path, repo: &Path, log_level: &str) -> anyhow::Result<PathBuf> {
    write_config_placed(dir, repo, log_level, &Placement::default())
}

/// [`write_config`] with a database URL and cluster settings.
pub fn write_config_placed(
    dir: &Path,
    repo: &Path,
    log_level: &str,
    place: &Placement,
) -> anyhow::Result<PathBuf> {
    let synonyms = repo.join("knowledge-base/synonyms.toml");
    let mut text =
        format!("log_format = \"text\"\nlog_level = {log_level:?}\ndefault_mission = \"mfa\"\n");
    if let Some(url) = &place.database_url {
        text.push_str(&format!("database_url = {url:?}\n"));
    }
    text.push('\n');
    if let Some(nats) = &place.nats_url {
        text.push_str(&format!("[cluster]\nnats_url = {nats:?}\n"));
        if let Some(p) = &place.subject_prefix {
            text.push_str(&format!("subject_prefix = {p:?}\n"));
        }
        if let Some(n) = &place.node_name {
            text.push_str(&format!("node_name = {n:?}\n"));
        }
        text.push('\n');
    }
    for (id, name, countries, tz) in [
        ("mfa", "Consular Protection Center", "[]", "Asia/Shanghai"),
        ("be", "Embassy in Belgium", "[\"BE\"]", "Europe/Brussels"),
        (
            "et",
            "Embassy in Ethiopia",
            "[\"ET\"]",
            "Africa/Addis_Ababa",
        ),
        (
            "us",
            "Embassy in the United States",
            "[\"US\"]",
            "America/New_York",
        ),
    ] {
        text.push_str(&format!(
            "[[missions]]\nid = {id:?}\nname = {name:?}\ncountries = {countries}\ntimezone = {tz:?}\n\n"
        ));
    }
    if synonyms.exists() {
        text.push_str(&format!(
            "[kb]\nsynonyms_file = {:?}\n",
            synonyms.display().to_string()
        ));
    }
    let path = dir.join("lingshi-bench.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

impl Target {
    /// Start `lingshi serve` on a fresh (or given) data dir and a free port.
    pub async fn spawn_lingshi(
        opts: &ServerOpts,
        frames_per_second: u32,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Target> {
        Self::spawn_lingshi_placed(
            opts,
            frames_per_second,
            data_dir,
            &Placement::default(),
            &[],
        )
        .await
    }

    /// [`Target::spawn_lingshi`] with extra `LINGSHI_*` settings in the environment.
    pub async fn spawn_lingshi_env(
        opts: &ServerOpts,
        frames_per_second: u32,
        data_dir: Option<&Path>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Target> {
        Self::spawn_lingshi_placed(
            opts,
            frames_per_second,
            data_dir,
            &Placement::default(),
            env,
        )
        .await
    }

    /// [`Target::spawn_lingshi`] on a given database and bus, with extra `LINGSHI_*`
    /// settings in the environment.
    pub async fn spawn_lingshi_placed(
        opts: &ServerOpts,
        frames_per_second: u32,
        data_dir: Option<&Path>,
        place: &Placement,
        env: &[(&str, String)],
    ) -> anyhow::Result<Target> {
        if let Some(url) = &opts.url {
            return Target::external(opts, url);
        }
        if !opts.server_bin.exists() {
            bail!(
                "server binary {} not found: build it first (cargo build --release -p lingshi) or pass --server-bin",
                opts.server_bin.display()
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix("lingshi-bench-")
            .tempdir()?;
        let config = write_config_placed(tmp.path(), &opts.repo, &opts.log_level, place)?;
        let data = match data_dir {
            Some(d) => d.to_path_buf(),
            None => tmp.path().join("data"),
        };
        let port = util::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log_file = tmp.path().join("server.log");
        let log = std::fs::File::create(&log_file)?;
        let started = Instant::now();
        let child = std::process::Command::new(&opts.server_bin)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("serve")
            .arg("--bind")
            .arg(addr.to_string())
            .env("LINGSHI_LIMITS__SESSIONS_PER_MINUTE", "1000000")
            // Every bench client connects from loopback addresses.
            .env("LINGSHI_LIMITS__CONNECTIONS_PER_ADDRESS", "1000000")
            .env(
                "LINGSHI_LIMITS__FRAMES_PER_SECOND",
                frames_per_second.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", opts.server_bin.display()))?;
        let mut t = Target {
            kind: Kind::Lingshi,
            addr,
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            pid: Some(child.id()),
            config_file: Some(config),
            data_dir: Some(data),
            server_bin: opts.server_bin.clone(),
            log_file: Some(log_file),
            start_time: None,
            child: Some(child),
            _tmp: Some(tmp),
        };
        t.wait_ready(Duration::from_secs(120)).await?;
        t.start_time = Some(started.elapsed());
        Ok(t)
    }

    pub fn external(opts: &ServerOpts, url: &str) -> anyhow::Result<Target> {
        let hostport = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let addr: SocketAddr = hostport
            .parse()
            .with_context(|| format!("--url {url} must be http://IP:PORT"))?;
        Ok(Target {
            kind: Kind::Lingshi,
            addr,
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            pid: opts.pid,
            config_file: opts.config.clone(),
            data_dir: opts.data_dir.clone(),
            server_bin: opts.server_bin.clone(),
            log_file: None,
            start_time: None,
            child: None,
            _tmp: None,
        })
    }

    /// Start the minimal relay (this binary's hidden `relay` subcommand).
    pub async fn spawn_relay() -> anyhow::Result<Target> {
        let port = util::free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let exe = std::env::current_exe()?;
        let started = Instant::now();
        let child = std::process::Command::new(&exe)
            .arg("relay")
            .arg("--bind")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the relay baseline")?;
        let mut t = Target {
            kind: Kind::Relay,
            addr,
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            pid: Some(child.id()),
            config_file: None,
            data_dir: None,
            server_bin: exe,
            log_file: None,
            start_time: None,
            child: Some(child),
            _tmp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            t.check_alive()?;
            if Instant::now() > deadline {
                bail!("relay did not listen within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t.start_time = Some(started.elapsed());
        Ok(t)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(c) = &mut self.child {
            if let Some(status) = c.try_wait()? {
                let log = self
                    .log_file
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                bail!("server exited early ({status}):\n{tail}");
            }
        }
        Ok(())
    }

    /// Poll `/readyz` every 2 ms until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + within;
        let url = format!("{}/readyz", self.base);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("{url} not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGTERM, wait up to 30 s, then SIGKILL.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if c.try_wait()?.is_some() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("server did not stop within 30 s of SIGTERM; killed");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(|p| util::vm_rss_kib(p).ok())
    }

    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("reqwest client"),
            base: self.base.clone(),
        }
    }

    /// Run the `lingshi` CLI against this server's config and data dir.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let (Some(config), Some(data)) = (&self.config_file, &self.data_dir) else {
            bail!("the CLI needs the server's config and data dir: pass --config and --data-dir with --url");
        };
        run_cli(&self.server_bin, config, data, args, stdin).await
    }

    /// Create an agent of mission `be` with the CLI and sign it in; returns its token.
    pub async fn agent(&self, email: &str) -> anyhow::Result<String> {
        self.agent_in(email, "be").await
    }

    /// Create an agent of `mission` with the CLI and sign it in; returns its token.
    pub async fn agent_in(&self, email: &str, mission: &str) -> anyhow::Result<String> {
        self.cli(
            &[
                "agent",
                "add",
                "--email",
                email,
                "--name",
                email,
                "--mission",
                mission,
                "--role",
                "agent",
                "--password-stdin",
            ],
            Some(PASSWORD),
        )
        .await?;
        let r = self
            .api()
            .post(
                "/v1/agent/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await?;
        r["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("agent sign-in returned no token: {r}"))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn run_cli(
    bin: &Path,
    config: &Path,
    data: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("LINGSHI_LIMITS__SESSIONS_PER_MINUTE", "1000000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(s) = stdin {
        input.write_all(format!("{s}\n").as_bytes()).await?;
    }
    drop(input);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "lingshi {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}{}", self.base, path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    /// A guest citizen session in `country`; returns the token.
    pub async fn citizen(&self, i: usize, country: &str) -> anyhow::Result<String> {
        let v = self
            .post(
                "/v1/citizen/sessions",
                None,
                json!({"display_name": format!("bench citizen {i}"), "locale": "zh-CN", "country": country}),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no token in {v}"))
    }

    /// Start the citizen's conversation; returns its id.
    pub async fn conversation(&self, token: &str) -> anyhow::Result<String> {
        let v = self
            .post("/v1/conversations", Some(token), json!({}))
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no conversation id in {v}"))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    pub async fn kb_search(&self, q: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/v1/kb/search", self.base))
            .query(&[("q", q), ("limit", "10")])
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("kb search {q:?}: {status} {v}");
        }
        Ok(v)
    }
}

/// Value of an unlabelled Prometheus sample, e.g. `lingshi_commits_total`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(name))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

pub type Ws = WebSocketStream<TcpStream>;

/// Open a WebSocket from `src` (a 127.0.0.x address) to `addr`.
pub async fn ws_connect(ws_url: &str, addr: SocketAddr, src: Option<IpAddr>) -> anyhow::Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(ws_url, stream).await?;
    Ok(ws)
}

/// Say hello and wait for `welcome`.
pub async fn ws_hello(ws: &mut Ws, token: &str, within: Duration) -> anyhow::Result<()> {
    ws.send(Message::text(
        json!({"type": "hello", "token": token, "resume": {}}).to_string(),
    ))
    .await?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("no welcome within {within:?}"),
            Ok(None) => bail!("closed before welcome"),
            Ok(Some(Err(e))) => bail!("socket error before welcome: {e}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str())?;
                match v["type"].as_str() {
                    Some("welcome") => return Ok(()),
                    Some("error") => bail!("error instead of welcome: {v}"),
                    _ => continue,
                }
            }
            Ok(Some(Ok(Message::Close(c)))) => bail!("closed before welcome: {c:?}"),
            Ok(Some(Ok(_))) => continue,
        }
    }
}
