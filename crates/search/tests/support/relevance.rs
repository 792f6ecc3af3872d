//! The labelled question set (`tests/data/search_questions.jsonl`) and its scoring:
//! recall@3 (a question counts when one of the articles that answer it is among the
//! first three hits) and MRR (reciprocal rank of the first answering hit in the
//! first ten).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lingshi_search::{Doc, Hit, Query, SearchEngine};
use serde::Deserialize;

/// Hits looked at for MRR.
pub const DEPTH: usize = 10;
/// Hits looked at for recall.
pub const K: usize = 3;

/// One labelled question.
#[derive(Clone, Debug, Deserialize)]
pub struct Question {
    pub q: String,
    /// Slugs of the articles that answer it (any language version counts).
    pub expect: Vec<String>,
    /// "zh", "en" or "mixed".
    pub lang: String,
    /// short, long, typo, pinyin, traditional, colloquial, keyword, cross_language.
    #[serde(rename = "type")]
    pub kind: String,
    /// "dev" (used while tuning) or "holdout" (never tuned on).
    pub split: String,
}

pub fn questions_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/search_questions.jsonl")
}

pub fn questions() -> Vec<Question> {
    let path = questions_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// What one question got.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub question: Question,
    /// 1-based rank of the first answering hit within [`DEPTH`].
    pub rank: Option<usize>,
    /// The first hits: slug, locale, title.
    pub top: Vec<(String, String, String)>,
    /// True when, in the searched knowledge base, every answer exists only in the
    /// language the question is not written in.
    pub cross: bool,
}

impl Outcome {
    pub fn recalled(&self) -> bool {
        self.rank.is_some_and(|r| r <= K)
    }
}

fn lang_of(locale: &str) -> &str {
    locale.split(['-', '_']).next().unwrap_or(locale)
}

/// Runs every question against `engine`, whose documents are `docs`.
pub fn evaluate(engine: &dyn SearchEngine, docs: &[Doc], qs: &[Question]) -> Vec<Outcome> {
    qs.iter()
        .map(|question| {
            let res = engine
                .search(&Query {
                    limit: DEPTH,
                    ..Query::new(question.q.clone())
                })
                .unwrap_or_else(|e| panic!("search {:?} failed: {e}", question.q));
            let rank = res
                .hits
                .iter()
                .position(|h: &Hit| question.expect.contains(&h.slug))
                .map(|p| p + 1);
            let langs_present: Vec<&str> = docs
                .iter()
                .filter(|d| question.expect.contains(&d.slug))
                .map(|d| lang_of(&d.locale))
                .collect();
            let cross = matches!(question.lang.as_str(), "zh" | "en")
                && !langs_present.is_empty()
                && langs_present.iter().all(|l| *l != question.lang);
            Outcome {
                question: question.clone(),
                rank,
                top: res
                    .hits
                    .iter()
                    .take(K)
                    .map(|h| (h.slug.clone(), h.locale.clone(), h.title.clone()))
                    .collect(),
                cross,
            }
        })
        .collect()
}

/// Recall@3 and MRR over a group of outcomes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Score {
    pub n: usize,
    pub recalled: usize,
    pub rr_sum: f64,
}

impl Score {
    pub fn add(&mut self, o: &Outcome) {
        self.n += 1;
        self.recalled += usize::from(o.recalled());
        self.rr_sum += o.rank.map_or(0.0, |r| 1.0 / r as f64);
    }
    pub fn recall(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.recalled as f64 / self.n as f64
    }
    pub fn mrr(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        self.rr_sum / self.n as f64
    }
}

/// Scores grouped by a key.
pub fn by<'a>(
    outcomes: impl IntoIterator<Item = &'a Outcome>,
    key: impl Fn(&Outcome) -> String,
) -> BTreeMap<String, Score> {
    let mut m: BTreeMap<String, Score> = BTreeMap::new();
    for o in outcomes {
        m.entry(key(o)).or_default().add(o);
    }
    m
}

/// A printable table of scores per language, per type and per split.
pub fn report(title: &str, outcomes: &[Outcome]) -> String {
    let mut s = format!("== {title}: {} questions\n", outcomes.len());
    let all = by(outcomes, |_| "all".into());
    let groups: [(&str, BTreeMap<String, Score>); 4] = [
        ("", all),
        ("lang", by(outcomes, |o| o.question.lang.clone())),
        ("type", by(outcomes, |o| o.question.kind.clone())),
        ("split", by(outcomes, |o| o.question.split.clone())),
    ];
    for (g, m) in groups {
        for (k, sc) in m {
            let name = if g.is_empty() { k } else { format!("{g}={k}") };
            s.push_str(&format!(
                "  {name:26} n={:4}  recall@3={:.3}  MRR={:.3}\n",
                sc.n,
                sc.recall(),
                sc.mrr()
            ));
        }
    }
    s
}

/// Every miss with the first hits it got.
pub fn misses(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes.iter().filter(|o| !o.recalled()) {
        s.push_str(&format!(
            "  MISS [{} {} {}] {:?} expect {:?} (rank {})\n",
            o.question.split,
            o.question.lang,
            o.question.kind,
            o.question.q,
            o.question.expect,
            o.rank.map_or("-".to_string(), |r| r.to_string())
        ));
        for (slug, locale, title) in &o.top {
            s.push_str(&format!("       {slug} [{locale}] {title}\n"));
        }
        if o.top.is_empty() {
            s.push_str("       (no hits)\n");
        }
    }
    s
}
