//! The agent console in a real browser: claims, unread counts across reconnects, the
//! emergency lane, canned responses and shortcuts, and a very long conversation.

#[path = "browser/mod.rs"]
mod browser;
mod common;

use std::time::{Duration, Instant};

use browser::flows::*;
use browser::{Browser, Page};
use common::*;
use fantoccini::key::Key;
use serde_json::json;

async fn press(page: &Page, keys: &str) {
    page.c
        .active_element()
        .await
        .expect("something has focus")
        .send_keys(keys)
        .await
        .expect("keys");
}

/// Set "My status" to away so that auto-assignment leaves new conversations waiting.
async fn go_away(page: &Page) {
    page.choose("My status", "away").await;
    page.wait_text("Your status: Away").await;
}

/// The unread count the queue shows for `name` (0 when it shows none).
async fn unread(page: &Page, name: &str) -> u64 {
    let row = page.find_containing("button", name).await;
    let label = page
        .eval(
            "return arguments[0].textContent.replace(/\\s+/g, ' ')",
            vec![serde_json::to_value(&row).unwrap()],
        )
        .await;
    let label = label.as_str().unwrap_or_default().to_string();
    label
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "unread")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

/// Wait until the queue shows `n` unread for `name`.
async fn expect_unread(page: &Page, name: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = unread(page, name).await;
        if got == n {
            return;
        }
        if Instant::now() > deadline {
            page.fail(&format!("{name}: {got} unread, expected {n}"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn only_conversation(app: &TestApp, token: &str) -> serde_json::Value {
    let r = app.get("/v1/conversations?limit=5", Some(token)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    r.1["conversations"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_claim_at_once_and_one_wins() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let a1 = app.staff("ana@example.org", "be", "agent").await;
    let a2 = app.staff("bo@example.org", "be", "agent").await;
    let p1 = b.page("en-US").await;
    let p2 = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&p1, &app, "ana@example.org").await;
    console_sign_in(&p2, &app, "bo@example.org").await;
    go_away(&p1).await;
    go_away(&p2).await;
    citizen_start(&citizen, &app, "Chen Jie", "BE").await;
    citizen_send(&citizen, "Is anyone there?").await;
    agent_open(&p1, "Chen Jie").await;
    agent_open(&p2, "Chen Jie").await;
    // Both click at the same instant (the browsers share this machine's clock), before
    // either console can hear of the other's claim.
    let c1 = p1.find("button", "Claim").await;
    let c2 = p2.find("button", "Claim").await;
    let at = p1.eval("return Date.now() + 400", vec![]).await;
    let click_at =
        "const [b, at] = arguments; setTimeout(() => b.click(), at - Date.now()); return true;";
    let (r1, r2) = tokio::join!(
        p1.c.execute(
            click_at,
            vec![serde_json::to_value(&c1).unwrap(), at.clone()]
        ),
        p2.c.execute(
            click_at,
            vec![serde_json::to_value(&c2).unwrap(), at.clone()]
        ),
    );
    r1.unwrap();
    r2.unwrap();
    let (app_ref, token) = (&app, a1.token.as_str());
    let conv = browser::eventually(
        "the claim settles",
        Duration::from_secs(10),
        || async move {
            let c = only_conversation(app_ref, token).await;
            c["assignee_id"].as_str().map(|_| c.clone())
        },
    )
    .await;
    let winner = conv["assignee_id"].as_str().unwrap().to_string();
    let (loser_page, winner_name) = if winner == a1.id {
        (&p2, "ana@example.org")
    } else {
        assert_eq!(winner, a2.id);
        (&p1, "bo@example.org")
    };
    // An alert is announced by its content (it has no name of its own).
    loser_page.wait_text("Someone else took it").await;
    let text = loser_page
        .eval(
            "return [...document.querySelectorAll('[role=alert]')].map((e) => e.textContent).join(' ')",
            vec![],
        )
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("Someone else took it") && text.contains(winner_name),
        "the loser is told, in an alert, who has it: {text}"
    );
    for p in [p1, p2, citizen] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_conversation_shows_who_has_it_without_a_reload() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let a1 = app.staff("ana@example.org", "be", "agent").await;
    app.staff("bo@example.org", "be", "agent").await;
    let p1 = b.page("en-US").await;
    let p2 = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&p1, &app, "ana@example.org").await;
    console_sign_in(&p2, &app, "bo@example.org").await;
    go_away(&p1).await;
    go_away(&p2).await;
    citizen_start(&citizen, &app, "Chen Jie", "BE").await;
    citizen_send(&citizen, "Is anyone there?").await;
    agent_open(&p1, "Chen Jie").await;
    agent_open(&p2, "Chen Jie").await;
    p1.wait_text("not assigned").await;
    p1.click("button", "Claim").await;
    p1.wait_text("assigned to ana@example.org").await;
    let conv = only_conversation(&app, &a1.token).await;
    assert_eq!(conv["assignee_id"], a1.id.as_str());
    // Bo's console shows it at once, and offers only an explicit take-over.
    p2.wait_text("assigned to ana@example.org").await;
    p2.click("button", "Take over").await;
    let dlg = p2.find("dialog", "Take over this conversation?").await;
    assert!(dlg
        .text()
        .await
        .unwrap()
        .contains("ana@example.org is answering this conversation"));
    p2.click("button", "Cancel").await;
    let conv = only_conversation(&app, &a1.token).await;
    assert_eq!(
        conv["assignee_id"],
        a1.id.as_str(),
        "cancel changes nothing"
    );
    for p in [p1, p2, citizen] {
        p.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_and_filter_survive_a_reconnect() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    // Two citizens write over the API while the agent watches the queue.
    let c1 = app.citizen("Liu Yang", Some("BE")).await;
    let c2 = app.citizen("Sun Li", Some("LU")).await;
    for c in [&c1, &c2] {
        let conv = app.conversation(c).await;
        let id = conv["id"].as_str().unwrap().to_string();
        let n = if c.id == c1.id { 3 } else { 1 };
        for i in 0..n {
            let r = app
                .send_http(&c.token, &id, &uuid(), &format!("message {i}"))
                .await;
            assert_eq!(r.0, 201);
        }
    }
    expect_unread(&agent, "Liu Yang", 3).await;
    expect_unread(&agent, "Sun Li", 1).await;

    // A reload is a full reconnect: the counts come back the same.
    agent.c.refresh().await.unwrap();
    wait_connected(&agent).await;
    expect_unread(&agent, "Liu Yang", 3).await;
    expect_unread(&agent, "Sun Li", 1).await;

    // Reading one clears it, also after another reconnect.
    agent_open(&agent, "Sun Li").await;
    agent.wait_text("message 0").await;
    expect_unread(&agent, "Sun Li", 0).await;
    agent.c.refresh().await.unwrap();
    wait_connected(&agent).await;
    expect_unread(&agent, "Liu Yang", 3).await;
    expect_unread(&agent, "Sun Li", 0).await;

    // The unread filter hides Sun Li (read, and still open here); new messages show
    // live in it: more for Liu Yang, and a newcomer.
    agent
        .find("checkbox", "Unread only")
        .await
        .click()
        .await
        .unwrap();
    agent
        .wait_js(
            "the filter",
            "return ![...document.querySelectorAll('nav button')].some((b) => b.textContent.includes('Sun Li'))",
            vec![],
            Duration::from_secs(5),
        )
        .await;
    expect_unread(&agent, "Liu Yang", 3).await;
    let conv1 = app.conversation(&c1).await;
    let id1 = conv1["id"].as_str().unwrap();
    app.send_http(&c1.token, id1, &uuid(), "one more").await;
    expect_unread(&agent, "Liu Yang", 4).await;
    let c3 = app.citizen("Ma Lin", Some("BE")).await;
    let conv3 = app.conversation(&c3).await;
    app.send_http(&c3.token, conv3["id"].as_str().unwrap(), &uuid(), "hi")
        .await;
    expect_unread(&agent, "Ma Lin", 1).await;
    assert!(
        agent
            .all_by_role("button", "Sun Li", false)
            .await
            .is_empty(),
        "read conversations stay out of the unread filter"
    );
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_priority_shows_in_every_consoles_lane() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let a1 = app.staff("ana@example.org", "be", "agent").await;
    app.staff("bo@example.org", "be", "agent").await;
    let p2 = b.page("en-US").await;
    console_sign_in(&p2, &app, "bo@example.org").await;
    p2.find("heading", "Emergencies").await;
    p2.wait_text("No open emergency.").await;
    let c = app.citizen("Zhao Lei", Some("BE")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap();
    app.send_http(&c.token, id, &uuid(), "my friend is hurt")
        .await;
    let r = app
        .post_json(
            &format!("/v1/conversations/{id}/priority"),
            Some(&a1.token),
            &json!({"priority": "emergency"}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // Live, in the lane (a region of its own), with no way to select it for bulk closing.
    let lane = p2.find_containing("region", "Emergencies").await;
    p2.find_in(&lane, "button", "Zhao Lei").await;
    assert!(
        p2.all_by_role("checkbox", "Select Zhao Lei", true)
            .await
            .is_empty(),
        "an emergency cannot be picked for bulk resolve"
    );
    p2.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_by_slash_and_keyboard_shortcuts() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let a1 = app.staff("ana@example.org", "be", "agent").await;
    let r = app
        .post_json(
            "/v1/canned-responses",
            Some(&a1.token),
            &json!({"mission_id": "be", "title": "Office hours",
                    "body": "Dear {citizen_name}, the consular office is open 9:00-12:00."}),
        )
        .await;
    assert_eq!(r.0, 201, "{}", r.1);
    app.post_json(
        "/v1/canned-responses",
        Some(&a1.token),
        &json!({"mission_id": "be", "title": "Passport photo", "body": "Photos must be 33x48 mm."}),
    )
    .await;
    let agent = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    citizen_start(&citizen, &app, "Huang Yi", "BE").await;
    citizen_send(&citizen, "When are you open?").await;
    agent.wait_text("Huang Yi").await;

    // "?" lists the shortcuts; Escape closes the list.
    agent.find("heading", "Queue").await.click().await.ok();
    press(&agent, "?").await;
    agent.find("dialog", "Keyboard shortcuts").await;
    agent.wait_text("Claim the conversation").await;
    press(&agent, &Key::Escape.to_string()).await;
    agent
        .wait_js(
            "the help to close",
            "return !document.querySelector('dialog[open]')",
            vec![],
            Duration::from_secs(5),
        )
        .await;
    // "j" opens the first conversation of the queue.
    press(&agent, "j").await;
    agent.find("heading", "Huang Yi").await;

    // "/" in the reply box offers canned responses, filtered as one types.
    agent.find("textbox", "Reply").await.click().await.unwrap();
    press(&agent, "/off").await;
    agent.find_containing("option", "Office hours").await;
    assert!(agent
        .all_by_role("option", "Passport photo", false)
        .await
        .is_empty());
    press(&agent, &Key::Enter.to_string()).await;
    let value = agent
        .eval("return document.activeElement.value", vec![])
        .await;
    assert_eq!(
        value,
        json!("Dear Huang Yi, the consular office is open 9:00-12:00."),
        "the rendered response replaces /off"
    );
    press(&agent, &Key::Enter.to_string()).await;
    citizen
        .wait_text("Dear Huang Yi, the consular office is open 9:00-12:00.")
        .await;

    // "n" (outside the reply box) switches to an internal note, which the citizen never sees.
    press(&agent, &Key::Escape.to_string()).await;
    press(&agent, "n").await;
    let note = agent
        .find("checkbox", "Internal note (the citizen does not see it)")
        .await;
    assert_eq!(note.prop("checked").await.unwrap().as_deref(), Some("true"));
    agent
        .fill("Reply", "internal: check the passport database")
        .await;
    agent.click("button", "Send").await;
    agent
        .wait_text("internal: check the passport database")
        .await;
    agent.wait_text("Internal note").await;
    citizen_send(&citizen, "thanks").await;
    agent.wait_text("thanks").await;
    assert!(!citizen
        .body_text()
        .await
        .contains("internal: check the passport database"));
    agent.close().await;
    citizen.close().await;
}

/// `[messages in the document, lowest seq, highest seq]` of the open conversation.
async fn dom(page: &Page) -> serde_json::Value {
    page.eval(
        "const r = [...document.querySelectorAll('[role=region]')].find((e) => e.getAttribute('aria-label') === 'Messages');
         const seqs = [...r.querySelectorAll('li[data-seq]')].map((li) => Number(li.dataset.seq));
         return [seqs.length, Math.min(...seqs), Math.max(...seqs)];",
        vec![],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_open_quickly_and_stay_windowed() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    // Seeding goes faster than a citizen may write: lift the sending budget.
    let app = TestApp::spawn_with(|c| c.limits.frames_per_second = 1_000_000).await;
    app.staff("ana@example.org", "be", "agent").await;
    let c = app.citizen("Long History", Some("BE")).await;
    let conv = app.conversation(&c).await;
    let id = conv["id"].as_str().unwrap().to_string();
    let seeded = Instant::now();
    let total = 10_000;
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let http = app.http.clone();
        let base = app.base.clone();
        let token = c.token.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < total {
                let r = http
                    .post(format!("{base}/v1/conversations/{id}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"client_msg_id": uuid(), "body": format!("history line {i}")}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                i += workers;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    println!(
        "seeded {total} messages in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );
    let agent = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    let opened = Instant::now();
    agent
        .find_containing("button", "Long History")
        .await
        .click()
        .await
        .unwrap();
    agent
        .wait_js(
            "the newest message",
            "return !!document.querySelector('li[data-seq=\"10000\"]')",
            vec![],
            Duration::from_secs(30),
        )
        .await;
    let open_ms = opened.elapsed().as_millis();
    let first = dom(&agent).await;
    println!(
        "10,000-message conversation: newest shown {open_ms} ms after the click; DOM holds {first}"
    );
    // Scroll back through history: older pages load, the document stays small.
    let scrolled = Instant::now();
    let mut lowest = first[1].as_i64().unwrap();
    let mut most = first[0].as_i64().unwrap();
    for _ in 0..60 {
        agent
            .eval(
                "const r = [...document.querySelectorAll('[role=region]')].find((e) => e.getAttribute('aria-label') === 'Messages'); r.scrollTop = 0;",
                vec![],
            )
            .await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        let now = dom(&agent).await;
        lowest = lowest.min(now[1].as_i64().unwrap());
        most = most.max(now[0].as_i64().unwrap());
    }
    println!(
        "scrolled back to seq {lowest} in {:.1} s; at most {most} messages in the document",
        scrolled.elapsed().as_secs_f64()
    );
    assert!(
        lowest < 9_000,
        "older history loads on scrolling up (reached {lowest})"
    );
    assert!(most <= 400, "the list stays windowed ({most} nodes)");
    // A new message still arrives live at the bottom after jumping back.
    app.send_http(&c.token, &id, &uuid(), "brand new at the end")
        .await;
    agent
        .find_containing("button", "1 new")
        .await
        .click()
        .await
        .unwrap();
    agent.wait_text("brand new at the end").await;
    agent.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sos_shows_in_the_emergency_lane_and_guidance_on_the_citizen_page() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    let bo = app.staff("bo@example.org", "be", "agent").await;
    let agent = b.page("en-US").await;
    let other = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    console_sign_in(&agent, &app, "ana@example.org").await;
    console_sign_in(&other, &app, "bo@example.org").await;
    citizen_start(&citizen, &app, "Xu Ming", "BE").await;
    citizen.click("button", "SOS — I am in danger").await;
    citizen.find("dialog", "Send an emergency alert?").await;
    citizen
        .find("checkbox", "Include my location")
        .await
        .click()
        .await
        .unwrap();
    citizen
        .fill("What is happening? (optional)", "Robbed near the station")
        .await;
    citizen.click("button", "Send SOS now").await;
    let guidance = citizen.find("alert", "Emergency alert sent").await;
    let text = guidance.text().await.unwrap();
    assert!(text.contains("12308"), "the hotline is shown: {text}");
    assert!(
        !text.contains("Your alert has been written to consular staff"),
        "the server's guidance, not the page's own fallback: {text}"
    );
    // Both consoles hear of it without a reload: the lane and an acknowledge button.
    for page in [&agent, &other] {
        let lane = page.find_containing("region", "Emergencies").await;
        page.find_in(&lane, "button", "Xu Ming").await;
        page.find("button", "Acknowledge the emergency of Xu Ming")
            .await;
    }
    agent.screenshot("console-sos-en").await;
    // One acknowledges; the other console sees it acknowledged, the lane keeps the
    // conversation (it stays an emergency until resolved).
    agent
        .click("button", "Acknowledge the emergency of Xu Ming")
        .await;
    agent.wait_text("Escalation acknowledged.").await;
    for page in [&agent, &other] {
        page.wait_js(
            "the acknowledge button goes away",
            "return ![...document.querySelectorAll('button')].some((b) => b.getAttribute('aria-label') === 'Acknowledge the emergency of Xu Ming')",
            vec![],
            Duration::from_secs(10),
        )
        .await;
        let lane = page.find_containing("region", "Emergencies").await;
        page.find_in(&lane, "button", "Xu Ming").await;
    }
    let r = app.get("/v1/escalations", Some(&bo.token)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let all = r.1["escalations"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{}", r.1);
    assert_eq!(all[0]["state"], "acknowledged");
    assert_eq!(all[0]["reason"], "sos");

    // An emergency written as a message: the console shows the triage and its reasons.
    citizen_send(&citizen, "Help, a man with a knife is threatening me").await;
    agent_open(&agent, "Xu Ming").await;
    agent
        .wait_text("Help, a man with a knife is threatening me")
        .await;
    agent
        .wait_js(
            "the emergency badge and its reasons on the message",
            "const m = [...document.querySelectorAll('.msg')].find((e) => e.textContent.includes('knife')); \
             return !!m && !!m.querySelector('.badge.triage-emergency') && m.querySelectorAll('details.triage li').length > 0;",
            vec![],
            Duration::from_secs(10),
        )
        .await;
    agent.close().await;
    other.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_who_else_is_viewing() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ana@example.org", "be", "agent").await;
    app.staff("bo@example.org", "be", "agent").await;
    let p1 = b.page("en-US").await;
    let p2 = b.page("en-US").await;
    console_sign_in(&p1, &app, "ana@example.org").await;
    console_sign_in(&p2, &app, "bo@example.org").await;
    go_away(&p1).await;
    go_away(&p2).await;
    let c = app.citizen("Gao Yan", Some("BE")).await;
    let conv = app.conversation(&c).await;
    app.send_http(&c.token, conv["id"].as_str().unwrap(), &uuid(), "hello")
        .await;
    agent_open(&p1, "Gao Yan").await;
    agent_open(&p2, "Gao Yan").await;
    p2.wait_text("Also viewing: ana@example.org").await;
    p1.wait_text("Also viewing: bo@example.org").await;
    p1.close().await;
    p2.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_link_creates_the_first_admin_once() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let token = app
        .server
        .as_ref()
        .unwrap()
        .setup_token()
        .expect("no staff yet")
        .to_string();
    let link = app.url(&format!("/console/#setup={token}"));

    let p = b.page("en-US").await;
    p.goto(&link).await;
    p.find("heading", "Create the first administrator").await;
    let href = p.eval("return location.href", vec![]).await;
    assert!(
        !href.as_str().unwrap().contains(&token),
        "the token leaves the address bar at once: {href}"
    );
    p.assert_accessible("console setup (en)").await;
    p.screenshot("console-setup-en").await;
    p.fill("Name", "Zhao Min").await;
    p.fill("Email", "zhao@example.org").await;
    p.fill("Password", PASSWORD).await;
    p.fill("Password again", "something else").await;
    p.click("button", "Create and sign in").await;
    p.wait_text("The two passwords differ.").await;
    p.fill("Password again", PASSWORD).await;
    p.click("button", "Create and sign in").await;
    p.find("heading", "Queue").await;
    wait_connected(&p).await;

    // The same link a second time: refused, with a sentence that says why.
    let q = b.page("zh-CN").await;
    q.goto(&link).await;
    q.find("heading", "创建第一个管理员账号").await;
    q.fill("姓名", "Late").await;
    q.fill("电子邮箱", "late@example.org").await;
    q.fill("密码", PASSWORD).await;
    q.fill("再次输入密码", PASSWORD).await;
    q.click("button", "创建并登录").await;
    q.wait_text("此设置链接无效或已被使用。").await;
    q.screenshot("console-setup-zh").await;
    // The administrator signs in with the password chosen in the form.
    let r = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": "zhao@example.org", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["agent"]["role"], "admin");
    p.close().await;
    q.close().await;
}
