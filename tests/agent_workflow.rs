//! The agent workflow: auto-assignment, capacity, presence, queue order, labels, canned
//! responses, and the audit log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn conv_of(app: &TestApp, who: &Citizen) -> String {
    app.conversation(who).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get_conv(app: &TestApp, token: &str, id: &str) -> Value {
    let (s, c) = app
        .get(&format!("/v1/conversations/{id}"), Some(token))
        .await;
    assert_eq!(s, 200, "{c}");
    c
}

/// Wait until `f` holds (auto-assignment after a socket connects runs in the background).
async fn eventually<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test]
async fn auto_assignment_respects_capacity_and_online_state() {
    let app = TestApp::spawn().await;
    let offline = app.staff("offline@test.example", "be", "agent").await;
    let busy = app.staff("busy@test.example", "be", "agent").await;
    let free = app.staff("free@test.example", "be", "agent").await;
    // Capacities: busy 1, free 2 (admins set them).
    let admin = app.staff("admin@test.example", "mfa", "admin").await;
    for (who, cap) in [(&busy, 1), (&free, 2)] {
        let r = app
            .request(
                reqwest::Method::PATCH,
                &format!("/v1/agents/{}", who.id),
                Some(&admin.token),
                Some(&json!({"capacity": cap})),
            )
            .await;
        assert_eq!(r.0, 200);
    }
    // Only admins change capacity.
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/agents/{}", free.id),
            Some(&free.token),
            Some(&json!({"capacity": 50})),
        )
        .await;
    assert_eq!(r.0, 403);
    let _busy_ws = app.ws(&busy.token).await;
    let mut free_ws = app.ws(&free.token).await;

    let mut convs = vec![];
    for i in 0..4 {
        let c = app.citizen(&format!("citizen {i}"), Some("BE")).await;
        convs.push(conv_of(&app, &c).await);
    }
    // Auto-assignment runs in the background, off the request path.
    app.settle().await;
    let mut assignees = vec![];
    for id in &convs {
        assignees.push(
            get_conv(&app, &admin.token, id).await["assignee_id"]
                .as_str()
                .map(str::to_string),
        );
    }
    // Fewest open first: busy and free alternate until each is full; the offline agent
    // gets nothing; the fourth waits in the queue.
    let count = |who: &Staff| {
        assignees
            .iter()
            .filter(|a| a.as_deref() == Some(who.id.as_str()))
            .count()
    };
    assert_eq!(count(&busy), 1, "{assignees:?}");
    assert_eq!(count(&free), 2, "{assignees:?}");
    assert_eq!(count(&offline), 0);
    assert_eq!(assignees[3], None);
    let waiting = get_conv(&app, &admin.token, &convs[3]).await;
    assert_eq!(waiting["status"], "open");
    let (_, list) = app.get("/v1/agents?mission_id=be", Some(&free.token)).await;
    let me = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == free.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(me["presence"], "online");
    assert_eq!(me["open_conversations"], 2);
    let off = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == offline.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(off["presence"], "offline");

    // The moment `free` resolves one, the waiting conversation is theirs.
    let mine = assignees
        .iter()
        .position(|a| a.as_deref() == Some(free.id.as_str()))
        .unwrap();
    let (s, _) = app
        .post(
            &format!("/v1/conversations/{}/resolve", convs[mine]),
            Some(&free.token),
        )
        .await;
    assert_eq!(s, 200);
    app.settle().await;
    let now = get_conv(&app, &admin.token, &convs[3]).await;
    assert_eq!(now["status"], "assigned");
    assert_eq!(now["assignee_id"], free.id.as_str());
    let mut saw_assigned = false;
    for f in free_ws.collect(Duration::from_millis(500)).await {
        if f["type"] == "conversation"
            && f["event"] == "assigned"
            && f["conversation"]["id"] == convs[3].as_str()
        {
            saw_assigned = true;
        }
    }
    assert!(saw_assigned);
}

#[tokio::test]
async fn a_queued_conversation_goes_to_the_agent_who_comes_online() {
    let app = TestApp::spawn().await;
    let agent = app.staff("late@test.example", "et", "agent").await;
    let c = app.citizen("Abebe", Some("ET")).await;
    let id = conv_of(&app, &c).await;
    assert_eq!(get_conv(&app, &c.token, &id).await["status"], "open");
    // Away agents take nothing even when connected.
    let r = app
        .request(
            reqwest::Method::PUT,
            "/v1/agent/presence",
            Some(&agent.token),
            Some(&json!({"status": "away"})),
        )
        .await;
    assert_eq!(r.0, 200);
    let mut ws = app.ws(&agent.token).await;
    app.settle().await;
    assert_eq!(get_conv(&app, &c.token, &id).await["status"], "open");
    // Presence over the socket: citizens cannot set it, bad values are refused.
    ws.send(json!({"type": "presence", "status": "asleep"}))
        .await;
    assert_eq!(ws.expect("error").await["code"], "invalid_input");
    let mut cws = app.ws(&c.token).await;
    cws.send(json!({"type": "presence", "status": "online"}))
        .await;
    assert_eq!(cws.expect("error").await["code"], "forbidden");
    ws.send(json!({"type": "presence", "status": "away"})).await;
    let f = ws.expect("presence").await;
    assert_eq!(
        (f["agent"]["id"].as_str(), f["status"].as_str()),
        (Some(agent.id.as_str()), Some("away"))
    );
    let (s, b) = app
        .post_json(
            "/v1/agent/presence",
            Some(&agent.token),
            &json!({"status": "online"}),
        )
        .await;
    assert_eq!((s, b["presence"].as_str()), (200, Some("online")));
    let token = c.token.clone();
    eventually(|| {
        let app = &app;
        let token = token.clone();
        let id = id.clone();
        async move { get_conv(app, &token, &id).await["status"] == "assigned" }
    })
    .await;
    let (s, _) = app
        .post_json(
            "/v1/agent/presence",
            Some(&agent.token),
            &json!({"status": "sleeping"}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn manual_claim_priority_queue_and_labels() {
    let app = TestApp::spawn().await;
    let agent = app.staff("a@test.example", "us", "agent").await;
    let other = app.staff("b@test.example", "us", "agent").await;
    let mut ids = vec![];
    for i in 0..3 {
        let c = app.citizen(&format!("c{i}"), Some("US")).await;
        ids.push(conv_of(&app, &c).await);
    }
    // Nobody online: all wait. Priority orders the queue, then age.
    let (s, p) = app
        .post_json(
            &format!("/v1/conversations/{}/priority", ids[2]),
            Some(&agent.token),
            &json!({"priority": "emergency"}),
        )
        .await;
    assert_eq!((s, p["priority"].as_str()), (200, Some("emergency")));
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{}/priority", ids[1]),
            Some(&agent.token),
            &json!({"priority": "urgent"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{}/priority", ids[1]),
            Some(&agent.token),
            &json!({"priority": "extreme"}),
        )
        .await;
    assert_eq!(s, 400);
    let (_, q) = app
        .get(
            "/v1/conversations?order=queue&status=open",
            Some(&agent.token),
        )
        .await;
    let order: Vec<&str> = q["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );
    // Queue order pages with a cursor too.
    let (_, p1) = app
        .get("/v1/conversations?order=queue&limit=2", Some(&agent.token))
        .await;
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = app
        .get(
            &format!("/v1/conversations?order=queue&limit=2&cursor={cursor}"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(p2["conversations"][0]["id"], ids[0].as_str());
    let (_, e) = app
        .get("/v1/conversations?priority=emergency", Some(&agent.token))
        .await;
    assert_eq!(e["conversations"].as_array().unwrap().len(), 1);
    // Manual claim and hand-over to a colleague.
    let (s, c) = app
        .post(
            &format!("/v1/conversations/{}/assign", ids[0]),
            Some(&agent.token),
        )
        .await;
    assert_eq!(
        (s, c["assignee_id"].as_str()),
        (200, Some(agent.id.as_str()))
    );
    let (s, c) = app
        .post_json(
            &format!("/v1/conversations/{}/assign", ids[0]),
            Some(&agent.token),
            &json!({"agent_id": other.id}),
        )
        .await;
    assert_eq!(
        (s, c["assignee_id"].as_str()),
        (200, Some(other.id.as_str()))
    );
    let (_, mine) = app
        .get("/v1/conversations?mine=true", Some(&other.token))
        .await;
    assert_eq!(mine["conversations"].as_array().unwrap().len(), 1);
    // Labels: added, filtered on, removed; citizens never see them.
    let (s, c) = app
        .post_json(
            &format!("/v1/conversations/{}/labels", ids[0]),
            Some(&agent.token),
            &json!({"labels": ["Passport", "fraud-risk"]}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["labels"], json!(["passport", "fraud-risk"]));
    let (_, f) = app
        .get("/v1/conversations?label=passport", Some(&agent.token))
        .await;
    assert_eq!(f["conversations"].as_array().unwrap().len(), 1);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{}/labels", ids[0]),
            Some(&agent.token),
            Some(&json!({"labels": ["fraud-risk"]})),
        )
        .await;
    let (s, c) = r;
    assert_eq!((s, c["labels"].clone()), (200, json!(["passport"])));
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{}/labels", ids[0]),
            Some(&agent.token),
            &json!({"labels": ["x".repeat(41)]}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn citizens_do_not_see_labels() {
    let app = TestApp::spawn().await;
    let agent = app.staff("a@test.example", "be", "agent").await;
    let c = app.citizen("Li", Some("BE")).await;
    let id = conv_of(&app, &c).await;
    let mut cws = app.ws(&c.token).await;
    app.post_json(
        &format!("/v1/conversations/{id}/labels"),
        Some(&agent.token),
        &json!({"labels": ["suspected-scam-victim"]}),
    )
    .await;
    app.post_json(
        &format!("/v1/conversations/{id}/priority"),
        Some(&agent.token),
        &json!({"priority": "urgent"}),
    )
    .await;
    let ev = cws.expect("conversation").await;
    assert_eq!(ev["event"], "priority_changed");
    assert!(ev["conversation"].get("labels").is_none());
    assert!(get_conv(&app, &c.token, &id).await.get("labels").is_none());
    let again = app.ws(&c.token).await;
    assert!(!again.welcome.to_string().contains("suspected"));
    let (_, list) = app.get("/v1/conversations", Some(&c.token)).await;
    assert!(!list.to_string().contains("suspected"));
    // Nor in the event when their message reopens a resolved conversation.
    let (s, _) = app
        .post(
            &format!("/v1/conversations/{id}/resolve"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(s, 200);
    cws.send_message(Some(&id), &uuid(), "again").await;
    let mut reopened = None;
    for f in cws.collect(Duration::from_millis(500)).await {
        if f["type"] == "conversation" && f["event"] == "reopened" {
            reopened = Some(f);
        }
    }
    let reopened = reopened.expect("reopened event");
    assert!(
        reopened["conversation"].get("labels").is_none(),
        "{reopened}"
    );
}

#[tokio::test]
async fn canned_responses_fill_placeholders_and_stay_in_their_mission() {
    let app = TestApp::spawn().await;
    let be = app.staff("be@test.example", "be", "agent").await;
    let et = app.staff("et@test.example", "et", "agent").await;
    let (s, cr) = app
        .post_json("/v1/canned-responses", Some(&be.token), &json!({"mission_id": "be", "title": "Greeting", "body": "您好 {citizen_name}，这里是{mission_name}，我是{agent_name}。"}))
        .await;
    assert_eq!(s, 201, "{cr}");
    let cr_id = cr["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .post_json(
            "/v1/canned-responses",
            Some(&be.token),
            &json!({"mission_id": "be", "title": "Greeting", "body": "dup"}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = app
        .post_json(
            "/v1/canned-responses",
            Some(&be.token),
            &json!({"mission_id": "et", "title": "x", "body": "y"}),
        )
        .await;
    assert_eq!(s, 403);
    let (_, l) = app.get("/v1/canned-responses", Some(&et.token)).await;
    assert!(l["canned_responses"].as_array().unwrap().is_empty());
    let c = app.citizen("王芳", Some("BE")).await;
    let id = conv_of(&app, &c).await;
    let (s, r) = app
        .post(
            &format!("/v1/conversations/{id}/canned-responses"),
            Some(&be.token),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["canned_responses"][0]["rendered"],
        "您好 王芳，这里是Embassy in Belgium，我是be@test.example。"
    );
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/canned-responses/{cr_id}"),
            Some(&be.token),
            Some(&json!({"body": "Hello {citizen_name}"})),
        )
        .await;
    assert_eq!(r.0, 200);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/canned-responses/{cr_id}"),
            Some(&et.token),
            None,
        )
        .await;
    assert_eq!(r.0, 403);
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/canned-responses/{cr_id}"),
            Some(&be.token),
            None,
        )
        .await;
    assert_eq!(r.0, 204);
    // Citizens have no access at all.
    assert_eq!(app.get("/v1/canned-responses", Some(&c.token)).await.0, 403);
}

#[tokio::test]
async fn the_audit_log_records_each_action_for_admins() {
    let app = TestApp::spawn().await;
    let admin = app.staff("admin@test.example", "mfa", "admin").await;
    let be = app.staff("be@test.example", "be", "agent").await;
    let c = app.citizen("Li", Some("BE")).await;
    let id = conv_of(&app, &c).await;
    app.post(&format!("/v1/conversations/{id}/assign"), Some(&be.token))
        .await;
    app.post_json(
        &format!("/v1/conversations/{id}/priority"),
        Some(&be.token),
        &json!({"priority": "urgent"}),
    )
    .await;
    app.post_json(
        &format!("/v1/conversations/{id}/transfer"),
        Some(&be.token),
        &json!({"mission_id": "et"}),
    )
    .await;
    app.post(
        &format!("/v1/conversations/{id}/resolve"),
        Some(&admin.token),
    )
    .await;
    app.post_json(
        "/v1/canned-responses",
        Some(&be.token),
        &json!({"mission_id": "be", "title": "t", "body": "b"}),
    )
    .await;
    app.post_json(
        "/v1/agent/sessions",
        None,
        &json!({"email": "be@test.example", "password": "wrong-password"}),
    )
    .await;
    assert_eq!(app.get("/v1/audit", Some(&be.token)).await.0, 403);
    assert_eq!(app.get("/v1/audit", Some(&c.token)).await.0, 403);
    let (s, log) = app.get("/v1/audit?limit=100", Some(&admin.token)).await;
    assert_eq!(s, 200, "{log}");
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "login",
        "assign",
        "priority_change",
        "transfer",
        "resolve",
        "canned_create",
        "login_failed",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, t) = app
        .get(
            &format!("/v1/audit?target_id={id}&action=transfer"),
            Some(&admin.token),
        )
        .await;
    let e = &t["entries"][0];
    assert_eq!(e["actor"]["id"], be.id.as_str());
    assert_eq!(e["details"]["from_mission"], "be");
    assert_eq!(e["details"]["to_mission"], "et");
    assert!(!log.to_string().contains("wrong-password"));
}
