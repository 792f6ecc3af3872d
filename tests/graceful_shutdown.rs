//! Graceful shutdown: sockets are told 1001, everything acknowledged before is stored,
//! the listener is gone afterwards; SIGTERM does the same for the real binary and the
//! process exits 0.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use lingshi::server::Server;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
struct Acked {
    client_msg_id: String,
    conversation_id: String,
    message_id: String,
    seq: i64,
}

fn ack_of(v: &Value) -> Acked {
    Acked {
        client_msg_id: v["client_msg_id"].as_str().unwrap().to_string(),
        conversation_id: v["conversation_id"].as_str().unwrap().to_string(),
        message_id: v["message_id"].as_str().unwrap().to_string(),
        seq: v["seq"].as_i64().unwrap(),
    }
}

enum Event {
    Ack(Value),
    Refused(Value),
    Closed(Option<u16>),
}

/// Send over a socket, one message in flight, until the server closes it. A separate
/// reader keeps reading after a write fails, so the close frame is always seen.
/// Returns the acks received and the close code.
async fn ws_sender(
    ws: Ws,
    conversation_id: String,
    progress: Arc<AtomicUsize>,
) -> (Vec<Acked>, Option<u16>) {
    let (mut sink, mut stream) = ws.stream.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let ev = match stream.next().await {
                None | Some(Err(_)) => Event::Closed(None),
                Some(Ok(Message::Close(c))) => Event::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                    match v["type"].as_str() {
                        Some("ack") => Event::Ack(v),
                        Some("error") => Event::Refused(v),
                        _ => continue,
                    }
                }
                Some(Ok(_)) => continue,
            };
            let closed = matches!(ev, Event::Closed(_));
            if tx.send(ev).is_err() || closed {
                return;
            }
        }
    });
    let mut acks = vec![];
    let mut n = 0;
    let code = 'outer: loop {
        n += 1;
        let cmid = uuid();
        let frame = json!({"type": "send", "client_msg_id": cmid, "conversation_id": conversation_id,
            "kind": "text", "body": format!("message {n} before shutdown")});
        if sink.send(Message::text(frame.to_string())).await.is_err() {
            // The reader will still report the close.
            loop {
                match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                    Ok(Some(Event::Closed(c))) => break 'outer c,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break 'outer None,
                }
            }
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(Event::Ack(v))) if v["client_msg_id"] == cmid.as_str() => {
                    acks.push(ack_of(&v));
                    progress.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Some(Event::Refused(v))) if v["client_msg_id"] == cmid.as_str() => break,
                Ok(Some(Event::Closed(c))) => break 'outer c,
                Ok(Some(_)) => continue,
                Ok(None) => break 'outer None,
                Err(_) => panic!("no ack and no close within 30 s"),
            }
        }
    };
    reader.abort();
    (acks, code)
}

async fn http_sender(
    base: String,
    token: String,
    conversation_id: String,
    stop: Arc<AtomicBool>,
) -> Vec<Acked> {
    let http = reqwest::Client::new();
    let mut acks = vec![];
    while !stop.load(Ordering::Relaxed) {
        let cmid = uuid();
        let r = http
            .post(format!(
                "{base}/v1/conversations/{conversation_id}/messages"
            ))
            .bearer_auth(&token)
            .json(&json!({"client_msg_id": cmid, "body": "over http before shutdown"}))
            .send()
            .await;
        let Ok(r) = r else { break };
        let status = r.status().as_u16();
        let Ok(text) = r.text().await else { break };
        if status == 201 {
            acks.push(ack_of(&serde_json::from_str(&text).unwrap()));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_closes_sockets_with_1001_and_keeps_every_ack() {
    let mut app = TestApp::spawn_with(|c| {
        c.limits.frames_per_second = 100_000;
        c.limits.outbound_queue = 1_000_000;
    })
    .await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let alice = app.citizen("Alice", Some("BE")).await;
    let conv = app.conversation(&alice).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let progress = Arc::new(AtomicUsize::new(0));
    let stop_http = Arc::new(AtomicBool::new(false));
    let mut senders = vec![];
    for token in [&alice.token, &alice.token, &agent.token] {
        let ws = app.ws(token).await;
        senders.push(tokio::spawn(ws_sender(ws, conv.clone(), progress.clone())));
    }
    let http_task = tokio::spawn(http_sender(
        app.base.clone(),
        alice.token.clone(),
        conv.clone(),
        stop_http.clone(),
    ));
    // Shut down in the middle of the traffic.
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        progress.load(Ordering::Relaxed) >= 60,
        "senders made no progress"
    );
    tokio::time::timeout(Duration::from_secs(60), app.shutdown())
        .await
        .expect("shutdown finishes");
    stop_http.store(true, Ordering::Relaxed);

    let mut acks = vec![];
    for (i, s) in senders.into_iter().enumerate() {
        let (a, code) = tokio::time::timeout(Duration::from_secs(60), s)
            .await
            .expect("sender ends after shutdown")
            .unwrap();
        assert_eq!(code, Some(1001), "socket {i} not closed with 1001");
        acks.extend(a);
    }
    let http_acks = tokio::time::timeout(Duration::from_secs(60), http_task)
        .await
        .expect("http sender ends")
        .unwrap();
    acks.extend(http_acks);

    // The stopped server no longer answers at all.
    let fresh = reqwest::Client::new();
    let err = fresh
        .get(app.url("/readyz"))
        .send()
        .await
        .expect_err("readyz answered after shutdown");
    assert!(err.is_connect(), "not a refused connection: {err:?}");

    // A new server on the same data dir has every acknowledged message.
    let server = Server::start(app.config.clone()).await.expect("restart");
    let base = format!("http://{}", server.addr());
    let msgs = all_messages(&fresh, &base, &alice.token, &conv).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["seq"].as_i64(), Some(i as i64 + 1), "gap: {m}");
    }
    let r = fresh
        .get(format!("{base}/v1/conversations/{conv}"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_pair(r).await.1["last_seq"].as_i64(),
        Some(msgs.len() as i64)
    );
    for a in &acks {
        let m = msgs
            .iter()
            .find(|m| m["client_msg_id"] == a.client_msg_id.as_str())
            .unwrap_or_else(|| panic!("acknowledged message lost in shutdown: {a:?}"));
        assert_eq!(m["seq"].as_i64(), Some(a.seq), "{a:?} vs {m}");
        assert_eq!(m["id"], a.message_id.as_str());
        assert_eq!(a.conversation_id, conv);
    }
    println!(
        "graceful shutdown: {} acks checked, {} messages stored",
        acks.len(),
        msgs.len()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("data"));
    let config_file = write_config_file(dir.path(), &config);
    let ServerProc {
        mut child,
        addr,
        log,
        ..
    } = start_server(&config_file, dir.path(), "first").await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{addr}/v1/citizen/sessions"))
        .json(&json!({"display_name": "Bob", "country": "ET"}))
        .send()
        .await
        .unwrap();
    let (s, body) = into_pair(r).await;
    assert_eq!(s, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let mut ws = Ws::connect(&format!("ws://{addr}/v1/ws"), &token, json!({})).await;
    let cmid = uuid();
    let ack = ws.send_message(None, &cmid, "before SIGTERM").await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();

    let pid = child.id().expect("child running") as libc::pid_t;
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(
        ws.closed(Duration::from_secs(15)).await,
        Some(1001),
        "socket not closed with 1001 on SIGTERM:\n{}",
        tail(&log)
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 20 s of SIGTERM:\n{}", tail(&log)))
        .unwrap();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        tail(&log)
    );

    // The acknowledged message is there after a restart.
    let ServerProc {
        mut child, base, ..
    } = start_server(&config_file, dir.path(), "second").await;
    let msgs = all_messages(&http, &base, &token, &conv).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["client_msg_id"], cmid.as_str());
    let _ = child.kill().await;
}
