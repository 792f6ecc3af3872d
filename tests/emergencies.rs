//! Emergencies end to end: triage of citizens' messages, SOS over HTTP and the socket,
//! escalation frames to the mission's staff only, guidance to the citizen, signed
//! deliveries to a local fake of the 12308 hotline (down, then up; across a kill -9),
//! acknowledgement by the hotline and by agents, re-escalation, fraud reports, live
//! safety alerts and the duty officer's command line.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::hooks::{secret, signature, Receiver, DOWN, KEY, UP};
use common::*;
use serde_json::{json, Value};

const ROBBERY: &str = "救命！有人拿刀抢劫我，他还在附近，我躲在酒店门口";
const ROBBERY_EN: &str = "Help, a man with a knife just robbed me and he is still outside";

async fn app_with_hotline(receiver: &Receiver, reescalate_after_secs: u64) -> TestApp {
    let addr = receiver.start().await;
    TestApp::spawn_with(|c| {
        c.hotline.url = format!("http://{addr}/hook");
        c.hotline.secret = lingshi::config::Secret::new(secret());
        c.hotline.reescalate_after_secs = reescalate_after_secs;
    })
    .await
}

fn conv_id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// Hotline bodies of one type.
fn of_type(bodies: &[(String, Value)], ty: &str) -> Vec<Value> {
    bodies
        .iter()
        .filter(|(_, b)| b["type"] == ty)
        .map(|(_, b)| b.clone())
        .collect()
}

/// A request signed as the hotline signs it.
async fn hotline_ack(
    app: &TestApp,
    escalation_id: &str,
    key: &[u8],
    timestamp: i64,
) -> (u16, Value) {
    let body = json!({ "escalation_id": escalation_id }).to_string();
    let id = format!("msg_{}", uuid());
    let ts = timestamp.to_string();
    let r = app
        .http
        .post(app.url("/v1/hotline/ack"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", &ts)
        .header("webhook-signature", signature(key, &id, &ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    into_pair(r).await
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn the_triage_endpoint_classifies_for_staff_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let editor = app.staff("editor@mfa.example", "mfa", "editor").await;
    let c = app.citizen("Wang", Some("BE")).await;

    let (s, v) = app
        .post_json("/v1/triage", Some(&agent.token), &json!({"text": ROBBERY}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["category"], "emergency", "{v}");
    assert!(v["score"].as_f64().unwrap() > 0.5, "{v}");
    let reasons = v["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty(), "{v}");
    for r in reasons {
        assert!(r["kind"].is_string() && r["detail"].is_string(), "{r}");
    }

    let cases = [
        ("如果遇到抢劫怎么办？", "routine"),
        ("我在看一部关于绑架的电影", "routine"),
        (
            "大使馆打电话说我的护照涉嫌洗钱，让我把钱转到安全账户",
            "fraud",
        ),
        (
            "My wallet was stolen on the train this morning, nobody hurt, but my flight is tomorrow",
            "urgent",
        ),
        ("How much is the passport fee?", "routine"),
    ];
    for (text, want) in cases {
        let (s, v) = app
            .post_json(
                "/v1/triage",
                Some(&editor.token),
                &json!({"text": text, "locale": "zh-CN"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["category"], want, "{text}: {v}");
    }

    // Citizens and anonymous callers may not probe the classifier.
    let (s, v) = app
        .post_json("/v1/triage", Some(&c.token), &json!({"text": ROBBERY}))
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["code"].is_string());
    let (s, _) = app
        .post_json("/v1/triage", None, &json!({"text": ROBBERY}))
        .await;
    assert_eq!(s, 401);
    let (s, v) = app
        .post_json("/v1/triage", Some(&agent.token), &json!({"text": 5}))
        .await;
    assert_eq!(s, 400, "{v}");

    // No side effect: nothing was escalated or created.
    let (s, v) = app.get("/v1/escalations", Some(&agent.token)).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["escalations"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = app.get("/v1/conversations", Some(&agent.token)).await;
    assert!(v["conversations"].as_array().unwrap().is_empty(), "{v}");
}

#[tokio::test]
async fn an_emergency_message_escalates_at_once_to_the_mission_and_the_hotline() {
    let receiver = Receiver::new(UP);
    let app = app_with_hotline(&receiver, 600).await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let other = app.staff("duty@et.example", "et", "agent").await;
    let mut agent_ws = app.ws(&agent.token).await;
    let mut other_ws = app.ws(&other.token).await;

    // Someone with a routine question is already waiting.
    let early = app.citizen("Early", Some("BE")).await;
    let early_conv = conv_id(&app.conversation(&early).await);
    app.send_http(&early.token, &early_conv, &uuid(), "请问护照换发需要多久？")
        .await;

    let c = app.citizen("Li", Some("BE")).await;
    let mut citizen_ws = app.ws(&c.token).await;
    let ack = citizen_ws.send_message(None, &uuid(), ROBBERY).await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();

    // The citizen is told what to do now, in Chinese: the local number, 12308, the
    // mission's duty phone.
    let guidance = loop {
        let f = citizen_ws.expect("message").await;
        if f["message"]["kind"] == "system" {
            break f["message"]["body"].as_str().unwrap().to_string();
        }
    };
    for needle in [
        "+86-10-12308",
        "+86-10-65612308",
        "BE-emergency",
        "+00-be-duty",
    ] {
        assert!(guidance.contains(needle), "{needle} missing: {guidance}");
    }
    assert!(guidance.contains("紧急"), "{guidance}");

    // Staff of the mission see the escalation, the triage reasons and the priority.
    let e = agent_ws.expect("escalation").await;
    let esc = e["escalation"].clone();
    assert_eq!(esc["conversation_id"], conv.as_str());
    assert_eq!(esc["mission_id"], "be");
    assert_eq!(esc["reason"], "triage");
    assert_eq!(esc["citizen"]["display_name"], "Li");
    assert_eq!(esc["citizen"]["country"], "BE");
    for k in ["id", "state", "created_at", "attempts"] {
        assert!(!esc[k].is_null(), "{k} missing in {esc}");
    }
    let (_, msgs) = ((), app.messages(&agent.token, &conv, "").await);
    let citizen_msg = msgs
        .iter()
        .find(|m| m["sender"]["kind"] == "citizen")
        .unwrap();
    assert_eq!(
        citizen_msg["triage"]["category"], "emergency",
        "{citizen_msg}"
    );
    assert!(!citizen_msg["triage"]["reasons"]
        .as_array()
        .unwrap()
        .is_empty());
    let (_, cv) = app
        .get(&format!("/v1/conversations/{conv}"), Some(&agent.token))
        .await;
    assert_eq!(cv["priority"], "emergency", "{cv}");
    // It jumps the queue: first in the list, ahead of the earlier one.
    let (_, list) = app.get("/v1/conversations", Some(&agent.token)).await;
    assert_eq!(list["conversations"][0]["id"], conv.as_str(), "{list}");

    // Another mission's staff see nothing of it.
    let seen: Vec<Value> = other_ws.collect(Duration::from_millis(500)).await;
    assert!(seen.iter().all(|f| f["type"] != "escalation"), "{seen:?}");

    // The hotline gets one signed escalation.created with the context it needs.
    receiver
        .wait_for(Duration::from_secs(10), "escalation.created", |b| {
            !of_type(b, "escalation.created").is_empty()
        })
        .await;
    let created = of_type(&receiver.bodies(), "escalation.created");
    assert_eq!(created.len(), 1);
    let body = &created[0];
    assert_eq!(body["escalation"]["id"], esc["id"]);
    assert_eq!(body["conversation"]["id"], conv.as_str());
    assert!(body["last_messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["body"] == ROBBERY));
    assert!(receiver.bad.lock().unwrap().is_empty());

    // Delivered: the state says so (and staff are told).
    let id = esc["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = app
            .get(&format!("/v1/escalations/{id}"), Some(&agent.token))
            .await;
        assert_eq!(s, 200, "{v}");
        let v = if v.get("escalation").is_some() {
            v["escalation"].clone()
        } else {
            v
        };
        if v["state"] == "delivered" {
            assert!(v["delivered_at"].is_string(), "{v}");
            assert!(v["attempts"].as_i64().unwrap() >= 1, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second emergency message joins the open escalation: no second one.
    citizen_ws
        .send_message(Some(&conv), &uuid(), "他又回来了，在敲门！")
        .await;
    app.settle().await;
    let (_, v) = app.get("/v1/escalations", Some(&agent.token)).await;
    assert_eq!(v["escalations"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = app.get("/v1/escalations", Some(&other.token)).await;
    assert_eq!(s, 200);
    assert!(v["escalations"].as_array().unwrap().is_empty(), "{v}");
    let (s, _) = app
        .get(&format!("/v1/escalations/{id}"), Some(&other.token))
        .await;
    assert_eq!(s, 403);

    // The citizen never saw a triage verdict or an escalation frame.
    let frames = citizen_ws.collect(Duration::from_millis(500)).await;
    for f in &frames {
        assert_ne!(f["type"], "escalation", "{f}");
        assert!(f["message"].get("triage").is_none(), "{f}");
    }
    let own = app.messages(&c.token, &conv, "").await;
    assert!(own.iter().all(|m| m.get("triage").is_none()), "{own:?}");
    let (s, _) = app.get("/v1/escalations", Some(&c.token)).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn sos_over_http_and_over_the_socket() {
    let receiver = Receiver::new(UP);
    let app = app_with_hotline(&receiver, 600).await;
    let agent = app.staff("duty@et.example", "et", "agent").await;
    let mut agent_ws = app.ws(&agent.token).await;

    // HTTP, with a note and a location, from an English speaker.
    let r = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"display_name": "Sam", "locale": "en", "country": "ET"}),
        )
        .await;
    let token = r.1["token"].as_str().unwrap().to_string();
    let (s, v) = app
        .post_json(
            "/v1/emergency",
            Some(&token),
            &json!({"note": "car accident on the Bole road", "location": {"lat": 8.98, "lon": 38.79, "accuracy_m": 30}}),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    assert_eq!(v["escalation"]["reason"], "sos");
    assert_eq!(v["escalation"]["mission_id"], "et");
    let guidance = v["guidance"].as_str().unwrap();
    assert!(
        guidance.contains("+86-10-12308") && guidance.contains("ET-emergency"),
        "{guidance}"
    );
    assert!(
        guidance.contains("Emergency"),
        "English guidance: {guidance}"
    );
    let e = agent_ws.expect("escalation").await;
    assert_eq!(e["escalation"]["id"], v["escalation"]["id"]);
    receiver
        .wait_for(Duration::from_secs(10), "the SOS at the hotline", |b| {
            of_type(b, "escalation.created")
                .iter()
                .any(|x| x["escalation"]["id"] == v["escalation"]["id"])
        })
        .await;
    let created = of_type(&receiver.bodies(), "escalation.created");
    let body = created
        .iter()
        .find(|x| x["escalation"]["id"] == v["escalation"]["id"])
        .unwrap();
    assert!(
        (body["location"]["lat"].as_f64().unwrap() - 8.98).abs() < 1e-6,
        "{body}"
    );

    // A second SOS in the same conversation joins the open escalation.
    let (s, v2) = app
        .post_json("/v1/emergency", Some(&token), &json!({}))
        .await;
    assert!(s == 200 || s == 201, "{v2}");
    assert_eq!(v2["escalation"]["id"], v["escalation"]["id"]);

    // The socket: `sos` is answered by `sos_ack`.
    let c = app.citizen("Abebe", Some("ET")).await;
    let mut ws = app.ws(&c.token).await;
    ws.send(json!({"type": "sos", "note": "有人跟踪我", "location": {"lat": 9.0, "lon": 38.7}}))
        .await;
    let a = ws.expect("sos_ack").await;
    assert_eq!(a["escalation"]["reason"], "sos");
    assert!(a["guidance"].as_str().unwrap().contains("12308"));
    assert_ne!(a["escalation"]["id"], v["escalation"]["id"]);

    // Bad input: a location off the globe, staff pressing SOS.
    ws.send(json!({"type": "sos", "location": {"lat": 123.0, "lon": 0}}))
        .await;
    let err = ws.expect("error").await;
    assert_eq!(err["code"], "invalid_input", "{err}");
    let (s, v) = app
        .post_json("/v1/emergency", Some(&agent.token), &json!({}))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = app.post_json("/v1/emergency", None, &json!({})).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn acknowledgement_by_the_hotline_is_signed_and_by_agents_is_per_mission() {
    let receiver = Receiver::new(UP);
    let app = app_with_hotline(&receiver, 600).await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let other = app.staff("duty@us.example", "us", "agent").await;
    let mut agent_ws = app.ws(&agent.token).await;

    let mut ids = vec![];
    for name in ["A", "B"] {
        let c = app.citizen(name, Some("BE")).await;
        let (s, v) = app
            .post_json("/v1/emergency", Some(&c.token), &json!({}))
            .await;
        assert!(s == 200 || s == 201, "{v}");
        ids.push(v["escalation"]["id"].as_str().unwrap().to_string());
    }

    // Forged, stale and unsigned acknowledgements are refused with 401.
    let (s, v) = hotline_ack(
        &app,
        &ids[0],
        b"not the hotline's key at all....",
        now_secs(),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"]["code"].is_string());
    let (s, v) = hotline_ack(&app, &ids[0], KEY, now_secs() - 600).await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = app
        .post_json("/v1/hotline/ack", None, &json!({"escalation_id": ids[0]}))
        .await;
    assert_eq!(s, 401);

    // Properly signed: acknowledged, and staff hear of it.
    let (s, v) = hotline_ack(&app, &ids[0], KEY, now_secs()).await;
    assert_eq!(s, 200, "{v}");
    loop {
        let f = agent_ws.expect("escalation").await;
        if f["escalation"]["id"] == ids[0].as_str() && f["escalation"]["state"] == "acknowledged" {
            assert_eq!(f["escalation"]["acknowledged_by"], "hotline");
            break;
        }
    }

    // Another mission's agent may not take the second one; the mission's agent may.
    let (s, v) = app
        .post(
            &format!("/v1/escalations/{}/ack", ids[1]),
            Some(&other.token),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = app
        .post(
            &format!("/v1/escalations/{}/ack", ids[1]),
            Some(&agent.token),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let e = if v.get("escalation").is_some() {
        v["escalation"].clone()
    } else {
        v
    };
    assert_eq!(e["state"], "acknowledged");
    assert_eq!(e["acknowledged_by"], agent.id.as_str());
    assert!(e["acknowledged_at"].is_string());

    // Resolving the conversation resolves its escalation; an ack after that is a
    // conflict, never a step back.
    let conv = e["conversation_id"].as_str().unwrap().to_string();
    let (s, v) = app
        .post(
            &format!("/v1/conversations/{conv}/resolve"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = app
        .get(&format!("/v1/escalations/{}", ids[1]), Some(&agent.token))
        .await;
    let e = if v.get("escalation").is_some() {
        v["escalation"].clone()
    } else {
        v
    };
    assert_eq!(e["state"], "resolved", "{e}");
    let (s, v) = hotline_ack(&app, &ids[1], KEY, now_secs()).await;
    assert_eq!(s, 409, "{v}");
    let (_, v) = app
        .get("/v1/escalations?state=resolved", Some(&agent.token))
        .await;
    assert_eq!(v["escalations"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = app
        .get("/v1/escalations?state=lost", Some(&agent.token))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = hotline_ack(&app, "not-an-id", KEY, now_secs()).await;
    assert!(s == 400 || s == 404, "{s}");
}

#[tokio::test]
async fn nobody_acknowledges_so_it_is_reescalated_until_someone_does() {
    let receiver = Receiver::new(UP);
    let app = app_with_hotline(&receiver, 5).await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let center = app.staff("duty@mfa.example", "mfa", "agent").await;
    let mut center_ws = app.ws(&center.token).await;

    let c = app.citizen("Zhao", Some("BE")).await;
    let (_, v) = app
        .post_json("/v1/emergency", Some(&c.token), &json!({}))
        .await;
    let id = v["escalation"]["id"].as_str().unwrap().to_string();

    receiver
        .wait_for(Duration::from_secs(20), "escalation.reescalated", |b| {
            of_type(b, "escalation.reescalated")
                .iter()
                .any(|x| x["escalation"]["id"] == id.as_str())
        })
        .await;
    // The default mission's staff are alerted too.
    let f = center_ws.expect("escalation").await;
    assert_eq!(f["escalation"]["id"], id.as_str());

    // An acknowledgement stops every further alert.
    let (s, v) = app
        .post(&format!("/v1/escalations/{id}/ack"), Some(&agent.token))
        .await;
    assert_eq!(s, 200, "{v}");
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = of_type(&receiver.bodies(), "escalation.reescalated").len();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after = of_type(&receiver.bodies(), "escalation.reescalated").len();
    assert_eq!(before, after, "re-escalated after the acknowledgement");
    // Every event went out under its own id, exactly once.
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for (wid, _) in receiver.bodies() {
        *per_id.entry(wid).or_default() += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
}

#[tokio::test]
async fn a_hotline_that_is_down_gets_every_escalation_once_it_is_up() {
    let receiver = Receiver::new(DOWN);
    let app = app_with_hotline(&receiver, 600).await;
    let mut ids = vec![];
    for n in 0..3 {
        let c = app.citizen(&format!("C{n}"), Some("US")).await;
        let mut ws = app.ws(&c.token).await;
        ws.send_message(None, &uuid(), ROBBERY_EN).await;
        let a = ws.send_message(None, &uuid(), "please hurry").await;
        ids.push(a["conversation_id"].as_str().unwrap().to_string());
    }
    // Refused attempts are retried (Retry-After: 1 is honoured), nothing is accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.started.load(std::sync::atomic::Ordering::SeqCst) < 6 {
        assert!(
            Instant::now() < deadline,
            "no retries while the hotline is down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.bodies().is_empty());
    receiver.set(UP);
    receiver
        .wait_for(Duration::from_secs(20), "three escalations", |b| {
            let created = of_type(b, "escalation.created");
            ids.iter().all(|c| {
                created
                    .iter()
                    .any(|x| x["conversation"]["id"] == c.as_str())
            })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for (wid, _) in receiver.bodies() {
        *per_id.entry(wid).or_default() += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    assert_eq!(of_type(&receiver.bodies(), "escalation.created").len(), 3);
    assert!(receiver.bad.lock().unwrap().is_empty());
}

#[tokio::test]
async fn escalations_pending_at_a_kill_are_delivered_after_the_restart() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::new(DOWN);
    let addr = receiver.start().await;
    let mut config = test_config(&dir.path().join("data"));
    config.hotline.url = format!("http://{addr}/hook");
    config.hotline.secret = lingshi::config::Secret::new(secret());
    config.hotline.reescalate_after_secs = 600;
    let file = write_config_file(dir.path(), &config);
    let http = reqwest::Client::new();

    let mut server = start_server(&file, dir.path(), "first").await;
    let mut escalations = vec![];
    for n in 0..4 {
        let token = citizen_session(&http, &server.base, &format!("P{n}")).await;
        let (s, v) = into_pair(
            http.post(format!("{}/v1/emergency", server.base))
                .bearer_auth(&token)
                .json(&json!({"note": "help"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s == 200 || s == 201, "{v}");
        escalations.push(v["escalation"]["id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no attempt before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    assert!(receiver.bodies().is_empty());

    receiver.set(UP);
    let server = start_server(&file, dir.path(), "second").await;
    receiver
        .wait_for(
            Duration::from_secs(30),
            "every escalation after the restart",
            |b| {
                let created = of_type(b, "escalation.created");
                escalations
                    .iter()
                    .all(|e| created.iter().any(|x| x["escalation"]["id"] == e.as_str()))
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for (wid, _) in receiver.bodies() {
        *per_id.entry(wid).or_default() += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    assert_eq!(of_type(&receiver.bodies(), "escalation.created").len(), 4);

    // The duty officer's command line sees them, shows one, and can redeliver it
    // under the same webhook id.
    let out = run_cli(&file, &["escalations", "list", "--json"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 4);
    assert!(
        listed.iter().all(|e| e["state"] == "delivered"),
        "{listed:?}"
    );
    let out = run_cli(&file, &["escalations", "show", &escalations[0]], None).await;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("escalation.created") && text.contains("delivered"),
        "{text}"
    );
    let first_id = receiver
        .bodies()
        .iter()
        .find(|(_, b)| b["escalation"]["id"] == escalations[0].as_str())
        .map(|(id, _)| id.clone())
        .unwrap();
    let before = receiver.bodies().len();
    let out = run_cli(&file, &["escalations", "redeliver", &escalations[0]], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receiver
        .wait_for(Duration::from_secs(10), "the redelivery", |b| {
            b.len() > before
        })
        .await;
    let again = &receiver.bodies()[before];
    assert_eq!(again.0, first_id, "a redelivery keeps the webhook id");
    let out = run_cli(&file, &["escalations", "show", "nope"], None).await;
    assert!(!out.status.success());
    drop(server);
}

#[tokio::test]
async fn a_fraud_report_gets_advice_a_label_and_urgent_priority_but_no_escalation() {
    let app = TestApp::spawn().await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let mut agent_ws = app.ws(&agent.token).await;
    let c = app.citizen("Chen", Some("BE")).await;
    let mut ws = app.ws(&c.token).await;
    let ack = ws
        .send_message(
            None,
            &uuid(),
            "刚才有个自称大使馆的人打电话，说我的护照涉嫌洗钱，要我把钱转到安全账户，这是真的吗？",
        )
        .await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();
    let advice = loop {
        let f = ws.expect("message").await;
        if f["message"]["kind"] == "system" {
            break f["message"]["body"].as_str().unwrap().to_string();
        }
    };
    assert!(advice.contains("anti-fraud-notice"), "{advice}");
    assert!(advice.contains("转账"), "{advice}");
    app.settle().await;
    let (_, cv) = app
        .get(&format!("/v1/conversations/{conv}"), Some(&agent.token))
        .await;
    assert_eq!(cv["priority"], "urgent", "{cv}");
    assert!(
        cv["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "fraud-report"),
        "{cv}"
    );
    let frames = agent_ws.collect(Duration::from_millis(500)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "escalation"),
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "message" && f["message"]["triage"]["category"] == "fraud"),
        "staff are notified with the verdict: {frames:?}"
    );
    let (_, v) = app.get("/v1/escalations", Some(&agent.token)).await;
    assert!(v["escalations"].as_array().unwrap().is_empty());
    // The advice is given once, not at every message of the same report.
    ws.send_message(Some(&conv), &uuid(), "他们又打来了，还让我不要告诉别人")
        .await;
    app.settle().await;
    let msgs = app.messages(&c.token, &conv, "").await;
    let advice_count = msgs.iter().filter(|m| m["kind"] == "system").count();
    assert_eq!(advice_count, 1, "{msgs:?}");
}

#[tokio::test]
async fn publishing_a_safety_alert_reaches_connected_citizens_of_its_countries_and_area() {
    let app = TestApp::spawn().await;
    let editor = app.staff("editor@mfa.example", "mfa", "editor").await;
    let be = app.citizen("In Belgium", Some("BE")).await;
    let et = app.citizen("In Ethiopia", Some("ET")).await;
    let traveller = app.citizen("Travelling", Some("US")).await;
    let mut be_ws = app.ws(&be.token).await;
    let mut et_ws = app.ws(&et.token).await;
    let mut traveller_ws = app.ws(&traveller.token).await;
    let agent = app.staff("duty@be.example", "be", "agent").await;
    let mut agent_ws = app.ws(&agent.token).await;
    // The traveller shares a location in Addis Ababa.
    traveller_ws
        .send(json!({"type": "location", "lat": 9.03, "lon": 38.74, "accuracy_m": 20}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let alert = |slug: &str, countries: Value, area: Value| {
        let mut a = json!({
            "slug": slug, "locale": "zh-CN", "title": "<b>暴雨预警</b>",
            "summary": "强降雨", "body_markdown": "避免出行。",
            "category": "safety_alert", "countries": countries,
            "status": "published", "severity": "high",
        });
        if !area.is_null() {
            a["area"] = area;
        }
        a
    };
    let (s, v) = app
        .post_json(
            "/v1/kb/articles",
            Some(&editor.token),
            &alert("rain-be", json!(["BE"]), Value::Null),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let f = be_ws.expect("alert").await;
    assert_eq!(f["article"]["slug"], "rain-be");
    assert_eq!(
        f["article"]["title"], "<b>暴雨预警</b>",
        "title is text, as written"
    );
    let seen = et_ws.collect(Duration::from_millis(400)).await;
    assert!(seen.iter().all(|f| f["type"] != "alert"), "{seen:?}");
    let seen = agent_ws.collect(Duration::from_millis(100)).await;
    assert!(seen.iter().all(|f| f["type"] != "alert"), "{seen:?}");

    // An area alert: citizens of its country, and whoever is inside the circle.
    let (s, v) = app
        .post_json(
            "/v1/kb/articles",
            Some(&editor.token),
            &alert(
                "quake-addis",
                json!(["ET"]),
                json!({"lat": 9.0, "lon": 38.75, "radius_km": 25}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        et_ws.expect("alert").await["article"]["slug"],
        "quake-addis"
    );
    assert_eq!(
        traveller_ws.expect("alert").await["article"]["slug"],
        "quake-addis"
    );
    let seen = be_ws.collect(Duration::from_millis(400)).await;
    assert!(seen.iter().all(|f| f["type"] != "alert"), "{seen:?}");

    // A draft reaches nobody until it is published.
    let (s, v) = app
        .post_json("/v1/kb/articles", Some(&editor.token), &{
            let mut a = alert("later", json!(["BE"]), Value::Null);
            a["status"] = json!("draft");
            a
        })
        .await;
    assert_eq!(s, 201, "{v}");
    let seen = be_ws.collect(Duration::from_millis(400)).await;
    assert!(seen.iter().all(|f| f["type"] != "alert"), "{seen:?}");
    let (s, v) = app
        .post(
            &format!("/v1/kb/articles/{}/publish", v["id"].as_str().unwrap()),
            Some(&editor.token),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(be_ws.expect("alert").await["article"]["slug"], "later");
}
