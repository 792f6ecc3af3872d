//! Meilisearch backend behind the same [`SearchEngine`] trait, for deployments that run
//! a Meilisearch server instead of (or next to) the embedded index.
//!
//! The trait is synchronous because the helpdesk calls it from blocking threads; this
//! engine keeps a tokio [`Handle`] given at construction and blocks on each request.
//! Query text goes through the same planner as the embedded engine (question frames
//! and filler dropped, Traditional folded to Simplified), the synonyms dictionary is
//! pushed into the index settings, and snippets come from Meilisearch's `_formatted`
//! crop, re-escaped here so article text can never inject markup.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use meilisearch_sdk::client::Client;
use meilisearch_sdk::errors::{Error as MeiliError, ErrorCode};
use meilisearch_sdk::indexes::Index;
use meilisearch_sdk::search::{MatchingStrategies, Selectors};
use meilisearch_sdk::settings::{
    LocalizedAttributes, MinWordSizeForTypos, Settings, TypoToleranceSettings,
};
use meilisearch_sdk::task_info::TaskInfo;
use meilisearch_sdk::tasks::Task;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::analysis::pinyin_words;
use crate::query::Planner;
use crate::{Doc, Hit, Query, SearchEngine, SearchError, SearchResults, Synonyms};

/// Hard caps on paging, whatever the caller asks (same as the embedded engine).
const MAX_LIMIT: usize = 1000;
const MAX_OFFSET: usize = 10_000;
/// Documents per upload request: large enough for throughput, small enough to stay far
/// below Meilisearch's payload limit with long articles.
const UPLOAD_BATCH: usize = 500;
/// Words kept around the matches in a snippet (a Chinese word is one to three characters).
const CROP_WORDS: usize = 40;
/// Highlight markers from the Unicode private use area: they cannot be confused with
/// markup, and this crate escapes everything else before turning them into `<mark>`.
const PRE: &str = "\u{E000}";
const POST: &str = "\u{E001}";
/// Primary keys Meilisearch accepts: `[A-Za-z0-9_-]`, at most 511 bytes.
const MAX_KEY_BYTES: usize = 511;
/// Locales the text fields are tokenised with: Han text as Mandarin (jieba-style
/// segmentation rather than the Japanese segmenter it could otherwise be detected as),
/// Latin text as English.
const LOCALES: [&str; 2] = ["cmn", "eng"];
/// Searchable attributes in ranking order.
const SEARCHABLE: [&str; 5] = ["title", "tags", "summary", "body", "pinyin"];
/// Attributes used in filters.
const FILTERABLE: [&str; 4] = ["published", "locale_key", "country_key", "category"];
/// Country key of articles that apply everywhere.
const ALL_COUNTRIES: &str = "*";

/// Where the Meilisearch index lives. Built by the server from its `[search]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeiliConfig {
    /// Server URL, e.g. `http://127.0.0.1:7700` (no trailing slash needed).
    pub url: String,
    /// API key sent as a bearer token; a key with search, documents, settings, tasks
    /// and index rights (the master key works). Never logged.
    pub api_key: Option<String>,
    /// Index uid; one index holds every locale.
    pub index: String,
    /// How long `open`, `commit` and `set_synonyms` wait for Meilisearch to finish
    /// its tasks before giving up with [`SearchError::Unavailable`].
    pub task_timeout: Duration,
    /// Time limit of one search or upload request.
    pub request_timeout: Duration,
}

impl Default for MeiliConfig {
    fn default() -> Self {
        MeiliConfig {
            url: "http://127.0.0.1:7700".into(),
            api_key: None,
            index: "lingshi_articles".into(),
            task_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The document as stored in Meilisearch: the article plus untokenised filter keys and
/// the pinyin of its title, tags and summary (Meilisearch has no pinyin analysis).
#[derive(Serialize)]
struct MeiliDoc<'a> {
    key: String,
    doc_id: &'a str,
    slug: &'a str,
    locale: &'a str,
    title: &'a str,
    tags: &'a [String],
    summary: &'a str,
    body: &'a str,
    pinyin: String,
    category: &'a str,
    countries: Vec<String>,
    locale_key: Vec<String>,
    country_key: Vec<String>,
    published: bool,
}

/// The stored fields a hit needs.
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    doc_id: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    locale: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    countries: Vec<String>,
}

/// Search engine over a Meilisearch index.
pub struct MeiliEngine {
    client: Client,
    index: Index,
    handle: Handle,
    config: MeiliConfig,
    planner: RwLock<Arc<Planner>>,
    /// Tasks enqueued by upserts, deletes and clears, awaited by `commit`.
    pending: Mutex<Vec<TaskInfo>>,
}

impl std::fmt::Debug for MeiliEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key stays out of debug output.
        f.debug_struct("MeiliEngine")
            .field("url", &self.config.url)
            .field("index", &self.config.index)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> SearchError {
    SearchError::Unavailable(e.to_string())
}

impl From<MeiliError> for SearchError {
    fn from(e: MeiliError) -> Self {
        match e {
            MeiliError::HttpError(_)
            | MeiliError::Timeout
            | MeiliError::MeilisearchCommunication(_) => SearchError::Unavailable(e.to_string()),
            other => SearchError::Backend(other.to_string()),
        }
    }
}

/// The Meilisearch primary key for a document id: the id itself when Meilisearch
/// accepts it, otherwise `x_` and its bytes in hex (ids that start with `x_` are
/// encoded too, so two ids never share a key).
pub(crate) fn doc_key(id: &str) -> Result<String, SearchError> {
    let plain = !id.starts_with("x_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let key = if plain {
        id.to_string()
    } else {
        let mut k = String::with_capacity(2 + id.len() * 2);
        k.push_str("x_");
        for b in id.bytes() {
            k.push_str(&format!("{b:02x}"));
        }
        k
    };
    if id.trim().is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(SearchError::InvalidDoc(format!(
            "id must be non-empty and at most {} bytes once encoded",
            MAX_KEY_BYTES
        )));
    }
    Ok(key)
}

/// Filter keys of a locale: the full tag and the primary language ("zh-cn", "zh").
fn locale_keys(locale: &str) -> Vec<String> {
    let full = locale.trim().to_ascii_lowercase().replace('_', "-");
    let mut keys = vec![full.clone()];
    if let Some((lang, _)) = full.split_once('-') {
        keys.push(lang.to_string());
    }
    keys
}

/// A string literal for a Meilisearch filter expression.
fn filter_literal(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The filter expression for a query's filters (empty when there is none).
pub(crate) fn filter_expr(q: &Query) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !q.include_unpublished {
        parts.push("published = true".into());
    }
    if let Some(locale) = q.locale.as_deref().filter(|l| !l.trim().is_empty()) {
        let key = locale.trim().to_ascii_lowercase().replace('_', "-");
        parts.push(format!("locale_key = {}", filter_literal(&key)));
    }
    if let Some(cat) = q.category.as_deref().filter(|c| !c.trim().is_empty()) {
        parts.push(format!("category = {}", filter_literal(cat.trim())));
    }
    if let Some(country) = q.country.as_deref().filter(|c| !c.trim().is_empty()) {
        let c = country.trim().to_ascii_uppercase();
        parts.push(format!(
            "country_key IN [{}, {}]",
            filter_literal(&c),
            filter_literal(ALL_COUNTRIES)
        ));
    }
    parts.join(" AND ")
}

/// Meilisearch synonyms from groups: every member maps to every other member of each
/// group it belongs to (keys lowercased, as Meilisearch normalises them).
pub(crate) fn synonym_map(s: &Synonyms) -> HashMap<String, Vec<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in s.groups() {
        for w in g {
            let key = w.to_lowercase();
            let entry = m.entry(key.clone()).or_default();
            for other in g {
                let o = other.to_lowercase();
                if o != key {
                    entry.insert(o);
                }
            }
        }
    }
    m.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

/// The index settings this engine relies on.
pub(crate) fn settings(synonyms: &Synonyms) -> Settings {
    Settings::new()
        .with_searchable_attributes(SEARCHABLE)
        .with_filterable_attributes(FILTERABLE)
        .with_synonyms(synonym_map(synonyms))
        .with_typo_tolerance(TypoToleranceSettings {
            enabled: Some(true),
            disable_on_attributes: Some(vec!["pinyin".to_string()]),
            disable_on_words: Some(Vec::new()),
            min_word_size_for_typos: Some(MinWordSizeForTypos {
                one_typo: Some(5),
                two_typos: Some(9),
            }),
            disable_on_numbers: Some(true),
        })
        .with_localized_attributes([LocalizedAttributes {
            locales: LOCALES.iter().map(|s| s.to_string()).collect(),
            attribute_patterns: ["title", "tags", "summary", "body"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }])
}

/// Turns Meilisearch's highlighted crop into the snippet format of this crate: text
/// escaped, whitespace collapsed, matches in `<mark>`.
pub(crate) fn render_formatted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 32);
    let mut open = false;
    let mut last_space = true;
    for c in s.chars() {
        match c {
            '\u{E000}' => {
                if !open {
                    out.push_str("<mark>");
                    open = true;
                }
                continue;
            }
            '\u{E001}' => {
                if open {
                    out.push_str("</mark>");
                    open = false;
                }
                continue;
            }
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
                continue;
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        last_space = false;
    }
    if open {
        out.push_str("</mark>");
    }
    let end = out.trim_end().len();
    out.truncate(end);
    out
}

impl MeiliEngine {
    /// Connects, creates the index when missing, applies the settings (searchable and
    /// filterable attributes, synonyms, typo tolerance, Chinese tokenisation) and waits
    /// until Meilisearch has applied them. Must be called outside async code (e.g. from
    /// `spawn_blocking`); from async code use [`MeiliEngine::connect`].
    pub fn open(
        config: MeiliConfig,
        synonyms: Synonyms,
        handle: Handle,
    ) -> Result<Self, SearchError> {
        if let Some(key) = &config.api_key {
            // The SDK builds a header from the key and panics on bytes a header cannot
            // carry; reject them here instead.
            if key.is_empty() || !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(SearchError::Backend(
                    "the Meilisearch API key must be printable ASCII without spaces".into(),
                ));
            }
        }
        if config.index.is_empty()
            || !config
                .index
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SearchError::Backend(format!(
                "invalid Meilisearch index name {:?}",
                config.index
            )));
        }
        let url = config.url.trim_end_matches('/').to_string();
        let client = Client::new(url, config.api_key.as_deref())?;
        let index = client.index(config.index.clone());
        let engine = MeiliEngine {
            client,
            index,
            handle,
            planner: RwLock::new(Arc::new(Planner::new(&synonyms))),
            pending: Mutex::new(Vec::new()),
            config,
        };
        engine.block(async {
            match engine
                .client
                .create_index(&engine.config.index, Some("key"))
                .await
            {
                Ok(task) => {
                    let t = engine.wait(&task).await;
                    match t {
                        Ok(()) => {}
                        Err(SearchError::Backend(m)) if m.contains("already exists") => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(MeiliError::Meilisearch(e))
                    if matches!(e.error_code, ErrorCode::IndexAlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            let task = engine.index.set_settings(&settings(&synonyms)).await?;
            engine.wait(&task).await
        })?;
        Ok(engine)
    }

    /// [`MeiliEngine::open`] from async code: runs it on a blocking thread of the
    /// current runtime, whose handle the engine keeps.
    pub async fn connect(config: MeiliConfig, synonyms: Synonyms) -> Result<Self, SearchError> {
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || MeiliEngine::open(config, synonyms, handle))
            .await
            .map_err(|e| SearchError::Backend(format!("open task failed: {e}")))?
    }

    /// Replaces the synonyms: the query planner at once, the index settings when
    /// Meilisearch has applied them (this waits for that task).
    pub fn set_synonyms(&self, synonyms: Synonyms) -> Result<(), SearchError> {
        let map = synonym_map(&synonyms);
        *self.planner.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Planner::new(&synonyms));
        self.block(async {
            let task = self.index.set_synonyms(&map).await?;
            self.wait(&task).await
        })
    }

    /// The index uid.
    pub fn index_name(&self) -> &str {
        &self.config.index
    }

    fn block<T>(&self, f: impl Future<Output = Result<T, SearchError>>) -> Result<T, SearchError> {
        self.handle.block_on(f)
    }

    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, MeiliError>>,
    ) -> Result<T, SearchError> {
        match tokio::time::timeout(self.config.request_timeout, f).await {
            Ok(r) => r.map_err(SearchError::from),
            Err(_) => Err(unavailable("Meilisearch request timed out")),
        }
    }

    /// Waits for a task and turns its failure into an error.
    async fn wait(&self, task: &TaskInfo) -> Result<(), SearchError> {
        let done = self
            .client
            .wait_for_task(
                task,
                Some(Duration::from_millis(20)),
                Some(self.config.task_timeout),
            )
            .await?;
        match done {
            Task::Failed { content } => Err(SearchError::Backend(format!(
                "Meilisearch task {} failed: {}",
                content.task.uid, content.error.error_message
            ))),
            _ => Ok(()),
        }
    }

    fn enqueue(&self, task: TaskInfo) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }
}

impl SearchEngine for MeiliEngine {
    fn upsert(&self, docs: Vec<Doc>) -> Result<(), SearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut keyed = Vec::with_capacity(docs.len());
        for d in &docs {
            let key = doc_key(&d.id).map_err(|e| match e {
                SearchError::InvalidDoc(m) => {
                    SearchError::InvalidDoc(format!("{m} (slug {:?})", d.slug))
                }
                e => e,
            })?;
            keyed.push(key);
        }
        let payload: Vec<MeiliDoc<'_>> = docs
            .iter()
            .zip(keyed)
            .map(|(d, key)| {
                let mut countries: Vec<String> = d
                    .countries
                    .iter()
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| !c.is_empty())
                    .collect();
                countries.dedup();
                let country_key = if countries.is_empty() {
                    vec![ALL_COUNTRIES.to_string()]
                } else {
                    countries.clone()
                };
                let mut py_src = d.title.clone();
                for t in &d.tags {
                    py_src.push(' ');
                    py_src.push_str(t);
                }
                py_src.push(' ');
                py_src.push_str(&d.summary);
                MeiliDoc {
                    key,
                    doc_id: &d.id,
                    slug: &d.slug,
                    locale: &d.locale,
                    title: &d.title,
                    tags: &d.tags,
                    summary: &d.summary,
                    body: &d.body,
                    pinyin: pinyin_words(&py_src).join(" "),
                    category: d.category.trim(),
                    countries,
                    locale_key: locale_keys(&d.locale),
                    country_key,
                    published: d.published,
                }
            })
            .collect();
        self.block(async {
            for chunk in payload.chunks(UPLOAD_BATCH) {
                let task = self
                    .timed(self.index.add_or_replace(chunk, Some("key")))
                    .await?;
                self.enqueue(task);
            }
            Ok(())
        })
    }

    fn delete(&self, ids: &[String]) -> Result<(), SearchError> {
        let keys: Vec<String> = ids.iter().filter_map(|id| doc_key(id).ok()).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.block(async {
            let task = self.timed(self.index.delete_documents(&keys)).await?;
            self.enqueue(task);
            Ok(())
        })
    }

    fn commit(&self) -> Result<(), SearchError> {
        let tasks = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        self.block(async {
            // Meilisearch applies an index's tasks in order, but each one may fail on its
            // own, so every task is checked.
            for t in &tasks {
                self.wait(t).await?;
            }
            Ok(())
        })
    }

    fn search(&self, q: &Query) -> Result<SearchResults, SearchError> {
        let planner = self
            .planner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Meilisearch corrects typos itself; the planner only drops frames here.
        let plan = planner.plan(&q.text, &|_| true);
        if plan.is_empty() {
            return Ok(SearchResults::default());
        }
        let text = plan.plain_text();
        let filter = filter_expr(q);
        let limit = q.limit.min(MAX_LIMIT);
        let offset = q.offset.min(MAX_OFFSET);
        let retrieve = ["doc_id", "slug", "title", "category", "locale", "countries"];
        let crop = [("body", None), ("summary", None)];
        let highlight = ["body", "summary"];
        let res = self.block(async {
            let mut sq = self.index.search();
            sq.with_query(&text)
                .with_limit(limit)
                .with_offset(offset)
                .with_attributes_to_retrieve(Selectors::Some(&retrieve))
                .with_attributes_to_crop(Selectors::Some(&crop))
                .with_crop_length(CROP_WORDS)
                .with_attributes_to_highlight(Selectors::Some(&highlight))
                .with_highlight_pre_tag(PRE)
                .with_highlight_post_tag(POST)
                .with_show_ranking_score(true)
                .with_matching_strategy(MatchingStrategies::FREQUENCY)
                .with_locales(&LOCALES);
            if !filter.is_empty() {
                sq.with_filter(&filter);
            }
            self.timed(sq.execute::<Stored>()).await
        })?;
        let total = res
            .estimated_total_hits
            .or(res.total_hits)
            .unwrap_or(res.hits.len());
        let hits = res
            .hits
            .into_iter()
            .map(|h| {
                let formatted = h.formatted_result.unwrap_or_default();
                let field = |name: &str| {
                    formatted
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                let (body, summary) = (field("body"), field("summary"));
                // As in the embedded engine: the body's crop around its matches, else
                // the summary (highlighted or not), else the start of the body.
                let source = if body.contains(PRE) || summary.is_empty() {
                    body
                } else {
                    summary
                };
                Hit {
                    id: h.result.doc_id,
                    slug: h.result.slug,
                    title: h.result.title,
                    snippet: render_formatted(&source),
                    category: h.result.category,
                    locale: h.result.locale,
                    countries: h.result.countries,
                    score: h.ranking_score.unwrap_or(0.0) as f32,
                }
            })
            .collect();
        Ok(SearchResults { hits, total })
    }

    fn doc_count(&self) -> Result<u64, SearchError> {
        let stats = self.block(async { self.timed(self.index.get_stats()).await })?;
        Ok(stats.number_of_documents as u64)
    }

    fn clear(&self) -> Result<(), SearchError> {
        self.block(async {
            let task = self.timed(self.index.delete_all_documents()).await?;
            self.enqueue(task);
            Ok(())
        })
    }

    fn set_synonyms(&self, synonyms: Synonyms) -> Result<(), SearchError> {
        MeiliEngine::set_synonyms(self, synonyms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct() {
        assert_eq!(
            doc_key("0190a9e2-0000-7000-8000-000000000001").unwrap(),
            "0190a9e2-0000-7000-8000-000000000001"
        );
        assert_eq!(doc_key("zh-CN/a").unwrap(), "x_7a682d434e2f61");
        assert_ne!(doc_key("x_61").unwrap(), "x_61");
        assert_ne!(doc_key("x_61").unwrap(), doc_key("a").unwrap());
        assert!(doc_key("").is_err());
        assert!(doc_key(&"a".repeat(600)).is_err());
    }

    #[test]
    fn filters_are_quoted() {
        let q = Query {
            locale: Some("zh".into()),
            category: Some("guide\" OR published = false".into()),
            country: Some("be".into()),
            ..Query::new("x")
        };
        assert_eq!(
            filter_expr(&q),
            "published = true AND locale_key = \"zh\" AND category = \"guide\\\" OR published = false\" AND country_key IN [\"BE\", \"*\"]"
        );
        let q = Query {
            include_unpublished: true,
            ..Query::new("x")
        };
        assert_eq!(filter_expr(&q), "");
    }

    #[test]
    fn formatted_crops_are_escaped_and_marked() {
        assert_eq!(
            render_formatted("…a <b>\u{E000}passport\u{E001}</b>  &\n lost\u{E000}…"),
            "…a &lt;b&gt;<mark>passport</mark>&lt;/b&gt; &amp; lost<mark>…</mark>"
        );
    }

    #[test]
    fn synonyms_map_every_member_to_the_others() {
        let m = synonym_map(&Synonyms::from_groups([vec!["Passport", "护照"]]));
        assert_eq!(m["passport"], ["护照"]);
        assert_eq!(m["护照"], ["passport"]);
    }
}
