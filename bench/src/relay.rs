//! The baseline: a minimal relay with the same frames and no database, no auth.
//! `hello` → `welcome`; `send` → `ack` to the sender and a `message` frame to every
//! connected "agent" (a socket whose hello token starts with `agent`). Each agent has a
//! bounded outbound queue like the real hub; a full queue closes it (4008).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Agents = Arc<Mutex<HashMap<u64, mpsc::Sender<Utf8Bytes>>>>;

pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    let agents: Agents = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    loop {
        let (stream, _) = listener.accept().await?;
        let agents = agents.clone();
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = conn(stream, id, agents).await;
        });
    }
}

fn now_rfc3339ish() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

async fn conn(stream: TcpStream, id: u64, agents: Agents) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let cfg = WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(0);
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(cfg)).await?;
    let (mut tx, mut rx) = ws.split();
    // hello first
    let token = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "hello" {
                    break v["token"].as_str().unwrap_or("").to_string();
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
            Some(Ok(_)) => {}
        }
    };
    let is_agent = token.starts_with("agent");
    let kind = if is_agent { "agent" } else { "citizen" };
    tx.send(Message::text(
        json!({"type": "welcome", "user": {"id": id.to_string(), "kind": kind},
               "conversations": []})
        .to_string(),
    ))
    .await?;
    let mut queue = None;
    if is_agent {
        let (qtx, qrx) = mpsc::channel::<Utf8Bytes>(256);
        agents.lock().expect("agents lock").insert(id, qtx);
        queue = Some(qrx);
    }
    let mut seq: u64 = 0;
    let result = loop {
        let frame = match &mut queue {
            Some(q) => tokio::select! {
                m = rx.next() => Incoming::Client(m),
                out = q.recv() => Incoming::Out(out),
            },
            None => Incoming::Client(rx.next().await),
        };
        match frame {
            Incoming::Out(Some(text)) => tx.send(Message::Text(text)).await?,
            Incoming::Out(None) => {
                let _ = tx
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::from(4008),
                        reason: "too slow".into(),
                    })))
                    .await;
                break Ok(());
            }
            Incoming::Client(Some(Ok(Message::Text(t)))) => {
                let v: Value = match serde_json::from_str(t.as_str()) {
                    Ok(v) => v,
                    Err(_) => {
                        tx.send(Message::text(
                            json!({"type":"error","code":"invalid_input","message":"not JSON"})
                                .to_string(),
                        ))
                        .await?;
                        continue;
                    }
                };
                match v["type"].as_str() {
                    Some("send") => {
                        seq += 1;
                        let mid = uuid::Uuid::now_v7().to_string();
                        let created = now_rfc3339ish();
                        let conv = v["conversation_id"].clone();
                        let cmid = v["client_msg_id"].clone();
                        let msg = json!({"type": "message", "message": {
                            "id": mid, "conversation_id": conv, "seq": seq, "client_msg_id": cmid,
                            "sender": {"kind": "citizen", "id": id.to_string(), "display_name": "citizen"},
                            "kind": "text", "body": v["body"], "attachments": [], "created_at": created}});
                        let text = Utf8Bytes::from(msg.to_string());
                        let targets: Vec<(u64, mpsc::Sender<Utf8Bytes>)> = agents
                            .lock()
                            .expect("agents lock")
                            .iter()
                            .map(|(k, s)| (*k, s.clone()))
                            .collect();
                        for (k, s) in targets {
                            if s.try_send(text.clone()).is_err() {
                                // too slow or gone: drop its queue so its task closes it
                                agents.lock().expect("agents lock").remove(&k);
                            }
                        }
                        tx.send(Message::text(
                            json!({"type": "ack", "client_msg_id": cmid, "message_id": mid,
                                   "conversation_id": conv, "seq": seq, "created_at": created})
                            .to_string(),
                        ))
                        .await?;
                    }
                    Some("ping") => tx.send(Message::text(r#"{"type":"pong"}"#)).await?,
                    _ => {}
                }
            }
            Incoming::Client(Some(Ok(Message::Close(_)))) | Incoming::Client(None) => break Ok(()),
            Incoming::Client(Some(Err(e))) => break Err(e.into()),
            Incoming::Client(Some(Ok(_))) => {}
        }
    };
    if is_agent {
        agents.lock().expect("agents lock").remove(&id);
    }
    result
}

enum Incoming {
    Client(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Out(Option<Utf8Bytes>),
}
