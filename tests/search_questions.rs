//! Citizens' questions through the public search endpoint: the starter knowledge base
//! imported by the real `lingshi kb import`, searched over HTTP on a real server.
//! Covers the labelled question set (recall@3 per language), questions whose answer
//! exists only in the other language, the dictionary extended by editors while the
//! server runs, and the Meilisearch backend (a local fake of its HTTP API here; a real
//! server when `LINGSHI_TEST_MEILISEARCH_URL` is set).

mod common;
#[path = "../crates/search/tests/fake_meili/mod.rs"]
mod fake_meili;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde::Deserialize;
use serde_json::Value;

/// Recall@3 every language of the labelled set must reach through the endpoint.
const MIN_RECALL: f64 = 0.9;

fn kb_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/knowledge-base"))
}

#[derive(Deserialize)]
struct Question {
    q: String,
    expect: Vec<String>,
    lang: String,
    #[serde(rename = "type")]
    kind: String,
}

fn questions() -> Vec<Question> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/search_questions.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Import `dir` with the real command while the server runs, then wait until `probe`
/// (a query) finds `slug`: the indexer applies the queue in order, so the last file
/// imported being searchable means every one is.
async fn import(app: &TestApp, dir: &Path, probe: &str, slug: &str) {
    let out = run_cli(
        &app.config_file,
        &["kb", "import", dir.to_str().unwrap()],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "import failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Generous: on a loaded two-core machine the debug build's indexer can lag.
    let mut last = Value::Null;
    for _ in 0..600 {
        last = search(app, &[("q", probe)]).await;
        if slugs(&last).contains(&slug.to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = match app.http.get(app.url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    let metrics: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("search") || l.contains("kb"))
        .collect();
    panic!(
        "{slug} never became searchable with {probe:?}; last answer: {last}\nimport said: {}\nmetrics: {metrics:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The starter knowledge base with only one language folder (`en` or `zh-CN`).
fn one_language_copy(locale: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join(locale);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(kb_dir().join(locale)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    dir
}

async fn search(app: &TestApp, params: &[(&str, &str)]) -> Value {
    let r = app
        .http
        .get(app.url("/v1/kb/search"))
        .query(params)
        .send()
        .await
        .unwrap();
    let (status, body) = into_pair(r).await;
    assert_eq!(status, 200, "{params:?}: {body}");
    body
}

fn slugs(v: &Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slug"].as_str().unwrap().to_string())
        .collect()
}

/// Asks `q` and checks that `want` is among the first three hits; returns that hit.
async fn expect_top3(app: &TestApp, q: &str, want: &str) -> Value {
    let r = search(app, &[("q", q), ("limit", "3")]).await;
    let hit = r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["slug"] == want)
        .cloned();
    hit.unwrap_or_else(|| panic!("{q}: wanted {want} in the top 3, got {:?}", slugs(&r)))
}

#[derive(Default)]
struct Score {
    n: usize,
    recalled: usize,
    rr: f64,
}

impl Score {
    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if rank.is_some_and(|r| r <= 3) {
            self.recalled += 1;
        }
        self.rr += rank.map_or(0.0, |r| 1.0 / r as f64);
    }
    fn recall(&self) -> f64 {
        self.recalled as f64 / self.n as f64
    }
    fn mrr(&self) -> f64 {
        self.rr / self.n as f64
    }
}

/// Runs the whole labelled set through the endpoint; returns recall@3 per language
/// and prints recall@3 and MRR per language and per type, with the misses.
async fn recall_over_http(app: &TestApp, name: &str) -> BTreeMap<String, f64> {
    let mut by_lang: BTreeMap<String, Score> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let qs = questions();
    assert!(qs.len() >= 250, "{} questions", qs.len());
    for q in &qs {
        let r = search(app, &[("q", q.q.as_str()), ("limit", "10")]).await;
        let got = slugs(&r);
        let rank = got.iter().position(|s| q.expect.contains(s)).map(|i| i + 1);
        by_lang.entry(q.lang.clone()).or_default().add(rank);
        by_kind.entry(q.kind.clone()).or_default().add(rank);
        if rank.is_none_or(|r| r > 3) {
            misses.push(format!(
                "  {} → {:?} (wanted {:?})",
                q.q,
                &got[..got.len().min(3)],
                q.expect
            ));
        }
    }
    println!("{name}: {} questions over HTTP", qs.len());
    for (what, table) in [("language", &by_lang), ("type", &by_kind)] {
        for (k, s) in table {
            println!(
                "  {what:8} {k:15} n={:3} recall@3={:.3} MRR={:.3}",
                s.n,
                s.recall(),
                s.mrr()
            );
        }
    }
    println!("misses:\n{}", misses.join("\n"));
    by_lang.into_iter().map(|(k, s)| (k, s.recall())).collect()
}

fn assert_recall(by_lang: &BTreeMap<String, f64>) {
    for lang in ["zh", "en"] {
        assert!(by_lang.contains_key(lang), "no {lang} questions");
    }
    for (lang, recall) in by_lang {
        assert!(
            *recall >= MIN_RECALL,
            "{lang}: recall@3 {recall:.3} < {MIN_RECALL}"
        );
    }
}

#[tokio::test]
async fn citizens_questions_find_their_starter_articles_over_http() {
    let app = TestApp::spawn().await;
    import(&app, kb_dir(), "EVUS", "visa-policy-us").await;

    let cases = [
        ("有人打电话让我转账", "anti-fraud-notice"),
        (
            "someone called me asking to transfer money",
            "anti-fraud-notice",
        ),
        ("is it safe in Addis Ababa", "addis-ababa-road-safety"),
        ("embassy phone number Belgium", "emergency-contacts-be"),
        ("护照丢了咋整", "lost-passport"),
        ("my pasport got stolen what now", "lost-passport"),
        ("護照遺失了怎麼辦", "lost-passport"),
        ("huzhao diule", "lost-passport"),
    ];
    for (q, want) in cases {
        let hit = expect_top3(&app, q, want).await;
        assert!(hit["language"] == "zh" || hit["language"] == "en", "{hit}");
        assert!(hit["snippet"].is_string());
    }
    // The reader's language comes from the question's script, or from `lang`.
    let r = search(&app, &[("q", "有人打电话让我转账")]).await;
    assert_eq!(r["language"], "zh", "{r}");
    let r = search(&app, &[("q", "transfer money"), ("lang", "zh-CN")]).await;
    assert_eq!(r["language"], "zh", "{r}");
    for h in r["hits"].as_array().unwrap() {
        assert_eq!(h["other_language"], h["language"] != "zh", "{h}");
    }

    assert_recall(&recall_over_http(&app, "embedded index").await);
}

#[tokio::test]
async fn questions_find_articles_that_exist_only_in_the_other_language() {
    // Only the English articles: Chinese questions must reach them.
    let mut app = TestApp::spawn().await;
    let en = one_language_copy("en");
    import(&app, en.path(), "EVUS", "visa-policy-us").await;
    for (q, want) in [
        ("有人打电话让我转账", "anti-fraud-notice"),
        ("护照丢了咋整", "lost-passport"),
        ("比利时大使馆电话", "emergency-contacts-be"),
        ("亚的斯亚贝巴安全吗", "addis-ababa-road-safety"),
        ("养老金资格认证", "pension-certification"),
    ] {
        let hit = expect_top3(&app, q, want).await;
        assert_eq!(hit["locale"], "en", "{hit}");
        assert_eq!(hit["language"], "en", "{hit}");
        assert_eq!(hit["other_language"], true, "{q}: {hit}");
    }
    app.shutdown().await;

    // Only the Chinese articles: English questions must reach them.
    let app = TestApp::spawn().await;
    let zh = one_language_copy("zh-CN");
    import(&app, zh.path(), "EVUS", "visa-policy-us").await;
    for (q, want) in [
        ("embassy phone number Belgium", "emergency-contacts-be"),
        (
            "someone called me asking to transfer money",
            "anti-fraud-notice",
        ),
        ("is it safe in Addis Ababa", "addis-ababa-road-safety"),
        ("my pasport got stolen what now", "lost-passport"),
        ("arrested by the police", "arrest-detention"),
    ] {
        let hit = expect_top3(&app, q, want).await;
        assert_eq!(hit["locale"], "zh-CN", "{hit}");
        assert_eq!(hit["other_language"], true, "{q}: {hit}");
    }
}

#[tokio::test]
async fn editors_extend_the_dictionary_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("synonyms.toml");
    std::fs::write(&file, "[[group]]\nwords = [\"consulate\", \"领事馆\"]\n").unwrap();
    let f = file.clone();
    let app = TestApp::spawn_with(move |c| {
        c.kb.synonyms_file = f;
        c.search.synonyms_reload_secs = 1;
    })
    .await;
    import(&app, kb_dir(), "EVUS", "visa-policy-us").await;
    // A word the shipped dictionary does not know.
    let q = "flurbl gronkz";
    let before = slugs(&search(&app, &[("q", q), ("limit", "3")]).await);
    assert!(!before.contains(&"lost-passport".to_string()), "{before:?}");

    // A broken file is reported and ignored: searches keep working.
    std::fs::write(&file, "[[group]]\nwords = [\"only-one\"]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = search(&app, &[("q", "lost passport"), ("limit", "3")]).await;
    assert!(slugs(&r).contains(&"lost-passport".to_string()), "{r}");

    std::fs::write(
        &file,
        "[[group]]\nwords = [\"flurbl\", \"passport\", \"护照\"]\n\n[[group]]\nwords = [\"gronkz\", \"stolen\", \"被偷\"]\n",
    )
    .unwrap();
    for _ in 0..100 {
        let got = slugs(&search(&app, &[("q", q), ("limit", "3")]).await);
        if got.contains(&"lost-passport".to_string()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the added synonyms never reached searches");
}

/// The Meilisearch backend behind the same endpoint: a real server when
/// `LINGSHI_TEST_MEILISEARCH_URL` (and `LINGSHI_TEST_MEILISEARCH_KEY`) are set, where the
/// labelled set must reach the same recall; otherwise the local fake, which checks what
/// the SDK sends (its naive matching says nothing about relevance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meilisearch_backend_answers_the_same_endpoint() {
    let real = std::env::var("LINGSHI_TEST_MEILISEARCH_URL").ok();
    let fake = match real {
        Some(_) => None,
        None => Some(fake_meili::FakeMeili::spawn("test-master-key").await),
    };
    let (url, key) = match (&real, &fake) {
        (Some(url), _) => (
            url.clone(),
            std::env::var("LINGSHI_TEST_MEILISEARCH_KEY").unwrap_or_default(),
        ),
        (None, Some(f)) => (f.url.clone(), f.key.clone()),
        (None, None) => unreachable!(),
    };
    let index = format!("lingshi_http_{}", std::process::id());
    let idx = index.clone();
    let app = TestApp::spawn_with(move |c| {
        c.search.backend = "meilisearch".into();
        c.search.url = url;
        c.search.api_key = lingshi::config::Secret::new(key);
        c.search.index = idx;
    })
    .await;
    import(&app, kb_dir(), "EVUS", "visa-policy-us").await;

    let r = search(&app, &[("q", "passport"), ("lang", "en")]).await;
    let hits = r["hits"].as_array().unwrap();
    assert!(slugs(&r).contains(&"lost-passport".to_string()), "{r}");
    for h in hits {
        assert!(h["language"] == "zh" || h["language"] == "en", "{h}");
        assert_eq!(h["other_language"], h["language"] != "en", "{h}");
    }
    // Filters reach the backend.
    let r = search(
        &app,
        &[("q", "embassy"), ("country", "BE"), ("locale", "en")],
    )
    .await;
    for h in r["hits"].as_array().unwrap() {
        assert_eq!(h["locale"], "en", "{h}");
        let countries = h["countries"].as_array().unwrap();
        assert!(
            countries.is_empty() || countries.contains(&"BE".into()),
            "{h}"
        );
    }

    match &fake {
        Some(fake) => {
            assert_eq!(fake.documents(&index).len(), 40);
            let settings = fake.settings(&index);
            for key in [
                "searchableAttributes",
                "filterableAttributes",
                "synonyms",
                "typoTolerance",
                "localizedAttributes",
            ] {
                assert!(settings.contains_key(key), "{key} not set: {settings:?}");
            }
            let synonyms = settings["synonyms"].as_object().unwrap();
            assert!(synonyms
                .get("passport")
                .is_some_and(|v| v.as_array().unwrap().contains(&"护照".into())));
            let requests = fake.requests();
            assert!(requests.iter().any(|r| r.path.ends_with("/search")));
            assert!(requests
                .iter()
                .all(|r| r.auth.as_deref() == Some("Bearer test-master-key")));
        }
        None => assert_recall(&recall_over_http(&app, "meilisearch").await),
    }
}
