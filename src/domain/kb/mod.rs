//! The knowledge base: articles (validated, rendered, versioned in the database, which
//! is the source of truth), search through the derived index, safety alerts, search
//! gaps, and article suggestions for agents.

pub mod import;
pub mod indexer;
mod search;
pub mod spare;
mod starter;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lingshi_search::{
    Doc, MeiliConfig, MeiliEngine, SearchEngine, SearchError, Synonyms, TantivyEngine,
    WriterOptions,
};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};

use super::events::Event;
use super::limits::Limiter;
use super::model::*;
use super::types::*;
use super::{Domain, Principal};
use crate::config::Config;
use crate::error::{AppError, AppResult};

pub use search::{SearchGapReport, SearchRequest};

const BODY_MAX_CHARS: usize = 200_000;
/// Deepest nesting of block quotes and lists accepted in Markdown: deeper structures
/// make rendering super-linear and no article needs them.
const MARKDOWN_NESTING_MAX: usize = 16;

/// Where the embedded index lives.
pub fn index_dir(config: &Config) -> PathBuf {
    config.data_dir.join("index")
}

/// Where the indexer records how far it applied the queue, for the configured backend.
pub fn index_state_file(config: &Config) -> PathBuf {
    match config.search.backend.as_str() {
        "meilisearch" => config
            .data_dir
            .join(format!("meilisearch-{}.applied", config.search.index)),
        _ => indexer::state_file_for(&index_dir(config)),
    }
}

/// The editors' extra synonyms file, parsed (`None` when none is configured).
fn extra_synonyms(config: &Config) -> Result<Option<Synonyms>, String> {
    let path = &config.kb.synonyms_file;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Synonyms::from_toml(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The dictionary shipped in the binary, extended by `kb.synonyms_file` when set. A
/// broken or missing extra file is reported and ignored: search must keep working.
pub fn load_synonyms(config: &Config) -> Synonyms {
    match extra_synonyms(config) {
        Ok(Some(extra)) => Synonyms::builtin().merge(&extra),
        Ok(None) => Synonyms::builtin(),
        Err(e) => {
            tracing::warn!(file = %config.kb.synonyms_file.display(), error = %e, "cannot use the synonyms file; using the built-in dictionary only");
            Synonyms::builtin()
        }
    }
}

/// Open the configured search backend. The embedded index is rebuilt from scratch when
/// its schema is from another version; `SearchError::Locked` means another process (a
/// running server) holds it. Meilisearch gets its index settings applied before this
/// returns.
pub async fn open_engine(config: &Config) -> Result<Arc<dyn SearchEngine>, SearchError> {
    let synonyms = load_synonyms(config);
    if config.search.backend == "meilisearch" {
        let s = &config.search;
        let meili = MeiliConfig {
            url: s.url.clone(),
            api_key: (!s.api_key.is_empty()).then(|| s.api_key.expose().to_string()),
            index: s.index.clone(),
            ..MeiliConfig::default()
        };
        let engine = MeiliEngine::connect(meili, synonyms).await?;
        return Ok(Arc::new(engine));
    }
    let dir = index_dir(config);
    std::fs::create_dir_all(&dir)?;
    // Indexing is rare and bursty (an import, a rebuild): while it runs it may use
    // every core; between bursts the threads wait and their memory is not taken.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writer = WriterOptions {
        threads: cores.clamp(1, 4),
        heap_bytes: cores.clamp(1, 4) * 32 * 1024 * 1024,
    };
    let opened = match TantivyEngine::open_with(&dir, synonyms.clone(), writer) {
        Err(SearchError::IncompatibleIndex(why)) => {
            tracing::warn!(%why, "search index has an old schema; rebuilding it");
            std::fs::remove_dir_all(&dir)?;
            let _ = std::fs::remove_file(indexer::state_file_for(&dir));
            std::fs::create_dir_all(&dir)?;
            TantivyEngine::open_with(&dir, synonyms, writer)
        }
        other => other,
    };
    Ok(Arc::new(opened?))
}

/// Follow `kb.synonyms_file`: when it changes (modification time or size), parse it
/// and hand the merged dictionary to the engine, so editors' additions reach searches
/// within `search.synonyms_reload_secs`. A broken file is reported and the dictionary
/// in use is kept.
pub fn spawn_synonyms_reloader(
    config: Arc<Config>,
    engine: Arc<dyn SearchEngine>,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = config.search.synonyms_reload_secs;
    let path = config.kb.synonyms_file.clone();
    if every == 0 || path.as_os_str().is_empty() {
        return;
    }
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    // A weak handle: the reloader must not keep the index (and its lock) open after
    // the server has let go of it.
    let engine = Arc::downgrade(&engine);
    tokio::spawn(async move {
        let mut seen = stamp(&path);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            let extra = match extra_synonyms(&config) {
                Ok(extra) => extra,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "synonyms file not reloaded; keeping the dictionary in use");
                    continue;
                }
            };
            let merged = match &extra {
                Some(extra) => Synonyms::builtin().merge(extra),
                None => Synonyms::builtin(),
            };
            let groups = merged.len();
            let Some(engine) = engine.upgrade() else {
                return;
            };
            match tokio::task::spawn_blocking(move || engine.set_synonyms(merged)).await {
                Ok(Ok(())) => {
                    tracing::info!(file = %path.display(), groups, "synonyms reloaded")
                }
                Ok(Err(e)) => {
                    tracing::warn!(file = %path.display(), error = %e, "synonyms not applied")
                }
                Err(e) => tracing::error!(error = %e, "synonyms reload task failed"),
            }
        }
    });
}

/// Refuse Markdown whose block nesting is deeper than any article needs, before it
/// reaches the renderer.
fn check_markdown_shape(md: &str) -> Result<(), String> {
    for line in md.lines() {
        let mut depth = 0;
        let mut indent = 0;
        for c in line.chars() {
            match c {
                '>' => depth += 1,
                ' ' => indent += 1,
                '\t' => indent += 4,
                '-' | '*' | '+' | '0'..='9' | '.' | ')' => {}
                _ => break,
            }
        }
        if depth > MARKDOWN_NESTING_MAX || indent / 2 > MARKDOWN_NESTING_MAX * 2 {
            return Err(format!(
                "the body nests quotes or lists more than {MARKDOWN_NESTING_MAX} levels deep"
            ));
        }
    }
    Ok(())
}

/// Render untrusted Markdown to HTML that is safe to put in a page: no scripts, no
/// event handlers, no `javascript:` links (ammonia's allow-list).
pub fn render_markdown(md: &str) -> String {
    use pulldown_cmark::{html, Options, Parser};
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    let mut raw = String::with_capacity(md.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(md, opts));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&raw)
        .to_string()
}

/// The words of a Markdown text, for the index (markup and link targets removed).
pub fn markdown_text(md: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut out = String::with_capacity(md.len());
    for ev in Parser::new(md) {
        match ev {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            Event::End(
                TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item | TagEnd::TableCell,
            ) => out.push('\n'),
            _ => {}
        }
    }
    out
}

/// The field whose value is wrong, and why (imports turn the field into a line number).
#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::InvalidInput(e.message)
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// An article as an editor or a file gives it: untyped, validated by [`validate`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ArticleInput {
    pub slug: String,
    pub locale: String,
    pub title: String,
    pub summary: String,
    pub body_markdown: String,
    pub category: String,
    pub countries: Vec<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub severity: Option<String>,
    pub area: Option<Area>,
    pub expires_at: Option<String>,
}

impl From<&ArticleFields> for ArticleInput {
    fn from(f: &ArticleFields) -> Self {
        ArticleInput {
            slug: f.slug.clone(),
            locale: f.locale.to_string(),
            title: f.title.clone(),
            summary: f.summary.clone(),
            body_markdown: f.body_markdown.clone(),
            category: f.category.to_string(),
            countries: f.countries.iter().map(|c| c.to_string()).collect(),
            tags: f.tags.clone(),
            status: f.status.to_string(),
            severity: f.severity.map(|s| s.to_string()),
            area: f.area,
            expires_at: f.expires_at.map(fmt_time),
        }
    }
}

/// Check and normalise the editable fields (trim, uppercase countries, UTC expiry).
pub fn validate(f: ArticleInput) -> Result<ArticleFields, FieldError> {
    let slug = f.slug.trim().to_string();
    if slug.is_empty()
        || slug.len() > 100
        || !slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad(
            "slug",
            format!("slug {slug:?} must be 1 to 100 lowercase letters, digits and hyphens"),
        ));
    }
    let locale = Locale::parse(&f.locale).map_err(|e| bad("locale", e.to_string()))?;
    let title = f.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(bad("title", "title must have 1 to 200 characters"));
    }
    let summary = f.summary.trim().to_string();
    if summary.chars().count() > 500 {
        return Err(bad("summary", "summary must have at most 500 characters"));
    }
    if f.body_markdown.chars().count() > BODY_MAX_CHARS {
        return Err(bad(
            "body_markdown",
            format!("body must have at most {BODY_MAX_CHARS} characters"),
        ));
    }
    check_markdown_shape(&f.body_markdown).map_err(|m| bad("body_markdown", m))?;
    let category = Category::parse(&f.category).map_err(|e| bad("category", e.to_string()))?;
    let mut countries = Vec::with_capacity(f.countries.len());
    for c in &f.countries {
        let c = CountryCode::parse(c).map_err(|e| bad("countries", e.to_string()))?;
        if !countries.contains(&c) {
            countries.push(c);
        }
    }
    let mut tags = Vec::with_capacity(f.tags.len());
    for t in &f.tags {
        let t = t.trim().to_lowercase();
        if t.is_empty() || t.chars().count() > 50 {
            return Err(bad("tags", "each tag must have 1 to 50 characters"));
        }
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > 30 {
        return Err(bad("tags", "at most 30 tags"));
    }
    let status = ArticleStatus::parse(&f.status).map_err(|e| bad("status", e.to_string()))?;
    let severity = f
        .severity
        .as_deref()
        .map(Severity::parse)
        .transpose()
        .map_err(|e| bad("severity", e.to_string()))?;
    if let Some(a) = &f.area {
        let valid = (-90.0..=90.0).contains(&a.lat)
            && (-180.0..=180.0).contains(&a.lon)
            && a.radius_km > 0.0
            && a.radius_km <= 20_000.0;
        if !valid {
            return Err(bad(
                "area",
                "area needs lat in -90..90, lon in -180..180 and radius_km in (0, 20000]",
            ));
        }
    }
    let expires_at = match &f.expires_at {
        None => None,
        Some(e) => Some(parse_time(e.trim()).ok_or_else(|| {
            bad(
                "expires_at",
                format!("expires_at {e:?} is not an RFC 3339 time like 2027-01-31T00:00:00Z"),
            )
        })?),
    };
    Ok(ArticleFields {
        slug,
        locale,
        title,
        summary,
        body_markdown: f.body_markdown,
        category,
        countries,
        tags,
        status,
        severity,
        area: f.area,
        expires_at,
    })
}

/// The index's view of an article; `None` when it must not be in the index.
/// Two versions of an alert say the same to citizens.
fn same_alert(a: &ArticleFields, b: &ArticleFields) -> bool {
    a.title == b.title
        && a.summary == b.summary
        && a.body_markdown == b.body_markdown
        && a.severity == b.severity
        && a.area == b.area
        && a.countries == b.countries
        && a.expires_at == b.expires_at
}

/// The latitude and longitude ranges that hold an area's circle (the whole band of
/// longitudes near the poles or across the antimeridian: the distance check decides).
fn bounding_box(area: Area) -> ((f64, f64), (f64, f64)) {
    let dlat = area.radius_km / 110.5;
    let lat = (area.lat - dlat, area.lat + dlat);
    let cos = (area.lat.abs() + dlat).min(90.0).to_radians().cos();
    if cos < 0.01 {
        return (lat, (-180.0, 180.0));
    }
    let dlon = area.radius_km / (111.3 * cos);
    let lon = (area.lon - dlon, area.lon + dlon);
    if lon.0 < -180.0 || lon.1 > 180.0 {
        return (lat, (-180.0, 180.0));
    }
    (lat, lon)
}

pub fn to_doc(a: &Article) -> Option<Doc> {
    if a.fields.status == ArticleStatus::Archived {
        return None;
    }
    let f = &a.fields;
    Some(Doc {
        id: a.id.to_string(),
        slug: f.slug.clone(),
        locale: f.locale.to_string(),
        title: f.title.clone(),
        summary: f.summary.clone(),
        body: markdown_text(&f.body_markdown),
        category: f.category.to_string(),
        countries: f.countries.iter().map(|c| c.to_string()).collect(),
        tags: f.tags.clone(),
        published: a.is_live(),
    })
}

/// An index with nothing in it, for processes that must not hold the real one (the
/// command line while a server runs).
pub struct NoIndex;

impl SearchEngine for NoIndex {
    fn upsert(&self, _: Vec<Doc>) -> Result<(), lingshi_search::SearchError> {
        Ok(())
    }
    fn delete(&self, _: &[String]) -> Result<(), lingshi_search::SearchError> {
        Ok(())
    }
    fn commit(&self) -> Result<(), lingshi_search::SearchError> {
        Ok(())
    }
    fn search(
        &self,
        _: &lingshi_search::Query,
    ) -> Result<lingshi_search::SearchResults, lingshi_search::SearchError> {
        Ok(lingshi_search::SearchResults::default())
    }
    fn doc_count(&self) -> Result<u64, lingshi_search::SearchError> {
        Ok(0)
    }
    fn clear(&self) -> Result<(), lingshi_search::SearchError> {
        Ok(())
    }
    fn set_synonyms(&self, _: Synonyms) -> Result<(), lingshi_search::SearchError> {
        Ok(())
    }
}

/// Most suggestion searches a node runs per second.
const SUGGESTIONS_PER_SECOND: f64 = 50.0;

/// Search and indexing state.
pub struct KbState {
    pub engine: Arc<dyn SearchEngine>,
    /// Wakes the indexer after an in-process save.
    pub index_wake: Arc<Notify>,
    /// Where suggestion searches run: a thread at the lowest priority, on spare CPU
    /// only; when its queue is full a suggestion is skipped.
    pub suggest_lane: spare::SpareCpu,
    /// When each conversation last got suggestions: a burst of messages gets one search.
    pub suggested_at: Mutex<HashMap<ConversationId, Instant>>,
    /// Suggestion searches per second across the node: in a surge the suggestions thin
    /// out before they take the cores the send path needs.
    pub suggest_budget: Limiter<()>,
    /// Searches without hits, recorded by one background task (dropped when it lags).
    pub gaps: mpsc::Sender<search::Gap>,
    pub(crate) gaps_rx: Mutex<Option<mpsc::Receiver<search::Gap>>>,
}

impl KbState {
    pub fn new(engine: Arc<dyn SearchEngine>) -> KbState {
        let (gaps, gaps_rx) = mpsc::channel(1024);
        KbState {
            engine,
            index_wake: Arc::default(),
            suggest_lane: spare::SpareCpu::new("kb-suggest", 2),
            suggested_at: Mutex::default(),
            suggest_budget: Limiter::new(SUGGESTIONS_PER_SECOND, SUGGESTIONS_PER_SECOND),
            gaps,
            gaps_rx: Mutex::new(Some(gaps_rx)),
        }
    }
}

/// The editor's view of the article list.
#[derive(Clone, Debug, Default)]
pub struct ArticleListRequest {
    pub status: Option<String>,
    pub locale: Option<String>,
    pub category: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Domain {
    /// Save through validation; every save is a version and reaches the index.
    pub async fn save_article(
        &self,
        p: &Principal,
        mode: SaveMode,
        input: ArticleInput,
    ) -> AppResult<(Article, SaveOutcome)> {
        let editor = p.require_editor()?;
        let f = validate(input)?;
        let html = render_markdown(&f.body_markdown);
        let before = match &mode {
            SaveMode::Update(id) => self.store.article(*id).await?,
            _ => None,
        };
        let saved = self
            .store
            .save_article(mode, &f, &html, Some(editor.id), None)
            .await?;
        self.kb.index_wake.notify_one();
        if saved.1 != SaveOutcome::Unchanged {
            self.push_alert(before.as_ref(), &saved.0).await?;
        }
        tracing::info!(article = %saved.0.id, slug = %saved.0.fields.slug, locale = %saved.0.fields.locale, version = saved.0.version, by = %editor.id, "article saved");
        Ok(saved)
    }

    /// A safety alert that goes live, or changes while live, reaches the connected
    /// citizens it concerns at once: those of its countries (everyone when it names none
    /// and has no area) and those whose last shared location lies inside its area.
    async fn push_alert(&self, before: Option<&Article>, after: &Article) -> AppResult<()> {
        if after.fields.category != Category::SafetyAlert || !after.is_live() {
            return Ok(());
        }
        if before.is_some_and(|b| b.is_live() && same_alert(&b.fields, &after.fields)) {
            return Ok(());
        }
        let mut citizens = Vec::new();
        if let Some(area) = after.fields.area {
            let ((lat0, lat1), (lon0, lon1)) = bounding_box(area);
            for (id, at) in self
                .store
                .citizens_located_in((lat0, lat1), (lon0, lon1))
                .await?
            {
                if at.distance_km(area.lat, area.lon) <= area.radius_km {
                    citizens.push(id);
                }
            }
        }
        let everyone = after.fields.countries.is_empty() && after.fields.area.is_none();
        tracing::info!(article = %after.id, countries = after.fields.countries.len(), everyone, nearby = citizens.len(), "safety alert pushed");
        self.publisher.publish(Event::Alert {
            article: Box::new(after.clone()),
            countries: after.fields.countries.clone(),
            everyone,
            citizens,
        });
        Ok(())
    }

    pub async fn article_for_edit(&self, p: &Principal, id: &str) -> AppResult<Article> {
        p.require_editor()?;
        let id = ArticleId::parse(id)?;
        self.store
            .article(id)
            .await?
            .ok_or_else(|| AppError::not_found("article"))
    }

    /// Update the fields an editor sent, keeping the others.
    pub async fn update_article(
        &self,
        p: &Principal,
        id: &str,
        patch: impl FnOnce(ArticleInput) -> ArticleInput,
    ) -> AppResult<Article> {
        let current = self.article_for_edit(p, id).await?;
        let input = patch(ArticleInput::from(&current.fields));
        Ok(self
            .save_article(p, SaveMode::Update(current.id), input)
            .await?
            .0)
    }

    pub async fn set_article_status(
        &self,
        p: &Principal,
        id: &str,
        status: ArticleStatus,
    ) -> AppResult<Article> {
        self.update_article(p, id, |mut i| {
            i.status = status.to_string();
            i
        })
        .await
    }

    /// Make a past version current again (as a new version).
    pub async fn restore_article(
        &self,
        p: &Principal,
        id: &str,
        version: i64,
    ) -> AppResult<Article> {
        let current = self.article_for_edit(p, id).await?;
        let v = self
            .store
            .article_version(current.id, version)
            .await?
            .ok_or_else(|| AppError::not_found("article version"))?;
        Ok(self
            .save_article(
                p,
                SaveMode::Update(current.id),
                ArticleInput::from(&v.fields),
            )
            .await?
            .0)
    }

    pub async fn article_versions(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<Vec<ArticleVersion>> {
        let a = self.article_for_edit(p, id).await?;
        self.store.article_versions(a.id).await
    }

    /// The editors' list, newest change first.
    pub async fn list_articles(
        &self,
        p: &Principal,
        q: ArticleListRequest,
    ) -> AppResult<Vec<Article>> {
        p.require_editor()?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::invalid("limit must be between 1 and 200"));
        }
        let status = q
            .status
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(ArticleStatus::parse)
            .transpose()?;
        let locale = Locale::parse_opt(q.locale.as_deref())?;
        let category = q
            .category
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(Category::parse)
            .transpose()?;
        self.store
            .list_articles(
                status,
                locale.as_ref(),
                category,
                limit,
                q.offset.unwrap_or(0).max(0),
            )
            .await
    }

    /// The server's sanitised HTML for a Markdown body (the editor's preview).
    pub fn preview_markdown(&self, p: &Principal, md: &str) -> AppResult<String> {
        p.require_editor()?;
        if md.chars().count() > BODY_MAX_CHARS {
            return Err(AppError::invalid(format!(
                "body must have at most {BODY_MAX_CHARS} characters"
            )));
        }
        check_markdown_shape(md).map_err(AppError::InvalidInput)?;
        Ok(render_markdown(md))
    }

    /// One article by slug (or id) for reading: the public sees live articles only.
    /// With several locales of a slug, `locale` picks (exact, same language, any).
    pub async fn read_article(
        &self,
        p: Option<&Principal>,
        key: &str,
        locale: Option<&str>,
    ) -> AppResult<Article> {
        let editor = p.is_some_and(Principal::edits_content);
        let candidates = match ArticleId::parse(key) {
            Ok(id) => self.store.article(id).await?.into_iter().collect(),
            Err(_) => self.store.articles_by_slug(key).await?,
        };
        let mut visible: Vec<Article> = candidates
            .into_iter()
            .filter(|a| editor || a.is_live())
            .collect();
        if let Some(l) = locale {
            let lower = l.to_ascii_lowercase();
            let lang = lower.split('-').next().unwrap_or("").to_string();
            visible.sort_by_key(|a| {
                let al = a.fields.locale.as_str().to_ascii_lowercase();
                if al == lower {
                    0
                } else if al.split('-').next() == Some(lang.as_str()) {
                    1
                } else {
                    2
                }
            });
        }
        visible
            .into_iter()
            .next()
            .ok_or_else(|| AppError::not_found("article"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_sanitised() {
        let html = render_markdown(
            "# Hi\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(1)>\n\n**bold**",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
    }

    #[test]
    fn deep_nesting_is_refused_before_rendering() {
        assert!(check_markdown_shape(&">".repeat(30_000)).is_err());
        assert!(check_markdown_shape("> quote\n>> deeper\n- item\n  - nested").is_ok());
        let deep_list: String = (0..40)
            .map(|i| format!("{}- x\n", "  ".repeat(i)))
            .collect();
        assert!(check_markdown_shape(&deep_list).is_err());
    }

    #[test]
    fn the_builtin_synonyms_parse() {
        assert!(!lingshi_search::Synonyms::builtin().is_empty());
    }
}
