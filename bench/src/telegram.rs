//! Telegram delivery at saturation: `chats` private chats each write once (through a
//! local fake of the Bot API, polled by the server's bridge), then agents answer every
//! conversation `replies` times as fast as the server takes the replies. The fake
//! enforces Telegram's published limits (one message a second per chat after a burst
//! of three, thirty a second overall) and answers 429 when they are exceeded; the
//! figures are the delivery throughput, the latency from each reply's ack to its
//! arrival at the fake, the 429s, and whether every reply arrived once and in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use lingshi_telegram_fake::{FakeTelegram, Limits};
use serde_json::{json, Value};

use crate::target::{ServerOpts, Target};
use crate::util::Summary;

const TOKEN: &str = "424242:BENCH-token-for-the-local-fake-bot-api";

pub struct Figures {
    pub chats: usize,
    pub replies: usize,
    pub delivered: usize,
    pub duplicates: usize,
    pub out_of_order: usize,
    pub too_many: u64,
    /// Replies acknowledged per second while the agents sent.
    pub reply_rate: f64,
    /// Deliveries per second from the first reply's ack to the last arrival.
    pub throughput: f64,
    /// Deliveries per second over the busiest stretch (first to last arrival).
    pub steady_throughput: f64,
    pub latency: Summary,
    pub wall: Duration,
}

impl Figures {
    pub fn json(&self) -> Value {
        json!({
            "chats": self.chats, "replies": self.replies, "delivered": self.delivered,
            "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "too_many_requests": self.too_many, "reply_rate_per_s": self.reply_rate,
            "throughput_per_s": self.throughput, "steady_throughput_per_s": self.steady_throughput,
            "latency": self.latency.json(), "wall_s": self.wall.as_secs_f64(),
        })
    }
}

async fn all_conversations(t: &Target, token: &str) -> anyhow::Result<Vec<Value>> {
    let api = t.api();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/conversations?limit=200", t.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let v: Value = api
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        out.extend(v["conversations"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(out),
        }
    }
}

pub async fn run(
    opts: &ServerOpts,
    chats: usize,
    replies: usize,
    agents: usize,
) -> anyhow::Result<Figures> {
    if opts.url.is_some() {
        bail!("the telegram benchmark starts its own server (it points it at the fake Bot API)");
    }
    let fake = FakeTelegram::start(TOKEN).await;
    fake.set_limits(Some(Limits::telegram()));
    let env = [
        ("LINGSHI_TELEGRAM__TOKEN", TOKEN.to_string()),
        ("LINGSHI_TELEGRAM__API_URL", fake.url()),
        ("LINGSHI_TELEGRAM__POLL_TIMEOUT_SECS", "2".to_string()),
    ];
    let mut t = Target::spawn_lingshi_env(opts, 1000, None, &env).await?;
    let mut tokens = Vec::new();
    for i in 0..agents.max(1) {
        tokens.push(
            t.agent_in(&format!("tg-agent-{i}@bench.example"), "mfa")
                .await?,
        );
    }
    // Every chat writes once: that makes the citizen and the conversation.
    let first_chat = 10_000i64;
    for i in 0..chats {
        fake.text(first_chat + i as i64, "你好，我需要帮助");
    }
    let setup = Instant::now();
    let mut convs: Vec<(String, i64)>;
    loop {
        let all = all_conversations(&t, &tokens[0]).await?;
        if all.len() >= chats {
            convs = all
                .iter()
                .map(|c| {
                    let chat = c["citizen"]["display_name"]
                        .as_str()
                        .and_then(|n| n.strip_prefix("User"))
                        .and_then(|n| n.parse::<i64>().ok())
                        .unwrap_or(0);
                    (c["id"].as_str().unwrap_or_default().to_string(), chat)
                })
                .collect();
            break;
        }
        if setup.elapsed() > Duration::from_secs(120 + chats as u64 / 10) {
            bail!(
                "only {} of {chats} conversations after {:?}",
                all.len(),
                setup.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    convs.sort_by_key(|(_, chat)| *chat);
    eprintln!(
        "telegram: {chats} chats in {:.1} s; agents replying",
        setup.elapsed().as_secs_f64()
    );

    // Agents reply at saturation: every reply posted as soon as the previous one of the
    // same conversation was acknowledged, 64 requests in flight.
    let acked: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let api = t.api();
    let base = t.base.clone();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let jobs: Vec<(String, String, usize)> = convs
        .iter()
        .enumerate()
        .map(|(i, (conv, _))| (conv.clone(), tokens[i % tokens.len()].clone(), i))
        .collect();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(jobs)
        .map(|(conv, token, i)| {
            let api = api.clone();
            let base = base.clone();
            let acked = acked.clone();
            let done = done.clone();
            async move {
                for k in 1..=replies {
                    let body = format!("reply {k} to chat {i}");
                    let r = api
                        .http
                        .post(format!("{base}/v1/conversations/{conv}/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"client_msg_id": uuid::Uuid::now_v7().to_string(), "body": body}))
                        .send()
                        .await?;
                    if r.status().as_u16() != 201 {
                        bail!("reply refused: {}", r.status());
                    }
                    acked.lock().unwrap().insert(body, Instant::now());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let sent_in = started.elapsed();
    let total = chats * replies;
    eprintln!(
        "telegram: {total} replies acknowledged in {:.1} s; waiting for delivery",
        sent_in.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(120 + (total as u64) / 10);
    loop {
        let n = fake.sent().len();
        if n >= total {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {total} replies delivered");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A moment for duplicates to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = fake.sent();
    let acked = acked.lock().unwrap().clone();
    let mut latencies = Vec::with_capacity(sent.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last_k: HashMap<i64, usize> = HashMap::new();
    let mut out_of_order = 0;
    for s in &sent {
        let text = s.text.as_deref().unwrap_or_default();
        let body = text.rsplit('\n').next().unwrap_or_default().to_string();
        *seen.entry(body.clone()).or_default() += 1;
        if let Some(at) = acked.get(&body) {
            latencies.push(s.at.saturating_duration_since(*at).as_secs_f64() * 1000.0);
        }
        let k: usize = body
            .strip_prefix("reply ")
            .and_then(|r| r.split(' ').next())
            .and_then(|k| k.parse().ok())
            .context("a reply body")?;
        let prev = last_k.insert(s.chat_id, k).unwrap_or(0);
        if k != prev + 1 {
            out_of_order += 1;
        }
    }
    let duplicates = seen.values().map(|n| n - 1).sum();
    let first_arrival = sent.iter().map(|s| s.at).min().unwrap_or(started);
    let last_arrival = sent.iter().map(|s| s.at).max().unwrap_or(started);
    let wall = last_arrival.saturating_duration_since(started);
    let steady = last_arrival.saturating_duration_since(first_arrival);
    let f = Figures {
        chats,
        replies: total,
        delivered: seen.len(),
        duplicates,
        out_of_order,
        too_many: fake.too_many(),
        reply_rate: total as f64 / sent_in.as_secs_f64().max(1e-9),
        throughput: sent.len() as f64 / wall.as_secs_f64().max(1e-9),
        steady_throughput: (sent.len().saturating_sub(1)) as f64 / steady.as_secs_f64().max(1e-9),
        latency: Summary::of(latencies),
        wall,
    };
    t.stop()?;
    Ok(f)
}
