//! First run: the one-time setup link creates the first administrator.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn setup_body(token: &str, email: &str) -> serde_json::Value {
    json!({"setup_token": token, "email": email, "name": "王 Admin", "password": PASSWORD})
}

#[tokio::test]
async fn the_setup_token_creates_one_admin_of_every_mission_once() {
    let app = TestApp::spawn().await;
    let token = app
        .server
        .as_ref()
        .unwrap()
        .setup_token()
        .expect("no staff yet: a setup token")
        .to_string();

    let r = app
        .post_json(
            "/v1/setup",
            None,
            &setup_body("ls_not-the-token", "x@example.org"),
        )
        .await;
    assert_eq!(r.0, 401, "{}", r.1);
    assert_eq!(r.1["error"]["code"], "unauthorized");

    // A form error leaves the link usable.
    let r = app
        .post_json(
            "/v1/setup",
            None,
            &json!({"setup_token": token, "email": "a@example.org", "name": "A", "password": "short"}),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);

    // Two at once with the right token: exactly one administrator.
    let (b1, b2) = (
        setup_body(&token, "first@example.org"),
        setup_body(&token, "second@example.org"),
    );
    let (r1, r2) = tokio::join!(
        app.post_json("/v1/setup", None, &b1),
        app.post_json("/v1/setup", None, &b2),
    );
    let mut codes = [r1.0, r2.0];
    codes.sort();
    assert_eq!(codes, [200, 401], "{} / {}", r1.1, r2.1);
    let ok = if r1.0 == 200 { &r1.1 } else { &r2.1 };
    assert_eq!(ok["agent"]["role"], "admin");
    let missions: Vec<&str> = ok["agent"]["missions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let configured: Vec<String> = app.config.missions.iter().map(|m| m.id.clone()).collect();
    assert_eq!(missions, configured);
    let session = ok["token"].as_str().unwrap();
    let me = app.get("/v1/me", Some(session)).await;
    assert_eq!(me.0, 200, "{}", me.1);
    assert_eq!(me.1["user"]["id"], ok["agent"]["id"]);

    // Used: the same token no longer works, and the password signs in.
    let r = app
        .post_json("/v1/setup", None, &setup_body(&token, "third@example.org"))
        .await;
    assert_eq!(r.0, 401, "{}", r.1);
    let email = ok["agent"]["email"].as_str().unwrap();
    let r = app
        .post_json(
            "/v1/agent/sessions",
            None,
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let audit = app.get("/v1/audit?action=setup", Some(session)).await;
    assert_eq!(audit.0, 200, "{}", audit.1);
    assert_eq!(
        audit.1.to_string().matches("\"setup\"").count(),
        1,
        "{}",
        audit.1
    );
}

#[tokio::test]
async fn the_setup_token_stops_working_once_staff_exist() {
    let app = TestApp::spawn().await;
    let token = app
        .server
        .as_ref()
        .unwrap()
        .setup_token()
        .unwrap()
        .to_string();
    // An account made from the command line closes the setup.
    app.add_staff("ops@example.org", "Ops", "be", "admin").await;
    let r = app
        .post_json("/v1/setup", None, &setup_body(&token, "late@example.org"))
        .await;
    assert_eq!(r.0, 401, "{}", r.1);
}

#[tokio::test]
async fn serve_prints_the_setup_link_only_while_no_staff_exist() {
    let app = TestApp::spawn().await;
    let (config_file, dir) = (app.config_file.clone(), app.dir.path().to_path_buf());
    // The in-process server is stopped: `lingshi serve` gets the data directory.
    let mut app = app;
    app.shutdown().await;

    let mut first = start_server(&config_file, &dir, "first").await;
    let line = wait_line(&first.log, "#setup=").await;
    let url = line
        .split_whitespace()
        .find(|w| w.contains("#setup="))
        .unwrap()
        .to_string();
    assert!(
        url.starts_with(&format!("{}/console/#setup=ls_", first.base)),
        "{line}"
    );
    let token = url.split("#setup=").nth(1).unwrap();
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert_eq!(
        log.matches(token).count(),
        1,
        "the token is printed once and logged nowhere: {log}"
    );
    let http = reqwest::Client::new();
    let r = into_pair(
        http.post(format!("{}/v1/setup", first.base))
            .json(&setup_body(token, "root@example.org"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.1);
    first.child.kill().await.unwrap();

    let second = start_server(&config_file, &dir, "second").await;
    wait_line(&second.log, "/console/").await;
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(!log.contains("#setup="), "{log}");
}

/// The first line of `log` holding `needle`, waiting for the server to print it.
async fn wait_line(log: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_first_serve_imports_the_starter_knowledge_base_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("data"));
    let config_file = write_config_file(dir.path(), &config);
    let first = start_server(&config_file, dir.path(), "first").await;
    let line = wait_line(&first.log, "starter articles").await;
    let http = reqwest::Client::new();
    // Search answers from the starter articles without anyone importing anything.
    let hits = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = into_pair(
                http.get(format!(
                    "{}/v1/kb/search?q=lost%20passport&locale=en",
                    first.base
                ))
                .send()
                .await
                .unwrap(),
            )
            .await;
            assert_eq!(r.0, 200, "{}", r.1);
            let hits = r.1["hits"].as_array().cloned().unwrap_or_default();
            if !hits.is_empty() || Instant::now() > deadline {
                break hits;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(!hits.is_empty(), "{line}");
    assert!(
        hits.iter().any(|h| h["slug"] == "lost-passport"),
        "{hits:?}"
    );
    let mut first = first;
    first.child.kill().await.unwrap();

    // Not again: a second start finds articles and imports nothing.
    let second = start_server(&config_file, dir.path(), "second").await;
    wait_line(&second.log, "/console/").await;
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(!log.contains("starter articles"), "{log}");
}
