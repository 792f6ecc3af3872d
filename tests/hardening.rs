//! What a hostile client tries: connections that say nothing or trickle headers, more
//! connections than its share, uploads that fill the disk, floods over HTTP, pathological
//! Markdown, tokens not yet valid, placeholders smuggled in a name, and the headers and
//! error texts that must not leak. Each defect is reproduced against the real server.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{source}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the server closes the connection within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response (e.g. 408); keep reading until closed
        }
    }
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_while_others_are_served() {
    let app = TestApp::spawn_with(|c| {
        c.limits.http_header_timeout_secs = 2;
        c.limits.connections_per_address = 40;
    })
    .await;
    let attacker = "127.0.0.2";
    // 30 connections that say nothing.
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(connect_from(attacker, app.addr).await);
    }
    // 5 slowloris clients: one header byte every 300 ms, never finishing.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from(attacker, app.addr).await;
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.write_all(b"a").await.is_err() {
                    return started.elapsed();
                }
                let mut buf = [0u8; 256];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    return started.elapsed();
                }
            }
            started.elapsed()
        }));
    }
    // A keep-alive client that makes one request and then goes quiet.
    let mut idle = connect_from(attacker, app.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = idle.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    // Over its share: the address holds 36 of 40; of 10 more, the extra ones are
    // closed at once.
    let mut extra = Vec::new();
    for _ in 0..10 {
        extra.push(connect_from(attacker, app.addr).await);
    }
    let mut refused = 0;
    for s in &mut extra {
        if closed_within(s, Duration::from_millis(300)).await {
            refused += 1;
        }
    }
    assert!(
        refused >= 6,
        "only {refused} of 10 connections over the per-address limit were refused"
    );
    // Meanwhile everyone else is served.
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), app.get("/healthz", None))
            .await
            .expect("healthz answers while attacked");
        assert_eq!(r.0, 200);
        let (s, _) = tokio::time::timeout(
            Duration::from_secs(5),
            app.post_json(
                "/v1/citizen/sessions",
                None,
                &json!({"display_name": "Alice"}),
            ),
        )
        .await
        .expect("sign-in answers while attacked");
        assert_eq!(s, 200);
    }
    // After the header timeout every silent, slow and idle connection is closed.
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(6)).await,
            "a silent connection was held"
        );
    }
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await);
    for t in slow {
        let held = t.await.unwrap();
        assert!(
            held < Duration::from_secs(10),
            "a slowloris client was held {held:?}"
        );
    }
    // The slots are free again.
    let mut again = connect_from(attacker, app.addr).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    again.read_to_end(&mut buf).await.unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn a_body_trickled_slower_than_the_request_limit_is_cut_off() {
    let app = TestApp::spawn_with(|c| c.limits.http_request_timeout_secs = 2).await;
    let mut s = connect_from("127.0.0.1", app.addr).await;
    s.write_all(
        b"POST /v1/citizen/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = s.write_all(b" ").await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "body held forever"
        );
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

/// A PNG of noise (it does not compress), about 3 bytes per pixel.
fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ u32::from(seed);
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let [a, b, c, _] = x.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, token: &str, bytes: Vec<u8>) -> (u16, Value, Option<String>) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("x.png");
    let r = app
        .http
        .post(app.url("/v1/attachments"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (s, v) = into_pair(r).await;
    (s, v, retry)
}

#[tokio::test]
async fn uploads_are_limited_per_person_per_address_and_in_all() {
    let app = TestApp::spawn_with(|c| {
        c.limits.uploads_per_minute = 3;
        c.limits.unreferenced_upload_bytes_per_person = 150_000;
    })
    .await;
    let a = app.citizen("Uploader", Some("BE")).await;
    for i in 0..3 {
        let (s, v, _) = upload(&app, &a.token, png(64, 64, i)).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v, retry) = upload(&app, &a.token, png(64, 64, 9)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    // Another person is not affected.
    let b = app.citizen("Other", Some("BE")).await;
    assert_eq!(upload(&app, &b.token, png(64, 64, 1)).await.0, 201);
    // Bytes not used in any message are capped per person (150 KB here).
    let c = app.citizen("Hoarder", Some("BE")).await;
    let big = png(200, 150, 7);
    assert!((80_000..120_000).contains(&big.len()), "{}", big.len());
    let first = upload(&app, &c.token, big.clone()).await;
    assert_eq!(first.0, 201, "{}", first.1);
    let (s, v, _) = upload(&app, &c.token, png(200, 150, 8)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    // Sending the image frees the quota.
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, ack) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&c.token),
            &json!({"client_msg_id": uuid(), "attachment_ids": [first.1["id"]]}),
        )
        .await;
    assert_eq!(s, 201, "{ack}");
    assert_eq!(upload(&app, &c.token, png(200, 150, 8)).await.0, 201);

    // Per address: bytes per hour.
    let app = TestApp::spawn_with(|c| c.limits.upload_bytes_per_address_per_hour = 250_000).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        let who = app.citizen(&format!("guest {i}"), None).await;
        codes.push(upload(&app, &who.token, png(200, 150, i)).await.0);
    }
    assert!(codes.contains(&429), "{codes:?}");
    // In all: a global cap on bytes no message uses.
    let app = TestApp::spawn_with(|c| c.limits.unreferenced_upload_bytes_max = 150_000).await;
    let x = app.citizen("x", None).await;
    assert_eq!(upload(&app, &x.token, png(200, 150, 1)).await.0, 201);
    let y = app.citizen("y", None).await;
    let (s, v, _) = upload(&app, &y.token, png(200, 150, 2)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{v}"
    );
}

#[tokio::test]
async fn one_send_budget_covers_http_and_the_socket() {
    let app = TestApp::spawn_with(|c| c.limits.frames_per_second = 2).await;
    let c = app.citizen("Fast", Some("BE")).await;
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ws = app.ws(&c.token).await;
    // A burst over HTTP: the first two pass, the rest are told to wait.
    let sends = (0..10).map(|_| {
        let (http, url, token) = (
            app.http.clone(),
            app.url(&format!("/v1/conversations/{conv}/messages")),
            c.token.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"client_msg_id": uuid(), "body": "hi"}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let ok = results.iter().filter(|r| r.0 == 201).count();
    let limited = results.iter().filter(|r| r.0 == 429 && r.1).count();
    assert!((2..=3).contains(&ok), "{results:?}");
    assert_eq!(ok + limited, 10, "{results:?}");
    // The socket draws on the same budget: its frame budget is untouched, yet the
    // send is refused as a message over the sender's rate.
    ws.send(
        json!({"type": "send", "client_msg_id": uuid(), "conversation_id": conv, "body": "ws"}),
    )
    .await;
    let e = ws.expect("error").await;
    assert_eq!(e["code"], "rate_limited", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("messages per second"),
        "{e}"
    );
}

#[tokio::test]
async fn deeply_nested_markdown_is_refused_before_rendering() {
    let app = TestApp::spawn().await;
    let editor = app.staff("editor@test.example", "mfa", "editor").await;
    let body = ">".repeat(30_000);
    let started = Instant::now();
    let (s, v) = app
        .post_json(
            "/v1/kb/articles",
            Some(&editor.token),
            &json!({"slug": "deep", "locale": "en", "title": "Deep", "category": "faq",
                    "body_markdown": body}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nests"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let (s, _) = app
        .post_json(
            "/v1/kb/preview",
            Some(&editor.token),
            &json!({"body_markdown": "- a\n".repeat(10) + &"  ".repeat(200) + "- deep"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = app
        .post_json(
            "/v1/kb/preview",
            Some(&editor.token),
            &json!({"body_markdown": "> quote\n\n**bold** <script>x</script>"}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(v["body_html"]
        .as_str()
        .unwrap()
        .contains("<strong>bold</strong>"));
    assert!(!v["body_html"].as_str().unwrap().contains("<script"));
}

#[tokio::test]
async fn an_identity_token_that_is_not_yet_valid_is_refused() {
    let secret = "test-identity-secret-0123456789";
    let app =
        TestApp::spawn_with(|c| c.identity.hs256_secret = lingshi::config::Secret::new(secret))
            .await;
    let now = chrono::Utc::now().timestamp();
    let token = |nbf: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "later", "exp": now + 3600, "nbf": nbf}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (s, v) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": token(now + 1800)}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": token(now - 10)}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn placeholders_in_a_name_are_not_expanded() {
    let app = TestApp::spawn().await;
    let agent = app.staff("li@test.example", "be", "agent").await;
    let c = app.citizen("{agent_name}", Some("BE")).await;
    let conv = app.conversation(&c).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = app
        .post_json(
            "/v1/canned-responses",
            Some(&agent.token),
            &json!({"mission_id": "be", "title": "greet",
                    "body": "Dear {citizen_name}, this is {agent_name}."}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, v) = app
        .post(
            &format!("/v1/conversations/{conv}/canned-responses"),
            Some(&agent.token),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["canned_responses"][0]["rendered"],
        "Dear {agent_name}, this is li@test.example."
    );
}

#[tokio::test]
async fn headers_and_error_texts_leak_nothing() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(app.url("/v1/citizen/sessions"))
        .json(&json!({"display_name": "Alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let conv = app
        .post_json("/v1/conversations", Some(&token), &json!({}))
        .await
        .1["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wrong types and missing fields are named without the server's type names.
    for body in [
        json!({"client_msg_id": 5, "body": "x"}),
        json!({"body": "x"}),
        json!("just a string"),
    ] {
        let (s, v) = app
            .post_json(
                &format!("/v1/conversations/{conv}/messages"),
                Some(&token),
                &body,
            )
            .await;
        assert_eq!(s, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains("SendRequest") && !msg.contains("struct") && !msg.contains("Deserialize"),
            "{msg}"
        );
    }
    // client_msg_id must be a UUID.
    let (s, v) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&token),
            &json!({"client_msg_id": "msg-1", "body": "x"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("UUID"));
    // JSON errors carry nosniff too.
    let r = app.http.get(app.url("/v1/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn the_open_sockets_gauge_counts_sockets_before_hello() {
    let app = TestApp::spawn_with(|c| c.limits.hello_timeout_secs = 5).await;
    let gauge = |text: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix("lingshi_ws_open_sockets "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let metrics = || async {
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = gauge(&metrics().await);
    let mut quiet = Vec::new();
    for _ in 0..3 {
        quiet.push(Ws::raw(&app.ws_url()).await);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = gauge(&metrics().await);
        if now == before + 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gauge {now}, expected {}",
            before + 3
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(quiet);
    let deadline = Instant::now() + Duration::from_secs(3);
    while gauge(&metrics().await) != before {
        assert!(Instant::now() < deadline, "gauge does not come down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_gif_frame_larger_than_its_screen_is_reported_with_its_real_size() {
    let app = TestApp::spawn_with(|c| c.limits.image_max_pixels = 1_000_000).await;
    let c = app.citizen("Gif", None).await;
    let (fw, fh) = (1200u16, 1000u16);
    let indices = vec![0u8; usize::from(fw) * usize::from(fh)];
    let mut bytes = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut bytes, 10, 10, &[0, 0, 0, 255, 255, 255]).unwrap();
        enc.write_frame(&gif::Frame {
            width: fw,
            height: fh,
            buffer: std::borrow::Cow::Borrowed(&indices),
            ..gif::Frame::default()
        })
        .unwrap();
    }
    let (s, v, _) = upload(&app, &c.token, bytes).await;
    assert_eq!(s, 413, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1200x1000"),
        "{v}"
    );
}
