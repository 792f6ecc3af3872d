//! The realtime hub: who is connected, and which connections an event must reach. It
//! carries the domain's events and reads nothing: the event says who may see it
//! (`Event::audience`, `Event::routes`), `crate::wire` renders it once per audience,
//! and the hub hands the shared frame to each subscribed connection.
//!
//! Connections subscribe to *topics* (their citizen id; or their missions, their agent
//! id, and for admins everything). An event about a conversation is routed by that
//! conversation's mission, citizen and assignee, so a transfer moves visibility at once
//! without re-subscribing anyone.
//!
//! Each connection has a bounded outbound queue. Publishing never blocks: when a queue
//! is full the connection is marked overflowed and its task closes the socket with
//! 4008, and the client comes back with `resume`. Nothing is dropped silently.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

use crate::domain::events::{Connections, Event, Publisher};
use crate::domain::types::{AgentId, CitizenId, CountryCode, MissionId, PersonId};
use crate::domain::Principal;

/// A fixed-size key for a session hash.
fn session_key(session: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(session.as_bytes()).into()
}

/// What a connection listens to.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Topic {
    Citizen(CitizenId),
    Mission(MissionId),
    Agent(AgentId),
    /// Admins: every conversation.
    All,
}

/// The topics a principal's sockets subscribe to.
pub fn topics_for(p: &Principal) -> Vec<Topic> {
    match p {
        Principal::Citizen(c) => vec![Topic::Citizen(c.id)],
        Principal::Staff(a) if p.is_admin() => vec![Topic::All, Topic::Agent(a.id)],
        Principal::Staff(a) if p.works_conversations() => {
            let mut t: Vec<Topic> = a.missions.iter().cloned().map(Topic::Mission).collect();
            t.push(Topic::Agent(a.id));
            t
        }
        Principal::Staff(_) => vec![],
    }
}

/// One live socket as the hub sees it. Kept small: thousands are held idle.
pub struct Conn {
    pub id: u64,
    /// Digest of the session token's hash, to close sockets when the session is
    /// revoked (kept inline: no allocation per socket).
    session: [u8; 32],
    /// The person (citizen or agent), to skip echoing typing to its own author.
    pub principal_id: PersonId,
    /// A citizen's country, for safety alerts.
    pub country: Option<CountryCode>,
    queue: Mutex<VecDeque<Utf8Bytes>>,
    capacity: usize,
    /// `OVERFLOWED`, `CLOSING`, `PING_DUE`, `IDLE` bits, set by publishers and the
    /// heartbeat, read by the connection's task when woken.
    flags: AtomicU8,
    /// Milliseconds since the hub started when the client last sent anything.
    last_seen_ms: AtomicU64,
    wake: Notify,
}

const OVERFLOWED: u8 = 1;
const CLOSING: u8 = 2;
const PING_DUE: u8 = 4;
const IDLE: u8 = 8;
const RESYNC: u8 = 16;

impl Conn {
    /// Queue a frame; false when the queue was full (the connection is then closing).
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.overflowed() {
            return false;
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.capacity {
            drop(q);
            self.raise(OVERFLOWED);
            return false;
        }
        q.push_back(frame);
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Take everything queued so far. Releases memory a burst left behind.
    pub fn drain(&self) -> VecDeque<Utf8Bytes> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let out = std::mem::take(&mut *q);
        drop(q);
        out
    }

    fn raise(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    pub fn overflowed(&self) -> bool {
        self.has(OVERFLOWED)
    }

    /// Ask the connection task to close (shutdown or revoked session).
    pub fn close(&self) {
        self.raise(CLOSING);
    }

    pub fn closing(&self) -> bool {
        self.has(CLOSING)
    }

    /// Live events may have been lost on their way from another node: the client must
    /// reconnect and resume from the database.
    pub fn must_resync(&self) -> bool {
        self.has(RESYNC)
    }

    /// The heartbeat found the client silent for too long.
    pub fn idle(&self) -> bool {
        self.has(IDLE)
    }

    /// Whether a ping is due; clears the request.
    pub fn take_ping(&self) -> bool {
        self.flags.fetch_and(!PING_DUE, Ordering::Relaxed) & PING_DUE != 0
    }

    /// The client sent something (any frame, a pong included).
    pub fn touch(&self, hub: &Hub) {
        self.last_seen_ms.store(hub.now_ms(), Ordering::Relaxed);
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

#[derive(Default)]
struct Registry {
    topics: HashMap<Topic, Vec<Arc<Conn>>>,
    /// Open sockets per agent id: an agent with none is offline.
    agent_sockets: HashMap<AgentId, u32>,
}

/// The registry of live connections and the fan-out of events to them.
pub struct Hub {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    queue_capacity: usize,
    shutting_down: AtomicBool,
    started: Instant,
    /// Woken when an agent's socket count changes (other nodes are told).
    agents_changed: Notify,
}

impl Hub {
    pub fn new(queue_capacity: usize) -> Self {
        Hub {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            queue_capacity,
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
            agents_changed: Notify::new(),
        }
    }

    /// Open sockets per agent on this node, for other nodes' presence.
    pub fn agent_socket_counts(&self) -> Vec<(AgentId, u32)> {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.agent_sockets.iter().map(|(a, n)| (*a, *n)).collect()
    }

    /// Resolves when an agent's socket count changed since the last call.
    pub async fn agents_changed(&self) {
        self.agents_changed.notified().await
    }

    /// Ask every socket to reconnect and resume (close 1012): used when events from
    /// other nodes may have been lost, so clients fetch what they missed.
    pub fn resync_all(&self) -> usize {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for list in reg.topics.values() {
            for c in list {
                if !c.has(RESYNC) {
                    n += 1;
                }
                c.raise(RESYNC);
            }
        }
        n
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// One heartbeat for every socket: ask each to ping its client, and close those
    /// silent for longer than `idle_limit`. A single sweep replaces a timer per socket.
    pub fn heartbeat(&self, idle_limit: Duration) -> usize {
        let now = self.now_ms();
        let limit = idle_limit.as_millis() as u64;
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let mut idle = 0;
        for list in reg.topics.values() {
            for c in list {
                if now.saturating_sub(c.last_seen_ms.load(Ordering::Relaxed)) >= limit {
                    if !c.has(IDLE) {
                        idle += 1;
                    }
                    c.raise(IDLE);
                } else {
                    c.raise(PING_DUE);
                }
            }
        }
        idle
    }

    /// Run [`Hub::heartbeat`] every `every` until `stop`.
    pub fn spawn_heartbeat(
        self: Arc<Self>,
        every: Duration,
        idle_limit: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let idle = self.heartbeat(idle_limit);
                        if idle > 0 {
                            tracing::debug!(idle, "closing silent sockets");
                        }
                    }
                }
            }
        });
    }

    /// Register a connection under `topics`. Done *before* the welcome snapshot and the
    /// replay are read, so an event committed in between is queued, not lost.
    pub fn subscribe(&self, session: &str, principal: &Principal, topics: &[Topic]) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            session: session_key(session),
            principal_id: principal.id(),
            country: principal.citizen().and_then(|c| c.country),
            queue: Mutex::new(VecDeque::new()),
            capacity: self.queue_capacity,
            flags: AtomicU8::new(0),
            last_seen_ms: AtomicU64::new(self.now_ms()),
            wake: Notify::new(),
        });
        let mut reg = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let mut agent = false;
        for t in topics {
            reg.topics.entry(t.clone()).or_default().push(conn.clone());
            if let Topic::Agent(a) = t {
                *reg.agent_sockets.entry(*a).or_default() += 1;
                agent = true;
            }
        }
        drop(reg);
        if agent {
            self.agents_changed.notify_one();
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            conn.close();
        }
        conn
    }

    pub fn unsubscribe(&self, conn: &Conn, topics: &[Topic]) {
        let mut reg = self.registry.write().unwrap_or_else(|p| p.into_inner());
        for t in topics {
            if let Some(list) = reg.topics.get_mut(t) {
                list.retain(|c| c.id != conn.id);
                if list.is_empty() {
                    reg.topics.remove(t);
                }
            }
            if let Topic::Agent(a) = t {
                if let Some(n) = reg.agent_sockets.get_mut(a) {
                    *n -= 1;
                    if *n == 0 {
                        reg.agent_sockets.remove(a);
                    }
                }
                self.agents_changed.notify_one();
            }
        }
    }

    /// Deliver `frame` to every connection under any of `topics`, once each, except
    /// the author's. Returns how many connections were too slow and are now closing.
    fn deliver(&self, topics: &[Topic], frame: &Utf8Bytes, skip: Option<PersonId>) -> usize {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        // A connection can sit under several of these topics (an admin who is also the
        // assignee); deliver once.
        let mut seen: Vec<u64> = Vec::new();
        let mut slow = 0;
        for t in topics {
            let Some(list) = reg.topics.get(t) else {
                continue;
            };
            for c in list {
                if skip == Some(c.principal_id) || seen.contains(&c.id) {
                    continue;
                }
                seen.push(c.id);
                if !c.push(frame.clone()) {
                    slow += 1;
                }
            }
        }
        slow
    }

    /// Deliver to citizens whose country is one of `countries` (every citizen when
    /// `everyone`), and to those under `extra` topics, once each. Alerts are rare, so
    /// one scan of the registry costs less than a topic per country kept for ever.
    fn deliver_to_citizens_in(
        &self,
        countries: &[CountryCode],
        everyone: bool,
        extra: &[Topic],
        frame: &Utf8Bytes,
    ) {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for (t, list) in &reg.topics {
            if !matches!(t, Topic::Citizen(_)) {
                continue;
            }
            let named = extra.contains(t);
            for c in list {
                let wanted =
                    named || everyone || c.country.is_some_and(|cc| countries.contains(&cc));
                if wanted && seen.insert(c.id) {
                    c.push(frame.clone());
                }
            }
        }
    }

    /// Close every socket opened with this session (after it was revoked).
    fn close_session(&self, session: &str) {
        let key = session_key(session);
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        for list in reg.topics.values() {
            for c in list {
                if c.session == key {
                    c.close();
                }
            }
        }
    }

    /// Close every socket with 1001 (graceful shutdown) and refuse new ones.
    pub fn close_all(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        for list in reg.topics.values() {
            for c in list {
                c.close();
            }
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

impl Publisher for Hub {
    fn publish(&self, event: Event) {
        if let Event::SessionRevoked { session } = &event {
            self.close_session(session);
            return;
        }
        let audience = event.audience();
        let rendered = crate::wire::render(&event);
        let skip = event.author();
        if let (true, Some(frame)) = (audience.staff, &rendered.staff) {
            let mut topics = vec![Topic::All];
            topics.extend(event.missions().iter().cloned().map(Topic::Mission));
            for r in event.routes() {
                topics.push(Topic::Mission(r.mission));
                if let Some(a) = r.assignee {
                    topics.push(Topic::Agent(a));
                }
            }
            self.deliver(&topics, frame, skip);
        }
        if let (true, Some(frame)) = (audience.citizen, &rendered.citizen) {
            let mut topics: Vec<Topic> = event
                .routes()
                .into_iter()
                .map(|r| Topic::Citizen(r.citizen))
                .collect();
            if let Event::Alert {
                countries,
                everyone,
                citizens,
                ..
            } = &event
            {
                topics.extend(citizens.iter().map(|c| Topic::Citizen(*c)));
                self.deliver_to_citizens_in(countries, *everyone, &topics, frame);
                return;
            }
            self.deliver(&topics, frame, skip);
        }
    }
}

impl Connections for Hub {
    fn agent_sockets(&self, agent: AgentId) -> u32 {
        let reg = self.registry.read().unwrap_or_else(|p| p.into_inner());
        reg.agent_sockets.get(&agent).copied().unwrap_or(0)
    }
}
