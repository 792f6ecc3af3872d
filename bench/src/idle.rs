//! `idle`: N authenticated idle sockets held with heartbeats; server memory per socket,
//! connect rate, idle CPU. Sockets live in worker processes (hidden `idle-worker`
//! subcommand), each on its own 127.0.0.x source address, so no process runs out of
//! file descriptors or ephemeral ports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::target::{self, Kind, Target};
use crate::util;

#[derive(Clone, Debug)]
pub struct IdleFigures {
    pub kind: Kind,
    pub sockets: usize,
    pub failed: usize,
    pub alive_at_end: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_socket: f64,
    pub connect_per_sec: f64,
    pub idle_cpu_percent: f64,
    pub hold_secs: f64,
}

impl IdleFigures {
    pub fn json(&self) -> Value {
        json!({"server": self.kind.label(), "sockets": self.sockets, "failed": self.failed,
               "alive_at_end": self.alive_at_end, "rss_before_kib": self.rss_before_kib,
               "rss_after_kib": self.rss_after_kib, "bytes_per_socket": self.bytes_per_socket,
               "kib_per_socket": self.bytes_per_socket / 1024.0,
               "connect_per_sec": self.connect_per_sec, "idle_cpu_percent": self.idle_cpu_percent,
               "hold_secs": self.hold_secs})
    }
}

/// Create `n` citizen tokens (real sessions for Lingshi, made-up ones for the relay).
pub async fn citizen_tokens(t: &Target, n: usize, country: &str) -> anyhow::Result<Vec<String>> {
    if t.kind == Kind::Relay {
        return Ok((0..n).map(|i| format!("citizen-{i}")).collect());
    }
    let api = t.api();
    let country = country.to_string();
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let country = country.clone();
            async move { api.citizen(i, &country).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

pub async fn run(
    t: &Target,
    n: usize,
    hold: Duration,
    per_worker: usize,
) -> anyhow::Result<IdleFigures> {
    let pid = t
        .pid
        .context("memory figures need the server's pid (--pid with --url)")?;
    let started = Instant::now();
    let tokens = citizen_tokens(t, n, "BE").await?;
    eprintln!(
        "[{}] idle: {n} citizen sessions in {:.1} s",
        t.kind.label(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = util::vm_rss_kib(pid)?;

    let dir = tempfile::Builder::new()
        .prefix("lingshi-bench-idle-")
        .tempdir()?;
    let workers = n.div_ceil(per_worker.max(1)).max(1);
    let exe = std::env::current_exe()?;
    let mut children = vec![];
    let connect_start = Instant::now();
    for (w, chunk) in tokens.chunks(per_worker.max(1)).enumerate() {
        let file = dir.path().join(format!("tokens-{w}.txt"));
        std::fs::write(&file, chunk.join("\n"))?;
        let src = Ipv4Addr::new(127, 0, 0, 10 + (w % 200) as u8);
        let child = tokio::process::Command::new(&exe)
            .arg("idle-worker")
            .arg("--ws-url")
            .arg(&t.ws_url)
            .arg("--addr")
            .arg(t.addr.to_string())
            .arg("--src")
            .arg(src.to_string())
            .arg("--tokens")
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        children.push(child);
    }
    let mut readers = vec![];
    let mut ok = 0;
    let mut failed = 0;
    for c in &mut children {
        let mut lines = BufReader::new(c.stdout.take().context("worker stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(600), lines.next_line())
            .await
            .context("worker did not report within 600 s")??
            .context("worker exited without reporting")?;
        // "connected OK FAILED"
        let parts: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        if parts.len() != 2 {
            bail!("unexpected worker report {line:?}");
        }
        ok += parts[0];
        failed += parts[1];
        readers.push(lines);
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    eprintln!(
        "[{}] idle: {ok} sockets connected ({failed} failed) by {workers} worker(s) in {connect_secs:.1} s",
        t.kind.label()
    );
    // Let allocations settle (welcome snapshots freed, buffers shrunk).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = util::vm_rss_kib(pid)?;
    let ticks0 = util::cpu_ticks(pid)?;
    let hold_start = Instant::now();
    tokio::time::sleep(hold).await;
    let ticks1 = util::cpu_ticks(pid)?;
    let held = hold_start.elapsed().as_secs_f64();
    let cpu = (ticks1 - ticks0) as f64 / util::clock_ticks_per_sec() / held * 100.0;

    let mut alive = 0;
    for (c, mut lines) in children.iter_mut().zip(readers) {
        if let Some(mut stdin) = c.stdin.take() {
            stdin.write_all(b"stop\n").await?;
        }
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
        {
            alive += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), c.wait()).await;
    }
    if ok == 0 {
        bail!("no socket connected");
    }
    Ok(IdleFigures {
        kind: t.kind,
        sockets: ok,
        failed,
        alive_at_end: alive,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        bytes_per_socket: (rss_after as f64 - rss_before as f64) * 1024.0 / ok as f64,
        connect_per_sec: ok as f64 / connect_secs,
        idle_cpu_percent: cpu,
        hold_secs: held,
    })
}

/// Hidden subcommand: connect every token in `tokens`, report, hold until told to stop.
pub async fn worker(
    ws_url: String,
    addr: SocketAddr,
    src: IpAddr,
    tokens: PathBuf,
) -> anyhow::Result<()> {
    let tokens: Vec<String> = std::fs::read_to_string(&tokens)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let alive = Arc::new(AtomicUsize::new(0));
    let results: Vec<bool> = futures_util::stream::iter(tokens)
        .map(|tok| {
            let ws_url = ws_url.clone();
            let alive = alive.clone();
            async move {
                let mut ws = match target::ws_connect(&ws_url, addr, Some(src)).await {
                    Ok(ws) => ws,
                    Err(_) => return false,
                };
                if target::ws_hello(&mut ws, &tok, Duration::from_secs(30))
                    .await
                    .is_err()
                {
                    return false;
                }
                alive.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    // Reading answers the server's pings (tungstenite queues the pong and
                    // flushes it on the next read or write).
                    while let Some(m) = ws.next().await {
                        match m {
                            Ok(Message::Close(_)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    alive.fetch_sub(1, Ordering::Relaxed);
                });
                true
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    let ok = results.iter().filter(|b| **b).count();
    println!("connected {ok} {}", results.len() - ok);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // Bounded: a parent that vanished closes stdin; give up after a day at most.
    let _ = tokio::time::timeout(Duration::from_secs(86_400), lines.next_line()).await;
    println!("alive {}", alive.load(Ordering::Relaxed));
    Ok(())
}
