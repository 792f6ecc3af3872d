//! Every page in Chinese and English: accessibility (axe-core, no serious or critical
//! violation), screenshots, the language following the browser, the security headers,
//! the embeddable widget, and the editor publishing an article the citizen then finds.

#[path = "browser/mod.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::flows::*;
use browser::{Browser, Page};
use common::*;
use fantoccini::key::Key;
use serde_json::{json, Value};

/// Give a page a signed-in session without the sign-in form (the form has its own test).
async fn as_staff(page: &Page, app: &TestApp, path: &str, token: &str, agent: &Value) {
    page.goto(&app.url(path)).await;
    page.eval(
        "sessionStorage.setItem('lingshi.staff', JSON.stringify({token: arguments[0], agent: arguments[1]}))",
        vec![json!(token), agent.clone()],
    )
    .await;
    page.goto(&app.url(path)).await;
}

async fn as_citizen(page: &Page, app: &TestApp, session: Value) {
    page.goto(&app.url("/chat/")).await;
    page.eval(
        "localStorage.setItem('lingshi.chat.v1', JSON.stringify(arguments[0]))",
        vec![session],
    )
    .await;
    page.goto(&app.url("/chat/")).await;
    wait_connected(page).await;
}

async fn check(page: &Page, name: &str) {
    page.assert_accessible(name).await;
    page.screenshot(name).await;
}

async fn staff_login(app: &TestApp, email: &str) -> (String, Value) {
    let r = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    (
        r.1["token"].as_str().unwrap().to_string(),
        r.1["agent"].clone(),
    )
}

/// A conversation with text, an image, a note and a reply; an alert and an article.
async fn seed(app: &TestApp) -> (Value, String, String) {
    let agent = app.staff("ana@example.org", "be", "agent").await;
    app.staff("ed@example.org", "be", "editor").await;
    let (ed_token, _) = staff_login(app, "ed@example.org").await;
    let r = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"display_name": "李明 Li Ming", "locale": "zh-CN", "country": "BE"}),
        )
        .await;
    let ctoken = r.1["token"].as_str().unwrap().to_string();
    let citizen = r.1["citizen"].clone();
    let conv = app
        .post_json(
            "/v1/conversations",
            Some(&ctoken),
            &json!({"channel": "web"}),
        )
        .await
        .1;
    let cid = conv["id"].as_str().unwrap().to_string();
    app.send_http(
        &ctoken,
        &cid,
        &uuid(),
        "我的护照丢了，怎么办？ I lost my passport.",
    )
    .await;
    let png = {
        let img = image::RgbImage::from_fn(320, 200, |x, y| {
            image::Rgb([(x % 256) as u8, 90, (y % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png)
            .file_name("photo.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let up: Value = app
        .http
        .post(app.url("/v1/attachments"))
        .bearer_auth(&ctoken)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.post_json(
        &format!("/v1/conversations/{cid}/messages"),
        Some(&ctoken),
        &json!({"client_msg_id": uuid(), "kind": "image", "attachment_ids": [up["id"]]}),
    )
    .await;
    app.post_json(
        &format!("/v1/conversations/{cid}/messages"),
        Some(&agent.token),
        &json!({"client_msg_id": uuid(), "kind": "note", "body": "先核实身份 / verify identity first"}),
    )
    .await;
    app.send_http(
        &agent.token,
        &cid,
        &uuid(),
        "请先向当地警方报案。Please report the loss to the police first.",
    )
    .await;
    for (slug, locale, title, cat, body) in [
        (
            "lost-passport",
            "zh-CN",
            "护照在国外遗失怎么办",
            "faq",
            "先向当地警方报案，然后预约办理旅行证。",
        ),
        (
            "lost-passport",
            "en",
            "Lost your passport abroad?",
            "faq",
            "Report the loss to the local police, then book an appointment for a travel document.",
        ),
        (
            "strike-brussels",
            "zh-CN",
            "布鲁塞尔交通罢工提醒",
            "safety_alert",
            "明日全市公共交通罢工，请合理安排出行。",
        ),
        (
            "strike-brussels",
            "en",
            "Transport strike in Brussels",
            "safety_alert",
            "Public transport stops tomorrow; plan your travel.",
        ),
    ] {
        let mut a = json!({"slug": slug, "locale": locale, "title": title, "category": cat,
                           "countries": ["BE"], "body_markdown": body, "summary": body});
        if cat == "safety_alert" {
            a["severity"] = json!("high");
        }
        let r = app.post_json("/v1/kb/articles", Some(&ed_token), &a).await;
        assert_eq!(r.0, 201, "{}", r.1);
        let id = r.1["id"].as_str().unwrap();
        let r = app
            .post(&format!("/v1/kb/articles/{id}/publish"), Some(&ed_token))
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let session =
        json!({"token": ctoken, "citizen": citizen, "country": "BE", "conversation_id": cid});
    (session, cid, agent.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_in_chinese_and_english() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let (citizen_session, _cid, _) = seed(&app).await;
    let (agent_token, agent) = staff_login(&app, "ana@example.org").await;
    let (ed_token, editor) = staff_login(&app, "ed@example.org").await;
    for (lang, l) in [("zh-CN", "zh"), ("en-US", "en")] {
        let page = b.page(lang).await;
        // The citizen chat: the start screen follows the browser's language.
        page.goto(&app.url("/chat/")).await;
        let html_lang = page
            .eval("return document.documentElement.lang", vec![])
            .await;
        assert_eq!(html_lang, json!(if l == "zh" { "zh-CN" } else { "en" }));
        page.wait_text(if l == "zh" {
            "开始咨询"
        } else {
            "Start chat"
        })
        .await;
        check(&page, &format!("chat-start-{l}")).await;

        as_citizen(&page, &app, citizen_session.clone()).await;
        page.wait_text(if l == "zh" {
            "请先向当地警方报案"
        } else {
            "Please report the loss"
        })
        .await;
        page.wait_text(if l == "zh" {
            "布鲁塞尔交通罢工提醒"
        } else {
            "Transport strike in Brussels"
        })
        .await;
        let (toggle, query) = if l == "zh" {
            ("搜索办事指南", "护照")
        } else {
            ("Search guides", "passport")
        };
        page.click("button", toggle).await;
        page.fill(toggle, query).await;
        page.wait_text(if l == "zh" {
            "护照在国外遗失怎么办"
        } else {
            "Lost your passport abroad?"
        })
        .await;
        check(&page, &format!("chat-{l}")).await;
        page.click(
            "button",
            if l == "zh" {
                "紧急求助（SOS）"
            } else {
                "SOS — I am in danger"
            },
        )
        .await;
        page.find(
            "dialog",
            if l == "zh" {
                "确定发送紧急求助？"
            } else {
                "Send an emergency alert?"
            },
        )
        .await;
        check(&page, &format!("chat-sos-{l}")).await;
        page.click("button", if l == "zh" { "取消" } else { "Cancel" })
            .await;
        page.c.set_window_size(390, 844).await.unwrap();
        page.screenshot(&format!("chat-mobile-{l}")).await;
        page.c.set_window_size(1400, 900).await.unwrap();
        page.goto(&app.url("/chat/?embed=1")).await;
        wait_connected(&page).await;
        page.c.set_window_size(400, 640).await.unwrap();
        check(&page, &format!("chat-embed-{l}")).await;
        page.c.set_window_size(1400, 900).await.unwrap();

        // The console: sign-in, then a conversation with an image, a note and triage.
        page.goto(&app.url("/console/")).await;
        page.wait_text(if l == "zh" { "登录" } else { "Sign in" })
            .await;
        check(&page, &format!("console-signin-{l}")).await;
        as_staff(&page, &app, "/console/", &agent_token, &agent).await;
        wait_connected(&page).await;
        page.find_containing("button", "Li Ming")
            .await
            .click()
            .await
            .unwrap();
        page.wait_text("verify identity first").await;
        page.find_containing("button", "Li Ming").await;
        page.wait_js(
            "the thumbnail",
            "const i = document.querySelector('li img'); return !!i && i.complete && i.naturalWidth > 0;",
            vec![],
            Duration::from_secs(10),
        )
        .await;
        check(&page, &format!("console-{l}")).await;
        page.find("heading", if l == "zh" { "会话队列" } else { "Queue" })
            .await
            .click()
            .await
            .ok();
        page.c
            .active_element()
            .await
            .unwrap()
            .send_keys("?")
            .await
            .unwrap();
        page.find(
            "dialog",
            if l == "zh" {
                "键盘快捷键"
            } else {
                "Keyboard shortcuts"
            },
        )
        .await;
        check(&page, &format!("console-help-{l}")).await;
        page.c
            .active_element()
            .await
            .unwrap()
            .send_keys(&Key::Escape.to_string())
            .await
            .unwrap();

        // The editor: an article open with its preview, then the gaps report.
        as_staff(&page, &app, "/editor/", &ed_token, &editor).await;
        let title = if l == "zh" {
            "护照在国外遗失怎么办"
        } else {
            "Lost your passport abroad?"
        };
        page.find_containing("button", title)
            .await
            .click()
            .await
            .unwrap();
        page.wait_text(if l == "zh" { "正在编辑" } else { "Editing" })
            .await;
        check(&page, &format!("editor-{l}")).await;
        page.click(
            "button",
            if l == "zh" {
                "无结果的搜索"
            } else {
                "Searches without answers"
            },
        )
        .await;
        page.find(
            "table",
            if l == "zh" {
                "无结果的搜索"
            } else {
                "Searches without answers"
            },
        )
        .await;
        check(&page, &format!("editor-gaps-{l}")).await;
        page.eval("sessionStorage.clear()", vec![]).await;
        page.goto(&app.url("/editor/")).await;
        page.wait_text(if l == "zh" { "登录" } else { "Sign in" })
            .await;
        check(&page, &format!("editor-signin-{l}")).await;
        page.close().await;
    }
    println!("screenshots in {}", browser::screenshot_dir().display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_can_be_switched_and_is_remembered() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let page = b.page("en-US").await;
    page.goto(&app.url("/chat/")).await;
    page.find("heading", "Write to your embassy or consulate")
        .await;
    page.choose("Language", "zh").await;
    page.find("heading", "联系您所在地的使领馆").await;
    assert_eq!(
        page.eval("return document.documentElement.lang", vec![])
            .await,
        json!("zh-CN")
    );
    page.c.refresh().await.unwrap();
    page.find("heading", "联系您所在地的使领馆").await;
    // The same choice holds on the staff pages of this server.
    page.goto(&app.url("/console/")).await;
    page.find("button", "登录").await;
    page.choose("语言", "en").await;
    page.find("button", "Sign in").await;
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_publishes_an_article_the_citizen_then_finds() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.staff("ed@example.org", "be", "editor").await;
    app.staff("ana@example.org", "be", "agent").await;
    let editor = b.page("en-US").await;
    let citizen = b.page("en-US").await;
    editor.goto(&app.url("/editor/")).await;
    editor.fill("Email", "ed@example.org").await;
    editor.fill("Password", PASSWORD).await;
    editor.click("button", "Sign in").await;
    editor.click("button", "New article").await;
    editor
        .fill("Title", "Replacing a lost passport in Antwerp")
        .await;
    editor
        .fill("Slug (name in web addresses)", "lost-passport-antwerp")
        .await;
    editor.choose("Language of the article", "en").await;
    editor.choose("Category", "guide").await;
    editor
        .fill("Countries (codes such as BE, LU; empty = everywhere)", "BE")
        .await;
    editor
        .fill(
            "Body (Markdown)",
            "If your passport is lost in **Antwerp**, report it to the police first. Zebracorn office.",
        )
        .await;
    editor.click("button", "Publish").await;
    editor.wait_text("Published · version").await;

    // The citizen finds it while waiting (indexing takes a moment: search again).
    citizen_start(&citizen, &app, "Qian Yu", "BE").await;
    citizen.click("button", "Search guides").await;
    let found = {
        let mut found = None;
        for _ in 0..50 {
            citizen.fill("Search guides", "Zebracorn").await;
            citizen.click("button", "Search").await;
            if let Some(el) = citizen
                .try_find(
                    "button",
                    "Replacing a lost passport in Antwerp",
                    true,
                    Duration::from_millis(300),
                )
                .await
            {
                found = Some(el);
                break;
            }
        }
        found.expect("the published article is found")
    };
    // The snippet's match is highlighted as an element, never as text with tags.
    let marks = citizen
        .eval(
            "return [...document.querySelectorAll('li mark')].map((m) => m.textContent)",
            vec![],
        )
        .await;
    assert!(
        marks.to_string().to_lowercase().contains("zebracorn"),
        "{marks}"
    );
    assert!(!citizen.body_text().await.contains("<mark>"));
    drop(found);
    // The list may have been redrawn by the search as one types: click it by name.
    citizen
        .click("button", "Replacing a lost passport in Antwerp")
        .await;
    citizen
        .find("dialog", "Replacing a lost passport in Antwerp")
        .await;
    // The sentence is also in the result's snippet: wait for the article's own body in
    // the dialog, rendered by the server from the Markdown.
    let mut strong = json!(null);
    for _ in 0..50 {
        strong = citizen
            .eval(
                "return document.querySelector('dialog[open] strong')?.textContent ?? null",
                vec![],
            )
            .await;
        if !strong.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(strong, json!("Antwerp"), "the server's rendered Markdown");
    citizen.wait_text("report it to the police first").await;

    // An edit makes version 2; restoring version 1 brings the text back.
    editor
        .fill("Body (Markdown)", "Completely different text.")
        .await;
    editor.click("button", "Save").await;
    editor.wait_text("Saved (version").await;
    editor.click("button", "Versions").await;
    editor.click("button", "Restore version 1").await;
    editor.wait_text("Version 1 restored").await;
    let body = editor
        .eval(
            "return document.querySelector('textarea[name=body_markdown]').value",
            vec![],
        )
        .await;
    assert!(
        body.as_str().unwrap().contains("Zebracorn office"),
        "{body}"
    );
    editor.close().await;
    citizen.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_opens_the_compact_chat_in_a_frame() {
    let Some(mut b) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let page = b.page("en-US").await;
    // Any page of the same origin can host it here; a mission's site is another origin,
    // allowed through the server's list of embedding origins.
    page.goto(&app.url("/console/")).await;
    page.eval(
        "const s = document.createElement('script'); s.src = '/chat/widget.js';
         s.dataset.country = 'BE'; s.dataset.lang = 'en'; document.body.appendChild(s);",
        vec![],
    )
    .await;
    page.click("button", "Consular help chat").await;
    let frame = page
        .c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(fantoccini::Locator::Css(
            "iframe[title='Consular help chat']",
        ))
        .await
        .expect("the chat frame");
    frame.enter_frame().await.unwrap();
    page.find("heading", "Write to your embassy or consulate")
        .await;
    let state = page
        .eval(
            "return [document.body.classList.contains('embed'), document.querySelector('select[name=country]').value]",
            vec![],
        )
        .await;
    assert_eq!(
        state,
        json!([true, "BE"]),
        "compact layout, country from the site"
    );
    page.c.enter_parent_frame().await.unwrap();
    page.click("button", "Close the chat").await;
    page.close().await;
}

#[tokio::test]
async fn pages_are_served_with_a_strict_security_policy() {
    let app = TestApp::spawn().await;
    for (path, framable) in [
        ("/console/", false),
        ("/editor/", false),
        ("/chat/", true),
        ("/chat/?embed=1", true),
        ("/shared/base.css", false),
        ("/console/console.js", false),
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap().to_string();
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(part), "{path}: {part} missing in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        if framable {
            assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
        } else {
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        }
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let etag = h["etag"].to_str().unwrap().to_string();
        let again = app
            .http
            .get(app.url(path))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path} revalidates");
    }
    // No inline script or style anywhere in the pages.
    for path in ["/console/", "/editor/", "/chat/"] {
        let html = app
            .http
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{path}"
        );
        assert!(
            !has_inline_handler(&html),
            "{path} has an inline event handler"
        );
    }
    let widget = app
        .http
        .get(app.url("/chat/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        widget.headers()["cross-origin-resource-policy"],
        "cross-origin"
    );
    assert!(widget.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let r = app
        .http
        .get(app.url("/console/%2e%2e/Cargo.toml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app.http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(r.url().path(), "/console/", "redirected to the page");
}

/// An `onclick=`-style attribute in markup.
fn has_inline_handler(html: &str) -> bool {
    html.split(|c: char| c.is_whitespace() || c == '<')
        .any(|w| {
            w.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
                })
        })
}
