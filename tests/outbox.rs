//! The transactional outbox: a webhook row is written in the same transaction as the
//! change it announces and delivered afterwards, at least once, signed with Standard
//! Webhooks headers under an id that never changes, with retries, across a `kill -9`
//! of the server in the middle of a delivery.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use common::hooks::{Receiver, DOWN, KEY, SLOW, UP};
use common::*;
use serde_json::{json, Value};

async fn start_receiver(r: Receiver) -> SocketAddr {
    r.start().await
}

fn config_with_webhook(dir: &std::path::Path, receiver: SocketAddr) -> std::path::PathBuf {
    let mut config = test_config(&dir.join("data"));
    config.limits.frames_per_second = 10_000;
    let file = write_config_file(dir, &config);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&format!(
        "[[webhooks]]\nname = \"case-system\"\nurl = \"http://{receiver}/hook\"\nsecret = \"whsec_{}\"\nevents = [\"message.created\", \"conversation.created\"]\n",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    ));
    std::fs::write(&file, text).unwrap();
    file
}

/// Message ids the receiver got, and each webhook id's bodies.
fn delivered(r: &Receiver) -> (HashSet<String>, HashMap<String, Vec<Value>>) {
    let mut messages = HashSet::new();
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for (id, body) in r.requests.lock().unwrap().iter() {
        if body["type"] == "message.created" {
            messages.insert(body["data"]["message"]["id"].as_str().unwrap().to_string());
        }
        by_id.entry(id.clone()).or_default().push(body.clone());
    }
    (messages, by_id)
}

async fn send(http: &reqwest::Client, base: &str, token: &str, conv: &str, n: usize) -> String {
    let (s, ack) = into_pair(
        http.post(format!("{base}/v1/conversations/{conv}/messages"))
            .bearer_auth(token)
            .json(&json!({"client_msg_id": uuid(), "body": format!("message {n}")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{ack}");
    ack["message_id"].as_str().unwrap().to_string()
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

#[tokio::test]
async fn every_row_is_delivered_after_a_kill_in_the_middle_of_a_delivery() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::default();
    receiver.mode.store(SLOW, Ordering::SeqCst);
    let addr = start_receiver(receiver.clone()).await;
    let file = config_with_webhook(dir.path(), addr);
    let http = reqwest::Client::new();

    let mut server = start_server(&file, dir.path(), "first").await;
    let (token, conv) = citizen_with_conversation(&http, &server.base, "Alice").await;
    let mut acked = Vec::new();
    for n in 0..30 {
        acked.push(send(&http, &server.base, &token, &conv, n).await);
    }
    // Wait until deliveries are in flight (the receiver holds them), then kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let before_restart = receiver.requests.lock().unwrap().len();
    assert!(
        before_restart < 31,
        "everything was delivered before the kill; the test proves nothing"
    );

    receiver.mode.store(UP, Ordering::SeqCst);
    let server = start_server(&file, dir.path(), "second").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (messages, _) = delivered(&receiver);
        if acked.iter().all(|m| messages.contains(m)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} messages delivered after restart:\n{}",
            acked.iter().filter(|m| messages.contains(*m)).count(),
            acked.len(),
            tail(&server.log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, by_id) = delivered(&receiver);
    // One id per event: a retry repeats the same id with the same body.
    for (id, bodies) in &by_id {
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "id {id} delivered with different bodies: {bodies:?}"
        );
    }
    let created: Vec<_> = by_id
        .values()
        .filter(|b| b[0]["type"] == "conversation.created")
        .collect();
    assert_eq!(created.len(), 1, "one conversation.created event");
    assert_eq!(
        by_id.len(),
        31,
        "30 messages and the conversation, each under one id"
    );
    assert!(receiver.bad.lock().unwrap().is_empty(), "bad signatures");
    // Nothing left in the outbox.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, &server.base, "lingshi_outbox_pending").await > 0.0 {
        assert!(Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_everything_once_it_is_up_again() {
    init_logs();
    let receiver = Receiver::default();
    receiver.mode.store(DOWN, Ordering::SeqCst);
    let addr = start_receiver(receiver.clone()).await;
    let app = TestApp::spawn_with(|c| {
        c.webhooks.push(lingshi::config::Webhook {
            name: "case-system".into(),
            url: format!("http://{addr}/hook"),
            secret: lingshi::config::Secret::new(format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(KEY)
            )),
            events: vec!["*".into()],
        })
    })
    .await;
    let c = app.citizen("Bob", Some("ET")).await;
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut acked = Vec::new();
    for n in 0..5 {
        acked.push(send(&app.http, &app.base, &c.token, &conv, n).await);
    }
    // Refused attempts are counted and retried (Retry-After: 1 is honoured).
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&app.http, &app.base, "lingshi_outbox_failures_total").await < 6.0 {
        assert!(Instant::now() < deadline, "no failed attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&app.http, &app.base, "lingshi_outbox_pending").await >= 6.0);
    assert!(delivered(&receiver).1.is_empty());
    receiver.mode.store(UP, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (messages, _) = delivered(&receiver);
        if acked.iter().all(|m| messages.contains(m)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the receiver came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, by_id) = delivered(&receiver);
    assert!(by_id.values().all(|b| b.len() == 1), "each event once");
    assert!(receiver.bad.lock().unwrap().is_empty(), "bad signatures");
}
