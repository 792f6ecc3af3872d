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
    /// Commits that took over 50 ms (the server's histogram, which counts the wait for
    /// the store's write lock and the fsync): a stall of the disk, of the commit
    /// thread or of a checkpoint pass under the lock, as opposed to one of the
    /// sockets or the client.
    pub slow_commits: Option<f64>,
    /// The server's own p99 from a send reaching the writer's queue to its commit, ms:
    /// the upper bound of its histogram bucket.
    pub writer_p99_ms: Option<f64>,
    /// 100 ms windows of the schedule in which most messages waited over 50 ms for
    /// their ack: few of them and a high p99 mean stalls, not a queue.
    pub stalls: u64,
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
               "mean_writer_ms": self.mean_writer_ms, "slow_commits": self.slow_commits,
               "writer_p99_ms": self.writer_p99_ms, "stall_windows": self.stalls,
               "server_cpu_percent": self.cpu_percent,
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
        let (mean_batch, commits, mean_commit_ms, mean_writer_ms, slow_commits, writer_p99_ms) =
            match (before, after) {
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
                        mean(d(&format!("{name}_sum")), d(&format!("{name}_count")))
                            .map(|s| s * 1000.0)
                    };
                    let bucket = |name: &str, le: &str| d(&format!("{name}_bucket{{le=\"{le}\"}}"));
                    let slow = match (
                        d("lingshi_commit_seconds_count"),
                        bucket("lingshi_commit_seconds", "0.05"),
                    ) {
                        (Some(all), Some(fast)) => Some(all - fast),
                        _ => None,
                    };
                    (
                        mean(sum, count),
                        commits,
                        ms("lingshi_commit_seconds"),
                        ms("lingshi_ack_latency_seconds"),
                        slow,
                        histogram_p99_ms(&d, &a[0], "lingshi_ack_latency_seconds"),
                    )
                }
                _ => (None, None, None, None, None, None),
            };
        let acks: Vec<f64> = step
            .ack_us
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|v| *v != u32::MAX)
            .map(|v| v as f64 / 1000.0)
            .collect();
        let acked = acks.len() as u64;
        let stalls = stall_windows(&step);
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
            slow_commits,
            writer_p99_ms,
            stalls,
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

/// See [`StepFigures::stalls`].
fn stall_windows(step: &Step) -> u64 {
    let mut windows = std::collections::BTreeMap::<u64, (u32, u32)>::new();
    for (i, a) in step.ack_us.iter().enumerate() {
        let w = windows
            .entry((step.scheduled_us(i) / 100_000.0) as u64)
            .or_default();
        w.0 += 1;
        let lat = a.load(Ordering::Relaxed);
        if lat == u32::MAX || lat > 50_000 {
            w.1 += 1;
        }
    }
    windows.values().filter(|(n, late)| late * 2 > *n).count() as u64
}

/// The upper bound (ms) of the bucket that holds a histogram's 99th percentile, from
/// `delta`, the change of a metric over the step; the buckets are read from `text`,
/// one node's metrics.
fn histogram_p99_ms(delta: &dyn Fn(&str) -> Option<f64>, text: &str, name: &str) -> Option<f64> {
    let count = delta(&format!("{name}_count"))?;
    if count <= 0.0 {
        return None;
    }
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split('"').next())
        .filter(|le| *le != "+Inf")
        .find_map(|le| {
            let below = delta(&format!("{prefix}{le}\"}}"))?;
            (below >= 0.99 * count).then(|| le.parse::<f64>().ok().map(|s| s * 1000.0))?
        })
}

/// Which rates a run measures.
#[derive(Clone, Copy, Debug)]
pub struct Ladder {
    /// The first rate (the only one without `find_max`), messages per second.
    pub start: f64,
    /// Step the rate ×1.5 while a step passes.
    pub find_max: bool,
    /// At most this many ×1.5 steps.
    pub max_steps: usize,
    /// After the first failing step, this many steps halve the interval between the
    /// last rate that passed and the lowest that failed (each about 10 s more), so the
    /// maximum is known to within 1.5^(1/2^refine) rather than to a factor of 1.5.
    pub refine: usize,
}

/// Run one rate, or find the highest rate with p99 ack ≤ 50 ms and no errors: step up
/// ×1.5 until a step fails, then bisect between the last pass and the first failure.
/// Citizens connect to the first node, agents to the last.
pub async fn run(
    nodes: &[&Target],
    conversations: usize,
    agents: usize,
    duration: Duration,
    ladder: Ladder,
) -> anyhow::Result<(Vec<StepFigures>, Option<f64>)> {
    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        bail!("no server to measure");
    };
    let mut rig = setup(first, last, conversations, agents)
        .await
        .context("throughput setup")?;
    let mut steps = vec![];
    let mut search = Search::new(ladder);
    let mut r = ladder.start;
    loop {
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
        match search.next(r, pass) {
            Some(next) => r = next,
            None => break,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((steps, search.best))
}

/// Where a run is on its [`Ladder`].
struct Search {
    ladder: Ladder,
    /// The highest rate that passed.
    best: Option<f64>,
    /// The lowest rate that failed.
    failed: Option<f64>,
    climbs: usize,
    refinements: usize,
}

impl Search {
    fn new(ladder: Ladder) -> Self {
        Search {
            ladder,
            best: None,
            failed: None,
            climbs: 0,
            refinements: 0,
        }
    }

    /// The rate to measure after `rate` passed or failed, or `None` to stop.
    fn next(&mut self, rate: f64, pass: bool) -> Option<f64> {
        if !self.ladder.find_max {
            return None;
        }
        if pass {
            self.best = Some(rate);
        } else {
            self.failed = Some(rate);
        }
        match (self.best, self.failed) {
            // Still climbing.
            (Some(best), None) => {
                self.climbs += 1;
                (self.climbs < self.ladder.max_steps.max(1)).then_some(best * 1.5)
            }
            // Between a pass and a failure: halve the interval.
            (Some(lo), Some(hi)) if self.refinements < self.ladder.refine => {
                self.refinements += 1;
                Some((lo + hi) / 2.0)
            }
            // The first rate failed, or the interval is fine enough.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(ladder: Ladder, passes_up_to: f64) -> (Vec<f64>, Option<f64>) {
        let mut search = Search::new(ladder);
        let mut rates = vec![];
        let mut r = Some(ladder.start);
        while let Some(rate) = r {
            rates.push(rate.round());
            r = search.next(rate, rate <= passes_up_to);
        }
        (rates, search.best.map(f64::round))
    }

    #[test]
    fn the_ladder_climbs_by_half_then_halves_the_interval() {
        let ladder = Ladder {
            start: 1000.0,
            find_max: true,
            max_steps: 12,
            refine: 2,
        };
        // 7,594 passes, 11,391 fails; 9,492 passes, 10,441 fails.
        let (rates, best) = walk(ladder, 10_000.0);
        assert_eq!(
            rates,
            [1000.0, 1500.0, 2250.0, 3375.0, 5063.0, 7594.0, 11391.0, 9492.0, 10441.0]
        );
        assert_eq!(best, Some(9492.0));
        // 9,492 fails: the next try is below it.
        let (rates, best) = walk(ladder, 9_000.0);
        assert_eq!(&rates[6..], [11391.0, 9492.0, 8543.0]);
        assert_eq!(best, Some(8543.0));
        // Without refinement, the plain ×1.5 ladder.
        let (rates, best) = walk(
            Ladder {
                refine: 0,
                ..ladder
            },
            10_000.0,
        );
        assert_eq!(rates.len(), 7);
        assert_eq!(best, Some(7594.0));
        // A first rate that fails stops at once; a series that never fails stops at
        // --max-steps.
        assert_eq!(walk(ladder, 500.0), (vec![1000.0], None));
        let (rates, best) = walk(
            Ladder {
                max_steps: 3,
                ..ladder
            },
            1e9,
        );
        assert_eq!(rates, [1000.0, 1500.0, 2250.0]);
        assert_eq!(best, Some(2250.0));
        // One rate only without --find-max.
        let (rates, _) = walk(
            Ladder {
                find_max: false,
                ..ladder
            },
            1e9,
        );
        assert_eq!(rates, [1000.0]);
    }
}
