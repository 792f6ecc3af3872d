//! Several nodes on one Postgres database and one NATS server: a citizen on one node
//! and an agent on another talk both ways; presence, revocation and rate limits cross
//! nodes; a claim raced from two nodes has one winner; a node killed with SIGKILL
//! loses nothing its clients were told was stored, its outbox rows (webhooks and an
//! escalation to the hotline) are delivered by the node that is left, and the Telegram
//! bridge moves to that node.
//!
//! Needs Postgres and `nats-server` (see `common/services.rs`); without them each test
//! says so and skips, unless `LINGSHI_REQUIRE_SERVICES` is set.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::services::{nats, postgres};
use common::*;
use lingshi::config::{Config, Secret};
use serde_json::{json, Value};

/// One deployment: a database and a subject prefix of its own on the shared services.
struct Deployment {
    db: String,
    nats: String,
    prefix: String,
}

impl Deployment {
    /// `None` (after saying so) when Postgres or NATS is not installed.
    fn new(test: &str) -> Option<Deployment> {
        init_logs();
        let (Some(pg), Some(n)) = (postgres(), nats()) else {
            eprintln!("SKIP {test}: needs Postgres and nats-server");
            return None;
        };
        Some(Deployment {
            db: pg.fresh_database(),
            nats: n.url.clone(),
            prefix: format!("t{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        })
    }

    /// A node's configuration, its data dir under `dir`.
    fn node_config(&self, dir: &std::path::Path, name: &str) -> Config {
        let mut c = test_config(&dir.join("data"));
        c.database_url = Secret::new(self.db.clone());
        c.database_max_connections = 8;
        c.cluster.nats_url = self.nats.clone();
        c.cluster.subject_prefix = self.prefix.clone();
        c.cluster.node_name = name.into();
        c.cluster.presence_ttl_secs = 3;
        c.cluster.lease_ttl_secs = 3;
        c
    }

    /// A node in this process.
    async fn node(&self, name: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut c = self.node_config(dir.path(), name);
        tweak(&mut c);
        TestApp::start_in(dir, c).await
    }
}

/// Wait until `f` holds, polling.
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the roster on `app` says about `agent`'s presence.
async fn presence_seen(app: &TestApp, token: &str, agent: &str) -> String {
    let (s, v) = app.get("/v1/agents", Some(token)).await;
    assert_eq!(s, 200, "{v}");
    v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent)
        .map(|a| a["presence"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_citizen_on_one_node_and_an_agent_on_another_talk_both_ways() {
    let Some(d) = Deployment::new("citizen_and_agent_on_two_nodes") else {
        return;
    };
    let a = d.node("node-a", |_| {}).await;
    let b = d.node("node-b", |_| {}).await;
    let agent = b.staff("agent@be.example", "be", "agent").await;
    let watcher = a.staff("watcher@be.example", "be", "admin").await;

    // The agent's socket is on B; A must see them online (its auto-assignment does).
    let mut agent_ws = b.ws(&agent.token).await;
    eventually(
        "A sees the agent on B online",
        Duration::from_secs(10),
        || async { presence_seen(&a, &watcher.token, &agent.id).await == "online" },
    )
    .await;

    // The citizen writes on A; the conversation is created and auto-assigned on A to
    // the agent whose socket is on B.
    let citizen = a.citizen("Li Wei", Some("BE")).await;
    let mut citizen_ws = a.ws(&citizen.token).await;
    let ack = citizen_ws
        .send_message(None, &uuid(), "我的护照在布鲁塞尔丢了")
        .await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(ack["seq"], 1);
    let m = agent_ws.expect("message").await;
    assert_eq!(m["message"]["body"], "我的护照在布鲁塞尔丢了");
    assert_eq!(m["message"]["conversation_id"], conv.as_str());
    let assigned = loop {
        let f = agent_ws.expect("conversation").await;
        if f["event"] == "assigned" {
            break f;
        }
    };
    assert_eq!(assigned["conversation"]["assignee_id"], agent.id.as_str());

    // The agent answers from B; the citizen on A gets it, in order, after the
    // assignment notice.
    let reply = agent_ws
        .send_message(Some(&conv), &uuid(), "请带上您的身份证明来使馆。")
        .await;
    assert_eq!(reply["seq"], 2);
    // The citizen's socket first hears its own message (seq 1).
    let got = loop {
        let m = citizen_ws.expect("message").await;
        if m["message"]["seq"] != 1 {
            break m;
        }
    };
    assert_eq!(got["message"]["seq"], 2);
    assert_eq!(got["message"]["body"], "请带上您的身份证明来使馆。");

    // A burst from both sides: every side sees every message once, in seq order.
    for i in 0..10 {
        citizen_ws
            .send(json!({"type": "send", "client_msg_id": uuid(), "conversation_id": conv, "body": format!("c{i}")}))
            .await;
        agent_ws
            .send(json!({"type": "send", "client_msg_id": uuid(), "conversation_id": conv, "body": format!("a{i}")}))
            .await;
    }
    for ws in [&mut citizen_ws, &mut agent_ws] {
        let mut seen = vec![];
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < 20 {
            let left = deadline.saturating_duration_since(Instant::now());
            match ws.next(left).await {
                // Echoes of the first two messages may still be queued.
                Next::Frame(f)
                    if f["type"] == "message" && f["message"]["seq"].as_i64() > Some(2) =>
                {
                    seen.push(f["message"]["seq"].as_i64().unwrap())
                }
                Next::Frame(_) => {}
                other => panic!(
                    "missing messages, got {seen:?} then {:?}",
                    matches!(other, Next::Timeout)
                ),
            }
        }
        assert_eq!(seen, (3..=22).collect::<Vec<_>>(), "in seq order, no gaps");
    }
    let history = a.messages(&citizen.token, &conv, "limit=200").await;
    let seqs: Vec<i64> = history.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=22).collect::<Vec<_>>());
}

#[tokio::test]
async fn presence_revocation_and_rate_limits_cross_nodes() {
    let Some(d) = Deployment::new("presence_revocation_and_rate_limits") else {
        return;
    };
    let limit = |c: &mut Config| c.limits.sessions_per_minute = 4;
    let a = d.node("node-a", limit).await;
    let b = d.node("node-b", limit).await;
    let agent = b.staff("agent@et.example", "et", "agent").await;
    let admin = a.staff("admin@et.example", "et", "admin").await;

    // Presence: online on A while the socket on B is open, offline once it closes.
    let mut agent_ws = b.ws(&agent.token).await;
    eventually("online across nodes", Duration::from_secs(10), || async {
        presence_seen(&a, &admin.token, &agent.id).await == "online"
    })
    .await;
    // A staff socket on A hears the presence change announced by B.
    let mut admin_ws = a.ws(&admin.token).await;
    agent_ws.stream.close(None).await.unwrap();
    let p = loop {
        let p = admin_ws.expect("presence").await;
        if p["agent"]["id"] == agent.id.as_str() {
            break p;
        }
    };
    assert_eq!(p["status"], "offline", "{p}");
    assert_eq!(presence_seen(&a, &admin.token, &agent.id).await, "offline");

    // Revocation on B closes the session's socket on A with 4401.
    let (s, signed) = b
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": "agent@et.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 200, "{signed}");
    let token = signed["token"].as_str().unwrap().to_string();
    let mut on_a = a.ws(&token).await;
    let (s, _) = b
        .request(
            reqwest::Method::DELETE,
            "/v1/agent/sessions",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(on_a.closed(Duration::from_secs(5)).await, Some(4401));

    // Rate limit: 4 sessions per minute per address, shared by the nodes. The three
    // staff sign-ins above (one on A, two on B) used 3; alone, A would have 3 left
    // and B 2, so 5 of the next 8 would pass.
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (s, _) = node
            .post_json("/v1/citizen/sessions", None, &json!({"display_name": "x"}))
            .await;
        match s {
            200 => ok += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
        // Charges travel over the bus; give them a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ok <= 2 && refused >= 6,
        "the two nodes share one allowance: {ok} ok, {refused} refused"
    );
}

#[tokio::test]
async fn two_agents_on_two_nodes_claim_one_conversation_and_one_wins() {
    let Some(d) = Deployment::new("claim_race_across_nodes") else {
        return;
    };
    let a = d.node("node-a", |_| {}).await;
    let b = d.node("node-b", |_| {}).await;
    // Signed in over HTTP only (no socket): offline, so auto-assignment stays out.
    let one = a.staff("one@us.example", "us", "agent").await;
    let two = b.staff("two@us.example", "us", "agent").await;
    let mut wins = HashMap::new();
    for i in 0..12 {
        let citizen = a.citizen(&format!("Citizen {i}"), Some("US")).await;
        let conv = a.conversation_id(&citizen).await;
        let path = format!("/v1/conversations/{conv}/assign");
        let body = json!({"if_unassigned": true});
        let (r1, r2) = tokio::join!(
            a.post_json(&path, Some(&one.token), &body),
            b.post_json(&path, Some(&two.token), &body)
        );
        let mut statuses = [r1.0, r2.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "one claim wins: {r1:?} {r2:?}");
        let winner = if r1.0 == 200 { &one.id } else { &two.id };
        *wins.entry(winner.clone()).or_insert(0) += 1;
        let (_, c) = b
            .get(&format!("/v1/conversations/{conv}"), Some(&two.token))
            .await;
        assert_eq!(c["assignee_id"], winner.as_str());
        assert_eq!(c["status"], "assigned");
    }
    assert_eq!(wins.values().sum::<i32>(), 12);
}

#[tokio::test]
async fn two_nodes_starting_one_citizens_conversation_at_once_make_one() {
    let Some(d) = Deployment::new("one_open_conversation_across_nodes") else {
        return;
    };
    let a = d.node("node-a", |_| {}).await;
    let b = d.node("node-b", |_| {}).await;
    for i in 0..10 {
        let citizen = a.citizen(&format!("Citizen {i}"), Some("BE")).await;
        let empty = json!({});
        let (ra, rb) = tokio::join!(
            a.post_json("/v1/conversations", Some(&citizen.token), &empty),
            b.post_json("/v1/conversations", Some(&citizen.token), &empty)
        );
        assert!(ra.0 == 200 || ra.0 == 201, "{ra:?}");
        assert!(rb.0 == 200 || rb.0 == 201, "{rb:?}");
        assert_eq!(
            ra.1["id"], rb.1["id"],
            "both nodes answer with the same conversation"
        );
        // First messages without a conversation id, from both nodes at once.
        let other = a.citizen(&format!("Other {i}"), Some("BE")).await;
        let body = |n: &str| json!({"type": "send", "client_msg_id": uuid(), "body": n});
        let mut wa = a.ws(&other.token).await;
        let mut wb = b.ws(&other.token).await;
        wa.send(body("from a")).await;
        wb.send(body("from b")).await;
        let (ka, kb) = (wa.expect("ack").await, wb.expect("ack").await);
        assert_eq!(ka["conversation_id"], kb["conversation_id"]);
        let mut seqs = [ka["seq"].as_i64().unwrap(), kb["seq"].as_i64().unwrap()];
        seqs.sort();
        assert_eq!(seqs, [1, 2]);
    }
}

// ----- child processes: kill -9 -------------------------------------------------------

/// Start a node as a `lingshi serve` child process.
async fn child_node(d: &Deployment, dir: &std::path::Path, name: &str, extra: &str) -> ServerProc {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    let mut c = d.node_config(&node_dir, name);
    c.limits.frames_per_second = 100_000;
    c.limits.outbound_queue = 1_000_000;
    let file = write_config_file(&node_dir, &c);
    if !extra.is_empty() {
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(extra);
        std::fs::write(&file, text).unwrap();
    }
    start_server(&file, &node_dir, name).await
}

/// One sender: HTTP sends flat out; every ack is recorded, and every send that got no
/// answer is remembered to be sent again (same client_msg_id) to the other node.
struct Load {
    acks: Mutex<HashMap<String, Value>>,
    unanswered: Mutex<Vec<(String, String, String)>>,
    stop: AtomicBool,
    count: AtomicUsize,
}

async fn sender(load: Arc<Load>, base: String, token: String, conv: String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut n = 0;
    while !load.stop.load(Ordering::Relaxed) {
        let cmid = uuid();
        let body = format!("{conv} #{n}");
        n += 1;
        let sent = http
            .post(format!("{base}/v1/conversations/{conv}/messages"))
            .bearer_auth(&token)
            .json(&json!({"client_msg_id": cmid, "body": body}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == StatusCode::CREATED => {
                let v: Value = r.json().await.unwrap();
                load.acks.lock().unwrap().insert(cmid, v);
                load.count.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                load.unanswered.lock().unwrap().push((token, conv, cmid));
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_load_loses_nothing_and_its_citizens_resume_on_another() {
    let Some(d) = Deployment::new("kill_a_node_mid_load") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node_a = child_node(&d, dir.path(), "node-a", "").await;
    let node_b = child_node(&d, dir.path(), "node-b", "").await;
    let http = reqwest::Client::new();
    let load = Arc::new(Load {
        acks: Mutex::default(),
        unanswered: Mutex::default(),
        stop: AtomicBool::new(false),
        count: AtomicUsize::new(0),
    });
    let mut people = vec![];
    let mut tasks = vec![];
    for i in 0..6 {
        let (token, conv) =
            citizen_with_conversation(&http, &node_a.base, &format!("Citizen {i}")).await;
        // A socket on B follows the conversation live while A takes the writes.
        let mut ws = Ws::connect(&format!("ws://{}/v1/ws", node_b.addr), &token, json!({})).await;
        ws.welcome = Value::Null;
        people.push((token.clone(), conv.clone(), ws));
        for _ in 0..2 {
            tasks.push(tokio::spawn(sender(
                load.clone(),
                node_a.base.clone(),
                token.clone(),
                conv.clone(),
            )));
        }
    }
    let started = Instant::now();
    while load.count.load(Ordering::Relaxed) < 200 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node_a.child.start_kill().unwrap();
    node_a.child.wait().await.unwrap();
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("senders stop once A is gone")
            .unwrap();
    }
    let acks = load.acks.lock().unwrap().clone();
    assert!(
        acks.len() >= 200,
        "only {} acks before the kill",
        acks.len()
    );

    // The citizens resend what got no answer to B, under the same ids: stored once.
    let unanswered = load.unanswered.lock().unwrap().clone();
    let mut resent = HashMap::new();
    for (token, conv, cmid) in &unanswered {
        let (s, v) = into_pair(
            http.post(format!("{}/v1/conversations/{conv}/messages", node_b.base))
                .bearer_auth(token)
                .json(&json!({"client_msg_id": cmid, "body": "resent"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 201 || s == 200, "resend on B: {s} {v}");
        resent.insert(cmid.clone(), v);
    }
    for (token, conv, ws) in &mut people {
        let history = all_messages(&http, &node_b.base, token, conv).await;
        let seqs: Vec<i64> = history.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "gapless seq after the kill"
        );
        let ids: Vec<&str> = history
            .iter()
            .filter_map(|m| m["client_msg_id"].as_str())
            .collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "no message stored twice");
        let by_cmid: HashMap<&str, &Value> = history
            .iter()
            .filter_map(|m| m["client_msg_id"].as_str().map(|c| (c, m)))
            .collect();
        for (cmid, ack) in acks.iter().chain(resent.iter()) {
            if ack["conversation_id"] != conv.as_str() {
                continue;
            }
            let stored = by_cmid
                .get(cmid.as_str())
                .unwrap_or_else(|| panic!("acknowledged message {cmid} lost"));
            assert_eq!(stored["id"], ack["message_id"]);
            assert_eq!(stored["seq"], ack["seq"]);
        }
        // The socket on B heard A's writes live.
        let mut live = HashSet::new();
        for f in ws.collect(Duration::from_millis(300)).await {
            if f["type"] == "message" {
                live.insert(f["message"]["seq"].as_i64().unwrap());
            }
        }
        assert!(live.len() >= 2, "the socket on B heard nothing from A");
        // A client that held half of it resumes on B and gets the rest, in order.
        let from = *live.iter().max().unwrap() / 2;
        let mut resumed = Ws::connect(
            &format!("ws://{}/v1/ws", node_b.addr),
            token,
            json!({ conv.clone(): from }),
        )
        .await;
        // Read until the replay is complete (a loaded machine may take more than one
        // window), then compare it whole. Delivery is at-least-once (a live copy of the
        // newest message may cross the replay): the client drops a `seq` it already
        // holds, as the contract says, so one that arrives out of order is dropped too
        // and shows up as missing.
        let want: Vec<i64> = (from + 1..=seqs.len() as i64).collect();
        let mut replay: Vec<i64> = vec![];
        let deadline = Instant::now() + Duration::from_secs(15);
        while replay.len() < want.len() && Instant::now() < deadline {
            for f in resumed.collect(Duration::from_millis(500)).await {
                if f["type"] != "message" {
                    continue;
                }
                let seq = f["message"]["seq"].as_i64().unwrap();
                if replay.last().is_none_or(|last| seq > *last) {
                    replay.push(seq);
                }
            }
        }
        assert_eq!(replay, want, "resume on B replays what the client missed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_rows_and_an_escalation_written_on_a_node_that_dies_are_delivered_by_another() {
    let Some(d) = Deployment::new("outbox_takeover") else {
        return;
    };
    // Both receivers verify every signature; they refuse (503) until told otherwise.
    let webhooks = hooks::Receiver::new(hooks::DOWN);
    let hotline = hooks::Receiver::new(hooks::DOWN);
    let (hook_addr, hotline_addr) = (webhooks.start().await, hotline.start().await);
    let secret = hooks::secret();
    let hook = format!(
        "[[webhooks]]\nname = \"case-system\"\nurl = \"http://{hook_addr}/hook\"\nsecret = {secret:?}\nevents = [\"message.created\"]\n\n[hotline]\nurl = \"http://{hotline_addr}/hook\"\nsecret = {secret:?}\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    // A starts first and takes the outbox lease; B waits for it.
    let mut node_a = child_node(&d, dir.path(), "node-a", &hook).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let node_b = child_node(&d, dir.path(), "node-b", &hook).await;
    let (token, conv) = citizen_with_conversation(&http, &node_a.base, "Zhang").await;
    let mut ids = vec![];
    for n in 0..10 {
        let (s, ack) = into_pair(
            http.post(format!("{}/v1/conversations/{conv}/messages", node_a.base))
                .bearer_auth(&token)
                .json(&json!({"client_msg_id": uuid(), "body": format!("m{n}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 201, "{ack}");
        ids.push(ack["message_id"].as_str().unwrap().to_string());
    }
    // An emergency: its escalation goes to the hotline through the same outbox.
    let (s, ack) = into_pair(
        http.post(format!("{}/v1/conversations/{conv}/messages", node_a.base))
            .bearer_auth(&token)
            .json(&json!({"client_msg_id": uuid(), "body": "救命！有人拿刀抢劫我，他还在门外"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{ack}");
    // A is failing to deliver (the receivers are down) when it dies.
    eventually("A tried and failed", Duration::from_secs(15), || async {
        metric(&http, &node_a.base, "lingshi_outbox_failures_total").await > 0.0
    })
    .await;
    node_a.child.start_kill().unwrap();
    node_a.child.wait().await.unwrap();
    webhooks.set(hooks::UP);
    hotline.set(hooks::UP);
    let started = Instant::now();
    webhooks
        .wait_for(
            Duration::from_secs(60),
            "B delivering every row A wrote",
            |got| {
                let got: HashSet<&str> = got
                    .iter()
                    .filter_map(|(_, b)| b["data"]["message"]["id"].as_str())
                    .collect();
                ids.iter().all(|i| got.contains(i.as_str()))
            },
        )
        .await;
    eprintln!(
        "taken over and delivered {:?} after the kill",
        started.elapsed()
    );
    assert!(metric(&http, &node_b.base, "lingshi_outbox_delivered_total").await >= 10.0);
    // One webhook id per message however often it was tried.
    let mut ids_of: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, b) in webhooks.bodies() {
        if let Some(m) = b["data"]["message"]["id"].as_str() {
            ids_of.entry(m.to_string()).or_default().insert(id);
        }
    }
    assert!(ids_of.len() >= 11, "{ids_of:?}");
    assert!(ids_of.values().all(|ids| ids.len() == 1), "{ids_of:?}");
    hotline
        .wait_for(
            Duration::from_secs(60),
            "B delivering the escalation A created",
            |got| {
                got.iter().any(|(_, b)| {
                    b["type"] == "escalation.created" && b["conversation"]["id"] == conv.as_str()
                })
            },
        )
        .await;
    assert!(webhooks.bad.lock().unwrap().is_empty());
    assert!(hotline.bad.lock().unwrap().is_empty());
}

async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
}

/// The Telegram bridge polls on one node at a time; when that node dies the other
/// takes the lease over and answers, continuing from the stored offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_telegram_bridge_moves_to_another_node_when_its_node_dies() {
    let Some(d) = Deployment::new("telegram_takeover") else {
        return;
    };
    const TOKEN: &str = "123456:TEST-token-for-the-local-fake-bot-api";
    let fake = lingshi_telegram_fake::FakeTelegram::start(TOKEN).await;
    let section = format!(
        "\n[telegram]\ntoken = {TOKEN:?}\napi_url = {:?}\npoll_timeout_secs = 1\n",
        fake.url()
    );
    let dir = tempfile::tempdir().unwrap();
    // A starts first and takes the bridge's lease; B waits for it.
    let mut node_a = child_node(&d, dir.path(), "node-a", &section).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _node_b = child_node(&d, dir.path(), "node-b", &section).await;
    fake.text(1500, "/start");
    fake.wait_for(Duration::from_secs(15), "the greeting", |s| {
        s.iter().any(|m| m.chat_id == 1500)
    })
    .await;
    let greetings = |sent: &[lingshi_telegram_fake::Sent]| {
        sent.iter()
            .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("您好")))
            .count()
    };
    assert_eq!(greetings(&fake.sent_to(1500)), 1);
    eventually("the update confirmed", Duration::from_secs(10), || async {
        fake.unconfirmed() == 0
    })
    .await;

    node_a.child.start_kill().unwrap();
    node_a.child.wait().await.unwrap();
    let killed = Instant::now();
    fake.text(1500, "/help");
    fake.wait_for(Duration::from_secs(40), "help from the other node", |s| {
        s.iter()
            .filter(|m| m.chat_id == 1500)
            .any(|m| m.text.as_deref().is_some_and(|t| t.contains("/search")))
    })
    .await;
    eprintln!("the bridge answered {:?} after the kill", killed.elapsed());
    // Nothing handled twice: the /start (handled on A) was not answered again by B,
    // and /help once.
    let after = fake.sent_to(1500);
    assert_eq!(greetings(&after), 1, "{after:?}");
    assert_eq!(
        after
            .iter()
            .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("/search")))
            .count(),
        1,
        "{after:?}"
    );
}
