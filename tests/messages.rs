//! Sending, idempotency, gapless seq, history paging, notes, reopening.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn resending_the_same_client_msg_id_returns_the_original_ack() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("ET")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    let cmid = uuid();
    let (s1, a1) = app
        .send_http(&c.token, id, &cmid, "在亚的斯亚贝巴丢了护照")
        .await;
    assert_eq!(s1, 201, "{a1}");
    let (s2, a2) = app
        .send_http(&c.token, id, &cmid, "在亚的斯亚贝巴丢了护照")
        .await;
    assert_eq!(s2, 200, "{a2}");
    for k in [
        "message_id",
        "seq",
        "conversation_id",
        "created_at",
        "client_msg_id",
    ] {
        assert_eq!(a1[k], a2[k], "{k}");
    }
    // The same id over the socket, even with another body, is still the original.
    let mut ws = app.ws(&c.token).await;
    let a3 = ws.send_message(Some(id), &cmid, "different").await;
    assert_eq!(a3["message_id"], a1["message_id"]);
    assert_eq!(a3["seq"], 1);
    let msgs = app.messages(&c.token, id, "").await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["body"], "在亚的斯亚贝巴丢了护照");
    // Another sender may use the same client_msg_id: it is unique per sender.
    let agent = app.staff("et@test.example", "et", "agent").await;
    let (s, a) = app
        .send_http(&agent.token, id, &cmid, "We are here to help.")
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["seq"], 2);
}

#[tokio::test]
async fn concurrent_resends_of_one_client_msg_id_store_one_message() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let id = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cmid = uuid();
    let mut tasks = vec![];
    for _ in 0..20 {
        let http = app.http.clone();
        let url = app.url(&format!("/v1/conversations/{id}/messages"));
        let token = c.token.clone();
        let cmid = cmid.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"client_msg_id": cmid, "body": "once"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    let mut ids = vec![];
    for t in tasks {
        let (status, ack) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status} {ack}");
        if status == 201 {
            created += 1;
        }
        ids.push(ack["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1);
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.messages(&c.token, &id, "").await.len(), 1);
}

#[tokio::test]
async fn resends_from_many_senders_at_once_each_find_their_own_message() {
    // Many senders' sends and resends land in the same commit batches: each resend
    // must find its own sender's message, and a client_msg_id another sender used is
    // a new message for this one.
    let app = TestApp::spawn().await;
    let mut people = vec![];
    for i in 0..24 {
        let c = app.citizen(&format!("Citizen {i}"), Some("BE")).await;
        let conv = app.conversation_id(&c).await;
        people.push((c, conv));
    }
    let shared = uuid();
    let keys: Vec<Vec<String>> = (0..people.len())
        .map(|_| vec![shared.clone(), uuid(), uuid()])
        .collect();
    let jobs: Vec<(&str, &str, &str, usize)> = people
        .iter()
        .zip(&keys)
        .flat_map(|((c, conv), ks)| {
            ks.iter()
                .enumerate()
                .map(move |(k, cmid)| (c.token.as_str(), conv.as_str(), cmid.as_str(), k))
        })
        .collect();
    let app = &app;
    let sends = || {
        futures_util::future::join_all(jobs.iter().map(|&(token, conv, cmid, k)| async move {
            let (s, a) = app
                .send_http(token, conv, cmid, &format!("message {k}"))
                .await;
            (
                s,
                a["message_id"].as_str().unwrap_or_default().to_string(),
                a,
            )
        }))
    };
    let first = sends().await;
    for (s, _, a) in &first {
        assert_eq!(*s, 201, "{a}");
    }
    let again = sends().await;
    for ((s, id, a), (_, original, _)) in again.iter().zip(&first) {
        assert_eq!(*s, 200, "{a}");
        assert_eq!(id, original, "a resend answered with another message");
    }
    for (c, conv) in &people {
        let msgs = app.messages(&c.token, conv, "").await;
        assert_eq!(msgs.len(), 3, "{msgs:?}");
    }
}

#[tokio::test]
async fn concurrent_senders_get_gapless_sequence_numbers() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap().to_string();
    let mut tasks = vec![];
    for i in 0..40 {
        let token = if i % 2 == 0 {
            c.token.clone()
        } else {
            agent.token.clone()
        };
        let http = app.http.clone();
        let url = app.url(&format!("/v1/conversations/{id}/messages"));
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"client_msg_id": uuid(), "body": format!("message {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()["seq"]
                .as_i64()
                .unwrap()
        }));
    }
    let mut seqs = vec![];
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=40).collect::<Vec<i64>>());
    let stored: Vec<i64> = app
        .messages(&agent.token, &id, "limit=200")
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, (1..=40).collect::<Vec<i64>>());
    let (_, conv) = app
        .get(&format!("/v1/conversations/{id}"), Some(&c.token))
        .await;
    assert_eq!(conv["last_seq"], 40);
}

#[tokio::test]
async fn history_pages_by_seq() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("US")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    for i in 1..=12 {
        app.send_http(&c.token, id, &uuid(), &format!("m{i}")).await;
    }
    let seqs = |v: Vec<serde_json::Value>| {
        v.iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(app.messages(&c.token, id, "after_seq=10").await),
        vec![11, 12]
    );
    assert_eq!(
        seqs(app.messages(&c.token, id, "limit=3").await),
        vec![1, 2, 3]
    );
    assert_eq!(
        seqs(app.messages(&c.token, id, "before_seq=5&limit=2").await),
        vec![3, 4]
    );
    assert_eq!(
        seqs(app.messages(&c.token, id, "after_seq=2&before_seq=6").await),
        vec![3, 4, 5]
    );
    for bad in ["limit=0", "limit=201", "after_seq=abc", "before_seq=-1"] {
        let (s, b) = app
            .get(
                &format!("/v1/conversations/{id}/messages?{bad}"),
                Some(&c.token),
            )
            .await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(b["error"]["code"], "invalid_input");
    }
}

#[tokio::test]
async fn notes_never_reach_citizens() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let colleague = app.staff("be2@test.example", "be", "agent").await;
    let mut citizen_ws = app.ws(&c.token).await;
    let ack = citizen_ws.send_message(None, &uuid(), "help please").await;
    let id = ack["conversation_id"].as_str().unwrap().to_string();
    let mut agent_ws = app.ws(&agent.token).await;
    let mut colleague_ws = app.ws(&colleague.token).await;
    agent_ws
        .send(json!({"type": "send", "client_msg_id": uuid(), "conversation_id": id, "kind": "note", "body": "INTERNAL: check passport record"}))
        .await;
    let note_ack = agent_ws.expect("ack").await;
    assert_eq!(note_ack["seq"], 2);
    let seen = colleague_ws.expect("message").await;
    assert_eq!(seen["message"]["kind"], "note");
    let reply = agent_ws
        .send_message(Some(&id), &uuid(), "Please come to the embassy.")
        .await;
    assert_eq!(reply["seq"], 3);
    // Live: the citizen sees the reply, never the note.
    let frames = citizen_ws.collect(Duration::from_millis(500)).await;
    let bodies: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["message"]["body"].as_str())
        .collect();
    assert!(
        bodies.contains(&"Please come to the embassy."),
        "{frames:?}"
    );
    assert!(
        frames.iter().all(|f| !f.to_string().contains("INTERNAL")),
        "{frames:?}"
    );
    // History: seq 2 is skipped for the citizen, present for staff.
    let cs: Vec<i64> = app
        .messages(&c.token, &id, "")
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(cs, vec![1, 3]);
    assert_eq!(app.messages(&agent.token, &id, "").await.len(), 3);
    // Replay on resume skips it too.
    let mut again = Ws::connect(&app.ws_url(), &c.token, json!({ id.clone(): 0 })).await;
    let replay = again.collect(Duration::from_millis(400)).await;
    let rs: Vec<i64> = replay
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["message"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(rs, vec![1, 3]);
    // Citizens cannot write notes.
    let (s, b) = app
        .post_json(
            &format!("/v1/conversations/{id}/messages"),
            Some(&c.token),
            &json!({"client_msg_id": uuid(), "kind": "note", "body": "x"}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
}

#[tokio::test]
async fn invalid_messages_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    let path = format!("/v1/conversations/{id}/messages");
    let long = "字".repeat(4001);
    let ok_long = "字".repeat(4000);
    let cases = [
        json!({"client_msg_id": uuid(), "body": long}),
        json!({"client_msg_id": uuid(), "body": "   "}),
        json!({"client_msg_id": "", "body": "x"}),
        json!({"body": "no id"}),
        json!({"client_msg_id": uuid(), "kind": "system", "body": "x"}),
        json!({"client_msg_id": uuid(), "body": 5}),
    ];
    for body in cases {
        let (s, b) = app.post_json(&path, Some(&c.token), &body).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(b["error"]["code"], "invalid_input");
        assert!(b["error"]["message"].as_str().unwrap().len() > 3);
    }
    // Malformed JSON gets the same shape.
    let r = app
        .http
        .post(app.url(&path))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body("{\"client_msg_id\": ")
        .send()
        .await
        .unwrap();
    let (s, b) = into_pair(r).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    assert!(app.messages(&c.token, id, "").await.is_empty());
    let (s, a) = app.send_http(&c.token, id, &uuid(), &ok_long).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["seq"], 1);
}

#[tokio::test]
async fn a_citizen_writing_into_a_resolved_conversation_reopens_it() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let agent = app.staff("be@test.example", "be", "agent").await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    app.send_http(&c.token, id, &uuid(), "hello").await;
    let (s, a) = app
        .post(
            &format!("/v1/conversations/{id}/assign"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "assigned");
    assert_eq!(a["assignee_id"], agent.id.as_str());
    let mut agent_ws = app.ws(&agent.token).await;
    let (s, r) = app
        .post(
            &format!("/v1/conversations/{id}/resolve"),
            Some(&agent.token),
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("resolved")));
    assert_eq!(agent_ws.expect("conversation").await["event"], "resolved");
    // Citizens cannot resolve.
    assert_eq!(
        app.post(&format!("/v1/conversations/{id}/resolve"), Some(&c.token))
            .await
            .0,
        403
    );
    let (s, _) = app
        .send_http(&c.token, id, &uuid(), "it happened again")
        .await;
    assert_eq!(s, 201);
    let ev = agent_ws.expect("conversation").await;
    assert_eq!(ev["event"], "reopened");
    assert_eq!(ev["conversation"]["status"], "open");
    // Back in the queue, it goes to the online agent again.
    let ev = agent_ws.expect("conversation").await;
    assert_eq!(ev["event"], "assigned");
    assert_eq!(ev["conversation"]["assignee_id"], agent.id.as_str());
    let (_, now) = app
        .get(&format!("/v1/conversations/{id}"), Some(&c.token))
        .await;
    assert_eq!(now["status"], "assigned");
    assert_eq!(now["last_seq"], 2);
    // Filters.
    let (_, l) = app
        .get(
            "/v1/conversations?status=assigned&mine=true",
            Some(&agent.token),
        )
        .await;
    assert_eq!(l["conversations"].as_array().unwrap().len(), 1);
    let (_, l) = app
        .get("/v1/conversations?status=resolved", Some(&agent.token))
        .await;
    assert!(l["conversations"].as_array().unwrap().is_empty());
    let (s, _) = app
        .get("/v1/conversations?status=bogus", Some(&agent.token))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn conversation_lists_page_with_a_cursor() {
    let app = TestApp::spawn().await;
    let agent = app.staff("mfa@test.example", "mfa", "agent").await;
    let mut ids = vec![];
    for i in 0..5 {
        let c = app.citizen(&format!("c{i}"), Some("FR")).await;
        ids.push(
            app.conversation(&c).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    ids.reverse(); // newest first
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/conversations?limit=2&cursor={c}"),
            None => "/v1/conversations?limit=2".to_string(),
        };
        let (s, page) = app.get(&q, Some(&agent.token)).await;
        assert_eq!(s, 200);
        for c in page["conversations"].as_array().unwrap() {
            seen.push(c["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn transfer_moves_visibility_to_the_other_mission() {
    let app = TestApp::spawn().await;
    let be = app.staff("be@test.example", "be", "agent").await;
    let et = app.staff("et@test.example", "et", "agent").await;
    let c = app.citizen("Li", Some("BE")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    app.send_http(&c.token, id, &uuid(), "I am travelling to Addis Ababa")
        .await;
    let mut et_ws = app.ws(&et.token).await;
    let mut c_ws = app.ws(&c.token).await;
    let (s, t) = app
        .post_json(
            &format!("/v1/conversations/{id}/transfer"),
            Some(&be.token),
            &json!({"mission_id": "et"}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["mission_id"], "et");
    assert_eq!(et_ws.expect("conversation").await["event"], "transferred");
    let sys = c_ws.expect("message").await;
    assert_eq!(sys["message"]["kind"], "system");
    assert!(sys["message"]["body"]
        .as_str()
        .unwrap()
        .contains("Embassy in Ethiopia"));
    assert_eq!(
        app.get(&format!("/v1/conversations/{id}"), Some(&et.token))
            .await
            .0,
        200
    );
    assert_eq!(
        app.get(&format!("/v1/conversations/{id}"), Some(&be.token))
            .await
            .0,
        403
    );
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{id}/transfer"),
            Some(&et.token),
            &json!({"mission_id": "nowhere"}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn the_write_ahead_log_is_folded_into_the_database_while_the_server_runs() {
    // SQLite only: the server checkpoints its write-ahead log in the background (the
    // commit path never does), so the database file itself takes in what was sent.
    if common::services::postgres_backend() {
        return;
    }
    let app = TestApp::spawn_with(|c| c.limits.frames_per_second = 1000).await;
    let db = app.config.data_dir.join("lingshi.db");
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let c = app.citizen("Li", Some("BE")).await;
    let conv = app.conversation_id(&c).await;
    // Let the checkpointer fold the setup in, then measure from there.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let start = size();
    let body = "护照丢失，需要补办旅行证。".repeat(40);
    let mut ws = app.ws(&c.token).await;
    for _ in 0..200 {
        ws.send_message(Some(&conv), &uuid(), &body).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() < start + 200 * 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (from {start}) after 200 messages of {} bytes: the log was not checkpointed",
            size(),
            body.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.messages(&c.token, &conv, "limit=200").await.len(), 200);
}
