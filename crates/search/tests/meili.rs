//! The Meilisearch backend through the real `meilisearch-sdk`, against a local fake of
//! the Meilisearch HTTP API (which also checks what the SDK sends: settings, documents,
//! filters, the API key). With `LINGSHI_TEST_MEILISEARCH_URL` (and
//! `LINGSHI_TEST_MEILISEARCH_KEY`) set, the round-trip tests also run against that real
//! server, each in its own index that is deleted afterwards.

mod fake_meili;

use std::time::Duration;

use fake_meili::FakeMeili;
use lingshi_search::{Doc, MeiliConfig, MeiliEngine, Query, SearchEngine, SearchError, Synonyms};
use serde_json::{json, Value};

const KEY: &str = "test-master-key";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(url: &str, key: &str, index: &str) -> MeiliConfig {
    MeiliConfig {
        url: url.to_string(),
        api_key: Some(key.to_string()),
        index: index.to_string(),
        task_timeout: Duration::from_secs(30),
        ..MeiliConfig::default()
    }
}

fn doc(id: &str, locale: &str, title: &str, body: &str, countries: &[&str]) -> Doc {
    Doc {
        id: id.to_string(),
        slug: id.to_string(),
        locale: locale.to_string(),
        title: title.to_string(),
        summary: String::new(),
        body: body.to_string(),
        category: "guide".to_string(),
        countries: countries.iter().map(|s| s.to_string()).collect(),
        tags: vec!["tag".to_string()],
        published: true,
    }
}

fn docs() -> Vec<Doc> {
    vec![
        doc(
            "0190a9e2-0000-7000-8000-000000000001",
            "zh-CN",
            "护照在国外遗失怎么办",
            "请先向当地警方报案，再向使领馆申请补发护照。",
            &[],
        ),
        doc(
            "0190a9e2-0000-7000-8000-000000000002",
            "en",
            "Lost passport abroad",
            "Report the loss to the police. <script>alert(1)</script> Then apply for a replacement passport.",
            &[],
        ),
        doc(
            "0190a9e2-0000-7000-8000-000000000003",
            "en",
            "Emergency numbers in Belgium",
            "Call 112 for an ambulance and 101 for the police.",
            &["BE"],
        ),
        Doc {
            published: false,
            ..doc(
                "0190a9e2-0000-7000-8000-000000000004",
                "en",
                "Draft passport notice",
                "Not yet published passport text.",
                &[],
            )
        },
    ]
}

/// The behaviour every backend must show, on a fresh index.
fn round_trip(engine: &MeiliEngine) {
    engine.clear().unwrap();
    engine.upsert(docs()).unwrap();
    engine.commit().unwrap();
    assert_eq!(engine.doc_count().unwrap(), 4);

    // A question: frames dropped, words found, snippets marked and escaped.
    let r = engine
        .search(&Query::new("what should I do, my passport is lost?"))
        .unwrap();
    let slugs: Vec<&str> = r.hits.iter().map(|h| h.slug.as_str()).collect();
    assert!(
        slugs.contains(&"0190a9e2-0000-7000-8000-000000000002"),
        "{slugs:?}"
    );
    assert!(!slugs.contains(&"0190a9e2-0000-7000-8000-000000000004"));
    let en = r
        .hits
        .iter()
        .find(|h| h.slug == "0190a9e2-0000-7000-8000-000000000002")
        .unwrap();
    assert_eq!(en.locale, "en");
    assert_eq!(en.id, "0190a9e2-0000-7000-8000-000000000002");
    assert_eq!(en.title, "Lost passport abroad");
    assert!(en.snippet.contains("<mark>"), "{}", en.snippet);
    assert!(!en.snippet.contains("<script>"), "{}", en.snippet);

    // Synonyms reach the other language.
    let r = engine.search(&Query::new("护照")).unwrap();
    assert!(r.hits.iter().any(|h| h.locale == "zh-CN"), "{r:?}");

    // Filters: locale, country (plus articles for everywhere), drafts for editors.
    let r = engine
        .search(&Query {
            locale: Some("zh".into()),
            ..Query::new("passport")
        })
        .unwrap();
    assert!(
        !r.hits.is_empty() && r.hits.iter().all(|h| h.locale == "zh-CN"),
        "{r:?}"
    );
    let r = engine
        .search(&Query {
            country: Some("be".into()),
            ..Query::new("police")
        })
        .unwrap();
    assert!(r.hits.iter().any(|h| h.countries == ["BE"]), "{r:?}");
    let r = engine
        .search(&Query {
            include_unpublished: true,
            ..Query::new("draft notice")
        })
        .unwrap();
    assert!(r
        .hits
        .iter()
        .any(|h| h.slug == "0190a9e2-0000-7000-8000-000000000004"));

    // Paging and totals.
    let r = engine
        .search(&Query {
            limit: 1,
            ..Query::new("passport")
        })
        .unwrap();
    assert_eq!(r.hits.len(), 1);
    assert!(r.total >= 2, "{}", r.total);

    // Nothing to search for.
    assert_eq!(engine.search(&Query::new("  ？！ ")).unwrap().total, 0);

    // Upsert replaces, delete removes, clear empties.
    let mut changed = docs().remove(1);
    changed.title = "Stolen passport".into();
    engine.upsert(vec![changed]).unwrap();
    engine
        .delete(&["0190a9e2-0000-7000-8000-000000000003".to_string()])
        .unwrap();
    engine.commit().unwrap();
    assert_eq!(engine.doc_count().unwrap(), 3);
    let r = engine.search(&Query::new("stolen passport")).unwrap();
    assert_eq!(r.hits[0].title, "Stolen passport");
    engine.clear().unwrap();
    engine.commit().unwrap();
    assert_eq!(engine.doc_count().unwrap(), 0);
}

#[test]
fn round_trip_through_the_sdk_against_the_fake() {
    let rt = runtime();
    let fake = FakeMeili::start(&rt, KEY);
    let engine = MeiliEngine::open(
        config(&fake.url, KEY, "articles"),
        Synonyms::builtin(),
        rt.handle().clone(),
    )
    .unwrap();
    round_trip(&engine);

    // Every request carried the key.
    let reqs = fake.requests();
    assert!(reqs.len() > 10);
    let bearer = format!("Bearer {KEY}");
    assert!(reqs
        .iter()
        .all(|r| r.auth.as_deref() == Some(bearer.as_str())));

    // The index was created with its primary key, then configured.
    let create = reqs.iter().find(|r| r.path == "/indexes").unwrap();
    assert_eq!(create.body, json!({"uid": "articles", "primaryKey": "key"}));
    let settings = fake.settings("articles");
    assert_eq!(
        settings["searchableAttributes"],
        json!(["title", "tags", "summary", "body", "pinyin"])
    );
    let filterable = settings["filterableAttributes"].as_array().unwrap();
    for f in ["published", "locale_key", "country_key", "category"] {
        assert!(filterable.contains(&json!(f)), "{filterable:?}");
    }
    let localized = &settings["localizedAttributes"][0];
    assert!(localized["locales"]
        .as_array()
        .unwrap()
        .contains(&json!("cmn")));
    assert!(localized["attributePatterns"]
        .as_array()
        .unwrap()
        .contains(&json!("body")));
    assert_eq!(settings["typoTolerance"]["enabled"], json!(true));
    let passport = settings["synonyms"]["passport"].as_array().unwrap();
    assert!(passport.contains(&json!("护照")), "{passport:?}");
    assert!(settings["synonyms"].as_object().unwrap().len() > 100);

    // Documents carry the filter keys and pinyin.
    let upload = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path == "/indexes/articles/documents")
        .unwrap();
    assert_eq!(upload.query.as_deref(), Some("primaryKey=key"));
    let first = &upload.body[0];
    assert_eq!(first["key"], json!("0190a9e2-0000-7000-8000-000000000001"));
    assert_eq!(first["locale_key"], json!(["zh-cn", "zh"]));
    assert_eq!(first["country_key"], json!(["*"]));
    assert_eq!(first["published"], json!(true));
    assert!(first["pinyin"].as_str().unwrap().contains("huzhao"));
    assert_eq!(upload.body[2]["country_key"], json!(["BE"]));

    // Searches: frames dropped from the text, filters as an expression, snippets asked
    // for with markers that cannot occur in markup.
    let searches: Vec<&Value> = reqs
        .iter()
        .filter(|r| r.path == "/indexes/articles/search")
        .map(|r| &r.body)
        .collect();
    assert_eq!(searches[0]["q"], json!("passport lost"));
    assert_eq!(searches[0]["filter"], json!("published = true"));
    assert_eq!(searches[0]["matchingStrategy"], json!("frequency"));
    assert_eq!(searches[0]["locales"], json!(["cmn", "eng"]));
    assert_eq!(searches[0]["highlightPreTag"], json!("\u{E000}"));
    assert!(searches
        .iter()
        .any(|s| s["filter"] == json!("published = true AND country_key IN [\"BE\", \"*\"]")));
    assert!(searches
        .iter()
        .any(|s| s["filter"] == json!("published = true AND locale_key = \"zh\"")));
    assert!(searches.iter().any(|s| s.get("filter").is_none()));

    // Deletes go by primary key.
    let del = reqs
        .iter()
        .find(|r| r.path == "/indexes/articles/documents/delete-batch")
        .unwrap();
    assert_eq!(del.body, json!(["0190a9e2-0000-7000-8000-000000000003"]));

    // Reopening an existing index is fine (index_already_exists is expected).
    MeiliEngine::open(
        config(&fake.url, KEY, "articles"),
        Synonyms::empty(),
        rt.handle().clone(),
    )
    .unwrap();
}

#[test]
fn ids_meilisearch_would_reject_are_encoded() {
    let rt = runtime();
    let fake = FakeMeili::start(&rt, KEY);
    let engine = MeiliEngine::open(
        config(&fake.url, KEY, "odd_ids"),
        Synonyms::empty(),
        rt.handle().clone(),
    )
    .unwrap();
    engine
        .upsert(vec![doc(
            "zh-CN/lost passport",
            "zh-CN",
            "护照",
            "护照遗失",
            &[],
        )])
        .unwrap();
    engine.commit().unwrap();
    let r = engine.search(&Query::new("护照")).unwrap();
    assert_eq!(r.hits[0].id, "zh-CN/lost passport");
    engine.delete(&["zh-CN/lost passport".to_string()]).unwrap();
    engine.commit().unwrap();
    assert_eq!(engine.doc_count().unwrap(), 0);
    assert!(matches!(
        engine.upsert(vec![doc(" ", "en", "t", "b", &[])]),
        Err(SearchError::InvalidDoc(_))
    ));
}

#[test]
fn synonyms_can_be_replaced_at_run_time() {
    let rt = runtime();
    let fake = FakeMeili::start(&rt, KEY);
    let engine = MeiliEngine::open(
        config(&fake.url, KEY, "syn"),
        Synonyms::empty(),
        rt.handle().clone(),
    )
    .unwrap();
    engine
        .set_synonyms(Synonyms::from_groups([vec!["wedding", "婚礼"]]))
        .unwrap();
    assert_eq!(
        fake.settings("syn")["synonyms"],
        json!({"wedding": ["婚礼"], "婚礼": ["wedding"]})
    );
}

#[test]
fn errors_map_to_search_errors() {
    let rt = runtime();
    let fake = FakeMeili::start(&rt, KEY);
    // Wrong key: refused by the server, not retryable.
    match MeiliEngine::open(
        config(&fake.url, "wrong-key", "x"),
        Synonyms::empty(),
        rt.handle().clone(),
    ) {
        Err(SearchError::Backend(m)) => assert!(m.contains("invalid"), "{m}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    // Nobody listening: unavailable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match MeiliEngine::open(
        config(&format!("http://{closed}"), KEY, "x"),
        Synonyms::empty(),
        rt.handle().clone(),
    ) {
        Err(SearchError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A key a header cannot carry, and a bad index name, are refused before any request.
    for (key, index) in [("bad\nkey", "x"), (KEY, "bad/index")] {
        assert!(matches!(
            MeiliEngine::open(
                config(&fake.url, key, index),
                Synonyms::empty(),
                rt.handle().clone()
            ),
            Err(SearchError::Backend(_))
        ));
    }
}

/// The same round trip against a real Meilisearch server, when one is configured.
#[test]
fn round_trip_against_a_real_server_when_configured() {
    let Ok(url) = std::env::var("LINGSHI_TEST_MEILISEARCH_URL") else {
        eprintln!("LINGSHI_TEST_MEILISEARCH_URL not set: real-server round trip skipped");
        return;
    };
    let key = std::env::var("LINGSHI_TEST_MEILISEARCH_KEY").unwrap_or_default();
    let rt = runtime();
    let index = format!("lingshi_test_{}", std::process::id());
    let mut cfg = config(&url, &key, &index);
    if key.is_empty() {
        cfg.api_key = None;
    }
    let engine = MeiliEngine::open(cfg.clone(), Synonyms::builtin(), rt.handle().clone()).unwrap();
    round_trip(&engine);
    let client = meilisearch_sdk::client::Client::new(url, cfg.api_key.as_deref()).unwrap();
    rt.block_on(async {
        let task = client.index(&index).delete().await.unwrap();
        client.wait_for_task(task, None, None).await.unwrap();
    });
}
