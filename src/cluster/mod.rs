//! Several nodes behind a load balancer: what one node must learn from the others,
//! carried over NATS core subjects.
//!
//! - **Events.** [`Bus`] is the domain's [`Publisher`] on a cluster node: it hands each
//!   event to the local hub and publishes it once on `{prefix}.ev.<mission>` (events
//!   about a conversation), `{prefix}.ev.presence` or `{prefix}.ev.session`. Every node
//!   subscribes to `{prefix}.ev.>` and feeds what other nodes published into its own
//!   hub, never its own (each envelope names the process that sent it).
//! - **No replay on the bus, by design.** The database is the record: a client that
//!   reconnects resumes from its last `seq`. So the bus only has to say when it may
//!   have lost something. Each process numbers its envelopes; a receiver that sees a
//!   number skipped (a full queue, a slow-consumer drop), or that reconnects to NATS,
//!   asks all its sockets to reconnect and resume (close 1012), and the replay fills
//!   the hole. JetStream would add a stream to run and size for nothing the database
//!   does not already give.
//! - **Order.** One conversation can be written from two nodes (the citizen on one,
//!   the agent on another); their events reach a third node by different paths. Message
//!   events pass a small per-conversation reorder buffer: a message whose predecessor
//!   has not been seen yet waits up to [`HOLD`] for it, so clients see `seq` in order.
//! - **Presence.** Each node reports which agents have sockets on it
//!   (`{prefix}.presence`), at once when that changes and every few seconds; an agent
//!   is online for auto-assignment on every node if any node has a socket for them.
//!   A node not heard from for `presence_ttl_secs` is gone: its agents go offline.
//! - **Rate limits.** Tokens a node hands out are charged on the others
//!   (`{prefix}.limits`, gathered per key and sent every 50 ms).
//! - **Session revocation** is an event like any other: every node closes the
//!   session's sockets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::events::{Connections, Event, Publisher};
use crate::domain::types::{AgentId, ConversationId};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Longest a message waits for its predecessor before it is delivered anyway.
pub const HOLD: Duration = Duration::from_millis(300);
/// Envelopes queued for the bus before new ones are dropped (and receivers resync).
const OUT_QUEUE: usize = 65_536;
/// A conversation not heard of for this long leaves the reorder buffer.
const SEQ_IDLE: Duration = Duration::from_secs(600);

/// One event as it travels between nodes.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The sending process (a restarted node is a new one).
    from: Uuid,
    /// The sender's envelope number: consecutive, so a receiver notices a loss.
    n: u64,
    event: Event,
}

/// Which agents have sockets on a node.
#[derive(Serialize, Deserialize)]
struct PresenceReport {
    from: Uuid,
    node: String,
    agents: Vec<(AgentId, u32)>,
    /// The node is shutting down: forget it now rather than after the TTL.
    gone: bool,
}

/// Rate-limit tokens handed out on one node: (limiter, key, cost).
#[derive(Serialize, Deserialize)]
struct LimitCharges {
    from: Uuid,
    charges: Vec<(String, String, f64)>,
}

struct RemoteNode {
    name: String,
    agents: HashMap<AgentId, u32>,
    seen: Instant,
}

/// Charge rate-limit tokens handed out elsewhere: (limiter, key, cost).
pub type ChargeLimit = Box<dyn Fn(&str, &str, f64) + Send + Sync>;

/// What a node does when the bus tells it something the domain must act on.
pub struct Hooks {
    /// An agent's sockets on another node vanished with that node.
    pub agent_changed: Box<dyn Fn(AgentId) + Send + Sync>,
    /// Another node handed out rate-limit tokens: (limiter, key, cost).
    pub limit_charged: ChargeLimit,
}

struct Inner {
    instance: Uuid,
    node: String,
    prefix: String,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    client: async_nats::Client,
    out: mpsc::Sender<(String, Bytes)>,
    /// The next envelope's number. Numbering and queueing happen under this lock, so
    /// envelopes leave in number order: publishers on several threads must not make
    /// receivers see a gap that is only a reordering.
    next_n: Mutex<u64>,
    reorder: Mutex<Reorder>,
    /// Last envelope number seen from each other process.
    origins: Mutex<HashMap<Uuid, u64>>,
    remote: Mutex<HashMap<Uuid, RemoteNode>>,
    presence_ttl: Duration,
    hooks: OnceLock<Hooks>,
    /// Rate-limit tokens handed out here since the last report.
    charges: Mutex<HashMap<(&'static str, String), f64>>,
}

/// The cluster side of a node: publisher, presence and the tasks that carry them.
#[derive(Clone)]
pub struct Bus(Arc<Inner>);

impl Bus {
    /// Connect to NATS and start the bus tasks. Fails when NATS cannot be reached at
    /// start: a node that cannot hear the others must not take traffic.
    pub async fn start(
        config: &Config,
        node: &str,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> anyhow::Result<Bus> {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<async_nats::Event>();
        let client = async_nats::ConnectOptions::new()
            .name(format!("lingshi {node}"))
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100 * attempt as u64).clamp(100, 2000))
            })
            .event_callback(move |e| {
                let tx = ev_tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            })
            .connect(config.cluster.nats_url.as_str())
            .await
            .with_context(|| {
                format!(
                    "cannot reach the message bus at {} (cluster.nats_url)",
                    config.cluster.nats_url
                )
            })?;
        metrics.bus_connected.store(1, Relaxed);
        let prefix = config.cluster.subject_prefix.clone();
        let sub = client
            .subscribe(format!("{prefix}.>"))
            .await
            .context("cannot subscribe on the message bus")?;
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let bus = Bus(Arc::new(Inner {
            instance: Uuid::now_v7(),
            node: node.to_string(),
            prefix,
            hub,
            metrics,
            client,
            out,
            next_n: Mutex::new(1),
            reorder: Mutex::new(Reorder::default()),
            origins: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            presence_ttl: Duration::from_secs(config.cluster.presence_ttl_secs),
            hooks: OnceLock::new(),
            charges: Mutex::new(HashMap::new()),
        }));
        bus.spawn_sender(out_rx);
        bus.spawn_receiver(sub, stop.clone());
        bus.spawn_presence(stop.clone());
        bus.spawn_ticker(stop.clone());
        {
            let bus = bus.clone();
            tokio::spawn(async move {
                let mut lost = false;
                while let Some(e) = ev_rx.recv().await {
                    match e {
                        async_nats::Event::Disconnected => {
                            lost = true;
                            bus.0.metrics.bus_connected.store(0, Relaxed);
                            tracing::warn!("message bus disconnected; reconnecting");
                        }
                        async_nats::Event::Connected => {
                            bus.0.metrics.bus_connected.store(1, Relaxed);
                            if lost {
                                lost = false;
                                tracing::info!("message bus reconnected");
                                bus.resync("the bus connection was lost");
                            }
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            bus.resync("this node fell behind the bus");
                        }
                        other => tracing::info!(event = %other, "message bus"),
                    }
                }
            });
        }
        tracing::info!(node, url = %config.cluster.nats_url, "message bus connected");
        Ok(bus)
    }

    /// Connect the domain's reactions (set once, after the domain is built).
    pub fn set_hooks(&self, hooks: Hooks) {
        let _ = self.0.hooks.set(hooks);
    }

    /// Tell the other nodes that `key` used `cost` tokens of `limiter` (gathered and
    /// sent with the next tick).
    pub fn charge_limit(&self, limiter: &'static str, key: String, cost: f64) {
        let mut c = self.0.charges.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((limiter, key)).or_default() += cost;
    }

    fn flush_charges(&self) {
        let charges =
            std::mem::take(&mut *self.0.charges.lock().unwrap_or_else(|p| p.into_inner()));
        if charges.is_empty() {
            return;
        }
        let msg = LimitCharges {
            from: self.0.instance,
            charges: charges
                .into_iter()
                .map(|((l, k), c)| (l.to_string(), k, c))
                .collect(),
        };
        self.send(
            format!("{}.limits", self.0.prefix),
            serde_json::to_vec(&msg).expect("serialises"),
        );
    }

    /// Say goodbye (this node's agents go offline elsewhere at once) and flush.
    pub async fn leave(&self) {
        let report = PresenceReport {
            from: self.0.instance,
            node: self.0.node.clone(),
            agents: vec![],
            gone: true,
        };
        let subject = format!("{}.presence", self.0.prefix);
        let body = Bytes::from(serde_json::to_vec(&report).expect("serialises"));
        // Straight to the client: the sender task may already be gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.0.client.publish(subject, body).await;
            let _ = self.0.client.flush().await;
        })
        .await;
    }

    fn send(&self, subject: String, body: Vec<u8>) -> bool {
        match self.0.out.try_send((subject, Bytes::from(body))) {
            Ok(()) => true,
            Err(_) => {
                self.0.metrics.bus_events_dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    fn subject_for(&self, e: &Event) -> String {
        let p = &self.0.prefix;
        match e {
            Event::Presence { .. } => format!("{p}.ev.presence"),
            Event::SessionRevoked { .. } => format!("{p}.ev.session"),
            other => match other.routes().last() {
                Some(r) => format!("{p}.ev.m.{}", r.mission.as_str()),
                None => format!("{p}.ev.other"),
            },
        }
    }

    /// Ask every local socket to reconnect and resume.
    fn resync(&self, why: &str) {
        self.0
            .origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let n = self.0.hub.resync_all();
        self.0.metrics.bus_resyncs.fetch_add(1, Relaxed);
        tracing::warn!(sockets = n, reason = why, "asking clients to resume");
    }

    /// Deliver to local sockets, through the reorder buffer.
    fn deliver_local(&self, e: Event) {
        let mut r = self.0.reorder.lock().unwrap_or_else(|p| p.into_inner());
        for ready in r.offer(e, Instant::now()) {
            self.0.hub.publish(ready);
        }
    }

    fn spawn_sender(&self, mut rx: mpsc::Receiver<(String, Bytes)>) {
        let client = self.0.client.clone();
        tokio::spawn(async move {
            while let Some((subject, body)) = rx.recv().await {
                if let Err(e) = client.publish(subject, body).await {
                    tracing::warn!(error = %e, "cannot publish on the message bus");
                }
            }
        });
    }

    fn spawn_receiver(&self, mut sub: async_nats::Subscriber, stop: CancellationToken) {
        let bus = self.clone();
        tokio::spawn(async move {
            let ev = format!("{}.ev.", bus.0.prefix);
            let presence = format!("{}.presence", bus.0.prefix);
            let limits = format!("{}.limits", bus.0.prefix);
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = sub.next() => match m {
                        Some(m) => m,
                        None => return,
                    },
                };
                let subject = msg.subject.as_str();
                if subject.starts_with(&ev) {
                    bus.on_event(&msg.payload);
                } else if subject == presence {
                    bus.on_presence(&msg.payload);
                } else if subject == limits {
                    if let Ok(c) = serde_json::from_slice::<LimitCharges>(&msg.payload) {
                        if c.from != bus.0.instance {
                            if let Some(h) = bus.0.hooks.get() {
                                for (l, k, cost) in &c.charges {
                                    (h.limit_charged)(l, k, *cost);
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    fn on_event(&self, payload: &[u8]) {
        let env: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event on the message bus; ignored");
                return;
            }
        };
        if env.from == self.0.instance {
            return;
        }
        self.0.metrics.bus_events_in.fetch_add(1, Relaxed);
        let gap = {
            let mut origins = self.0.origins.lock().unwrap_or_else(|p| p.into_inner());
            let last = origins.insert(env.from, env.n);
            matches!(last, Some(l) if env.n > l + 1)
        };
        self.deliver_local(env.event);
        if gap {
            self.resync("events from another node were lost");
        }
    }

    fn on_presence(&self, payload: &[u8]) {
        let Ok(r) = serde_json::from_slice::<PresenceReport>(payload) else {
            tracing::warn!("undecodable presence report on the message bus; ignored");
            return;
        };
        if r.from == self.0.instance {
            return;
        }
        let mut remote = self.0.remote.lock().unwrap_or_else(|p| p.into_inner());
        if r.gone {
            if let Some(n) = remote.remove(&r.from) {
                drop(remote);
                tracing::info!(node = %n.name, "node left the cluster");
                self.agents_gone(n.agents.into_keys());
            }
            return;
        }
        if !remote.contains_key(&r.from) {
            tracing::info!(node = %r.node, "node joined the cluster");
        }
        remote.insert(
            r.from,
            RemoteNode {
                name: r.node,
                agents: r.agents.into_iter().collect(),
                seen: Instant::now(),
            },
        );
        self.0.metrics.bus_nodes.store(remote.len() as i64, Relaxed);
    }

    fn agents_gone(&self, agents: impl Iterator<Item = AgentId>) {
        if let Some(h) = self.0.hooks.get() {
            for a in agents {
                (h.agent_changed)(a);
            }
        }
    }

    /// Report this node's agents at once when they change, and every third of the
    /// TTL regardless (so a lost report heals and the others know this node lives).
    fn spawn_presence(&self, stop: CancellationToken) {
        let bus = self.clone();
        tokio::spawn(async move {
            let every = bus.0.presence_ttl / 3;
            loop {
                let report = PresenceReport {
                    from: bus.0.instance,
                    node: bus.0.node.clone(),
                    agents: bus.0.hub.agent_socket_counts(),
                    gone: false,
                };
                bus.send(
                    format!("{}.presence", bus.0.prefix),
                    serde_json::to_vec(&report).expect("serialises"),
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = bus.0.hub.agents_changed() => {}
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// Release held messages whose wait is over, forget silent nodes.
    fn spawn_ticker(&self, stop: CancellationToken) {
        let bus = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut sweeps = 0u32;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                bus.flush_charges();
                let now = Instant::now();
                {
                    let mut r = bus.0.reorder.lock().unwrap_or_else(|p| p.into_inner());
                    for ready in r.release(now) {
                        bus.0.hub.publish(ready);
                    }
                    sweeps += 1;
                    if sweeps.is_multiple_of(200) {
                        r.forget_idle(now);
                    }
                }
                let gone: Vec<RemoteNode> = {
                    let mut remote = bus.0.remote.lock().unwrap_or_else(|p| p.into_inner());
                    let dead: Vec<Uuid> = remote
                        .iter()
                        .filter(|(_, n)| now.duration_since(n.seen) > bus.0.presence_ttl)
                        .map(|(k, _)| *k)
                        .collect();
                    let gone = dead.iter().filter_map(|k| remote.remove(k)).collect();
                    bus.0.metrics.bus_nodes.store(remote.len() as i64, Relaxed);
                    gone
                };
                for n in gone {
                    tracing::warn!(node = %n.name, "node silent for longer than the presence TTL; its agents are offline");
                    bus.agents_gone(n.agents.into_keys());
                }
            }
        });
    }
}

impl Publisher for Bus {
    fn publish(&self, event: Event) {
        let subject = self.subject_for(&event);
        let mut env = Envelope {
            from: self.0.instance,
            n: 0,
            event,
        };
        let sent = {
            let mut next = self.0.next_n.lock().unwrap_or_else(|p| p.into_inner());
            env.n = *next;
            *next += 1;
            // A dropped envelope still used its number: receivers see the gap and resync.
            self.send(subject, serde_json::to_vec(&env).expect("events serialise"))
        };
        if sent {
            self.0.metrics.bus_events_out.fetch_add(1, Relaxed);
        }
        self.deliver_local(env.event);
    }
}

impl Connections for Bus {
    fn agent_sockets(&self, agent: AgentId) -> u32 {
        let local = self.0.hub.agent_sockets(agent);
        let remote = self.0.remote.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = self.0.presence_ttl;
        local
            + remote
                .values()
                .filter(|n| n.seen.elapsed() <= ttl)
                .filter_map(|n| n.agents.get(&agent))
                .sum::<u32>()
    }
}

/// Per-conversation reorder buffer for message events (see the module comment).
#[derive(Default)]
struct Reorder {
    convs: HashMap<ConversationId, ConvSeq>,
}

struct ConvSeq {
    /// Highest `seq` delivered.
    last: i64,
    /// Messages waiting for a predecessor, by `seq`, with when they arrived.
    held: BTreeMap<i64, (Instant, Event)>,
    touched: Instant,
}

impl Reorder {
    /// Events to deliver now, in order.
    fn offer(&mut self, e: Event, now: Instant) -> Vec<Event> {
        let (conv, seq) = match &e {
            Event::Message { message, .. } => (message.conversation_id, message.seq),
            _ => return vec![e],
        };
        let st = self.convs.entry(conv).or_insert(ConvSeq {
            last: seq - 1,
            held: BTreeMap::new(),
            touched: now,
        });
        st.touched = now;
        if seq > st.last + 1 {
            st.held.insert(seq, (now, e));
            return vec![];
        }
        let mut out = vec![e];
        st.last = st.last.max(seq);
        while let Some(entry) = st.held.first_entry() {
            if *entry.key() != st.last + 1 {
                break;
            }
            let (s, (_, ev)) = entry.remove_entry();
            st.last = s;
            out.push(ev);
        }
        out
    }

    /// Held messages that waited long enough, delivered in order (their missing
    /// predecessors are taken as lost; a client fetches them on its next resume).
    fn release(&mut self, now: Instant) -> Vec<Event> {
        let mut out = vec![];
        for st in self.convs.values_mut() {
            let overdue = st
                .held
                .values()
                .any(|(at, _)| now.duration_since(*at) >= HOLD);
            if overdue {
                for (s, (_, ev)) in std::mem::take(&mut st.held) {
                    st.last = st.last.max(s);
                    out.push(ev);
                }
            }
        }
        out
    }

    fn forget_idle(&mut self, now: Instant) {
        self.convs
            .retain(|_, st| !st.held.is_empty() || now.duration_since(st.touched) < SEQ_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::Route;
    use crate::domain::model::{Message, Sender};
    use crate::domain::types::*;

    fn msg(conv: ConversationId, seq: i64) -> Event {
        Event::Message {
            message: Message {
                id: MessageId::new(),
                conversation_id: conv,
                seq,
                client_msg_id: None,
                sender: Sender {
                    kind: SenderKind::System,
                    id: None,
                    display_name: "x".into(),
                },
                kind: MessageKind::Text,
                body: String::new(),
                attachments: vec![],
                created_at: now(),
                triage: None,
            },
            route: Route {
                citizen: CitizenId::new(),
                mission: MissionId::new("be"),
                assignee: None,
                channel: Channel::App,
            },
        }
    }

    fn seqs(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| match e {
                Event::Message { message, .. } => message.seq,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn a_message_waits_for_its_predecessor() {
        let mut r = Reorder::default();
        let c = ConversationId::new();
        let t = Instant::now();
        assert_eq!(seqs(&r.offer(msg(c, 4), t)), vec![4]);
        assert!(r.offer(msg(c, 6), t).is_empty(), "6 waits for 5");
        assert!(r.offer(msg(c, 7), t).is_empty());
        assert_eq!(seqs(&r.offer(msg(c, 5), t)), vec![5, 6, 7]);
        // A repeat is delivered (at-least-once), not held.
        assert_eq!(seqs(&r.offer(msg(c, 5), t)), vec![5]);
    }

    #[test]
    fn a_lost_predecessor_releases_the_rest_after_the_hold() {
        let mut r = Reorder::default();
        let c = ConversationId::new();
        let t = Instant::now();
        r.offer(msg(c, 1), t);
        assert!(r.offer(msg(c, 3), t).is_empty());
        assert!(r.release(t + HOLD / 2).is_empty());
        assert_eq!(seqs(&r.release(t + HOLD)), vec![3]);
        assert_eq!(seqs(&r.offer(msg(c, 4), t + HOLD)), vec![4]);
    }

    #[test]
    fn other_events_pass_at_once() {
        let mut r = Reorder::default();
        let e = Event::SessionRevoked {
            session: "h".into(),
        };
        assert_eq!(r.offer(e.clone(), Instant::now()), vec![e]);
    }
}
