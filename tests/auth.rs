//! Sign-in, identity tokens, revocation and the per-address session limit.

mod common;

use common::*;
use serde_json::json;

fn identity_token(secret: &str, sub: &str, exp_offset: i64) -> String {
    let claims = json!({
        "sub": sub,
        "name": "陈静",
        "country": "ET",
        "exp": chrono::Utc::now().timestamp() + exp_offset,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn staff_sign_in_and_revocation() {
    let app = TestApp::spawn().await;
    let agent = app.staff("Agent@Test.example", "be,et", "agent").await;
    let (s, b) = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": "agent@test.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 200, "email is case-insensitive: {b}");
    assert_eq!(b["agent"]["missions"], json!(["be", "et"]));
    assert_eq!(b["agent"]["role"], "agent");
    assert!(b["agent"].get("password_hash").is_none());
    for body in [
        json!({"email": "agent@test.example", "password": "wrong-password"}),
        json!({"email": "nobody@test.example", "password": PASSWORD}),
    ] {
        let (s, b) = app.post_json("/v1/agent/sessions", None, &body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{b}"
        );
    }
    let (s, b) = app
        .post_json("/v1/agent/sessions", None, &json!({"email": "x"}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    // Revoking one session leaves the others working.
    let (_, second) = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": agent.email, "password": PASSWORD}),
        )
        .await;
    let second = second["token"].as_str().unwrap().to_string();
    let r = app
        .request(
            reqwest::Method::DELETE,
            "/v1/agent/sessions",
            Some(&agent.token),
            None,
        )
        .await;
    assert_eq!(r.0, 204);
    assert_eq!(
        app.get("/v1/conversations", Some(&agent.token)).await.0,
        401
    );
    assert_eq!(app.get("/v1/conversations", Some(&second)).await.0, 200);
    let r = app
        .http
        .delete(app.url("/v1/agent/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn identity_tokens_bind_one_citizen_across_devices() {
    let secret = "test-identity-secret-0123456789";
    let app =
        TestApp::spawn_with(|c| c.identity.hs256_secret = lingshi::config::Secret::new(secret))
            .await;
    let tok = identity_token(secret, "user-42", 600);
    let (s, phone) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": tok}),
        )
        .await;
    assert_eq!(s, 200, "{phone}");
    assert_eq!(phone["citizen"]["display_name"], "陈静");
    assert_eq!(phone["citizen"]["country"], "ET");
    let (s, laptop) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": identity_token(secret, "user-42", 600), "locale": "en"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(phone["citizen"]["id"], laptop["citizen"]["id"]);
    assert_eq!(laptop["citizen"]["locale"], "en");
    // What one device wrote, the other sees.
    let phone_tok = phone["token"].as_str().unwrap();
    let laptop_tok = laptop["token"].as_str().unwrap();
    let conv = app
        .post_json("/v1/conversations", Some(phone_tok), &json!({}))
        .await
        .1;
    assert_eq!(conv["mission_id"], "et");
    let id = conv["id"].as_str().unwrap();
    app.send_http(phone_tok, id, &uuid(), "from my phone").await;
    assert_eq!(
        app.messages(laptop_tok, id, "").await[0]["body"],
        "from my phone"
    );
    // Another sub is another citizen.
    let (_, other) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": identity_token(secret, "user-43", 600)}),
        )
        .await;
    assert_ne!(other["citizen"]["id"], phone["citizen"]["id"]);
    // Expired, wrongly signed and garbage tokens are refused.
    for bad in [
        identity_token(secret, "user-42", -600),
        identity_token("another-secret", "user-42", 600),
        "garbage".into(),
    ] {
        let (s, b) = app
            .post_json(
                "/v1/citizen/sessions",
                None,
                &json!({"identity_token": bad}),
            )
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{b}"
        );
    }
}

#[tokio::test]
async fn guest_sessions_validate_their_fields() {
    let app = TestApp::spawn().await;
    let (s, b) = app
        .post_json("/v1/citizen/sessions", None, &json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["token"].as_str().unwrap().len() > 30);
    for bad in [
        json!({"country": "Belgium"}),
        json!({"locale": "zh CN"}),
        json!({"display_name": "x".repeat(101)}),
        json!([1, 2]),
    ] {
        let (s, b) = app.post_json("/v1/citizen/sessions", None, &bad).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_input")),
            "{bad}: {b}"
        );
    }
    // Identity tokens are refused when no key is configured.
    let (s, _) = app
        .post_json(
            "/v1/citizen/sessions",
            None,
            &json!({"identity_token": "a.b.c"}),
        )
        .await;
    assert_eq!(s, 400);
    // Wrong content type.
    let r = app
        .http
        .post(app.url("/v1/citizen/sessions"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, b) = into_pair(r).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
}

#[tokio::test]
async fn session_creation_is_rate_limited_per_address() {
    let app = TestApp::spawn_with(|c| c.limits.sessions_per_minute = 5).await;
    let mut statuses = vec![];
    let mut retry_after = None;
    for _ in 0..8 {
        let r = app
            .http
            .post(app.url("/v1/citizen/sessions"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        let (s, b) = into_pair(r).await;
        if s == 429 {
            assert_eq!(b["error"]["code"], "rate_limited");
        }
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn unknown_paths_and_methods_use_the_error_shape() {
    let app = TestApp::spawn().await;
    let (s, b) = app.get("/v1/nothing-here", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let r = app
        .http
        .put(app.url("/v1/citizen/sessions"))
        .send()
        .await
        .unwrap();
    let (s, b) = into_pair(r).await;
    assert_eq!(s, 405);
    assert!(b["error"]["code"].is_string());
    let (s, b) = app.get("/readyz", None).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ready")));
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    let text = r.text().await.unwrap();
    for name in [
        "lingshi_ws_open_sockets",
        "lingshi_ack_latency_seconds_bucket",
        "lingshi_commit_batch_size_count",
        "lingshi_messages_committed_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}
