//! Behaviour of the search engine on a realistic bilingual knowledge base.

mod corpus;

use std::sync::OnceLock;

use lingshi_search::{
    Doc, Query, SearchEngine, SearchError, SearchResults, Synonyms, TantivyEngine,
};

fn with_syn() -> &'static TantivyEngine {
    static E: OnceLock<TantivyEngine> = OnceLock::new();
    E.get_or_init(corpus::engine)
}

fn no_syn() -> &'static TantivyEngine {
    static E: OnceLock<TantivyEngine> = OnceLock::new();
    E.get_or_init(|| corpus::engine_with(Synonyms::empty()))
}

fn run(e: &TantivyEngine, q: Query) -> SearchResults {
    e.search(&q).expect("search must not fail")
}

fn ids(e: &TantivyEngine, text: &str) -> Vec<String> {
    run(e, Query::new(text))
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn rank(ids: &[String], id: &str) -> Option<usize> {
    ids.iter().position(|x| x == id)
}

#[test]
fn corpus_is_realistic() {
    assert!(corpus::docs().len() >= 40);
    assert_eq!(with_syn().doc_count().unwrap(), corpus::docs().len() as u64);
}

#[test]
fn chinese_question_finds_lost_passport_article_first() {
    let r = ids(with_syn(), "护照丢了怎么办");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-passport-lost"),
        "{r:?}"
    );
    let r = ids(with_syn(), "我的护照丢了，怎么办？");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-passport-lost"),
        "{r:?}"
    );
}

#[test]
fn chinese_question_finds_article_by_segmentation_alone() {
    let r = ids(no_syn(), "护照丢了怎么办");
    let pos = rank(&r, "zh-passport-lost").expect("found through 护照");
    assert!(pos < 5, "{r:?}");
}

#[test]
fn partial_chinese_words_match() {
    // 资格认证 is inside 养老金资格认证; 养老金认证 is split differently from the title.
    for q in ["资格认证", "养老金认证", "养老金"] {
        let r = ids(no_syn(), q);
        assert_eq!(
            r.first().map(String::as_str),
            Some("zh-pension"),
            "{q}: {r:?}"
        );
    }
    // 旅行证 as a word and as part of 紧急旅行证.
    let r = ids(no_syn(), "旅行证");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-travel-doc"),
        "{r:?}"
    );
    // 被抢 is not a word of the article (抢劫): character grams still find it.
    let r = ids(no_syn(), "被抢");
    assert!(rank(&r, "zh-robbery").is_some(), "{r:?}");
    // A word jieba may not produce on the document side.
    let r = ids(no_syn(), "领保电话");
    assert!(rank(&r, "zh-earthquake-tr").is_some(), "{r:?}");
}

#[test]
fn chinese_topics() {
    let e = with_syn();
    let r = ids(e, "电信诈骗");
    assert_eq!(r.first().map(String::as_str), Some("zh-scam"), "{r:?}");
    let r = ids(e, "地震");
    assert!(rank(&r, "zh-earthquake-jp").is_some() && rank(&r, "zh-earthquake-tr").is_some());
    let r = ids(e, "12308");
    assert!(r.len() >= 4, "{r:?}");
    assert!(
        rank(&r, "zh-12308").unwrap() < 3 && rank(&r, "en-12308").unwrap() < 3,
        "{r:?}"
    );
    let r = run(
        e,
        Query {
            country: Some("TH".into()),
            ..Query::new("在泰国护照被偷了怎么办")
        },
    );
    assert_eq!(r.hits[0].id, "zh-passport-lost", "{:?}", r.hits);
    // Without a locale filter, the language typed is preferred.
    let r = ids(e, "旅行证需要什么材料");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-travel-doc"),
        "{r:?}"
    );
    let r = ids(e, "被抢了怎么办");
    assert!(rank(&r, "zh-robbery").unwrap() < 2, "{r:?}");
}

#[test]
fn traditional_and_simplified_chinese_match_each_other() {
    let e = no_syn();
    let r = ids(e, "護照遺失怎麼辦");
    assert!(rank(&r, "zh-passport-lost").unwrap() < 2, "{r:?}");
    assert!(rank(&r, "zh-tw-passport").unwrap() < 2, "{r:?}");
    let r = run(e, Query::new("护照遗失"));
    let h = r
        .hits
        .iter()
        .find(|h| h.id == "zh-tw-passport")
        .expect("found");
    assert!(h.snippet.contains("<mark>護照</mark>"), "{}", h.snippet);
    let r = ids(e, "huzhao");
    assert!(rank(&r, "zh-tw-passport").is_some(), "{r:?}");
}

#[test]
fn english_is_stemmed() {
    let r = ids(no_syn(), "passports");
    assert!(rank(&r, "en-passport-lost").is_some(), "{r:?}");
    let r = ids(no_syn(), "robbed");
    assert!(rank(&r, "en-robbery").is_some(), "{r:?}");
    let r = ids(no_syn(), "certify eligibility");
    assert_eq!(r.first().map(String::as_str), Some("en-pension"), "{r:?}");
}

#[test]
fn typos_are_tolerated() {
    let e = no_syn();
    let r = ids(e, "pasport");
    assert!(rank(&r, "en-passport-lost").is_some(), "{r:?}");
    let r = ids(e, "embasy");
    assert!(rank(&r, "en-embassy-contact").is_some(), "{r:?}");
    let r = ids(e, "certifcation");
    assert!(rank(&r, "en-pension").is_some(), "{r:?}");
    let r = ids(e, "pension certifcation");
    assert_eq!(r.first().map(String::as_str), Some("en-pension"), "{r:?}");
    // Short words get no fuzziness: "visa" must not match "vista"-like noise, and
    // a 4-letter typo finds nothing.
    assert!(ids(e, "vsia").is_empty());
}

#[test]
fn last_word_matches_as_prefix_while_typing() {
    let e = no_syn();
    let r = ids(e, "quarant");
    assert_eq!(r.first().map(String::as_str), Some("en-q-title"), "{r:?}");
    let r = run(e, Query::new("lost passp"));
    assert_eq!(r.hits[0].id, "en-passport-lost", "{:?}", r.hits);
    assert!(
        r.hits[0].snippet.contains("<mark>passport</mark>"),
        "{}",
        r.hits[0].snippet
    );
    // A finished word (trailing space) is not expanded.
    assert!(ids(e, "passp ").is_empty());
}

#[test]
fn exact_match_ranks_above_fuzzy() {
    let r = ids(no_syn(), "marriage");
    let exact = rank(&r, "en-marriage").expect("exact");
    let fuzzy = rank(&r, "en-medicines").expect("carriage is one edit away");
    assert!(exact < fuzzy, "{r:?}");
}

#[test]
fn pinyin_queries_find_chinese_articles() {
    let e = no_syn();
    for q in ["huzhao", "hu zhao", "huzhao diule", "Hu Zhao"] {
        let r = ids(e, q);
        let top: Vec<&str> = r.iter().take(5).map(String::as_str).collect();
        assert!(
            top.iter()
                .any(|id| id.starts_with("zh-") && id.contains("passport")),
            "{q}: {r:?}"
        );
    }
    let r = ids(e, "yanglaojin");
    assert_eq!(r.first().map(String::as_str), Some("zh-pension"), "{r:?}");
    // English stopwords that happen to be pinyin syllables ("a") are not joined.
    let r = ids(e, "can i get a visa");
    assert!(!r.is_empty());
    assert!(
        r.iter()
            .all(|id| id.contains("visa") || id.contains("schengen")),
        "{r:?}"
    );
    let r = ids(e, "lvxingzheng");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-travel-doc"),
        "{r:?}"
    );
    let r = ids(e, "dizhen");
    assert!(rank(&r, "zh-earthquake-jp").is_some(), "{r:?}");
}

#[test]
fn synonyms_cross_languages_at_query_time() {
    let e = with_syn();
    let r = run(
        e,
        Query {
            locale: Some("zh-CN".into()),
            ..Query::new("passport lost")
        },
    );
    assert_eq!(r.hits[0].id, "zh-passport-lost", "{:?}", r.hits);
    let r = run(
        e,
        Query {
            locale: Some("en".into()),
            ..Query::new("护照")
        },
    );
    assert!(
        r.hits.iter().any(|h| h.id == "en-passport-lost"),
        "{:?}",
        r.hits
    );
    // Without synonyms the English query cannot reach the Chinese article.
    let r = run(
        no_syn(),
        Query {
            locale: Some("zh-CN".into()),
            ..Query::new("passport lost")
        },
    );
    assert!(r.hits.is_empty(), "{:?}", r.hits);
    // Multi-word synonym and pinyin synonyms.
    let r = ids(e, "emergency travel document");
    assert!(rank(&r, "zh-travel-doc").is_some() && rank(&r, "en-travel-doc").is_some());
    let r = ids(e, "hu zhao");
    assert!(rank(&r, "en-passport-lost").is_some(), "{r:?}");
}

#[test]
fn filters() {
    let e = with_syn();
    let q = |text: &str| Query::new(text);
    // Country: Japan's articles plus global ones, not Turkey's.
    let r = run(
        e,
        Query {
            country: Some("jp".into()),
            ..q("地震")
        },
    );
    let got: Vec<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
    assert!(got.contains(&"zh-earthquake-jp"), "{got:?}");
    assert!(!got.contains(&"zh-earthquake-tr"), "{got:?}");
    let r = run(
        e,
        Query {
            country: Some("TR".into()),
            ..q("护照")
        },
    );
    assert!(r
        .hits
        .iter()
        .all(|h| h.countries.is_empty() || h.countries == ["TR"]));
    assert!(r.hits.iter().any(|h| h.id == "zh-passport-lost"));
    // Locale: "zh" covers zh-CN.
    let r = run(
        e,
        Query {
            locale: Some("zh".into()),
            limit: 100,
            ..q("passport")
        },
    );
    assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.locale.starts_with("zh-")));
    assert!(r.hits.iter().any(|h| h.locale == "zh-TW"));
    let r = run(
        e,
        Query {
            locale: Some("zh-CN".into()),
            limit: 100,
            ..q("passport")
        },
    );
    assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.locale == "zh-CN"));
    // Category.
    let r = run(
        e,
        Query {
            category: Some("safety_alert".into()),
            limit: 100,
            ..q("诈骗")
        },
    );
    assert!(!r.hits.is_empty() && r.hits.iter().all(|h| h.category == "safety_alert"));
    assert!(!r.hits.iter().any(|h| h.id == "zh-students"));
    // Unpublished only for editors.
    assert!(!ids(e, "加急").contains(&"zh-draft".to_string()));
    let r = run(
        e,
        Query {
            include_unpublished: true,
            ..q("加急")
        },
    );
    assert!(r.hits.iter().any(|h| h.id == "zh-draft"));
    let r = run(
        e,
        Query {
            include_unpublished: true,
            limit: 100,
            ..q("passport fee")
        },
    );
    assert_eq!(r.hits[0].id, "en-draft-fees");
}

#[test]
fn title_outranks_summary_outranks_body() {
    let r = ids(no_syn(), "quarantine");
    assert_eq!(
        &r[..3],
        ["en-q-title", "en-q-summary", "en-q-body"],
        "{r:?}"
    );
}

#[test]
fn tags_are_searchable() {
    let r = ids(no_syn(), "minors");
    assert_eq!(r, ["en-child-passport"]);
    let r = ids(no_syn(), "新生儿");
    assert_eq!(
        r.first().map(String::as_str),
        Some("zh-child-passport"),
        "{r:?}"
    );
}

#[test]
fn snippets_are_highlighted_and_escaped() {
    let e = with_syn();
    let r = run(e, Query::new("stolen passport"));
    let h = r.hits.iter().find(|h| h.id == "en-passport-lost").unwrap();
    assert!(h.snippet.contains("<mark>passport</mark>"), "{}", h.snippet);
    assert!(h.snippet.contains("<mark>stolen</mark>"), "{}", h.snippet);

    let r = run(e, Query::new("pickpockets"));
    let s = &r.hits[0].snippet;
    assert!(!s.contains("<script>"), "{s}");
    assert!(s.contains("&lt;script&gt;") && s.contains("&amp;"), "{s}");
    assert!(s.contains("<mark>pickpockets</mark>"), "{s}");

    let r = run(e, Query::new("护照丢了怎么办"));
    let s = &r.hits[0].snippet;
    assert!(s.contains("<mark>护照</mark>"), "{s}");
    assert!(s.contains("<mark>遗失</mark>"), "{s}");
    let visible = s.replace("<mark>", "").replace("</mark>", "");
    assert!(visible.chars().count() <= 162, "{visible}");

    // Fuzzy and pinyin matches are marked too.
    let r = run(no_syn(), Query::new("pasport"));
    let h = r.hits.iter().find(|h| h.id == "en-passport-lost").unwrap();
    assert!(h.snippet.contains("<mark>passport</mark>"), "{}", h.snippet);
    let r = run(no_syn(), Query::new("yanglaojin"));
    assert!(
        r.hits[0].snippet.contains("<mark>养老金</mark>"),
        "{}",
        r.hits[0].snippet
    );
}

#[test]
fn total_counts_all_matches_and_paging_works() {
    let e = with_syn();
    let all = run(
        e,
        Query {
            limit: 100,
            ..Query::new("护照")
        },
    );
    assert!(all.total >= 10, "{}", all.total);
    assert_eq!(all.total, all.hits.len());
    let page = run(
        e,
        Query {
            limit: 3,
            offset: 3,
            ..Query::new("护照")
        },
    );
    assert_eq!(page.total, all.total);
    assert_eq!(page.hits.len(), 3);
    let want: Vec<&str> = all.hits[3..6].iter().map(|h| h.id.as_str()).collect();
    let got: Vec<&str> = page.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(got, want);
    let none = run(
        e,
        Query {
            limit: 0,
            ..Query::new("护照")
        },
    );
    assert!(none.hits.is_empty());
    assert_eq!(none.total, all.total);
    let past = run(
        e,
        Query {
            offset: usize::MAX,
            limit: usize::MAX,
            ..Query::new("护照")
        },
    );
    assert!(past.hits.is_empty());
}

#[test]
fn empty_and_hostile_queries_never_fail() {
    let e = with_syn();
    for q in [
        "",
        "   ",
        "\t\n",
        "？？！！",
        "。，、",
        "...",
        "*",
        "\"",
        "()",
    ] {
        let r = run(e, Query::new(q));
        assert!(r.hits.is_empty() && r.total == 0, "{q:?}");
    }
    let long = "护照passport🙂".repeat(2000);
    let nasty = [
        "title:foo AND (",
        "\"unclosed phrase",
        "passport~2 OR body:*",
        "+-!^{}[]~:\\/",
        "🆘护照🆘",
        "passport护照hu zhao!!",
        "ذهب جواز السفر",
        "паспорт потерян",
        "\u{0}\u{200b}\u{feff}",
        long.as_str(),
    ];
    for q in nasty {
        let r = e.search(&Query::new(q));
        assert!(r.is_ok(), "{q:?}: {r:?}");
    }
    assert!(!run(e, Query::new("🆘护照🆘")).hits.is_empty());
    assert!(!run(e, Query::new("title:passport AND (")).hits.is_empty());
}

#[test]
fn upsert_replaces_delete_and_clear() {
    let e = TantivyEngine::open_in_ram(Synonyms::empty()).unwrap();
    let mut doc = Doc {
        id: "1".into(),
        slug: "s".into(),
        locale: "en".into(),
        title: "Consular fees".into(),
        published: true,
        ..Doc::default()
    };
    e.upsert(vec![doc.clone()]).unwrap();
    e.commit().unwrap();
    doc.title = "Consular charges".into();
    e.upsert(vec![doc.clone()]).unwrap();
    e.commit().unwrap();
    assert_eq!(e.doc_count().unwrap(), 1);
    assert!(ids(&e, "fees").is_empty());
    assert_eq!(ids(&e, "charges"), ["1"]);
    e.delete(&["1".to_string()]).unwrap();
    e.commit().unwrap();
    assert_eq!(e.doc_count().unwrap(), 0);
    e.upsert(corpus::docs()).unwrap();
    e.commit().unwrap();
    assert_eq!(e.doc_count().unwrap(), corpus::docs().len() as u64);
    e.clear().unwrap();
    e.commit().unwrap();
    assert_eq!(e.doc_count().unwrap(), 0);
    assert!(matches!(
        e.upsert(vec![Doc::default()]),
        Err(SearchError::InvalidDoc(_))
    ));
}

#[test]
fn second_writer_gets_locked_and_reopen_keeps_documents() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = TantivyEngine::open(dir.path(), Synonyms::empty()).unwrap();
        e.upsert(corpus::docs()).unwrap();
        e.commit().unwrap();
        assert!(e.index_size_bytes() > 0);
        match TantivyEngine::open(dir.path(), Synonyms::empty()) {
            Err(SearchError::Locked) => {}
            Err(other) => panic!("expected Locked, got {other:?}"),
            Ok(_) => panic!("expected Locked, got a second writer"),
        }
    }
    let e =
        TantivyEngine::open(dir.path(), Synonyms::from_toml(corpus::SYNONYMS).unwrap()).unwrap();
    assert_eq!(e.doc_count().unwrap(), corpus::docs().len() as u64);
    let r = ids(&e, "护照丢了怎么办");
    assert_eq!(r.first().map(String::as_str), Some("zh-passport-lost"));
}

#[test]
fn concurrent_searches_while_writing() {
    let e = std::sync::Arc::new(corpus::engine());
    let writer = {
        let e = e.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                let mut d = corpus::docs()[0].clone();
                d.id = format!("extra-{i}");
                e.upsert(vec![d]).unwrap();
                e.commit().unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let r = e.search(&Query::new("护照丢了怎么办")).unwrap();
                    assert!(!r.hits.is_empty());
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(e.doc_count().unwrap(), corpus::docs().len() as u64 + 20);
}

#[test]
fn synonyms_can_be_replaced_without_reindexing() {
    let e = corpus::engine_with(Synonyms::empty());
    let q = Query {
        locale: Some("zh-CN".into()),
        ..Query::new("passport lost")
    };
    assert!(run(&e, q.clone()).hits.is_empty());
    e.set_synonyms(Synonyms::from_toml(corpus::SYNONYMS).unwrap());
    assert_eq!(run(&e, q).hits[0].id, "zh-passport-lost");
}
