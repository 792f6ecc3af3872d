//! Image uploads: type from the bytes, limits, bombs, EXIF/GPS stripping, access, and
//! image messages.

mod common;

use std::io::Cursor;

use common::*;
use serde_json::{json, Value};

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A valid PNG header claiming `w` × `h` pixels, followed by a tiny body.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x63\x00\x00\x00\x01\x00\x01".to_vec();
    out.extend(((idat.len() - 4) as u32).to_be_bytes());
    out.extend(&idat);
    out.extend(crc(&idat).to_be_bytes());
    out.extend(0u32.to_be_bytes());
    out.extend(b"IEND");
    out.extend(crc(b"IEND").to_be_bytes());
    out
}

async fn upload(
    app: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    name: &str,
    mime: &str,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap();
    let form = reqwest::multipart::Form::new().part("file", part);
    let r = app
        .http
        .post(app.url("/v1/attachments"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    into_pair(r).await
}

#[tokio::test]
async fn only_real_images_within_limits_are_accepted() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let (s, a) = upload(&app, &c.token, png(1200, 800), "report.png", "image/png").await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(1200), Some(800))
    );
    assert!(a["url"]
        .as_str()
        .unwrap()
        .ends_with(a["id"].as_str().unwrap()));
    assert!(a["thumb_url"].as_str().unwrap().ends_with("/thumb"));
    // The type comes from the bytes, not the name or declared type.
    let (s, a) = upload(
        &app,
        &c.token,
        jpeg(300, 200),
        "photo.png",
        "application/octet-stream",
    )
    .await;
    assert_eq!((s, a["content_type"].as_str()), (201, Some("image/jpeg")));
    let svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    for (bytes, name, mime) in [
        (
            b"hello, this is not an image".to_vec(),
            "x.png",
            "image/png",
        ),
        (svg, "x.svg", "image/svg+xml"),
        (b"%PDF-1.7\n".to_vec(), "x.jpg", "image/jpeg"),
    ] {
        let (s, b) = upload(&app, &c.token, bytes, name, mime).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{name}: {b}"
        );
    }
    // A PNG claiming 30,000 × 30,000 pixels is refused from its header.
    let (s, b) = upload(
        &app,
        &c.token,
        png_bomb(30_000, 30_000),
        "bomb.png",
        "image/png",
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("30000"),
        "{b}"
    );
    // 11 MiB.
    let (s, b) = upload(
        &app,
        &c.token,
        vec![0u8; 11 * 1024 * 1024],
        "big.jpg",
        "image/jpeg",
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{b}"
    );
    // No file field; no token.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = app
        .http
        .post(app.url("/v1/attachments"))
        .bearer_auth(&c.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .http
        .post(app.url("/v1/attachments"))
        .multipart(
            reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(png(2, 2))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.get("/healthz", None).await.0, 200);
}

#[tokio::test]
async fn exif_and_gps_are_gone_from_the_served_bytes() {
    let app = TestApp::spawn().await;
    let c = app.citizen("Li", Some("BE")).await;
    let original = jpeg_with_gps();
    assert!(original.windows(4).any(|w| w == b"Exif"));
    let (s, a) = upload(&app, &c.token, original, "passport.jpg", "image/jpeg").await;
    assert_eq!(s, 201, "{a}");
    for path in [
        a["url"].as_str().unwrap().to_string(),
        a["thumb_url"].as_str().unwrap().to_string(),
    ] {
        let r = app
            .http
            .get(app.url(&path))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["content-type"].to_str().unwrap().starts_with("image/"));
        assert!(h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline; filename="));
        assert!(h.contains_key("cache-control") && h.contains_key("etag"));
        let bytes = r.bytes().await.unwrap();
        assert!(
            !bytes.windows(4).any(|w| w == b"Exif"),
            "{path} still has EXIF"
        );
        assert!(
            !bytes.windows(13).any(|w| w == b"SECRET-CAMERA"),
            "{path} still has the camera model"
        );
        image::load_from_memory(&bytes).expect("served bytes are an image");
    }
}

#[tokio::test]
async fn strangers_can_neither_download_nor_attach_someone_elses_upload() {
    let app = TestApp::spawn().await;
    let alice = app.citizen("Alice", Some("BE")).await;
    let bob = app.citizen("Bob", Some("BE")).await;
    let be_agent = app.staff("be@test.example", "be", "agent").await;
    let et_agent = app.staff("et@test.example", "et", "agent").await;
    let (_, a) = upload(&app, &alice.token, png(40, 40), "a.png", "image/png").await;
    let id = a["id"].as_str().unwrap().to_string();
    let url = format!("/v1/attachments/{id}");
    // Before it is in a message: only the uploader.
    assert_eq!(app.get(&url, Some(&alice.token)).await.0, 200);
    for t in [&bob.token, &be_agent.token] {
        assert_eq!(app.get(&url, Some(t)).await.0, 403);
    }
    assert_eq!(app.get(&url, None).await.0, 401);
    assert_eq!(
        app.get(&format!("/v1/attachments/{}", uuid()), Some(&alice.token))
            .await
            .0,
        404
    );
    // Bob cannot put Alice's upload in his message.
    let bob_conv = app.conversation(&bob).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = app
        .post_json(
            &format!("/v1/conversations/{bob_conv}/messages"),
            Some(&bob.token),
            &json!({"client_msg_id": uuid(), "kind": "image", "attachment_ids": [id]}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    // Alice sends it as an image message: her mission's agents may now read it.
    let mut agent_ws = app.ws(&be_agent.token).await;
    let conv = app.conversation(&alice).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, ack) = app
        .post_json(&format!("/v1/conversations/{conv}/messages"), Some(&alice.token), &json!({"client_msg_id": uuid(), "kind": "image", "body": "police report", "attachment_ids": [id]}))
        .await;
    assert_eq!(s, 201, "{ack}");
    let m = agent_ws.expect("message").await;
    assert_eq!(m["message"]["kind"], "image");
    let att = &m["message"]["attachments"][0];
    assert_eq!(att["id"], id.as_str());
    assert!(att["thumb_url"].is_string() && att["url"].is_string());
    assert_eq!(app.get(&url, Some(&be_agent.token)).await.0, 200);
    assert_eq!(
        app.get(&format!("{url}/thumb"), Some(&be_agent.token))
            .await
            .0,
        200
    );
    assert_eq!(app.get(&url, Some(&et_agent.token)).await.0, 403);
    assert_eq!(app.get(&url, Some(&bob.token)).await.0, 403);
    // History carries the attachment too.
    let msgs = app.messages(&alice.token, &conv, "").await;
    assert_eq!(msgs[0]["attachments"][0]["id"], id.as_str());
    // An image message needs attachments; text messages take none.
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&alice.token),
            &json!({"client_msg_id": uuid(), "kind": "image"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post_json(
            &format!("/v1/conversations/{conv}/messages"),
            Some(&alice.token),
            &json!({"client_msg_id": uuid(), "kind": "text", "body": "x", "attachment_ids": [id]}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn image_messages_over_the_socket_and_unreferenced_uploads_expire() {
    let app = TestApp::spawn_with(|c| c.limits.unreferenced_upload_ttl_secs = 1).await;
    let c = app.citizen("Li", Some("ET")).await;
    let (_, kept) = upload(&app, &c.token, png(30, 30), "k.png", "image/png").await;
    let (_, dropped) = upload(&app, &c.token, jpeg(31, 31), "d.jpg", "image/jpeg").await;
    let mut ws = app.ws(&c.token).await;
    ws.send(json!({"type": "send", "client_msg_id": uuid(), "kind": "image", "attachment_ids": [kept["id"]]})).await;
    let ack = ws.expect("ack").await;
    assert_eq!(ack["seq"], 1);
    // The collector runs every second here; the unreferenced upload goes.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        app.get(kept["url"].as_str().unwrap(), Some(&c.token))
            .await
            .0,
        200
    );
    assert_eq!(
        app.get(dropped["url"].as_str().unwrap(), Some(&c.token))
            .await
            .0,
        404
    );
}
