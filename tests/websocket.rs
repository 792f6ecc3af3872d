//! The WebSocket protocol: hello, bad frames, limits, resume, typing/read, slow clients.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_bad_token_or_a_missing_hello_closes_with_4401() {
    let app = TestApp::spawn().await;
    for first in [
        json!({"type": "hello", "token": "ls_forged"}).to_string(),
        json!({"type": "hello"}).to_string(),
        json!({"type": "ping"}).to_string(),
        "not json".to_string(),
    ] {
        let mut s = Ws::raw(&app.ws_url()).await;
        futures_util::SinkExt::send(&mut s, Message::text(first.clone()))
            .await
            .unwrap();
        match next_frame(&mut s, Duration::from_secs(5)).await {
            Next::Closed(Some(c)) => assert_eq!(u16::from(c.code), 4401, "{first}"),
            Next::Closed(None) => panic!("closed without a code for {first}"),
            Next::Frame(f) => panic!("got {f} for {first}"),
            Next::Timeout => panic!("not closed for {first}"),
        }
    }
    // Silence: closed after the hello timeout (2 s in tests).
    let mut s = Ws::raw(&app.ws_url()).await;
    match next_frame(&mut s, Duration::from_secs(6)).await {
        Next::Closed(Some(c)) => assert_eq!(u16::from(c.code), 4401),
        _ => panic!("silent socket not closed"),
    }
    // A revoked token no longer opens a socket, and open ones are closed.
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let mut live = app.ws(&agent.token).await;
    let r = app
        .request(
            reqwest::Method::DELETE,
            "/v1/agent/sessions",
            Some(&agent.token),
            None,
        )
        .await;
    assert_eq!(r.0, 204);
    assert_eq!(live.closed(Duration::from_secs(5)).await, Some(4401));
    assert_eq!(
        app.get("/v1/conversations", Some(&agent.token)).await.0,
        401
    );
    let mut s = Ws::raw(&app.ws_url()).await;
    futures_util::SinkExt::send(
        &mut s,
        Message::text(json!({"type":"hello","token": agent.token}).to_string()),
    )
    .await
    .unwrap();
    assert!(
        matches!(next_frame(&mut s, Duration::from_secs(5)).await, Next::Closed(Some(c)) if u16::from(c.code) == 4401)
    );
    // The citizen's token is unaffected.
    app.ws(&c.token).await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_open() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let mut ws = app.ws(&c.token).await;
    let ack = ws.send_message(None, &uuid(), "first").await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();

    ws.send_text("{not json".into()).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    ws.send(json!({"type": "launch_rockets"})).await;
    let e = ws.expect("error").await;
    assert_eq!(e["code"], "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("launch_rockets"));
    ws.send(json!({"no_type": 1})).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    let cmid = uuid();
    ws.send(json!({"type": "send", "client_msg_id": cmid, "conversation_id": conv, "body": "字".repeat(4001)}))
        .await;
    let e = ws.expect("error").await;
    assert_eq!(e["code"], "invalid_input");
    assert_eq!(e["client_msg_id"], cmid.as_str());
    // A frame over 64 KiB is refused without closing the socket.
    ws.send_text(
        json!({"type": "send", "client_msg_id": uuid(), "body": "x".repeat(70_000)}).to_string(),
    )
    .await;
    assert_eq!(ws.expect("error").await["code"], "too_large");
    futures_util::SinkExt::send(&mut ws.stream, Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    ws.send(json!({"type": "hello", "token": c.token})).await;
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    ws.send(json!({"type": "read", "conversation_id": conv, "seq": 999}))
        .await;
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    // Still alive and nothing was stored by the bad frames.
    let ack = ws.send_message(Some(&conv), &uuid(), "second").await;
    assert_eq!(ack["seq"], 2);
    assert_eq!(app.messages(&c.token, &conv, "").await.len(), 2);
    assert_eq!(app.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn too_many_frames_per_second_are_rate_limited() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let mut ws = app.ws(&c.token).await;
    for _ in 0..40 {
        ws.send(json!({"type": "ping"})).await;
    }
    let frames = ws.collect(Duration::from_millis(800)).await;
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    let limited = frames
        .iter()
        .filter(|f| f["type"] == "error" && f["code"] == "rate_limited")
        .count();
    assert!((20..40).contains(&pongs), "pongs {pongs}");
    assert_eq!(pongs + limited, 40);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ws.send(json!({"type": "ping"})).await;
    ws.expect("pong").await;
}

#[tokio::test]
async fn resume_replays_what_was_missed_in_order() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let mut ws = app.ws(&c.token).await;
    let ack = ws.send_message(None, &uuid(), "one").await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();
    ws.send_message(Some(&conv), &uuid(), "two").await;
    drop(ws);
    // While the citizen is away, the agent answers.
    for i in 0..5 {
        let (s, _) = app
            .send_http(&agent.token, &conv, &uuid(), &format!("answer {i}"))
            .await;
        assert_eq!(s, 201);
    }
    let mut back = Ws::connect(&app.ws_url(), &c.token, json!({ conv.clone(): 2 })).await;
    let convs = back.welcome["conversations"].as_array().unwrap();
    assert_eq!(convs[0]["id"], conv.as_str());
    assert_eq!(convs[0]["last_seq"], 7);
    assert_eq!(back.welcome["user"]["id"], c.id.as_str());
    let mut got = vec![];
    for _ in 0..5 {
        let m = back.expect("message").await;
        got.push((
            m["message"]["seq"].as_i64().unwrap(),
            m["message"]["body"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(got[0].1, "answer 0");
    // Live delivery continues after the replay.
    app.send_http(&agent.token, &conv, &uuid(), "live").await;
    let m = back.expect("message").await;
    assert_eq!(m["message"]["seq"], 8);
}

#[tokio::test]
async fn typing_and_read_reach_the_other_side() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let mut cws = app.ws(&c.token).await;
    let ack = cws.send_message(None, &uuid(), "hello").await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();
    let mut aws = app.ws(&agent.token).await;
    aws.send(json!({"type": "typing", "conversation_id": conv, "active": true}))
        .await;
    let t = cws.expect("typing").await;
    assert_eq!(t["conversation_id"], conv.as_str());
    assert_eq!(t["user"]["id"], agent.id.as_str());
    assert_eq!(t["active"], true);
    aws.send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    let r = cws.expect("read").await;
    assert_eq!(r["seq"], 1);
    assert_eq!(r["user"]["id"], agent.id.as_str());
    // The author does not get their own typing frame back.
    assert!(aws
        .collect(Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "typing"));
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_with_4008_and_loses_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.limits.outbound_queue = 4;
        // The flood is the point here, not the sender's rate limit.
        c.limits.frames_per_second = 100_000;
    })
    .await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut slow = app.ws(&agent.token).await; // never reads while the flood runs
    let body = "字".repeat(4000);
    let total = 1200;
    let mut tasks = vec![];
    for chunk in 0..8 {
        let http = app.http.clone();
        let url = app.url(&format!("/v1/conversations/{conv}/messages"));
        let token = c.token.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..total / 8 {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"client_msg_id": uuid(), "body": body}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
            chunk
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Reading now: some frames, then the close with 4008.
    let mut last_seq = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if f["type"] == "message" {
                    last_seq = f["message"]["seq"].as_i64().unwrap();
                }
            }
            Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| u16::from(c.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(4008));
    assert!(last_seq < total as i64);
    // Resuming from the last seq seen delivers the rest, in order.
    let mut back = Ws::connect(
        &app.ws_url(),
        &agent.token,
        json!({ conv.clone(): last_seq }),
    )
    .await;
    let mut expect = last_seq + 1;
    while expect <= total as i64 {
        let m = back.expect("message").await;
        assert_eq!(m["message"]["seq"], expect);
        expect += 1;
    }
}

#[tokio::test]
async fn silent_peers_are_dropped_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.limits.ping_interval_secs = 1;
        c.limits.idle_timeout_secs = 2;
    })
    .await;
    let c = app.citizen("Li", Some("BE")).await;
    // A client that answers pings (tungstenite does while reading) stays connected.
    let mut alive = app.ws(&c.token).await;
    let mut silent = app.ws(&c.token).await;
    assert!(alive.collect(Duration::from_millis(3500)).await.is_empty());
    alive.send(json!({"type": "ping"})).await;
    alive.expect("pong").await;
    // The silent one did not read, so it never answered a ping.
    let mut closed = false;
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_secs(2), silent.stream.next()).await
    {
        if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "silent socket still open");
}
