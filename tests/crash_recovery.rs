//! The crash test: the real `lingshi` binary is SIGKILLed while citizens send as fast as
//! they can over WebSocket and HTTP. After a restart on the same data dir every
//! acknowledged message is there with the acknowledged `seq`, every conversation is
//! numbered 1..=n without a gap or a duplicate, and resending an acknowledged
//! `client_msg_id` answers with the original ack instead of storing a copy.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// What the server acknowledged, as the client saw it.
#[derive(Clone, Debug)]
struct Acked {
    client_msg_id: String,
    conversation_id: String,
    message_id: String,
    seq: i64,
    via: &'static str,
}

struct Person {
    token: String,
    citizen_id: String,
    conversation_id: String,
}

async fn new_citizen(http: &reqwest::Client, base: &str, name: &str, country: &str) -> Person {
    let r = http
        .post(format!("{base}/v1/citizen/sessions"))
        .json(&json!({"display_name": name, "locale": "zh-CN", "country": country}))
        .send()
        .await
        .unwrap();
    let (s, body) = into_pair(r).await;
    assert_eq!(s, 200, "citizen session: {body}");
    let token = body["token"].as_str().unwrap().to_string();
    let citizen_id = body["citizen"]["id"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{base}/v1/conversations"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (s, conv) = into_pair(r).await;
    assert!(s == 200 || s == 201, "start conversation: {s} {conv}");
    Person {
        token,
        citizen_id,
        conversation_id: conv["id"].as_str().unwrap().to_string(),
    }
}

fn ack_of(v: &Value, via: &'static str) -> Acked {
    Acked {
        client_msg_id: v["client_msg_id"].as_str().unwrap().to_string(),
        conversation_id: v["conversation_id"].as_str().unwrap().to_string(),
        message_id: v["message_id"].as_str().unwrap().to_string(),
        seq: v["seq"].as_i64().unwrap(),
        via,
    }
}

#[derive(Clone)]
struct Shared {
    acks: Arc<Mutex<Vec<Acked>>>,
    count: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    fn record(&self, a: Acked) {
        self.acks.lock().unwrap().push(a);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Send over one WebSocket as fast as acks come back, until the server dies.
/// `with_conversation = false` leaves `conversation_id` out (the open one is used).
async fn ws_sender(
    url: String,
    token: String,
    conversation_id: String,
    with_conversation: bool,
    shared: Shared,
) {
    let mut ws = Ws::connect(&url, &token, json!({})).await;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let cmid = uuid();
        let mut frame = json!({
            "type": "send", "client_msg_id": cmid, "kind": "text",
            "body": format!("ws message {n} 护照"),
        });
        if with_conversation {
            frame["conversation_id"] = json!(conversation_id);
        }
        if ws
            .stream
            .send(Message::text(frame.to_string()))
            .await
            .is_err()
        {
            return;
        }
        loop {
            match ws.next(Duration::from_secs(60)).await {
                Next::Frame(f) if f["type"] == "ack" && f["client_msg_id"] == cmid.as_str() => {
                    shared.record(ack_of(&f, "ws"));
                    break;
                }
                Next::Frame(f) if f["type"] == "error" && f["client_msg_id"] == cmid.as_str() => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Next::Frame(_) => continue,
                Next::Closed(_) | Next::Timeout => return,
            }
        }
    }
}

/// Send over HTTP as fast as acks come back, until the server dies.
async fn http_sender(base: String, token: String, conversation_id: String, shared: Shared) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let cmid = uuid();
        let sent = http
            .post(format!(
                "{base}/v1/conversations/{conversation_id}/messages"
            ))
            .bearer_auth(&token)
            .json(&json!({"client_msg_id": cmid, "body": format!("http message {n} visa")}))
            .send()
            .await;
        let Ok(r) = sent else { return };
        let status = r.status().as_u16();
        let Ok(text) = r.text().await else { return };
        if status == 201 {
            let v: Value = serde_json::from_str(&text).expect("ack is JSON");
            assert_eq!(v["client_msg_id"], cmid.as_str(), "{v}");
            shared.record(ack_of(&v, "http"));
        } else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_sigkill_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    // The load comes from a few sockets sending flat out: no per-socket frame budget,
    // and room for every citizen socket to hear the others' messages.
    config.limits.frames_per_second = 100_000;
    config.limits.outbound_queue = 1_000_000;
    let config_file = write_config_file(dir.path(), &config);

    let mut server = start_server(&config_file, dir.path(), "first").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let countries = ["BE", "ET", "US", "FR"];
    let mut people = vec![];
    for i in 0..8 {
        let country = countries[i % countries.len()];
        people.push(new_citizen(&http, &server.base, &format!("Citizen {i}"), country).await);
    }

    let shared = Shared {
        acks: Arc::default(),
        count: Arc::default(),
        refused: Arc::default(),
        stop: Arc::default(),
    };
    let ws_url = format!("ws://{}/v1/ws", server.addr);
    let mut tasks = vec![];
    for p in &people {
        for k in 0..3 {
            tasks.push(tokio::spawn(ws_sender(
                ws_url.clone(),
                p.token.clone(),
                p.conversation_id.clone(),
                k != 2,
                shared.clone(),
            )));
        }
        for _ in 0..2 {
            tasks.push(tokio::spawn(http_sender(
                server.base.clone(),
                p.token.clone(),
                p.conversation_id.clone(),
                shared.clone(),
            )));
        }
    }

    // Load for at least 1.5 s and until a few hundred messages were acknowledged.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let acked = shared.count.load(Ordering::Relaxed);
        if started.elapsed() >= Duration::from_millis(1500) && acked >= 300 {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "server died under load:\n{}",
            tail(&server.log)
        );
    }
    // SIGKILL mid-flight: no chance to flush or shut down.
    server.child.start_kill().expect("SIGKILL sent");
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("killed server exits")
        .unwrap();
    shared.stop.store(true, Ordering::Relaxed);
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(90), t)
            .await
            .expect("sender stops once the server is gone")
            .expect("sender task did not panic");
    }
    let acks = shared.acks.lock().unwrap().clone();
    let refused = shared.refused.load(Ordering::Relaxed);
    assert!(
        acks.len() >= 300,
        "only {} acks before the kill (refused: {refused})",
        acks.len()
    );

    // Restart on the same data dir (a new port is fine).
    let server = start_server(&config_file, dir.path(), "second").await;
    let by_conv: HashMap<&str, &Person> = people
        .iter()
        .map(|p| (p.conversation_id.as_str(), p))
        .collect();
    let mut acked_cmids = HashSet::new();
    for a in &acks {
        assert!(
            acked_cmids.insert(a.client_msg_id.clone()),
            "{} acknowledged twice",
            a.client_msg_id
        );
        assert!(
            by_conv.contains_key(a.conversation_id.as_str()),
            "ack names an unknown conversation: {a:?}"
        );
    }

    let mut stored_total = 0;
    let mut stored: HashMap<String, Value> = HashMap::new();
    for p in &people {
        let msgs = all_messages(&http, &server.base, &p.token, &p.conversation_id).await;
        let n = msgs.len() as i64;
        stored_total += msgs.len();
        let mut cmids = HashSet::new();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                m["seq"].as_i64(),
                Some(i as i64 + 1),
                "conversation {} has a gap or disorder at position {i}: {m}",
                p.conversation_id
            );
            assert_eq!(m["conversation_id"], p.conversation_id.as_str());
            if let Some(cmid) = m["client_msg_id"].as_str() {
                assert!(
                    cmids.insert(cmid.to_string()),
                    "client_msg_id {cmid} stored twice in {}",
                    p.conversation_id
                );
                if m["sender"]["kind"] == "citizen" {
                    assert_eq!(m["sender"]["id"], p.citizen_id.as_str(), "{m}");
                    stored.insert(cmid.to_string(), m.clone());
                }
            }
        }
        let r = http
            .get(format!(
                "{}/v1/conversations/{}",
                server.base, p.conversation_id
            ))
            .bearer_auth(&p.token)
            .send()
            .await
            .unwrap();
        let (s, conv) = into_pair(r).await;
        assert_eq!(s, 200, "{conv}");
        assert_eq!(
            conv["last_seq"].as_i64(),
            Some(n),
            "last_seq of {} disagrees with its {n} messages",
            p.conversation_id
        );
    }
    for a in &acks {
        let m = stored.get(&a.client_msg_id).unwrap_or_else(|| {
            panic!(
                "acknowledged message lost after SIGKILL: {a:?} ({} acks, {} stored)",
                acks.len(),
                stored_total
            )
        });
        assert_eq!(m["seq"].as_i64(), Some(a.seq), "ack {a:?} vs stored {m}");
        assert_eq!(m["id"], a.message_id.as_str(), "ack {a:?} vs stored {m}");
        assert_eq!(
            m["conversation_id"],
            a.conversation_id.as_str(),
            "ack {a:?} vs stored {m}"
        );
    }

    // Resending acknowledged messages returns the original ack and stores nothing new.
    let before: usize = stored_total;
    let mut resent = 0;
    for via in ["http", "ws"] {
        for a in acks.iter().filter(|a| a.via == via).take(3) {
            let p = by_conv[a.conversation_id.as_str()];
            let again = if via == "http" {
                let r = http
                    .post(format!(
                        "{}/v1/conversations/{}/messages",
                        server.base, a.conversation_id
                    ))
                    .bearer_auth(&p.token)
                    .json(&json!({"client_msg_id": a.client_msg_id, "body": "resent after crash"}))
                    .send()
                    .await
                    .unwrap();
                let (s, v) = into_pair(r).await;
                assert!(s == 200 || s == 201, "resend: {s} {v}");
                v
            } else {
                let mut ws =
                    Ws::connect(&format!("ws://{}/v1/ws", server.addr), &p.token, json!({})).await;
                ws.send_message(
                    Some(&a.conversation_id),
                    &a.client_msg_id,
                    "resent after crash",
                )
                .await
            };
            assert_eq!(again["client_msg_id"], a.client_msg_id.as_str(), "{again}");
            assert_eq!(again["message_id"], a.message_id.as_str(), "{again}");
            assert_eq!(again["seq"].as_i64(), Some(a.seq), "{again}");
            assert_eq!(again["conversation_id"], a.conversation_id.as_str());
            resent += 1;
        }
    }
    let mut after = 0;
    for p in &people {
        let msgs = all_messages(&http, &server.base, &p.token, &p.conversation_id).await;
        assert!(
            msgs.iter().all(|m| m["body"] != "resent after crash"),
            "a resend stored a second copy"
        );
        after += msgs.len();
    }
    assert_eq!(after, before, "resends changed the stored messages");

    let ws_acks = acks.iter().filter(|a| a.via == "ws").count();
    println!(
        "crash test: {} acks checked ({} ws, {} http, {} refused) across {} conversations; \
         {} messages stored; {} resends answered with the original ack",
        acks.len(),
        ws_acks,
        acks.len() - ws_acks,
        refused,
        people.len(),
        stored_total,
        resent
    );
    let mut server = server;
    let _ = server.child.kill().await;
}
