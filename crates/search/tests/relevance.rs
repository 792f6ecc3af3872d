//! Relevance on the labelled citizen questions against the starter knowledge base:
//! recall@3 per language on the full knowledge base, and on the variants where each
//! article exists in one language only (cross-language retrieval). Runs on tantivy
//! always, and on a real Meilisearch server when `LINGSHI_TEST_MEILISEARCH_URL` is set.
//! `cargo run --release --example relevance` prints the full tables and every miss.

mod support;

use lingshi_search::{Doc, SearchEngine, Synonyms, TantivyEngine};
use support::{kb, relevance};

/// Recall@3 every language must reach on the full knowledge base.
const MIN_RECALL: f64 = 0.9;
/// Recall@3 every language must reach when the answer exists only in the other language.
const MIN_CROSS_RECALL: f64 = 0.85;

fn tantivy(docs: &[Doc]) -> Box<dyn SearchEngine> {
    let e = TantivyEngine::open_in_ram(Synonyms::builtin()).unwrap();
    e.upsert(docs.to_vec()).unwrap();
    e.commit().unwrap();
    Box::new(e)
}

/// Builds an engine holding the given documents; the name tells runs apart.
type MakeEngine<'a> = &'a dyn Fn(&[Doc], &str) -> Box<dyn SearchEngine>;

fn check(name: &str, make: MakeEngine<'_>) {
    let questions = relevance::questions();
    assert!(questions.len() >= 280, "{} questions", questions.len());
    let docs = kb::starter();
    assert_eq!(docs.len(), 40);

    let full = relevance::evaluate(make(&docs, "full").as_ref(), &docs, &questions);
    let report = relevance::report(&format!("{name}, full knowledge base"), &full);
    println!("{report}");
    let mut cross = Vec::new();
    for parity in 0..2 {
        let variant = kb::one_language_per_slug(&docs, parity);
        assert_eq!(variant.len(), 20);
        let engine = make(&variant, &format!("one_language_{parity}"));
        cross.extend(
            relevance::evaluate(engine.as_ref(), &variant, &questions)
                .into_iter()
                .filter(|o| o.cross),
        );
    }
    let cross_report = relevance::report(
        &format!("{name}, answer only in the other language"),
        &cross,
    );
    println!("{cross_report}");

    let mut failures = Vec::new();
    for (lang, score) in relevance::by(&full, |o| o.question.lang.clone()) {
        if score.recall() < MIN_RECALL {
            failures.push(format!("full/{lang}: recall@3 {:.3}", score.recall()));
        }
    }
    let cross_langs = relevance::by(&cross, |o| o.question.lang.clone());
    assert!(cross_langs.contains_key("zh") && cross_langs.contains_key("en"));
    for (lang, score) in cross_langs {
        if score.recall() < MIN_CROSS_RECALL {
            failures.push(format!("cross/{lang}: recall@3 {:.3}", score.recall()));
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:?}\n{report}\n{}\n{cross_report}\n{}",
        relevance::misses(&full),
        relevance::misses(&cross)
    );
}

#[test]
fn questions_find_their_articles_on_tantivy() {
    check("tantivy", &|docs, _| tantivy(docs));
}

/// The same targets on a real Meilisearch server, when one is configured
/// (`LINGSHI_TEST_MEILISEARCH_URL`, `LINGSHI_TEST_MEILISEARCH_KEY`).
#[test]
fn questions_find_their_articles_on_a_real_meilisearch_when_configured() {
    let Ok(url) = std::env::var("LINGSHI_TEST_MEILISEARCH_URL") else {
        eprintln!("LINGSHI_TEST_MEILISEARCH_URL not set: Meilisearch relevance skipped");
        return;
    };
    let key = std::env::var("LINGSHI_TEST_MEILISEARCH_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let make = |docs: &[Doc], name: &str| -> Box<dyn SearchEngine> {
        let config = lingshi_search::MeiliConfig {
            url: url.clone(),
            api_key: key.clone(),
            index: format!("lingshi_relevance_{}_{name}", std::process::id()),
            ..lingshi_search::MeiliConfig::default()
        };
        let e = lingshi_search::MeiliEngine::open(config, Synonyms::builtin(), rt.handle().clone())
            .unwrap();
        e.clear().unwrap();
        e.upsert(docs.to_vec()).unwrap();
        e.commit().unwrap();
        Box::new(e)
    };
    check("meilisearch", &make);
}
