//! Knowledge base: import, Chinese-first search, filters, drafts, alerts, editor API,
//! versions, gaps and suggestions, against the real starter content.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn kb_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/knowledge-base"))
}

async fn import(app: &TestApp, dir: &Path) -> std::process::Output {
    run_cli(
        &app.config_file,
        &["kb", "import", dir.to_str().unwrap()],
        None,
    )
    .await
}

/// An app with the starter knowledge base imported and searchable.
async fn app_with_kb() -> TestApp {
    let app = TestApp::spawn_with(|c| {
        c.kb.synonyms_file = kb_dir().join("synonyms.toml");
    })
    .await;
    let out = import(&app, kb_dir()).await;
    assert!(
        out.status.success(),
        "import failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Imported by another process while the server runs: searchable within a second or
    // two. The index applies the queue in order, so once the last file imported
    // (zh-CN/visa-policy-us.md) is found, every article is.
    wait_for_hit(&app, "/v1/kb/search?q=EVUS&locale=zh-CN", "visa-policy-us").await;
    app
}

async fn search(app: &TestApp, query: &str) -> Value {
    let (s, b) = app.get(&format!("/v1/kb/search?{query}"), None).await;
    assert_eq!(s, 200, "{query}: {b}");
    b
}

fn slugs(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slug"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_for_hit(app: &TestApp, path: &str, slug: &str) {
    for _ in 0..100 {
        let (_, b) = app.get(path, None).await;
        if b["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["slug"] == slug))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{slug} never appeared for {path}");
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn chinese_english_typo_pinyin_and_synonym_queries_find_the_right_article() {
    let app = app_with_kb().await;
    let cases = [
        ("护照丢了怎么办", Some("zh-CN"), "lost-passport"),
        ("护照被偷了", Some("zh-CN"), "lost-passport"),
        ("旅行证", None, "emergency-travel-document"),
        ("养老金资格认证", None, "pension-certification"),
        ("lost passport", Some("en"), "lost-passport"),
        ("pasport stolen", Some("en"), "lost-passport"),
        ("pension certifcation", Some("en"), "pension-certification"),
        (
            "emergncy travel document",
            Some("en"),
            "emergency-travel-document",
        ),
        ("huzhao", None, "lost-passport"),
        ("hu zhao diushi", None, "lost-passport"),
    ];
    for (q, locale, want) in cases {
        let mut path = format!("q={}", enc(q));
        if let Some(l) = locale {
            path.push_str(&format!("&locale={l}"));
        }
        let r = search(&app, &path).await;
        let top: Vec<String> = slugs(&r).into_iter().take(3).collect();
        assert!(
            top.contains(&want.to_string()),
            "{q}: wanted {want} in the top 3, got {top:?}"
        );
        assert!(r["total"].as_u64().unwrap() >= 1);
        assert!(r["took_ms"].is_u64());
    }
    // An English query reaches the Chinese article through synonyms.
    let r = search(&app, "q=passport&locale=zh-CN").await;
    assert!(slugs(&r).contains(&"lost-passport".to_string()), "{r}");
    assert!(r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["locale"] == "zh-CN"));
    // Snippets highlight and escape.
    let r = search(&app, &format!("q={}&locale=zh-CN", enc("护照"))).await;
    assert!(
        r["hits"][0]["snippet"].as_str().unwrap().contains("<mark>"),
        "{r}"
    );
}

#[tokio::test]
async fn filters_by_country_locale_and_category() {
    let app = app_with_kb().await;
    let r = search(
        &app,
        &format!("q={}&country=BE&limit=50", enc("emergency 112 911 991")),
    )
    .await;
    let s = slugs(&r);
    assert!(s.contains(&"emergency-contacts-be".to_string()), "{s:?}");
    assert!(!s.contains(&"emergency-contacts-et".to_string()), "{s:?}");
    assert!(!s.contains(&"emergency-contacts-us".to_string()), "{s:?}");
    // Articles for everywhere are included with any country.
    let r = search(&app, "q=12308&country=ET").await;
    assert!(slugs(&r).contains(&"hotline-12308".to_string()));
    let r = search(&app, "q=visa&category=visa_policy&locale=en&limit=50").await;
    let hits = r["hits"].as_array().unwrap();
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|h| h["category"] == "visa_policy" && h["locale"] == "en"),
        "{r}"
    );
    for bad in [
        "country=Belgium",
        "category=recipes",
        "limit=0",
        "limit=500",
    ] {
        let (s, b) = app.get(&format!("/v1/kb/search?q=visa&{bad}"), None).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("invalid_input")),
            "{bad}"
        );
    }
    // Hostile queries are just words.
    for q in ["title:foo AND (", "\"", "*", "🙂🙂", &"护".repeat(3000)] {
        let (s, _) = app.get(&format!("/v1/kb/search?q={}", enc(q)), None).await;
        assert_eq!(s, 200, "{q}");
    }
    let r = search(&app, "q=").await;
    assert_eq!(r["total"], 0);
}

#[tokio::test]
async fn import_is_idempotent_and_names_broken_files_with_their_line() {
    let app = app_with_kb().await;
    let out = import(&app, kb_dir()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("0 created, 0 updated") && stdout.contains("0 failed"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
    std::fs::write(
        dir.path().join("nested/deeper/good.md"),
        "---\nslug: consulate-opening-hours\nlocale: en\ntitle: Opening hours during the holidays\ncategory: announcement\ncountries: [BE]\n---\nThe consular section is closed on 1 January.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.md"),
        "---\nslug: broken\nlocale: en\ntitle: Broken\ncategory: gossip\n---\nBody\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("no-front-matter.md"), "just text\n").unwrap();
    let out = import(&app, dir.path()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.md:5:") && stderr.contains("gossip"),
        "{stderr}"
    );
    assert!(stderr.contains("no-front-matter.md:1:"), "{stderr}");
    wait_for_hit(
        &app,
        "/v1/kb/search?q=opening+hours&country=BE",
        "consulate-opening-hours",
    )
    .await;
}

async fn editor_and_agent(app: &TestApp) -> (Staff, Staff) {
    (
        app.staff("editor@test.example", "mfa", "editor").await,
        app.staff("agent@test.example", "be", "agent").await,
    )
}

#[tokio::test]
async fn editor_api_drafts_versions_restore_and_xss() {
    let app = TestApp::spawn().await;
    let (editor, agent) = editor_and_agent(&app).await;
    let citizen = app.citizen("Li", Some("BE")).await;
    let body = json!({
        "slug": "visa-on-arrival", "locale": "en", "title": "Visa on arrival",
        "category": "visa_policy", "countries": ["et"], "tags": ["Visa"],
        "summary": "Short", "body_markdown": "# Visa\n\n<script>alert('x')</script>\n\n[click](javascript:alert(1)) <img src=x onerror=alert(1)>",
    });
    for token in [
        None,
        Some(citizen.token.as_str()),
        Some(agent.token.as_str()),
    ] {
        let (s, _) = app.post_json("/v1/kb/articles", token, &body).await;
        assert_eq!(s, if token.is_none() { 401 } else { 403 });
    }
    let (s, a) = app
        .post_json("/v1/kb/articles", Some(&editor.token), &body)
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["status"], "draft");
    assert_eq!(a["version"], 1);
    assert_eq!(a["countries"], json!(["ET"]));
    let html = a["body_html"].as_str().unwrap();
    assert!(
        !html.contains("<script") && !html.contains("javascript:") && !html.contains("onerror"),
        "{html}"
    );
    let id = a["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .post_json("/v1/kb/articles", Some(&editor.token), &body)
        .await;
    assert_eq!(s, 409);
    // Drafts: invisible to the public, visible to editors.
    assert_eq!(
        app.get("/v1/kb/articles/visa-on-arrival", None).await.0,
        404
    );
    assert_eq!(
        app.get("/v1/kb/articles/visa-on-arrival", Some(&editor.token))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(slugs(&search(&app, "q=visa+arrival").await).is_empty());
    let (s, d) = app
        .get(
            "/v1/kb/search?q=visa+arrival&status=all",
            Some(&editor.token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(slugs(&d), vec!["visa-on-arrival"]);
    assert_eq!(
        app.get("/v1/kb/search?q=visa&status=all", Some(&agent.token))
            .await
            .0,
        403
    );
    // Publish, edit, list versions, restore.
    let (s, p) = app
        .post(
            &format!("/v1/kb/articles/{id}/publish"),
            Some(&editor.token),
        )
        .await;
    assert_eq!((s, p["status"].as_str()), (200, Some("published")));
    assert!(p["published_at"].is_string());
    wait_for_hit(&app, "/v1/kb/search?q=visa+arrival", "visa-on-arrival").await;
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/kb/articles/{id}"),
            Some(&editor.token),
            Some(&json!({"title": "Visa on arrival (updated)"})),
        )
        .await;
    let (s, u) = r;
    assert_eq!((s, u["version"].as_i64()), (200, Some(3)));
    let (s, v) = app
        .get(
            &format!("/v1/kb/articles/{id}/versions"),
            Some(&editor.token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["versions"].as_array().unwrap().len(), 3);
    let (s, r) = app
        .post(
            &format!("/v1/kb/articles/{id}/versions/1/restore"),
            Some(&editor.token),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["title"], "Visa on arrival");
    assert_eq!(r["version"], 4);
    assert_eq!(r["status"], "draft");
    assert_eq!(
        app.get(
            &format!("/v1/kb/articles/{id}/versions"),
            Some(&agent.token)
        )
        .await
        .0,
        403
    );
    // Archive removes it from public reads.
    app.post(
        &format!("/v1/kb/articles/{id}/publish"),
        Some(&editor.token),
    )
    .await;
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/kb/articles/{id}"),
            Some(&editor.token),
            None,
        )
        .await;
    assert_eq!(r.0, 204);
    assert_eq!(
        app.get("/v1/kb/articles/visa-on-arrival", None).await.0,
        404
    );
    // Bad input.
    let (s, b) = app
        .post_json(
            "/v1/kb/articles",
            Some(&editor.token),
            &json!({"slug": "Bad Slug", "locale": "en", "title": "t", "category": "faq"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let (s, _) = app.post_json("/v1/kb/articles", Some(&editor.token), &json!({"slug": "x", "locale": "en", "title": "t", "category": "faq", "area": {"lat": 91, "lon": 0, "radius_km": 1}})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn alerts_by_country_and_distance_without_drafts_or_expired_ones() {
    let app = app_with_kb().await;
    let (editor, _) = editor_and_agent(&app).await;
    let alert = |slug: &str, status: &str, expires: &str, severity: &str| {
        json!({"slug": slug, "locale": "en", "title": slug, "category": "safety_alert", "countries": ["BE"],
               "status": status, "expires_at": expires, "severity": severity,
               "area": {"lat": 50.8466, "lon": 4.3528, "radius_km": 10}, "body_markdown": "Stay away."})
    };
    for (slug, status, expires, sev) in [
        (
            "expired-alert",
            "published",
            "2020-01-01T00:00:00Z",
            "critical",
        ),
        ("draft-alert", "draft", "2099-01-01T00:00:00Z", "critical"),
        (
            "critical-alert",
            "published",
            "2099-01-01T00:00:00Z",
            "critical",
        ),
    ] {
        let (s, b) = app
            .post_json(
                "/v1/kb/articles",
                Some(&editor.token),
                &alert(slug, status, expires, sev),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, r) = app.get("/v1/alerts?country=BE", None).await;
    assert_eq!(s, 200);
    let got: Vec<&str> = r["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(got.first(), Some(&"critical-alert"), "{got:?}");
    assert!(got.contains(&"brussels-demonstrations"), "{got:?}");
    assert!(
        !got.contains(&"expired-alert") && !got.contains(&"draft-alert"),
        "{got:?}"
    );
    let (_, et) = app.get("/v1/alerts?country=ET", None).await;
    let et: Vec<&str> = et["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(et, vec!["addis-ababa-road-safety"]);
    // Grand-Place (inside both radii), Antwerp (41 km away: outside both).
    let (_, near) = app.get("/v1/alerts?lat=50.8467&lon=4.3525", None).await;
    assert_eq!(near["alerts"].as_array().unwrap().len(), 2, "{near}");
    let (_, far) = app.get("/v1/alerts?lat=51.2194&lon=4.4025", None).await;
    assert!(far["alerts"].as_array().unwrap().is_empty(), "{far}");
    assert_eq!(app.get("/v1/alerts?lat=50", None).await.0, 400);
    assert_eq!(app.get("/v1/alerts?lat=100&lon=0", None).await.0, 400);
}

#[tokio::test]
async fn searches_without_hits_are_listed_for_editors() {
    let app = app_with_kb().await;
    let (editor, agent) = editor_and_agent(&app).await;
    for q in [
        "zorblax frobnitz",
        "Zorblax   FROBNITZ",
        "quuxification",
        "护照",
    ] {
        search(&app, &format!("q={}", enc(q))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, g) = app.get("/v1/kb/gaps", Some(&editor.token)).await;
    assert_eq!(s, 200, "{g}");
    let gaps = g["gaps"].as_array().unwrap();
    let z = gaps
        .iter()
        .find(|x| x["query"] == "zorblax frobnitz")
        .expect("gap recorded");
    assert_eq!(z["count"], 2);
    assert!(gaps.iter().any(|x| x["query"] == "quuxification"));
    // Searches that found something are not gaps.
    assert!(gaps.iter().all(|x| x["query"] != "护照"));
    assert_eq!(app.get("/v1/kb/gaps", Some(&agent.token)).await.0, 403);
    assert_eq!(app.get("/v1/kb/gaps", None).await.0, 401);
}

#[tokio::test]
async fn agents_get_article_suggestions_for_a_citizens_message() {
    let app = app_with_kb().await;
    let agent = app.staff("agent@test.example", "be", "agent").await;
    let mut aws = app.ws(&agent.token).await;
    let c = app.citizen("Li", Some("BE")).await;
    let mut cws = app.ws(&c.token).await;
    cws.send_message(None, &uuid(), "我的护照丢了，怎么办？")
        .await;
    // Suggestions are searched on a thread at the lowest priority (spare CPU only);
    // with the suite's other tests on both cores that may take a while.
    let s = aws
        .expect_within("suggestions", Duration::from_secs(30))
        .await;
    let articles = s["articles"].as_array().unwrap();
    assert!(!articles.is_empty() && articles.len() <= 3);
    assert!(articles.iter().any(|a| a["slug"] == "lost-passport"), "{s}");
    assert!(articles.iter().all(|a| a["locale"] == "zh-CN"), "{s}");
    // Citizens never get suggestions frames.
    assert!(cws
        .collect(Duration::from_millis(300))
        .await
        .iter()
        .all(|f| f["type"] != "suggestions"));
}

#[tokio::test]
async fn reindex_while_the_server_runs_does_not_fail() {
    let app = app_with_kb().await;
    let out = run_cli(&app.config_file, &["kb", "reindex"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    wait_for_hit(&app, "/v1/kb/search?q=12308", "hotline-12308").await;
    let (s, r) = app.get("/readyz", None).await;
    assert_eq!((s, r["index"].as_str()), (200, Some("ok")));
}

fn article_file(slug: &str, locale: &str, title: &str, body: &str) -> String {
    format!("---\nslug: {slug}\nlocale: {locale}\ntitle: \"{title}\"\ncategory: faq\n---\n{body}\n")
}

#[tokio::test]
async fn a_large_import_reports_every_file_in_order_and_keeps_the_good_ones() {
    // More files than one write batch: broken files in the middle of batches fail
    // alone, a slug imported twice in one run is created then updated, and the report
    // lists every file in order.
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let n = 700;
    for i in 0..n {
        let name = format!("a{i:04}.md");
        let text = match i {
            100 | 333 | 650 => {
                format!("---\nslug: broken-{i}\nlocale: en\ntitle: T\ncategory: gossip\n---\nx\n")
            }
            _ => article_file(
                &format!("bulk-{i}"),
                if i % 2 == 0 { "en" } else { "zh-CN" },
                &format!("Bulk article {i}"),
                &format!("Reference code bulkref{i:04}. Renew a passport at the consulate."),
            ),
        };
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    // The same slug + locale as a0002.md, later in the same run.
    std::fs::write(
        dir.path().join("z-duplicate.md"),
        article_file(
            "bulk-2",
            "en",
            "Bulk article 2, revised",
            "Reference code bulkrevised.",
        ),
    )
    .unwrap();
    let out = import(&app, dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "three files are broken");
    assert!(
        stdout.contains(&format!(
            "imported {} files: {} created, 1 updated, 0 unchanged, 3 failed",
            n + 1,
            n - 3
        )),
        "{stdout}"
    );
    for i in [100, 333, 650] {
        assert!(stderr.contains(&format!("a{i:04}.md:5:")), "{stderr}");
    }
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.ends_with(".md"))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "the report follows the file order");
    assert_eq!(listed.len(), n - 3 + 1);
    assert!(stdout.contains("updated   z-duplicate.md"), "{stdout}");
    // Everything good is searchable, the revision included; the broken ones are not.
    wait_for_hit(&app, "/v1/kb/search?q=bulkref0699", "bulk-699").await;
    wait_for_hit(&app, "/v1/kb/search?q=bulkrevised", "bulk-2").await;
    for i in [0, 257, 511, 698] {
        let r = search(&app, &format!("q=bulkref{i:04}")).await;
        assert!(slugs(&r).contains(&format!("bulk-{i}")), "{i}: {r}");
    }
    let r = search(&app, "q=bulkref0002").await;
    assert!(!slugs(&r).contains(&"bulk-2".to_string()), "{r}");
    // A second run changes nothing but the slug given twice (each of its two files
    // differs from what the other left).
    let out = import(&app, dir.path()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "0 created, 2 updated, {} unchanged, 3 failed",
            n - 4
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_long_import_does_not_grow_the_write_ahead_log_without_end() {
    // SQLite only. An import writes without pause while the server reads: the log must
    // still be folded back and started over, or every read slows down with it.
    if common::services::postgres_backend() {
        return;
    }
    // A 16 MiB bound (the default is 128 MiB) keeps the import this test needs short;
    // the CLI reads the same configuration file.
    let app = TestApp::spawn_with(|c| c.sqlite_wal_max_mib = 16).await;
    let dir = tempfile::tempdir().unwrap();
    let body = "Renew a passport at the consulate; bring the old one and two photos. ".repeat(90);
    let n = 3000;
    for i in 0..n {
        std::fs::write(
            dir.path().join(format!("w{i:05}.md")),
            article_file(&format!("wal-{i}"), "en", &format!("Article {i}"), &body),
        )
        .unwrap();
    }
    let wal = app.config.data_dir.join("lingshi.db-wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lingshi"))
        .arg("--config")
        .arg(&app.config_file)
        .args(["kb", "import", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut largest = 0;
    let status = loop {
        largest = largest.max(wal_size());
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    largest = largest.max(wal_size());
    assert!(status.success());
    // About 60 MB were written (body, HTML and version of each article); the log is
    // started over once it passes `sqlite_wal_max_mib`.
    assert!(
        largest < 40 * 1024 * 1024,
        "the write-ahead log reached {largest} bytes during the import"
    );
    wait_for_hit(&app, "/v1/kb/search?q=Article+2999", "wal-2999").await;
}
