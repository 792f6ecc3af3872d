//! The Telegram bridge end to end: the real server (in process, or the `lingshi`
//! binary for the crash test) runs the bridge through the real teloxide client against
//! a local fake of the Bot API (`lingshi-telegram-fake`), which queues updates for
//! `getUpdates`, records every call, serves files, and can answer 429s, enforce the
//! published limits, or refuse sends as Telegram does.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::*;
use lingshi::config::{Config, Secret, TelegramMode};
use lingshi_telegram_fake::{Failure, FakeTelegram, Limits, Sent};
use serde_json::{json, Value};

const TOKEN: &str = "123456:TEST-token-for-the-local-fake-bot-api";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn app_with(fake: &FakeTelegram, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.telegram.token = Secret::new(TOKEN);
        c.telegram.api_url = fake.url();
        c.telegram.poll_timeout_secs = 1;
        tweak(c);
    })
    .await
}

async fn wait_until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn conversations(app: &TestApp, token: &str) -> Vec<Value> {
    let (s, b) = app.get("/v1/conversations", Some(token)).await;
    assert_eq!(s, 200, "{b}");
    b["conversations"].as_array().cloned().unwrap_or_default()
}

/// The only conversation the agent sees, once it exists.
async fn the_conversation(app: &TestApp, token: &str) -> Value {
    wait_until(secs(10), "a conversation", || async {
        !conversations(app, token).await.is_empty()
    })
    .await;
    let all = conversations(app, token).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

async fn wait_messages(app: &TestApp, token: &str, conv: &str, n: usize) -> Vec<Value> {
    wait_until(secs(10), &format!("{n} messages"), || async {
        app.messages(token, conv, "limit=200").await.len() >= n
    })
    .await;
    app.messages(token, conv, "limit=200").await
}

fn texts_to(fake: &FakeTelegram, chat: i64) -> Vec<String> {
    fake.sent_to(chat)
        .iter()
        .filter_map(|s| s.text.clone().or(s.caption.clone()))
        .collect()
}

fn has_text(sent: &[Sent], chat: i64, needle: &str) -> bool {
    sent.iter().any(|s| {
        s.chat_id == chat
            && s.text
                .as_deref()
                .or(s.caption.as_deref())
                .is_some_and(|t| t.contains(needle))
    })
}

async fn reply(app: &TestApp, agent: &Staff, conv: &str, body: &str) -> Value {
    let (s, ack) = app.send_http(&agent.token, conv, &uuid(), body).await;
    assert_eq!(s, 201, "{ack}");
    ack
}

#[tokio::test]
async fn start_greets_in_both_languages_asks_the_country_and_routes_by_it() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("li@be.example", "be", "agent").await;

    fake.text(100, "/start");
    fake.wait_for(secs(10), "the greeting", |s| has_text(s, 100, "您好"))
        .await;
    let greeting = fake.sent_to(100)[0].clone();
    let text = greeting.text.unwrap();
    assert!(text.contains("您好") && text.contains("Hello"), "{text}");
    assert!(text.contains("12308"), "{text}");
    let buttons = greeting.reply_markup.expect("inline keyboard").to_string();
    for data in [
        "country:BE",
        "country:LU",
        "country:ET",
        "country:US",
        "country:other",
    ] {
        assert!(buttons.contains(data), "{data} missing from {buttons}");
    }

    fake.callback(100, "country:BE");
    fake.wait_for(secs(10), "the country confirmation", |s| {
        has_text(s, 100, "Embassy in Belgium")
    })
    .await;
    assert_eq!(fake.calls("answercallbackquery").len(), 1);

    // The next message goes to the Belgian embassy's queue, like an app message.
    fake.text(100, "我的护照在布鲁塞尔丢了");
    let conv = the_conversation(&app, &agent.token).await;
    assert_eq!(conv["channel"], "telegram");
    assert_eq!(conv["mission_id"], "be");
    assert_eq!(conv["citizen"]["country"], "BE");
    assert_eq!(conv["citizen"]["display_name"], "User100");

    fake.text(100, "/lang en");
    fake.wait_for(secs(10), "the language confirmation", |s| {
        has_text(s, 100, "in English")
    })
    .await;
    fake.text(100, "/country us");
    fake.wait_for(secs(10), "the new country", |s| {
        has_text(
            s,
            100,
            "Your messages go to the Embassy in the United States",
        )
    })
    .await;
    fake.text(100, "/country Belgium");
    fake.wait_for(secs(10), "the usage of /country", |s| {
        has_text(s, 100, "two-letter country code")
    })
    .await;
    // Commands are answered, never stored as messages.
    let msgs = app
        .messages(&agent.token, conv["id"].as_str().unwrap(), "limit=200")
        .await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
}

#[tokio::test]
async fn text_photos_documents_and_locations_reach_the_agent_like_app_messages() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("wang@mfa.example", "mfa", "agent").await;
    let mut ws = app.ws(&agent.token).await;

    fake.text(200, "hello from Telegram <b>not bold</b>");
    let m = ws.expect("message").await["message"].clone();
    assert_eq!(m["body"], "hello from Telegram <b>not bold</b>");
    assert_eq!(m["kind"], "text");
    assert_eq!(m["sender"]["kind"], "citizen");
    assert_eq!(m["seq"], 1);
    let conv = m["conversation_id"].as_str().unwrap().to_string();
    let (_, c) = app
        .get(&format!("/v1/conversations/{conv}"), Some(&agent.token))
        .await;
    assert_eq!(c["channel"], "telegram");
    assert_eq!(c["mission_id"], "mfa");

    // A photo: the largest size is fetched, cleaned like an upload, EXIF gone.
    let original = jpeg_with_gps();
    assert!(original.windows(4).any(|w| w == b"Exif"));
    fake.photo(200, original, Some("my passport page"));
    let m = ws.expect("message").await["message"].clone();
    assert_eq!(m["kind"], "image");
    assert_eq!(m["body"], "my passport page");
    assert_eq!(m["seq"], 2);
    let url = m["attachments"][0]["url"].as_str().unwrap().to_string();
    let bytes = app
        .http
        .get(app.url(&url))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
    assert!(!bytes.windows(4).any(|w| w == b"Exif"), "EXIF removed");
    assert!(
        !bytes.windows(6).any(|w| w == b"SECRET"),
        "camera model removed"
    );
    assert!(
        fake.calls("getfile").len() == 1,
        "one getFile for the largest size"
    );

    // An image sent as a file.
    fake.document(200, jpeg(40, 30), "image/jpeg", "scan.jpg", None);
    let m = ws.expect("message").await["message"].clone();
    assert_eq!(m["kind"], "image");
    assert_eq!(m["attachments"][0]["width"], 40);

    // A location: stored as the citizen's last location and shown to the agent.
    fake.location(200, 50.8466, 4.3528);
    let m = ws.expect("message").await["message"].clone();
    assert!(
        m["body"].as_str().unwrap().contains("50.846600, 4.352800"),
        "{m}"
    );

    // Friendly refusals: over Telegram's 20 MB download limit, not an image.
    fake.document(200, vec![0; 16], "image/jpeg", "huge.jpg", Some(25_000_000));
    fake.wait_for(secs(10), "the size refusal", |s| has_text(s, 200, "20 MB"))
        .await;
    fake.document(
        200,
        b"%PDF-1.4".to_vec(),
        "application/pdf",
        "form.pdf",
        None,
    );
    fake.wait_for(secs(10), "the type refusal", |s| has_text(s, 200, "照片"))
        .await;
    let (_, v) = app
        .get(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 4, "{v}");
    // Nothing the citizen wrote was echoed back to the chat.
    assert!(!has_text(&fake.sent(), 200, "hello from Telegram"));
}

#[tokio::test]
async fn replies_reach_the_chat_in_order_with_images_by_upload_and_never_notes() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("zhao@mfa.example", "mfa", "agent").await;
    fake.text(300, "I need help with a visa");
    let conv = the_conversation(&app, &agent.token).await;
    let conv = conv["id"].as_str().unwrap().to_string();

    reply(&app, &agent, &conv, "first <reply> & more").await;
    reply(&app, &agent, &conv, "second reply").await;
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&agent.token),
            &json!({"client_msg_id": uuid(), "kind": "note", "body": "INTERNAL: check the file"}),
        )
        .await;
    assert_eq!(s, 201);
    let png = jpeg(64, 48);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.clone()).file_name("form.jpg"),
    );
    let up: Value = app
        .http
        .post(app.url("/v1/attachments"))
        .bearer_auth(&agent.token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&agent.token),
            &json!({"client_msg_id": uuid(), "body": "the form to fill", "attachment_ids": [up["id"]]}),
        )
        .await;
    assert_eq!(s, 201);
    reply(&app, &agent, &conv, "third reply").await;
    // A transfer posts a system message the citizen sees: it goes too.
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{conv}/transfer"),
            Some(&agent.token),
            &json!({"mission_id": "be"}),
        )
        .await;
    assert_eq!(s, 200);

    fake.wait_for(secs(15), "five deliveries", |s| {
        s.iter().filter(|m| m.chat_id == 300).count() >= 5
    })
    .await;
    let sent = fake.sent_to(300);
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert_eq!(
        sent[0].text.as_deref(),
        Some("<b>zhao@mfa.example</b>\nfirst &lt;reply&gt; &amp; more")
    );
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
    assert!(sent[1].text.as_deref().unwrap().ends_with("second reply"));
    assert_eq!(sent[2].method, "sendphoto");
    assert!(sent[2]
        .caption
        .as_deref()
        .unwrap()
        .contains("the form to fill"));
    let stored = app
        .http
        .get(app.url(&format!("/v1/attachments/{}", up["id"].as_str().unwrap())))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sent[2].file.as_deref(), Some(&stored[..]), "uploaded bytes");
    assert!(sent[3].text.as_deref().unwrap().ends_with("third reply"));
    assert!(sent[4]
        .text
        .as_deref()
        .unwrap()
        .contains("Transferred to the Embassy in Belgium"));
    assert!(!has_text(&fake.sent(), 300, "INTERNAL"), "a note leaked");
    // Nothing staff-only leaks: no labels, no triage, no other names.
    for s in &sent {
        let t = s.text.clone().or(s.caption.clone()).unwrap_or_default();
        assert!(!t.contains("triage") && !t.contains("label"), "{t}");
    }
}

#[tokio::test]
async fn thirty_quick_replies_arrive_in_order_paced_within_the_limits() {
    let fake = FakeTelegram::start(TOKEN).await;
    // Faster than Telegram's one a second so the test is short; the fake enforces the
    // same rate, with one more message of burst than the bridge takes.
    fake.set_limits(Some(Limits {
        chat_per_second: 5.0,
        chat_burst: 3.0,
        global_per_second: 30,
    }));
    let app = app_with(&fake, |c| {
        c.telegram.chat_per_second = 5.0;
        c.telegram.chat_burst = 2;
        // The agent queues all thirty at once; the send limiter must not be what paces them.
        c.limits.frames_per_second = 100;
    })
    .await;
    let agent = app.staff("qian@mfa.example", "mfa", "agent").await;
    fake.text(400, "hello");
    let conv = the_conversation(&app, &agent.token).await;
    let conv = conv["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    for i in 1..=30 {
        reply(&app, &agent, &conv, &format!("reply {i:02}")).await;
    }
    let queued_in = started.elapsed();
    fake.wait_for(secs(30), "thirty replies", |s| {
        s.iter().filter(|m| m.chat_id == 400).count() >= 30
    })
    .await;
    let sent = fake.sent_to(400);
    let bodies: Vec<String> = sent
        .iter()
        .map(|s| {
            s.text
                .clone()
                .unwrap()
                .rsplit('\n')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("reply {i:02}")).collect();
    assert_eq!(bodies, expected);
    assert_eq!(fake.too_many(), 0, "the bridge exceeded the limits");
    let span = sent[29].at.duration_since(sent[0].at);
    // Two at once, then one every 200 ms: at least 27 intervals.
    assert!(span >= Duration::from_millis(5000), "span {span:?}");
    assert!(
        queued_in < span,
        "the replies were queued ({queued_in:?}) faster than they were paced ({span:?})"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_order_kept() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("sun@mfa.example", "mfa", "agent").await;
    fake.text(500, "hello");
    let conv = the_conversation(&app, &agent.token).await;
    let conv = conv["id"].as_str().unwrap().to_string();
    fake.fail_next(500, Failure::RetryAfter(2));
    fake.fail_next(500, Failure::RetryAfter(1));
    reply(&app, &agent, &conv, "one").await;
    reply(&app, &agent, &conv, "two").await;
    fake.wait_for(secs(15), "both replies", |s| {
        s.iter().filter(|m| m.chat_id == 500).count() >= 2
    })
    .await;
    let calls = fake.calls("sendmessage");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 429, 200, 200]);
    assert!(
        calls[1].at.duration_since(calls[0].at) >= Duration::from_millis(1950),
        "retry_after 2 not honoured"
    );
    assert!(calls[2].at.duration_since(calls[1].at) >= Duration::from_millis(950));
    let texts = texts_to(&fake, 500);
    assert!(
        texts[0].ends_with("one") && texts[1].ends_with("two"),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_blocked_chat_gets_a_note_to_staff_and_delivery_resumes_later() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("zhou@mfa.example", "mfa", "agent").await;
    fake.text(600, "hello");
    let conv = the_conversation(&app, &agent.token).await;
    let conv = conv["id"].as_str().unwrap().to_string();
    fake.fail_next(600, Failure::Blocked);
    reply(&app, &agent, &conv, "are you safe?").await;
    let msgs = wait_messages(&app, &agent.token, &conv, 3).await;
    let note = &msgs[2];
    assert_eq!(note["kind"], "note");
    assert_eq!(note["sender"]["kind"], "system");
    assert!(
        note["body"].as_str().unwrap().contains("blocked the bot"),
        "{note}"
    );
    assert!(fake.sent_to(600).is_empty());
    // The user unblocked the bot: the next reply goes through.
    reply(&app, &agent, &conv, "we are here").await;
    fake.wait_for(secs(10), "the next reply", |s| {
        has_text(s, 600, "we are here")
    })
    .await;
    assert_eq!(fake.sent_to(600).len(), 1);
}

#[tokio::test]
async fn agent_typing_shows_as_a_chat_action() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("wu@mfa.example", "mfa", "agent").await;
    fake.text(700, "hello");
    let conv = the_conversation(&app, &agent.token).await;
    let mut ws = app.ws(&agent.token).await;
    ws.send(json!({"type": "typing", "conversation_id": conv["id"], "active": true}))
        .await;
    wait_until(secs(10), "a chat action", || async {
        !fake.calls("sendchataction").is_empty()
    })
    .await;
    let call = &fake.calls("sendchataction")[0];
    assert_eq!(call.params["chat_id"], 700);
    assert_eq!(call.params["action"], "typing");
    assert!(fake.sent_to(700).is_empty(), "typing sends no message");
}

#[tokio::test]
async fn an_edited_message_is_an_edit_of_the_original() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let agent = app.staff("feng@mfa.example", "mfa", "agent").await;
    let mut ws = app.ws(&agent.token).await;
    let mid = fake.text(800, "I lost my pasport");
    let m = ws.expect("message").await["message"].clone();
    let conv = m["conversation_id"].as_str().unwrap().to_string();
    fake.edit_text(800, mid, "I lost my passport in Antwerp");
    let f = ws.expect("message_updated").await;
    assert_eq!(f["message"]["id"], m["id"]);
    assert_eq!(f["message"]["seq"], 1);
    assert_eq!(f["message"]["body"], "I lost my passport in Antwerp");
    assert!(f["edited_at"].is_string());
    let msgs = app.messages(&agent.token, &conv, "limit=200").await;
    assert_eq!(msgs.len(), 1, "an edit is not a new message: {msgs:?}");
    assert_eq!(msgs[0]["body"], "I lost my passport in Antwerp");
}

#[tokio::test]
async fn help_search_alerts_and_sos_are_answered() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |c| {
        c.telegram.article_url = "https://consular.example/kb/{slug}?lang={locale}".into();
    })
    .await;
    let editor = app.staff("ed@mfa.example", "mfa", "editor").await;
    for body in [
        json!({"slug": "lost-passport", "locale": "zh-CN", "title": "护照在国外遗失怎么办", "category": "faq",
               "status": "published", "summary": "挂失并申请旅行证", "body_markdown": "先报警，再到使馆办理旅行证。护照遗失。"}),
        json!({"slug": "brussels-strike", "locale": "zh-CN", "title": "布鲁塞尔交通罢工提醒", "category": "safety_alert",
               "status": "published", "countries": ["BE"], "severity": "high", "summary": "地铁停运",
               "expires_at": "2099-01-01T00:00:00Z", "body_markdown": "罢工期间请注意安全。"}),
    ] {
        let (s, b) = app
            .post_json("/v1/kb/articles", Some(&editor.token), &body)
            .await;
        assert_eq!(s, 201, "{b}");
    }
    wait_until(secs(10), "the article in the index", || async {
        let (_, b) = app.get("/v1/kb/search?q=护照遗失", None).await;
        b["total"].as_u64().unwrap_or(0) > 0
    })
    .await;
    fake.text(900, "/help");
    fake.wait_for(secs(10), "help", |s| has_text(s, 900, "/search"))
        .await;
    fake.text(900, "/search 护照遗失");
    fake.wait_for(secs(10), "search results", |s| {
        has_text(s, 900, "护照在国外遗失怎么办")
    })
    .await;
    assert!(has_text(
        &fake.sent(),
        900,
        "https://consular.example/kb/lost-passport?lang=zh-CN"
    ));
    fake.text(900, "/country BE");
    fake.wait_for(secs(10), "country", |s| has_text(s, 900, "BE"))
        .await;
    fake.text(900, "/alerts");
    fake.wait_for(secs(10), "alerts", |s| {
        has_text(s, 900, "布鲁塞尔交通罢工提醒")
    })
    .await;
    fake.text(900, "/sos");
    fake.wait_for(secs(10), "the hotline", |s| {
        has_text(s, 900, "+86-10-12308") && has_text(s, 900, "+86-10-65612308")
    })
    .await;
    // The SOS took the app's path: an emergency conversation with the Belgian mission.
    let admin = app.staff("root@mfa.example", "mfa", "admin").await;
    let conv = the_conversation(&app, &admin.token).await;
    assert_eq!(conv["channel"], "telegram");
    assert_eq!(conv["priority"], "emergency", "{conv}");
    assert_eq!(conv["mission_id"], "be");
    fake.text(900, "/teleport");
    fake.wait_for(secs(10), "unknown command", |s| {
        has_text(s, 900, "没有这个命令")
    })
    .await;
}

#[tokio::test]
async fn group_chats_get_a_polite_refusal_and_create_nothing() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |_| {}).await;
    let admin = app.staff("root@mfa.example", "mfa", "admin").await;
    let m = fake.group_message(-100_123, 1000, "/start");
    fake.push_update("message", m);
    let chatter = fake.group_message(-100_123, 1001, "hello everyone");
    fake.push_update("message", chatter);
    fake.wait_for(secs(10), "the refusal", |s| {
        has_text(s, -100_123, "private chats only")
    })
    .await;
    // Both updates were handled (confirmed) and nothing was created.
    wait_until(secs(10), "the updates confirmed", || async {
        fake.unconfirmed() == 0
    })
    .await;
    assert_eq!(
        fake.sent_to(-100_123).len(),
        1,
        "one refusal, no reply to chatter"
    );
    assert!(conversations(&app, &admin.token).await.is_empty());
}

#[tokio::test]
async fn webhook_needs_the_secret_token_and_redeliveries_do_nothing_twice() {
    let fake = FakeTelegram::start(TOKEN).await;
    let app = app_with(&fake, |c| {
        c.telegram.mode = TelegramMode::Webhook;
        c.telegram.webhook_url = "https://bot.example/v1/telegram/webhook".into();
        c.telegram.secret_token = Secret::new("s3cret-Token_1");
    })
    .await;
    let agent = app.staff("chen@mfa.example", "mfa", "agent").await;
    wait_until(secs(10), "setWebhook", || async {
        fake.webhook().is_some()
    })
    .await;
    assert_eq!(
        fake.webhook(),
        Some((
            "https://bot.example/v1/telegram/webhook".to_string(),
            "s3cret-Token_1".to_string()
        ))
    );
    let (m, _) = fake.private_message(1100, json!({"text": "via webhook"}));
    let update = fake.make_update("message", m);
    let post = |secret: Option<&'static str>| {
        let mut r = app.http.post(app.url("/v1/telegram/webhook")).json(&update);
        if let Some(s) = secret {
            r = r.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        r.send()
    };
    let r = post(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post(Some("s3cret-Token_2")).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(conversations(&app, &agent.token).await.is_empty());
    let r = post(Some("s3cret-Token_1")).await.unwrap();
    assert_eq!(r.status(), 200);
    let conv = the_conversation(&app, &agent.token).await;
    // Telegram sends an update again when it did not see the answer.
    for _ in 0..2 {
        let r = post(Some("s3cret-Token_1")).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let msgs = app
        .messages(&agent.token, conv["id"].as_str().unwrap(), "limit=200")
        .await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
}

#[tokio::test]
async fn a_polling_restart_redelivering_updates_creates_no_duplicate() {
    let fake = FakeTelegram::start(TOKEN).await;
    let mut app = app_with(&fake, |_| {}).await;
    let agent = app.staff("he@mfa.example", "mfa", "agent").await;
    fake.text(1200, "/start");
    for i in 1..=3 {
        fake.text(1200, &format!("before {i}"));
    }
    let conv = the_conversation(&app, &agent.token).await;
    let conv = conv["id"].as_str().unwrap().to_string();
    wait_messages(&app, &agent.token, &conv, 3).await;
    wait_until(secs(10), "the updates confirmed", || async {
        fake.unconfirmed() == 0
    })
    .await;
    app.shutdown().await;

    // As if the process had died after the messages were committed and before their
    // updates were recorded as handled or the offset was saved: Telegram sends the same
    // updates again. (The /start, the first update, stays recorded.)
    const RESET_OFFSET: &str = "UPDATE telegram_state SET value = 0 WHERE key = 'offset'";
    const FORGET: &str = "DELETE FROM telegram_updates WHERE update_id > (SELECT MIN(update_id) FROM telegram_updates)";
    let forgotten = if app.config.database_url.is_empty() {
        let db = app.config.data_dir.join("lingshi.db");
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            db.display()
        ))
        .await
        .unwrap();
        sqlx::query(RESET_OFFSET).execute(&mut conn).await.unwrap();
        sqlx::query(FORGET)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(app.config.database_url.expose())
                .await
                .unwrap();
        sqlx::query(RESET_OFFSET).execute(&mut conn).await.unwrap();
        sqlx::query(FORGET)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected()
    };
    assert_eq!(forgotten, 3);
    fake.redeliver_all();
    for i in 1..=2 {
        fake.text(1200, &format!("after {i}"));
    }
    let server = lingshi::server::Server::start(app.config.clone())
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    wait_until(secs(15), "the new messages", || async {
        all_messages(&app.http, &base, &agent.token, &conv)
            .await
            .len()
            >= 5
    })
    .await;
    wait_until(secs(10), "the updates confirmed", || async {
        fake.unconfirmed() == 0
    })
    .await;
    let bodies: Vec<String> = all_messages(&app.http, &base, &agent.token, &conv)
        .await
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        bodies,
        vec!["before 1", "before 2", "before 3", "after 1", "after 2"]
    );
    let greetings = fake
        .sent_to(1200)
        .iter()
        .filter(|s| s.text.as_deref().is_some_and(|t| t.contains("您好")))
        .count();
    assert_eq!(greetings, 1, "/start answered twice");
    server.shutdown().await.unwrap();
}

/// `[telegram]` for a config file of the binary.
fn telegram_section(fake: &FakeTelegram) -> String {
    format!(
        "[telegram]\ntoken = {TOKEN:?}\napi_url = {:?}\npoll_timeout_secs = 1\n",
        fake.url()
    )
}

#[tokio::test]
async fn replies_queued_at_a_kill_9_are_delivered_exactly_once_after_the_restart() {
    let fake = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.bind = "127.0.0.1:0".into();
    let file = write_config_file(dir.path(), &config);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&telegram_section(&fake));
    std::fs::write(&file, text).unwrap();
    let out = run_cli(
        &file,
        &[
            "agent",
            "add",
            "--email",
            "lin@mfa.example",
            "--name",
            "Lin",
            "--mission",
            "mfa",
            "--role",
            "agent",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(out.status.success());
    let mut server = start_server(&file, dir.path(), "first").await;
    let http = reqwest::Client::new();
    let token = {
        let (s, b) = into_pair(
            http.post(format!("{}/v1/agent/sessions", server.base))
                .json(&json!({"email": "lin@mfa.example", "password": PASSWORD}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        b["token"].as_str().unwrap().to_string()
    };
    let chats = [1301i64, 1302, 1303];
    for chat in chats {
        fake.text(chat, "hello");
    }
    let mut convs = Vec::new();
    wait_until(secs(15), "three conversations", || async {
        let (_, b) = into_pair(
            http.get(format!("{}/v1/conversations", server.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        b["conversations"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let (_, b) = into_pair(
        http.get(format!("{}/v1/conversations", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    for c in b["conversations"].as_array().unwrap() {
        convs.push(c["id"].as_str().unwrap().to_string());
    }
    let send = |base: String, conv: String, body: String| {
        let http = http.clone();
        let token = token.clone();
        async move {
            let r = http
                .post(format!("{base}/v1/conversations/{conv}/messages"))
                .bearer_auth(&token)
                .json(&json!({"client_msg_id": uuid(), "body": body}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
    };
    // Some replies go through before the crash.
    for (n, conv) in convs.iter().enumerate() {
        for i in 1..=3 {
            send(server.base.clone(), conv.clone(), format!("c{n} r{i}")).await;
        }
    }
    fake.wait_for(secs(20), "nine deliveries", |s| s.len() >= 9)
        .await;
    // Telegram stops accepting; more replies queue up; the server dies.
    fake.set_outage(Some(Failure::RetryAfter(60)));
    for (n, conv) in convs.iter().enumerate() {
        for i in 4..=8 {
            send(server.base.clone(), conv.clone(), format!("c{n} r{i}")).await;
        }
    }
    // Once every chat's next reply was refused, the replies before it are recorded as
    // delivered (a chat's next message goes only after that).
    wait_until(
        secs(20),
        "an attempt refused by the outage in every chat",
        || async {
            let refused: std::collections::HashSet<i64> = fake
                .calls("sendmessage")
                .iter()
                .filter(|c| c.status == 429)
                .filter_map(|c| c.params["chat_id"].as_i64())
                .collect();
            refused.len() == chats.len()
        },
    )
    .await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    fake.set_outage(None);

    let server = start_server(&file, dir.path(), "second").await;
    fake.wait_for(secs(60), "every reply", |s| s.len() >= 24)
        .await;
    // Give a duplicate a chance to show up.
    tokio::time::sleep(secs(3)).await;
    let sent = fake.sent();
    assert_eq!(sent.len(), 24, "each reply exactly once");
    for (n, chat_texts) in chats.iter().map(|c| texts_to(&fake, *c)).enumerate() {
        let bodies: Vec<String> = chat_texts
            .iter()
            .map(|t| t.rsplit('\n').next().unwrap().to_string())
            .collect();
        // Each chat got one conversation's replies, in order.
        let conv_index = bodies[0][1..2].parse::<usize>().unwrap();
        let expected: Vec<String> = (1..=8).map(|i| format!("c{conv_index} r{i}")).collect();
        assert_eq!(bodies, expected, "chat {n}");
    }
    drop(server);
}
