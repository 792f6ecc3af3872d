//! The tantivy-backed engine: schema, writer/reader lifecycle, filters and hit assembly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tantivy::collector::{Collector, Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query as TQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::{
    Executor, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::analysis::{
    word_analyzer, GramTokenizer, PinyinTokenizer, Segmenter, GRAM, PINYIN, WORD,
};
use crate::query::{Plan, Planner, TextFields};
use crate::{snippet, Doc, Hit, Query, SearchEngine, SearchError, SearchResults, Synonyms};

/// How the index writer works: indexing threads and their shared memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// Indexing threads (each tokenises its own documents and builds its own segment).
    pub threads: usize,
    /// Memory shared by the threads before they flush a segment; larger means fewer,
    /// larger segments and less merging.
    pub heap_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            threads: 1,
            heap_bytes: 64 * 1024 * 1024,
        }
    }
}
/// Hard caps on paging, whatever the caller asks.
const MAX_LIMIT: usize = 1000;
const MAX_OFFSET: usize = 10_000;
/// Score added to articles in the language of the query text when no locale filter is
/// given (typical matching articles score 5–30): enough to put the version in the
/// reader's language first when both exist, small enough that an article existing
/// only in the other language still ranks by relevance.
const SCRIPT_PREFERENCE: f32 = 1.0;
/// Country term for articles that apply everywhere.
const ALL_COUNTRIES: &str = "*";

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    slug: Field,
    locale: Field,
    locale_key: Field,
    category: Field,
    countries: Field,
    country_key: Field,
    published: Field,
    text: TextFields,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let indexed = |tokenizer: &str| {
        TextFieldIndexing::default()
            .set_tokenizer(tokenizer)
            .set_index_option(IndexRecordOption::WithFreqs)
    };
    let word_stored = TextOptions::default()
        .set_indexing_options(indexed(WORD))
        .set_stored();
    let id = b.add_text_field("id", STRING | STORED);
    let slug = b.add_text_field("slug", STORED);
    let locale = b.add_text_field("locale", STORED);
    let locale_key = b.add_text_field("locale_key", STRING);
    let category = b.add_text_field("category", STRING | STORED);
    let countries = b.add_text_field("countries", STORED);
    let country_key = b.add_text_field("country_key", STRING);
    let published = b.add_text_field("published", STRING);
    let title = b.add_text_field("title", word_stored.clone());
    let summary = b.add_text_field("summary", word_stored.clone());
    let body = b.add_text_field("body", word_stored);
    let tags = b.add_text_field(
        "tags",
        TextOptions::default().set_indexing_options(indexed(WORD)),
    );
    let title_gram = b.add_text_field(
        "title_gram",
        TextOptions::default().set_indexing_options(indexed(GRAM)),
    );
    let text_gram = b.add_text_field(
        "text_gram",
        TextOptions::default().set_indexing_options(indexed(GRAM)),
    );
    let pinyin_title = b.add_text_field(
        "pinyin_title",
        TextOptions::default().set_indexing_options(indexed(PINYIN)),
    );
    let pinyin_summary = b.add_text_field(
        "pinyin_summary",
        TextOptions::default().set_indexing_options(indexed(PINYIN)),
    );
    let fields = Fields {
        id,
        slug,
        locale,
        locale_key,
        category,
        countries,
        country_key,
        published,
        text: TextFields {
            title,
            summary,
            body,
            tags,
            title_gram,
            text_gram,
            pinyin_title,
            pinyin_summary,
        },
    };
    (b.build(), fields)
}

/// Locale filter keys: the full tag and its primary language ("zh-cn", "zh").
fn locale_keys(locale: &str) -> Vec<String> {
    let full = locale.trim().to_ascii_lowercase().replace('_', "-");
    let mut keys = vec![full.clone()];
    if let Some((lang, _)) = full.split_once('-') {
        keys.push(lang.to_string());
    }
    keys
}

/// Search engine over a tantivy index. Holds the single `IndexWriter` for its directory,
/// so at most one engine per index can exist across all processes.
pub struct TantivyEngine {
    index: Index,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    reader: IndexReader,
    fields: Fields,
    planner: RwLock<Arc<Planner>>,
    dir: Option<PathBuf>,
}

impl TantivyEngine {
    /// Creates the index in `dir` or opens the existing one (never rebuilding it), and
    /// takes the writer lock: a second engine on the same directory, in this process or
    /// another, gets [`SearchError::Locked`].
    pub fn open(dir: &Path, synonyms: Synonyms) -> Result<Self, SearchError> {
        Self::open_with(dir, synonyms, WriterOptions::default())
    }

    /// [`TantivyEngine::open`] with explicit writer settings (bulk imports may give the
    /// writer more threads and memory than a server sharing its cores should).
    pub fn open_with(
        dir: &Path,
        synonyms: Synonyms,
        options: WriterOptions,
    ) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)?;
        let mmap = MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(mmap, schema.clone())?;
        if index.schema() != schema {
            return Err(SearchError::IncompatibleIndex(
                "schema differs from this version of lingshi-search".into(),
            ));
        }
        Self::finish(index, fields, synonyms, Some(dir.to_path_buf()), options)
    }

    /// A throw-away in-memory index (tests, previews).
    pub fn open_in_ram(synonyms: Synonyms) -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        Self::finish(
            Index::create_in_ram(schema),
            fields,
            synonyms,
            None,
            WriterOptions::default(),
        )
    }

    fn finish(
        mut index: Index,
        fields: Fields,
        synonyms: Synonyms,
        dir: Option<PathBuf>,
        options: WriterOptions,
    ) -> Result<Self, SearchError> {
        // A query's segments are searched in parallel: one search at a time (the common
        // case) uses every core; under concurrent searches it costs a thread hop.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores > 1 {
            index.set_multithread_executor(cores.min(4))?;
        }
        let tm = index.tokenizers();
        tm.register(WORD, word_analyzer(Segmenter::global()));
        tm.register(GRAM, GramTokenizer);
        tm.register(PINYIN, PinyinTokenizer::new());
        let threads = options.threads.max(1);
        // tantivy wants at least 15 MB per thread.
        let heap = options.heap_bytes.max(threads * 16 * 1024 * 1024);
        let writer = index.writer_with_num_threads(threads, heap)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TantivyEngine {
            index,
            writer: Mutex::new(writer),
            reader,
            fields,
            planner: RwLock::new(Arc::new(Planner::new(&synonyms))),
            dir,
        })
    }

    /// Bytes used by the index: files on disk, or the committed segments when in RAM.
    /// For the admin dashboard and capacity planning.
    pub fn index_size_bytes(&self) -> u64 {
        match &self.dir {
            Some(dir) => std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0),
            None => self
                .reader
                .searcher()
                .space_usage()
                .map(|u| u.total().get_bytes())
                .unwrap_or(0),
        }
    }

    /// Replaces the synonym groups used by later searches. Synonyms are applied at query
    /// time only, so an edited synonyms file takes effect without any reindexing.
    pub fn set_synonyms(&self, synonyms: Synonyms) {
        // Build outside the lock: loading the query dictionary takes a moment.
        let planner = Arc::new(Planner::new(&synonyms));
        *self.planner.write().unwrap_or_else(|e| e.into_inner()) = planner;
    }

    /// The underlying tantivy index, for diagnostics.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn writer(&self) -> MutexGuard<'_, IndexWriter<TantivyDocument>> {
        // A panic while holding the lock cannot leave tantivy's writer half-updated in a
        // way that matters: uncommitted work is simply part of the next commit.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn to_tantivy(&self, d: &Doc) -> TantivyDocument {
        let f = &self.fields;
        let t = &f.text;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.id, &d.id);
        doc.add_text(f.slug, &d.slug);
        doc.add_text(f.locale, &d.locale);
        for k in locale_keys(&d.locale) {
            doc.add_text(f.locale_key, &k);
        }
        doc.add_text(f.category, d.category.trim());
        let mut any_country = false;
        for c in &d.countries {
            let c = c.trim().to_ascii_uppercase();
            if c.is_empty() {
                continue;
            }
            doc.add_text(f.countries, &c);
            doc.add_text(f.country_key, &c);
            any_country = true;
        }
        if !any_country {
            doc.add_text(f.country_key, ALL_COUNTRIES);
        }
        doc.add_text(f.published, if d.published { "1" } else { "0" });
        doc.add_text(t.title, &d.title);
        doc.add_text(t.summary, &d.summary);
        doc.add_text(t.body, &d.body);
        doc.add_text(t.title_gram, &d.title);
        doc.add_text(t.pinyin_title, &d.title);
        doc.add_text(t.pinyin_summary, &d.summary);
        for tag in &d.tags {
            doc.add_text(t.tags, tag);
            doc.add_text(t.title_gram, tag);
            doc.add_text(t.pinyin_title, tag);
        }
        doc.add_text(t.text_gram, &d.summary);
        doc.add_text(t.text_gram, &d.body);
        doc
    }

    /// The text query with the filters and the language preference around it.
    fn full_query(&self, q: &Query, plan: &Plan, text: Box<dyn TQuery>) -> BooleanQuery {
        let mut clauses = vec![(Occur::Must, text)];
        clauses.extend(self.filters(q));
        if q.locale.as_deref().is_none_or(|l| l.trim().is_empty()) {
            if let Some(lang) = plan.script_locale() {
                // Without a locale filter, prefer articles in the language typed.
                let pref = TermQuery::new(
                    Term::from_field_text(self.fields.locale_key, lang),
                    IndexRecordOption::Basic,
                );
                clauses.push((
                    Occur::Should,
                    Box::new(ConstScoreQuery::new(Box::new(pref), SCRIPT_PREFERENCE)),
                ));
            }
        }
        BooleanQuery::new(clauses)
    }

    fn filters(&self, q: &Query) -> Vec<(Occur, Box<dyn TQuery>)> {
        let f = &self.fields;
        let term = |field: Field, v: &str| -> Box<dyn TQuery> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        let mut out: Vec<Box<dyn TQuery>> = Vec::new();
        // Drafts are excluded rather than published articles required: a required
        // clause matching nearly every document would lead the intersection and seek
        // the text query at every document; an exclusion is only checked where the
        // text query matches.
        let mut excluded: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        if !q.include_unpublished {
            excluded.push((Occur::MustNot, term(f.published, "0")));
        }
        if let Some(locale) = q.locale.as_deref().filter(|l| !l.trim().is_empty()) {
            let key = locale.trim().to_ascii_lowercase().replace('_', "-");
            out.push(term(f.locale_key, &key));
        }
        if let Some(cat) = q.category.as_deref().filter(|c| !c.trim().is_empty()) {
            out.push(term(f.category, cat.trim()));
        }
        if let Some(country) = q.country.as_deref().filter(|c| !c.trim().is_empty()) {
            let c = country.trim().to_ascii_uppercase();
            out.push(Box::new(BooleanQuery::new(vec![
                (Occur::Should, term(f.country_key, &c)),
                (Occur::Should, term(f.country_key, ALL_COUNTRIES)),
            ])));
        }
        out.into_iter()
            .map(|q| {
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(q, 0.0)) as Box<dyn TQuery>,
                )
            })
            .chain(excluded)
            .collect()
    }
}

fn first_str(doc: &TantivyDocument, field: Field) -> String {
    doc.get_first(field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl TantivyEngine {
    /// The search itself; `here` keeps every step on the calling thread (see
    /// [`SearchEngine::search_on_this_thread`]).
    fn search_with(&self, q: &Query, here: bool) -> Result<SearchResults, SearchError> {
        let planner = self
            .planner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let searcher = self.reader.searcher();
        let df = |t: &Term| searcher.doc_freq(t).unwrap_or(0);
        let text = self.fields.text;
        let known = |term: &str| {
            df(&Term::from_field_text(text.body, term)) > 0
                || df(&Term::from_field_text(text.title, term)) > 0
        };
        let plan = planner.plan(&q.text, &known);
        if plan.is_empty() {
            return Ok(SearchResults::default());
        }
        let num_docs = searcher.num_docs();
        let limit = q.limit.min(MAX_LIMIT);
        let offset = q.offset.min(MAX_OFFSET);
        let mut relax = false;
        let (top, total) = loop {
            let (text_query, required) = plan.to_query(&self.fields.text, &df, num_docs, relax);
            let query = self.full_query(q, &plan, text_query);
            let (top, total) = if limit == 0 {
                (Vec::new(), collect(&searcher, &query, &Count, here)?)
            } else {
                let collector = (
                    TopDocs::with_limit(limit)
                        .and_offset(offset)
                        .order_by_score(),
                    Count,
                );
                collect(&searcher, &query, &collector, here)?
            };
            // Never an empty page when a partial match exists: relax to one concept.
            if total == 0 && required > 1 && !relax {
                relax = true;
                continue;
            }
            break (top, total);
        };
        if limit == 0 {
            return Ok(SearchResults {
                hits: Vec::new(),
                total,
            });
        }
        let highlight = plan.highlight();
        let f = &self.fields;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let body = first_str(&doc, f.text.body);
            let summary = first_str(&doc, f.text.summary);
            hits.push(Hit {
                id: first_str(&doc, f.id),
                slug: first_str(&doc, f.slug),
                title: first_str(&doc, f.text.title),
                snippet: snippet::make(&body, &summary, &highlight),
                category: first_str(&doc, f.category),
                locale: first_str(&doc, f.locale),
                countries: doc
                    .get_all(f.countries)
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                score,
            });
        }
        Ok(SearchResults { hits, total })
    }
}

/// Run a collector over every segment: on the index's search pool, or (`here`) on the
/// calling thread alone.
fn collect<C: Collector>(
    searcher: &Searcher,
    query: &dyn TQuery,
    collector: &C,
    here: bool,
) -> tantivy::Result<C::Fruit> {
    if !here {
        return searcher.search(query, collector);
    }
    let scoring = if collector.requires_scoring() {
        EnableScoring::enabled_from_searcher(searcher)
    } else {
        EnableScoring::disabled_from_searcher(searcher)
    };
    searcher.search_with_executor(query, collector, &Executor::single_thread(), scoring)
}

impl SearchEngine for TantivyEngine {
    fn upsert(&self, docs: Vec<Doc>) -> Result<(), SearchError> {
        if let Some(bad) = docs.iter().find(|d| d.id.trim().is_empty()) {
            return Err(SearchError::InvalidDoc(format!(
                "empty id (slug {:?})",
                bad.slug
            )));
        }
        let writer = self.writer();
        for d in &docs {
            writer.delete_term(Term::from_field_text(self.fields.id, &d.id));
            writer.add_document(self.to_tantivy(d))?;
        }
        Ok(())
    }

    fn delete(&self, ids: &[String]) -> Result<(), SearchError> {
        let writer = self.writer();
        for id in ids {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), SearchError> {
        self.writer().commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn search(&self, q: &Query) -> Result<SearchResults, SearchError> {
        self.search_with(q, false)
    }

    fn search_on_this_thread(&self, q: &Query) -> Result<SearchResults, SearchError> {
        self.search_with(q, true)
    }

    fn doc_count(&self) -> Result<u64, SearchError> {
        Ok(self.reader.searcher().num_docs())
    }

    fn clear(&self) -> Result<(), SearchError> {
        self.writer().delete_all_documents()?;
        Ok(())
    }

    fn set_synonyms(&self, synonyms: Synonyms) -> Result<(), SearchError> {
        TantivyEngine::set_synonyms(self, synonyms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::TEXT;

    #[test]
    fn index_with_another_schema_is_reported_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut b = Schema::builder();
            b.add_text_field("something_else", TEXT);
            let mmap = MmapDirectory::open(dir.path()).unwrap();
            Index::open_or_create(mmap, b.build()).unwrap();
        }
        match TantivyEngine::open(dir.path(), Synonyms::empty()) {
            Err(SearchError::IncompatibleIndex(_)) => {}
            Err(other) => panic!("expected IncompatibleIndex, got {other:?}"),
            Ok(_) => panic!("expected IncompatibleIndex"),
        }
    }

    #[test]
    fn locale_keys_cover_language() {
        assert_eq!(locale_keys("zh-CN"), ["zh-cn", "zh"]);
        assert_eq!(locale_keys("en"), ["en"]);
        assert_eq!(locale_keys(" zh_TW "), ["zh-tw", "zh"]);
    }
}
