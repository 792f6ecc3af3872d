//! The citizen web chat and the agent console together, in two real browsers: both
//! ways, images, hostile text, and a server restart in the middle of a chat.

#[path = "browser/mod.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::flows::*;
use browser::{eventually, Browser};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_citizen_chat_both_ways_live() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    citizen_start(&citizen, &app, "Li Wei", "BE").await;

    citizen_send(&citizen, "Hello, I lost my passport in Brussels").await;
    // The conversation shows up in the console by itself: no reload anywhere.
    agent_open(&agent, "Li Wei").await;
    agent
        .wait_text("Hello, I lost my passport in Brussels")
        .await;
    agent_send(&agent, "Please come to the embassy tomorrow at 9").await;
    citizen
        .wait_text("Please come to the embassy tomorrow at 9")
        .await;
    // The agent sees the citizen typing before anything is sent.
    citizen
        .find("textbox", "Your message")
        .await
        .send_keys("Thank")
        .await
        .unwrap();
    agent.wait_text("Li Wei typing…").await;
    citizen_send(&citizen, "Thank you, 谢谢").await;
    agent.wait_text("Thank you, 谢谢").await;

    // Each message once on each side.
    for (page, region) in [(&agent, "Messages"), (&citizen, "Conversation")] {
        for text in [
            "Hello, I lost my passport in Brussels",
            "Please come to the embassy tomorrow at 9",
            "Thank you, 谢谢",
        ] {
            assert_eq!(
                page.count_messages(region, text).await,
                1,
                "{text} in {region}"
            );
        }
    }
    agent.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_image_shows_as_a_thumbnail_in_the_console() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    citizen_start(&citizen, &app, "Zhang Min", "BE").await;
    citizen_send(&citizen, "Here is a photo of my damaged passport").await;
    agent_open(&agent, "Zhang Min").await;

    let png = png_file(app.dir.path(), 640, 480);
    let input = citizen.find("button", "Choose an image to send").await;
    input
        .send_keys(&png.display().to_string())
        .await
        .expect("choose the file");
    // Thumbnail on the citizen's own page, then in the console.
    for page in [&citizen, &agent] {
        let thumb = page.find_containing("button", "Open the image from").await;
        let ok = page
            .eval(
                "const b = arguments[0]; const img = b.querySelector('img');
                 return new Promise((r) => { const t = Date.now(); (function w() {
                   if (img && img.complete && img.naturalWidth > 0) r([img.src, img.naturalWidth, img.naturalHeight]);
                   else if (Date.now() - t > 10000) r(null); else setTimeout(w, 100); })(); });",
                vec![serde_json::to_value(&thumb).unwrap()],
            )
            .await;
        let arr = ok
            .as_array()
            .unwrap_or_else(|| panic!("thumbnail never loaded: {ok}"));
        assert!(arr[0].as_str().unwrap().starts_with("blob:"), "{ok}");
        assert!(
            arr[1].as_u64().unwrap() <= 512,
            "a thumbnail, not the original: {ok}"
        );
    }
    // The console names the image after its sender and opens it in a dialog.
    agent
        .find("button", "Open the image from Zhang Min")
        .await
        .click()
        .await
        .unwrap();
    let dialog = agent.find("dialog", "Image from Zhang Min").await;
    agent
        .find_containing("img", "Image from Zhang Min (640 × 480)")
        .await;
    agent.click("button", "Close").await;
    agent
        .wait_js(
            "the viewer to close",
            "return !arguments[0].open",
            vec![serde_json::to_value(&dialog).unwrap()],
            Duration::from_secs(5),
        )
        .await;
    agent.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_shown_literally_and_runs_nothing() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    let evil_name = "<b onmouseover=alert(2)>Bad</b>";
    citizen_start(&citizen, &app, evil_name, "BE").await;
    let payload = "<img src=x onerror=alert(1)>";
    citizen_send(&citizen, payload).await;
    agent_open(&agent, evil_name).await;
    agent.wait_text(payload).await;
    agent_send(&agent, "<script>alert(3)</script><svg onload=alert(4)>").await;
    citizen
        .wait_text("<script>alert(3)</script><svg onload=alert(4)>")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for page in [&agent, &citizen] {
        assert!(!page.alert_open().await, "a script ran: an alert is open");
        let found = page
            .eval(
                "return {
                   img: document.querySelectorAll('img[src=\"x\"], img[onerror]').length,
                   b: document.querySelectorAll('b[onmouseover]').length,
                   svg: document.querySelectorAll('svg[onload]').length,
                   script: [...document.scripts].filter((s) => !s.src).length,
                 }",
                vec![],
            )
            .await;
        assert_eq!(found, json!({"img": 0, "b": 0, "svg": 0, "script": 0}));
    }
    assert_eq!(agent.count_messages("Messages", payload).await, 1);
    agent.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_chat_loses_and_doubles_nothing() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let mut app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    citizen_start(&citizen, &app, "Wang Fang", "BE").await;
    citizen_send(&citizen, "before the restart").await;
    agent_open(&agent, "Wang Fang").await;
    agent.wait_text("before the restart").await;
    agent_send(&agent, "agent before the restart").await;
    citizen.wait_text("agent before the restart").await;

    // Stop the server; both pages notice and keep what is written meanwhile.
    app.shutdown().await;
    for page in [&agent, &citizen] {
        page.wait_text("reconnecting").await;
    }
    citizen_send(&citizen, "written while the server was down").await;
    agent_send(&agent, "agent wrote while the server was down").await;
    citizen.wait_text("Sending…").await;
    let kept = citizen
        .eval(
            "return Object.keys(localStorage).filter((k) => k.startsWith('lingshi.chat.outbox.'))
               .map((k) => localStorage.getItem(k)).join('')",
            vec![],
        )
        .await;
    assert!(
        kept.as_str()
            .unwrap()
            .contains("written while the server was down"),
        "the unsent message is kept on the device: {kept}"
    );

    // The same data dir on the same port.
    let mut config = app.config.clone();
    config.bind = app.addr.to_string();
    app.server = Some(
        lingshi::server::Server::start(config)
            .await
            .expect("restart on the same port"),
    );
    // The citizen reloads the tab as soon as the server is back: the message kept on
    // the device is sent by whichever page gets there first, once.
    citizen.goto(&app.url("/chat/")).await;
    wait_connected(&citizen).await;
    wait_connected(&agent).await;
    citizen
        .wait_text("agent wrote while the server was down")
        .await;
    agent.wait_text("written while the server was down").await;
    citizen_send(&citizen, "after the restart").await;
    agent.wait_text("after the restart").await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    for (page, region) in [(&agent, "Messages"), (&citizen, "Conversation")] {
        for text in [
            "before the restart",
            "agent before the restart",
            "written while the server was down",
            "agent wrote while the server was down",
            "after the restart",
        ] {
            assert_eq!(
                page.count_messages(region, text).await,
                1,
                "{text:?} shown exactly once in {region}"
            );
        }
    }
    // Stored once each on the server, and nothing left in the outbox.
    let staff = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": "ana@example.org", "password": PASSWORD}),
        )
        .await
        .1["token"]
        .as_str()
        .unwrap()
        .to_string();
    let convs = app.get("/v1/conversations?limit=10", Some(&staff)).await.1;
    let conv = convs["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msgs = all_messages(&app.http, &app.base, &staff, &conv).await;
    let bodies: Vec<&str> = msgs.iter().filter_map(|m| m["body"].as_str()).collect();
    for text in [
        "written while the server was down",
        "agent wrote while the server was down",
    ] {
        assert_eq!(
            bodies.iter().filter(|b| **b == text).count(),
            1,
            "{bodies:?}"
        );
    }
    let left = citizen
        .eval(
            "return Object.keys(localStorage).filter((k) => k.startsWith('lingshi.chat.outbox.')).length",
            vec![],
        )
        .await;
    assert_eq!(
        left,
        json!(0),
        "the outbox is empty once everything is stored"
    );
    agent.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_the_location_shows_the_alerts_for_that_place() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let ed = app.staff("ed@example.org", "be", "editor").await;
    // An alert for an area around Antwerp, for no country in particular.
    let r = app
        .post_json(
            "/v1/kb/articles",
            Some(&ed.token),
            &json!({"slug": "antwerp-flood", "locale": "en", "title": "Flooding near Antwerp",
                    "category": "safety_alert", "severity": "critical", "countries": ["NL"],
                    "area": {"lat": 51.22, "lon": 4.40, "radius_km": 20.0},
                    "body_markdown": "Stay away from the river banks."}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    let id = r.1["id"].as_str().unwrap();
    let r = app
        .post(&format!("/v1/kb/articles/{id}/publish"), Some(&ed.token))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let citizen = b.page("en-US").await;
    citizen_start(&citizen, &app, "Lin Tao", "BE").await;
    assert!(
        !citizen.body_text().await.contains("Flooding near Antwerp"),
        "not for Belgium as a whole"
    );
    citizen.set_location(&app.base, 51.2194, 4.4025).await;
    citizen.click("button", "Share my location").await;
    citizen
        .wait_text("Your location was shared with consular staff.")
        .await;
    citizen.wait_text("Flooding near Antwerp").await;
    citizen.find_containing("region", "Safety alerts").await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_before_its_ack_arrived_is_not_doubled_by_a_reload() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let citizen = b.page("en-US").await;
    citizen_start(&citizen, &app, "Wu Fang", "BE").await;
    citizen_send(&citizen, "first message").await;
    citizen.wait_text("first message").await;
    let session = citizen
        .eval(
            "return JSON.parse(localStorage.getItem('lingshi.chat.v1'))",
            vec![],
        )
        .await;
    let c = Citizen {
        id: session["citizen"]["id"].as_str().unwrap().to_string(),
        token: session["token"].as_str().unwrap().to_string(),
    };
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The tab had sent this message and the server stored it, but the tab was closed
    // before the acknowledgement came back: it is still in the device's outbox.
    let cmid = uuid();
    let r = app
        .send_http(&c.token, &conv, &cmid, "sent just before the tab closed")
        .await;
    assert!(r.0 == 200 || r.0 == 201, "{r:?}");
    citizen
        .eval(
            "const [key, item] = arguments; localStorage.setItem(key, JSON.stringify([item])); return true;",
            vec![
                json!(format!("lingshi.chat.outbox.{}", c.id)),
                json!({"client_msg_id": cmid, "conversation_id": conv, "kind": "text",
                       "body": "sent just before the tab closed", "state": "pending",
                       "created_at": "2026-01-01T00:00:00Z"}),
            ],
        )
        .await;
    citizen.goto(&app.url("/chat/")).await;
    wait_connected(&citizen).await;
    citizen.wait_text("sent just before the tab closed").await;
    eventually("the outbox empties", Duration::from_secs(10), || async {
        let left = citizen
            .eval(
                "return Object.keys(localStorage).filter((k) => k.startsWith('lingshi.chat.outbox.')).length",
                vec![],
            )
            .await;
        (left == json!(0)).then_some(())
    })
    .await;
    assert_eq!(
        citizen
            .count_messages("Conversation", "sent just before the tab closed")
            .await,
        1
    );
    let msgs = app.messages(&c.token, &conv, "limit=50").await;
    let same: Vec<_> = msgs
        .iter()
        .filter(|m| m["body"] == "sent just before the tab closed")
        .collect();
    assert_eq!(same.len(), 1, "stored once: {msgs:?}");
    assert_eq!(same[0]["client_msg_id"], cmid.as_str());
    citizen.close().await;
}
