//! Conversations reach the mission covering the citizen's country; nobody else sees them.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn conversations_route_by_country_and_fall_back_to_default() {
    let app = TestApp::spawn().await;
    let be = app.citizen("Li Wei", Some("BE")).await;
    let lu = app.citizen("Wang Fang", Some("lu")).await;
    let fr = app.citizen("Zhang San", Some("FR")).await;
    let none = app.citizen("Guest", None).await;
    assert_eq!(app.conversation(&be).await["mission_id"], "be");
    assert_eq!(app.conversation(&lu).await["mission_id"], "be");
    assert_eq!(app.conversation(&fr).await["mission_id"], "mfa");
    let c = app.conversation(&none).await;
    assert_eq!(c["mission_id"], "mfa");
    assert_eq!(c["status"], "open");
    assert_eq!(c["priority"], "normal");
    assert_eq!(c["channel"], "app");
    assert_eq!(c["last_seq"], 0);
    assert_eq!(c["citizen"]["id"], none.id.as_str());
    // Starting again returns the same open conversation.
    assert_eq!(app.conversation(&none).await["id"], c["id"]);
}

#[tokio::test]
async fn other_missions_and_other_citizens_are_refused_over_http() {
    let app = TestApp::spawn().await;
    let be_agent = app.staff("be@test.example", "be", "agent").await;
    let et_agent = app.staff("et@test.example", "et", "agent").await;
    let editor = app.staff("ed@test.example", "be", "editor").await;
    let admin = app.staff("admin@test.example", "mfa", "admin").await;
    let alice = app.citizen("Alice", Some("BE")).await;
    let bob = app.citizen("Bob", Some("BE")).await;
    let conv = app.conversation(&alice).await;
    let id = conv["id"].as_str().unwrap();
    let (s, _) = app
        .send_http(&alice.token, id, &uuid(), "我的护照丢了")
        .await;
    assert_eq!(s, 201);

    for token in [&alice.token, &be_agent.token, &admin.token] {
        assert_eq!(
            app.get(&format!("/v1/conversations/{id}"), Some(token))
                .await
                .0,
            200
        );
        assert_eq!(app.messages(token, id, "").await.len(), 1);
    }
    for token in [&bob.token, &et_agent.token, &editor.token] {
        let (s, body) = app
            .get(&format!("/v1/conversations/{id}"), Some(token))
            .await;
        assert_eq!(s, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (s, _) = app
            .get(&format!("/v1/conversations/{id}/messages"), Some(token))
            .await;
        assert_eq!(s, 403);
        let (s, body) = app.send_http(token, id, &uuid(), "intrusion").await;
        assert_eq!(s, 403, "{body}");
    }
    // Listing shows each caller only their own.
    let list = |token: String| {
        let app = &app;
        async move {
            let (s, b) = app.get("/v1/conversations", Some(&token)).await;
            assert_eq!(s, 200, "{b}");
            b["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(be_agent.token.clone()).await, vec![id.to_string()]);
    assert!(list(et_agent.token.clone()).await.is_empty());
    assert!(list(bob.token.clone()).await.is_empty());
    assert_eq!(list(admin.token.clone()).await, vec![id.to_string()]);
    // Nothing was changed by the refused attempts.
    assert_eq!(app.messages(&alice.token, id, "").await.len(), 1);
    // Unknown and malformed ids are 404 in the contract's shape.
    let (s, b) = app
        .get(&format!("/v1/conversations/{}", uuid()), Some(&alice.token))
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = app
        .get("/v1/conversations/not-a-uuid", Some(&alice.token))
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    // No token, forged token.
    let (s, b) = app.get("/v1/conversations", None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = app.get("/v1/conversations", Some("ls_forged")).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn only_the_right_missions_agents_receive_live_messages() {
    let app = TestApp::spawn().await;
    let be_agent = app.staff("be@test.example", "be", "agent").await;
    let et_agent = app.staff("et@test.example", "et", "agent").await;
    let alice = app.citizen("Alice", Some("BE")).await;
    let bob = app.citizen("Bob", Some("BE")).await;
    let mut be_ws = app.ws(&be_agent.token).await;
    let mut et_ws = app.ws(&et_agent.token).await;
    let mut bob_ws = app.ws(&bob.token).await;
    let mut alice_ws = app.ws(&alice.token).await;

    let ack = alice_ws
        .send_message(None, &uuid(), "I lost my passport in Brussels")
        .await;
    let conv_id = ack["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(ack["seq"], 1);
    let created = be_ws.expect("conversation").await;
    assert_eq!(created["event"], "created");
    assert_eq!(created["conversation"]["id"], conv_id.as_str());
    let m = be_ws.expect("message").await;
    assert_eq!(m["message"]["body"], "I lost my passport in Brussels");
    assert_eq!(m["message"]["sender"]["kind"], "citizen");
    // Presence of colleagues is all the other mission's agent hears.
    let et_frames = et_ws.collect(Duration::from_millis(300)).await;
    assert!(
        et_frames.iter().all(|f| f["type"] == "presence"),
        "{et_frames:?}"
    );
    assert!(bob_ws.collect(Duration::from_millis(100)).await.is_empty());

    // Over the socket, someone else's conversation is refused and the socket stays up.
    bob_ws
        .send(json!({"type": "send", "client_msg_id": uuid(), "conversation_id": conv_id, "body": "hi"}))
        .await;
    let e = bob_ws.expect("error").await;
    assert_eq!(e["code"], "forbidden");
    et_ws
        .send(json!({"type": "typing", "conversation_id": conv_id, "active": true}))
        .await;
    assert_eq!(et_ws.expect("error").await["code"], "forbidden");
    bob_ws.send(json!({"type": "ping"})).await;
    bob_ws.expect("pong").await;
    // A resume naming someone else's conversation replays nothing of it.
    let mut nosy = Ws::connect(&app.ws_url(), &bob.token, json!({ conv_id.clone(): 0 })).await;
    let frames = nosy.collect(Duration::from_millis(300)).await;
    assert!(frames.iter().all(|f| f["type"] != "message"), "{frames:?}");
    assert_eq!(app.messages(&alice.token, &conv_id, "").await.len(), 1);
}
