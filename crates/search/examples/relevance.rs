//! Relevance of the search engine on the labelled citizen questions
//! (`tests/data/search_questions.jsonl`) against the starter knowledge base: prints
//! recall@3 and MRR per language, per question type and per split, then every miss
//! with the first three hits it returned. Also runs the two variants of the knowledge
//! base with one language version of each article removed (cross-language retrieval).
//!
//! ```text
//! cargo run --release -p lingshi-search --example relevance                 # tantivy
//! cargo run --release -p lingshi-search --example relevance -- meilisearch URL KEY
//! cargo run --release -p lingshi-search --example relevance -- fake
//! ```
//! `fake` runs the Meilisearch backend against the local fake of the Meilisearch API
//! used by the tests: it exercises the same client, settings and query planning, but
//! the fake's ranking is a naive word match, so its figures are no measure of
//! Meilisearch's own relevance.
//! Add `--no-misses` to print only the tables.

#[path = "../tests/fake_meili/mod.rs"]
mod fake_meili;
#[path = "../tests/support/mod.rs"]
mod support;

use lingshi_search::{Doc, MeiliConfig, MeiliEngine, SearchEngine, Synonyms, TantivyEngine};
use support::{kb, relevance};

enum Backend {
    Tantivy,
    Meili {
        url: String,
        key: Option<String>,
        rt: tokio::runtime::Runtime,
    },
}

impl Backend {
    fn engine(&self, docs: &[Doc], name: &str) -> Box<dyn SearchEngine> {
        let engine: Box<dyn SearchEngine> = match self {
            Backend::Tantivy => Box::new(
                TantivyEngine::open_in_ram(Synonyms::builtin()).expect("open tantivy in RAM"),
            ),
            Backend::Meili { url, key, rt } => {
                let config = MeiliConfig {
                    url: url.clone(),
                    api_key: key.clone(),
                    index: format!("lingshi_relevance_{name}"),
                    ..MeiliConfig::default()
                };
                Box::new(
                    MeiliEngine::open(config, Synonyms::builtin(), rt.handle().clone())
                        .expect("open Meilisearch index"),
                )
            }
        };
        engine.clear().expect("clear");
        engine
            .upsert(docs.to_vec())
            .expect("index the knowledge base");
        engine.commit().expect("commit");
        engine
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let show_misses = !args.iter().any(|a| a == "--no-misses");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let backend = match pos.first().map(|s| s.as_str()) {
        None | Some("tantivy") => Backend::Tantivy,
        Some("meilisearch") | Some("meili") => Backend::Meili {
            url: pos
                .get(1)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "http://127.0.0.1:7700".into()),
            key: pos.get(2).map(|s| s.to_string()),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime"),
        },
        Some("fake") => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let fake = fake_meili::FakeMeili::start(&rt, "relevance-key");
            Backend::Meili {
                url: fake.url.clone(),
                key: Some(fake.key.clone()),
                rt,
            }
        }
        Some(other) => {
            eprintln!("unknown backend {other:?}: use tantivy, fake or meilisearch URL KEY");
            std::process::exit(2);
        }
    };
    let questions = relevance::questions();
    let docs = kb::starter();
    println!("{} articles, {} questions", docs.len(), questions.len());

    let engine = backend.engine(&docs, "full");
    let full = relevance::evaluate(engine.as_ref(), &docs, &questions);
    print!("{}", relevance::report("full knowledge base", &full));

    let mut cross_all = Vec::new();
    for parity in 0..2 {
        let variant = kb::one_language_per_slug(&docs, parity);
        let engine = backend.engine(&variant, &format!("one_language_{parity}"));
        cross_all.extend(relevance::evaluate(engine.as_ref(), &variant, &questions));
    }
    let cross: Vec<_> = cross_all.iter().filter(|o| o.cross).cloned().collect();
    print!(
        "{}",
        relevance::report(
            "one language per article, answer only in the other language",
            &cross
        )
    );
    if show_misses {
        println!("-- misses, full knowledge base");
        print!("{}", relevance::misses(&full));
        println!("-- misses, answer only in the other language");
        print!("{}", relevance::misses(&cross));
    }
}
