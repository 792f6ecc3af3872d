//! Embedded full-text search for the Lingshi knowledge base.
//!
//! The database stays the source of truth; this crate keeps a derived tantivy index
//! tuned for Chinese (jieba words, character bigrams, pinyin) and English (stemming,
//! typo tolerance), with query-time synonyms bridging the two languages.
//! See `README.md` in this crate for the analysis chain.
//!
//! ```
//! use lingshi_search::{Doc, Query, SearchEngine, Synonyms, TantivyEngine};
//!
//! let synonyms = Synonyms::from_toml(
//!     r#"
//! [[group]]
//! words = ["lost", "丢失", "遗失", "丢了", "missing"]
//! "#,
//! )?;
//! let engine = TantivyEngine::open_in_ram(synonyms)?;
//! engine.upsert(vec![Doc {
//!     id: "0190a9e2-0000-7000-8000-000000000001".into(),
//!     slug: "lost-passport".into(),
//!     locale: "zh-CN".into(),
//!     title: "护照在国外遗失怎么办".into(),
//!     body: "请先向当地警方报案，再向使领馆申请补发护照。".into(),
//!     category: "guide".into(),
//!     published: true,
//!     ..Doc::default()
//! }])?;
//! engine.commit()?;
//! let results = engine.search(&Query::new("护照丢了怎么办"))?;
//! assert_eq!(results.total, 1);
//! assert!(results.hits[0].snippet.contains("<mark>护照</mark>"));
//! # Ok::<(), lingshi_search::SearchError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analysis;
mod engine;
mod meili;
mod query;
mod snippet;
mod synonyms;

pub use engine::{TantivyEngine, WriterOptions};
pub use meili::{MeiliConfig, MeiliEngine};
pub use synonyms::Synonyms;

/// One article as the search engine sees it (the database is the source of truth; the
/// index is derived and can always be rebuilt from it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Doc {
    /// Article UUID string; the unique key in the index (upserts replace by it).
    pub id: String,
    /// URL slug, returned with hits so the caller can link without a database trip.
    pub slug: String,
    /// BCP 47 locale: "zh-CN", "en", ...
    pub locale: String,
    /// Title (weighted highest).
    pub title: String,
    /// Summary (weighted between title and body; also a snippet source).
    pub summary: String,
    /// Plain text body; Markdown already stripped by the caller, stray punctuation is fine.
    pub body: String,
    /// guide|faq|safety_alert|announcement|visa_policy|document_policy|emergency_contacts
    pub category: String,
    /// ISO 3166 alpha-2 codes; empty means the article applies everywhere.
    pub countries: Vec<String>,
    /// Editorial tags, searchable and weighted like a second title.
    pub tags: Vec<String>,
    /// Status is published and the article has not expired; public searches see only these.
    pub published: bool,
}

/// A search request. Build it from user input without any escaping: the text is never
/// parsed as query syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// What the user typed (any script, pinyin allowed, typos tolerated).
    pub text: String,
    /// Restrict to a locale; "zh" matches every "zh-*" locale, "zh-CN" only that one.
    pub locale: Option<String>,
    /// Restrict to that country's articles plus those applying everywhere.
    pub country: Option<String>,
    /// Restrict to a category.
    pub category: Option<String>,
    /// Editors see drafts and expired articles; public searches must leave this false.
    pub include_unpublished: bool,
    /// Page size (the caller clamps; the engine also caps it at 1000).
    pub limit: usize,
    /// Number of hits to skip (capped at 10 000).
    pub offset: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            text: String::new(),
            locale: None,
            country: None,
            category: None,
            include_unpublished: false,
            limit: 10,
            offset: 0,
        }
    }
}

impl Query {
    /// A public query for `text` with default paging and no filters.
    pub fn new(text: impl Into<String>) -> Self {
        Query {
            text: text.into(),
            ..Query::default()
        }
    }
}

/// One search result, with everything a result list needs to render.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Article id.
    pub id: String,
    /// Article slug.
    pub slug: String,
    /// Title as stored (not escaped: the caller escapes it like any other field).
    pub title: String,
    /// HTML-safe excerpt: text escaped, matches wrapped in `<mark>…</mark>`.
    pub snippet: String,
    /// Category.
    pub category: String,
    /// Locale.
    pub locale: String,
    /// Countries (empty = everywhere).
    pub countries: Vec<String>,
    /// Relevance score (only meaningful relative to other hits of the same query).
    pub score: f32,
}

/// One page of results plus the total number of matching articles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchResults {
    /// The requested page, best first.
    pub hits: Vec<Hit>,
    /// Number of matching documents (all pages).
    pub total: usize,
}

/// Errors from the search engine.
#[derive(thiserror::Error, Debug)]
pub enum SearchError {
    /// Anything tantivy reports that has no more specific variant.
    #[error("search index error: {0}")]
    Index(#[source] tantivy::TantivyError),
    /// Another process (or another engine in this one) holds the index writer lock;
    /// distinct so the caller can report "index busy" instead of a generic failure.
    #[error("search index is locked by another writer")]
    Locked,
    /// The index on disk was built with a different schema (e.g. by an older version of
    /// this crate); the caller should delete the directory and rebuild from the database.
    #[error("search index on disk is incompatible with this version: {0}")]
    IncompatibleIndex(String),
    /// The synonyms file could not be used.
    #[error("invalid synonyms: {0}")]
    InvalidSynonyms(String),
    /// A document was rejected (e.g. empty id).
    #[error("invalid document: {0}")]
    InvalidDoc(String),
    /// Filesystem error outside tantivy (creating the index directory, sizing it).
    #[error("search index I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The search server could not be reached or did not answer in time; distinct so
    /// the caller can retry later or report "search unavailable" rather than a bug.
    #[error("search server unavailable: {0}")]
    Unavailable(String),
    /// The search server refused a request or a task failed (bad key, bad settings,
    /// rejected document); retrying the same request will not help.
    #[error("search server error: {0}")]
    Backend(String),
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> Self {
        use tantivy::directory::error::LockError;
        match e {
            tantivy::TantivyError::LockFailure(LockError::LockBusy, _) => SearchError::Locked,
            tantivy::TantivyError::SchemaError(m) => SearchError::IncompatibleIndex(m),
            other => SearchError::Index(other),
        }
    }
}

/// The operations the helpdesk needs from a search backend; small so that another
/// engine (e.g. Meilisearch) can be added later behind the same interface.
pub trait SearchEngine: Send + Sync {
    /// Adds or replaces documents by id (visible after [`SearchEngine::commit`]).
    fn upsert(&self, docs: Vec<Doc>) -> Result<(), SearchError>;
    /// Removes documents by id (visible after [`SearchEngine::commit`]).
    fn delete(&self, ids: &[String]) -> Result<(), SearchError>;
    /// Makes pending changes durable and visible to searches.
    fn commit(&self) -> Result<(), SearchError>;
    /// Runs a query; never fails because of what the user typed.
    fn search(&self, q: &Query) -> Result<SearchResults, SearchError>;
    /// The same search with every step on the calling thread (no search pool): for
    /// background work on a low-priority thread, whose searches must not borrow threads
    /// that run at normal priority.
    fn search_on_this_thread(&self, q: &Query) -> Result<SearchResults, SearchError> {
        self.search(q)
    }
    /// Number of committed documents.
    fn doc_count(&self) -> Result<u64, SearchError>;
    /// Removes every document (for full rebuilds; visible after commit).
    fn clear(&self) -> Result<(), SearchError>;
    /// Replaces the synonyms dictionary for the following searches. Synonyms apply at
    /// query time, so editors' additions take effect without reindexing anything.
    fn set_synonyms(&self, synonyms: Synonyms) -> Result<(), SearchError>;
}
