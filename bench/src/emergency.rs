//! `emergency`: what triage costs and how fast an emergency reaches people.
//!
//! 1. The classifier alone, in this process, over every message of the labelled set:
//!    CPU time per message, set against the server's CPU per message measured by a
//!    background throughput step in the same run (the share of the hub's work triage
//!    takes).
//! 2. Under that background load, citizens write emergencies taken from the labelled set
//!    (a new citizen every `interval`): time from sending to the guidance `system`
//!    message on the citizen's socket, and to the escalation's arrival at a local fake
//!    hotline (a plain HTTP listener in this process that answers 204).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::target::{self, Target};
use crate::throughput;
use crate::util::{self, Summary};

pub struct EmergencyArgs {
    pub probes: usize,
    pub interval: Duration,
    pub background_rate: f64,
    pub conversations: usize,
}

/// Messages of the labelled set: (text, label).
fn labelled(repo: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let path = repo.join("tests/data/triage_messages.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        out.push((
            v["text"].as_str().unwrap_or_default().to_string(),
            v["label"].as_str().unwrap_or_default().to_string(),
        ));
    }
    if out.is_empty() {
        bail!("{} has no messages", path.display());
    }
    Ok(out)
}

/// Mean CPU microseconds per classification (this thread's CPU clock), over at least
/// 20,000 classifications.
fn classifier_cost(set: &[(String, String)]) -> f64 {
    let t = lingshi_triage::Triage::builtin();
    t.warm_up();
    let rounds = 20_000usize.div_ceil(set.len()).max(1);
    let cpu0 = thread_cpu_us();
    let mut n = 0usize;
    for _ in 0..rounds {
        for (text, _) in set {
            std::hint::black_box(t.classify(text, None));
            n += 1;
        }
    }
    (thread_cpu_us() - cpu0) / n as f64
}

fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// When each conversation's first `escalation.created` reached the fake hotline.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A minimal HTTP/1.1 receiver (keep-alive) that records escalation events.
async fn fake_hotline() -> anyhow::Result<(std::net::SocketAddr, Arrivals)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let arrivals: Arrivals = Arc::default();
    let a = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let a = a.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: headers, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let at = Instant::now();
                    let body: Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
                    if body["type"] == "escalation.created" {
                        if let Some(c) = body["conversation"]["id"].as_str() {
                            a.lock().expect("lock").entry(c.to_string()).or_insert(at);
                        }
                    }
                    buf.drain(..head_end + len);
                    if sock
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, arrivals))
}

/// One citizen writes one emergency: (conversation id, time to guidance).
async fn probe(t: &Target, i: usize, text: &str) -> anyhow::Result<(String, Instant, Duration)> {
    let api = t.api();
    let token = api.citizen(1_000_000 + i, "BE").await?;
    let mut ws = target::ws_connect(&t.ws_url, t.addr, None).await?;
    target::ws_hello(&mut ws, &token, Duration::from_secs(10)).await?;
    let cmid = uuid::Uuid::now_v7().to_string();
    let sent = Instant::now();
    ws.send(Message::text(
        json!({"type": "send", "client_msg_id": cmid, "kind": "text", "body": text}).to_string(),
    ))
    .await?;
    let deadline = sent + Duration::from_secs(10);
    let mut conv = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no guidance within 10 s"))?;
        let Some(Ok(Message::Text(text))) = m else {
            if m.is_none() {
                bail!("socket closed");
            }
            continue;
        };
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        if v["type"] == "ack" {
            conv = v["conversation_id"].as_str().map(str::to_string);
        }
        if v["type"] == "message" && v["message"]["kind"] == "system" {
            let c = conv
                .or_else(|| v["message"]["conversation_id"].as_str().map(str::to_string))
                .unwrap_or_default();
            return Ok((c, sent, sent.elapsed()));
        }
    }
}

pub async fn run(opts: &target::ServerOpts, args: EmergencyArgs) -> anyhow::Result<Value> {
    let set = labelled(&opts.repo)?;
    let cost_us = classifier_cost(&set);
    eprintln!(
        "[emergency] classifier: {:.1} µs of CPU per message ({} messages)",
        cost_us,
        set.len()
    );

    let (hotline, arrivals) = fake_hotline().await?;
    // The spawned server reads its hotline from the environment.
    std::env::set_var("LINGSHI_HOTLINE__URL", format!("http://{hotline}/hook"));
    std::env::set_var(
        "LINGSHI_HOTLINE__SECRET",
        "whsec_YmVuY2ggc2lnbmluZyBrZXkgb2YgMzIgYnl0ZXMhIQ==",
    );
    let mut t = Target::spawn_lingshi(opts, 10_000, None).await?;
    let mut rig = throughput::setup(&t, &t, args.conversations, 1).await?;
    let duration = args.interval * args.probes as u32 + Duration::from_secs(2);
    let rate = args.background_rate;
    let background = tokio::spawn(async move { rig.step(rate, duration).await });

    let emergencies: Vec<&String> = set
        .iter()
        .filter(|(_, l)| l == "emergency")
        .map(|(t, _)| t)
        .collect();
    let mut tasks = vec![];
    let start = Instant::now();
    for i in 0..args.probes {
        let due = start + args.interval * i as u32 + Duration::from_millis(500);
        tokio::time::sleep_until(due.into()).await;
        let text = emergencies[i % emergencies.len()].clone();
        let t2 = Target::external(opts, &t.base)?;
        tasks.push(tokio::spawn(async move { probe(&t2, i, &text).await }));
    }
    let mut guidance = vec![];
    let mut sent_at = vec![];
    let mut missed = vec![];
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await? {
            Ok((conv, sent, d)) => {
                guidance.push(d.as_secs_f64() * 1000.0);
                sent_at.push((conv, sent));
            }
            Err(e) => missed.push(format!("{}: {e}", emergencies[i % emergencies.len()])),
        }
    }
    let bg = background.await??;
    // Wait (bounded) for the hotline to have every escalation.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let have = arrivals.lock().expect("lock").len();
        if have >= sent_at.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrivals.lock().expect("lock").clone();
    let mut delivery = vec![];
    let mut undelivered = 0;
    for (conv, sent) in &sent_at {
        match arrived.get(conv) {
            Some(at) => delivery.push(at.duration_since(*sent).as_secs_f64() * 1000.0),
            None => undelivered += 1,
        }
    }
    t.stop()?;

    let g = Summary::of(guidance);
    let d = Summary::of(delivery);
    let server_us = match bg.cpu_percent {
        Some(cpu) if bg.achieved > 0.0 => Some(cpu / 100.0 * 1e6 / bg.achieved),
        _ => None,
    };
    println!(
        "\nemergency: {} emergencies, one every {} ms, over {:.0} msg/s of routine load",
        args.probes,
        args.interval.as_millis(),
        rate
    );
    util::table(
        &["figure", "p50", "p99", "max", "n"],
        &[
            vec![
                "time to guidance (ms)".into(),
                util::fmt_ms(g.p50),
                util::fmt_ms(g.p99),
                util::fmt_ms(g.max),
                g.n.to_string(),
            ],
            vec![
                "time to the hotline (ms)".into(),
                util::fmt_ms(d.p50),
                util::fmt_ms(d.p99),
                util::fmt_ms(d.max),
                d.n.to_string(),
            ],
            vec![
                "background ack (ms)".into(),
                util::fmt_ms(bg.ack.p50),
                util::fmt_ms(bg.ack.p99),
                util::fmt_ms(bg.ack.max),
                bg.acked.to_string(),
            ],
        ],
    );
    println!(
        "not triaged as emergencies (no guidance): {}; escalations not at the hotline: {undelivered}",
        missed.len()
    );
    for m in missed.iter().take(5) {
        println!("  missed: {m}");
    }
    match server_us {
        Some(s) => println!(
            "triage: {cost_us:.1} µs per message; the server spent {s:.0} µs of CPU per message under the background load: triage is {:.1} % of it",
            cost_us / s * 100.0
        ),
        None => println!("triage: {cost_us:.1} µs per message (server CPU not measured)"),
    }
    Ok(json!({
        "classifier_us_per_message": cost_us,
        "server_cpu_us_per_message": server_us,
        "triage_share": server_us.map(|s| cost_us / s),
        "guidance": g.json(),
        "hotline_delivery": d.json(),
        "missed": missed,
        "undelivered": undelivered,
        "background": bg.json(),
    }))
}
