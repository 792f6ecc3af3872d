//! `throughput`: citizens send at a fixed open-loop aggregate rate; agents of mission
//! `be` receive every message (with two nodes: citizens on the first, agents on the
//! second, so every message crosses the bus). Ack latency (send → ack) and delivery latency (send →
//! the agent's `message` frame) are measured from each message's *scheduled* send time,
//! so a sender that falls behind counts against the server, not for it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::idle::citizen_tokens;
use crate::target::{self, metric, Kind, Target};
use crate::util::{self, Summary};

/// Everything measured in one step (one rate).
struct Step {
    nonce: u64,
    t0: Instant,
    ack_us: Vec<AtomicU32>,
    deliver_us: Mutex<Vec<f64>>,
    errors: AtomicU64,
    error_codes: Mutex<Vec<String>>,
    acked: AtomicU64,
    last_ack_us: AtomicU64,
    interval_us: f64,
}

impl Step {
    fn index(&self, cmid: &str) -> Option<usize> {
        let u = uuid::Uuid::parse_str(cmid).ok()?.as_u128();
        ((u >> 64) as u64 == self.nonce).then_some((u & 0xFFFF_FFFF) as usize)
    }
    fn scheduled_us(&self, i: usize) -> f64 {
        i as f64 * self.interval_us
    }
    fn now_us(&self) -> f64 {
        self.t0.elapsed().as_secs_f64() * 1e6
    }
}

type Current = Arc<RwLock<Option<Arc<Step>>>>;

/// The first `"type":"..."` of a frame without a full parse (the bench client shares
/// the two cores with the server, so it reads frames as cheaply as it can). Message
/// frames nest no other `type` key before it.
fn frame_type(text: &str) -> Option<&str> {
    string_after(text, "\"type\":\"")
}

fn client_msg_id(text: &str) -> Option<&str> {
    string_after(text, "\"client_msg_id\":\"")
}

fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

#[derive(Clone, Debug)]
pub struct StepFigures {
    pub rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub error_sample: Vec<String>,
    pub ack: Summary,
    pub delivery: Summary,
    pub achieved: f64,
    pub mean_batch: Option<f64>,
    pub commits: Option<f64>,
    /// Mean duration of one commit (transaction and fsync), ms.
    pub mean_commit_ms: Option<f64>,
    /// Mean time from a send reaching the writer's queue to its commit, ms.
    pub mean_writer_ms: Option<f64>,
    pub cpu_percent: Option<f64>,
    /// CPU of the bench client itself over the step (it shares the cores).
    pub client_cpu_percent: Option<f64>,
}

impl StepFigures {
    pub fn passes(&self, p99_limit_ms: f64) -> bool {
        self.errors == 0 && self.acked == self.sent && self.ack.p99 <= p99_limit_ms
    }
    pub fn json(&self) -> Value {
        json!({"rate": self.rate, "sent": self.sent, "acked": self.acked, "errors": self.errors,
               "error_sample": self.error_sample, "ack": self.ack.json(), "delivery": self.delivery.json(),
               "achieved_acked_per_sec": self.achieved, "mean_commit_batch": self.mean_batch,
               "commits": self.commits, "mean_commit_ms": self.mean_commit_ms,
               "mean_writer_ms": self.mean_writer_ms, "server_cpu_percent": self.cpu_percent,
               "client_cpu_percent": self.client_cpu_percent})
    }
}

pub struct Rig {
    kind: Kind,
    /// Every node's pid (CPU is summed).
    pids: Vec<u32>,
    /// Every node's API (commit metrics are summed).
    apis: Vec<target::Api>,
    senders: Vec<(mpsc::UnboundedSender<Message>, String)>,
    current: Current,
    agents: usize,
    nonce: u64,
}

/// Connect `n` citizens (each with a conversation) to `t` and `agents` agents of mission
/// `be` to `agents_on` (the same server, or another node of it).
pub async fn setup(t: &Target, agents_on: &Target, n: usize, agents: usize) -> anyhow::Result<Rig> {
    let current: Current = Arc::default();
    let started = Instant::now();
    let tokens = citizen_tokens(t, n, "BE").await?;
    let convs: Vec<String> = if t.kind == Kind::Lingshi {
        let api = t.api();
        let r: Vec<anyhow::Result<String>> = futures_util::stream::iter(tokens.clone())
            .map(|tok| {
                let api = api.clone();
                async move { api.conversation(&tok).await }
            })
            .buffered(16)
            .collect()
            .await;
        r.into_iter().collect::<anyhow::Result<_>>()?
    } else {
        (0..n).map(|_| uuid::Uuid::now_v7().to_string()).collect()
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut agent_tokens = vec![];
    for j in 0..agents {
        if t.kind == Kind::Lingshi {
            agent_tokens.push(
                agents_on
                    .agent(&format!("bench-{run_id}-{j}@agents.example"))
                    .await?,
            );
        } else {
            agent_tokens.push(format!("agent-{j}"));
        }
    }
    for tok in &agent_tokens {
        let mut ws = target::ws_connect(&agents_on.ws_url, agents_on.addr, None).await?;
        target::ws_hello(&mut ws, tok, Duration::from_secs(10)).await?;
        let current = current.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(text) = m else { continue };
                let Some(step) = current.read().expect("lock").clone() else {
                    continue;
                };
                let now = step.now_us();
                let text = text.as_str();
                if frame_type(text) == Some("message") {
                    if let Some(i) = client_msg_id(text).and_then(|c| step.index(c)) {
                        let lat = (now - step.scheduled_us(i)) / 1000.0;
                        step.deliver_us.lock().expect("lock").push(lat);
                    }
                }
            }
            if let Some(step) = current.read().expect("lock").clone() {
                step.errors.fetch_add(1, Ordering::Relaxed);
                step.error_codes
                    .lock()
                    .expect("lock")
                    .push("agent socket closed".into());
            }
        });
    }
    let mut senders = vec![];
    for (tok, conv) in tokens.iter().zip(convs) {
        let mut ws = target::ws_connect(&t.ws_url, t.addr, None).await?;
        target::ws_hello(&mut ws, tok, Duration::from_secs(10)).await?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let current = current.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(text) = m else { continue };
                let Some(step) = current.read().expect("lock").clone() else {
                    continue;
                };
                let now = step.now_us();
                let text = text.as_str();
                match frame_type(text) {
                    Some("ack") => {
                        if let Some(i) = client_msg_id(text).and_then(|c| step.index(c)) {
                            let lat = (now - step.scheduled_us(i)).max(0.0);
                            if let Some(slot) = step.ack_us.get(i) {
                                if slot.swap(lat as u32, Ordering::Relaxed) == u32::MAX {
                                    step.acked.fetch_add(1, Ordering::Relaxed);
                                    step.last_ack_us.fetch_max(now as u64, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Some("error") => {
                        step.errors.fetch_add(1, Ordering::Relaxed);
                        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                        let mut codes = step.error_codes.lock().expect("lock");
                        if codes.len() < 5 {
                            codes.push(v["code"].as_str().unwrap_or("?").to_string());
                        }
                    }
                    _ => {}
                }
            }
            if let Some(step) = current.read().expect("lock").clone() {
                step.errors.fetch_add(1, Ordering::Relaxed);
                step.error_codes
                    .lock()
                    .expect("lock")
                    .push("citizen socket closed".into());
            }
        });
        senders.push((tx, conv));
    }
    eprintln!(
        "[{}] throughput: {n} citizens, {agents} agents connected in {:.1} s",
        t.kind.label(),
        started.elapsed().as_secs_f64()
    );
    let nodes: Vec<&Target> = if std::ptr::eq(t, agents_on) {
        vec![t]
    } else {
        vec![t, agents_on]
    };
    Ok(Rig {
        kind: t.kind,
        pids: nodes.iter().filter_map(|n| n.pid).collect(),
        apis: if t.kind == Kind::Lingshi {
            nodes.iter().map(|n| n.api()).collect()
        } else {
            vec![]
        },
        senders,
        current,
        agents,
        nonce: (run_id as u64) << 8,
    })
}

impl Rig {
    /// Send at `rate` msg/s for `duration`, then wait (bounded) for the stragglers.
    pub async fn step(&mut self, rate: f64, duration: Duration) -> anyhow::Result<StepFigures> {
        if rate <= 0.0 || self.senders.is_empty() {
            bail!("rate and conversations must be positive");
        }
        self.nonce += 1;
        let total = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
        if total > u32::MAX as usize {
            bail!("too many messages for one step");
        }
        let before = self.metrics().await?;
        let ticks0 = self.cpu_ticks();
        let own0 = util::cpu_ticks(std::process::id()).ok();
        let step = Arc::new(Step {
            nonce: self.nonce,
            t0: Instant::now(),
            ack_us: (0..total).map(|_| AtomicU32::new(u32::MAX)).collect(),
            deliver_us: Mutex::new(Vec::with_capacity(total * self.agents)),
            errors: AtomicU64::new(0),
            error_codes: Mutex::new(vec![]),
            acked: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            interval_us: 1e6 / rate,
        });
        *self.current.write().expect("lock") = Some(step.clone());
        let body = serde_json::to_string(
            "我的护照在布鲁塞尔丢了，请问怎么补办旅行证？ My passport was stolen.",
        )?;
        let mut i = 0usize;
        while i < total {
            let due = ((step.now_us() / step.interval_us) as usize + 1).min(total);
            while i < due {
                let (tx, conv) = &self.senders[i % self.senders.len()];
                let cmid = uuid::Uuid::from_u128(((step.nonce as u128) << 64) | i as u128);
                // Built by hand (ids are plain UUIDs, the body is escaped once): the
                // client shares the cores with the server.
                let frame = format!(
                    "{{\"type\":\"send\",\"client_msg_id\":\"{cmid}\",\"conversation_id\":\"{conv}\",\"kind\":\"text\",\"body\":{body}}}"
                );
                let _ = tx.send(Message::text(frame));
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let send_end = step.t0.elapsed();
        // Wait for the acks and deliveries, at most 10 s past the schedule.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let acked = step.acked.load(Ordering::Relaxed) as usize;
            let delivered = step.deliver_us.lock().expect("lock").len();
            if (acked >= total && delivered >= total * self.agents) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu = match (ticks0, self.cpu_ticks()) {
            (Some(t0), Some(t1)) => Some(
                (t1 - t0) as f64 / util::clock_ticks_per_sec() / step.t0.elapsed().as_secs_f64()
                    * 100.0,
            ),
            _ => None,
        };
        let client_cpu = match (own0, util::cpu_ticks(std::process::id()).ok()) {
            (Some(t0), Some(t1)) => Some(
                (t1 - t0) as f64 / util::clock_ticks_per_sec() / step.t0.elapsed().as_secs_f64()
                    * 100.0,
            ),
            _ => None,
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        *self.current.write().expect("lock") = None;
        let after = self.metrics().await?;
        let (mean_batch, commits, mean_commit_ms, mean_writer_ms) = match (before, after) {
            (Some(b), Some(a)) => {
                let d = |n: &str| {
                    let mut sum = 0.0;
                    for (a, b) in a.iter().zip(&b) {
                        sum += metric(a, n)? - metric(b, n)?;
                    }
                    Some(sum)
                };
                let sum = d("lingshi_commit_batch_size_sum");
                let count = d("lingshi_commit_batch_size_count");
                let commits = d("lingshi_commits_total");
                let mean = |sum: Option<f64>, count: Option<f64>| match (sum, count) {
                    (Some(s), Some(c)) if c > 0.0 => Some(s / c),
                    _ => None,
                };
                let ms = |name: &str| {
                    mean(d(&format!("{name}_sum")), d(&format!("{name}_count"))).map(|s| s * 1000.0)
                };
                (
                    mean(sum, count),
                    commits,
                    ms("lingshi_commit_seconds"),
                    ms("lingshi_ack_latency_seconds"),
                )
            }
            _ => (None, None, None, None),
        };
        let acks: Vec<f64> = step
            .ack_us
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|v| *v != u32::MAX)
            .map(|v| v as f64 / 1000.0)
            .collect();
        let acked = acks.len() as u64;
        let deliveries = std::mem::take(&mut *step.deliver_us.lock().expect("lock"));
        let span = (step.last_ack_us.load(Ordering::Relaxed) as f64 / 1e6)
            .max(send_end.as_secs_f64())
            .max(1e-9);
        let errors = step.errors.load(Ordering::Relaxed);
        let error_sample = step.error_codes.lock().expect("lock").clone();
        Ok(StepFigures {
            rate,
            sent: total as u64,
            acked,
            errors: errors + (total as u64 - acked),
            error_sample,
            ack: Summary::of(acks),
            delivery: Summary::of(deliveries),
            achieved: acked as f64 / span,
            mean_batch,
            commits,
            mean_commit_ms,
            mean_writer_ms,
            cpu_percent: cpu,
            client_cpu_percent: client_cpu,
        })
    }

    pub fn label(&self) -> &'static str {
        self.kind.label()
    }

    /// Every node's `/metrics` text (`None` for the baseline).
    async fn metrics(&self) -> anyhow::Result<Option<Vec<String>>> {
        if self.apis.is_empty() {
            return Ok(None);
        }
        let mut out = vec![];
        for a in &self.apis {
            out.push(a.metrics().await?);
        }
        Ok(Some(out))
    }

    /// CPU ticks of every node, summed.
    fn cpu_ticks(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids
            .iter()
            .map(|p| util::cpu_ticks(*p).ok())
            .sum::<Option<u64>>()
    }
}

/// Run one rate, or step the rate up ×1.5 until p99 ack > limit or errors appear.
/// Citizens connect to the first node, agents to the last.
pub async fn run(
    nodes: &[&Target],
    conversations: usize,
    agents: usize,
    rate: f64,
    duration: Duration,
    find_max: bool,
    max_steps: usize,
) -> anyhow::Result<(Vec<StepFigures>, Option<f64>)> {
    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        bail!("no server to measure");
    };
    let mut rig = setup(first, last, conversations, agents)
        .await
        .context("throughput setup")?;
    let mut steps = vec![];
    let mut best = None;
    let mut r = rate;
    for _ in 0..max_steps.max(1) {
        let f = rig.step(r, duration).await?;
        eprintln!(
            "[{}] rate {:.0}/s: acked {}/{} errors {} ack p50 {} p99 {} ms, delivery p99 {} ms, achieved {:.0}/s",
            rig.label(),
            r,
            f.acked,
            f.sent,
            f.errors,
            util::fmt_ms(f.ack.p50),
            util::fmt_ms(f.ack.p99),
            util::fmt_ms(f.delivery.p99),
            f.achieved
        );
        let pass = f.passes(50.0);
        steps.push(f);
        if !find_max {
            break;
        }
        if !pass {
            break;
        }
        best = Some(r);
        r *= 1.5;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((steps, best))
}
