//! The knowledge base: articles (validated, rendered, versioned in the database, which
//! is the source of truth), search through the derived index, safety alerts, search
//! gaps, and article suggestions for agents.

pub mod import;
pub mod indexer;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lingshi_search::{Doc, Query, SearchEngine, SearchResults};
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};

use crate::auth::Principal;
use crate::config::is_country_code;
use crate::error::{AppError, AppResult};
use crate::hub::{Audience, Hub};
use crate::store::{
    fmt_time, now_str, parse_time, Area, ArticleFields, ArticleRecord, ConversationRecord,
    MessageRecord, SaveMode, SaveOutcome, Store,
};

pub const CATEGORIES: [&str; 7] = [
    "guide",
    "faq",
    "safety_alert",
    "announcement",
    "visa_policy",
    "document_policy",
    "emergency_contacts",
];
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const BODY_MAX_CHARS: usize = 200_000;
const QUERY_MAX_CHARS: usize = 256;

/// Where the index lives.
pub fn index_dir(config: &crate::config::Config) -> std::path::PathBuf {
    config.data_dir.join("index")
}

/// The synonyms file, or none (with a warning) when it is missing or invalid: search
/// must keep working without it.
pub fn load_synonyms(config: &crate::config::Config) -> lingshi_search::Synonyms {
    let path = &config.kb.synonyms_file;
    match std::fs::read_to_string(path) {
        Ok(text) => match lingshi_search::Synonyms::from_toml(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "synonyms file is invalid; searching without synonyms");
                lingshi_search::Synonyms::empty()
            }
        },
        Err(_) => {
            tracing::warn!(file = %path.display(), "no synonyms file; searching without synonyms");
            lingshi_search::Synonyms::empty()
        }
    }
}

/// Open the on-disk index, rebuilding it from scratch when its schema is from another
/// version. `SearchError::Locked` means another process (a running server) holds it.
pub fn open_engine(
    config: &crate::config::Config,
) -> Result<Arc<lingshi_search::TantivyEngine>, lingshi_search::SearchError> {
    let dir = index_dir(config);
    std::fs::create_dir_all(&dir)?;
    match lingshi_search::TantivyEngine::open(&dir, load_synonyms(config)) {
        Err(lingshi_search::SearchError::IncompatibleIndex(why)) => {
            tracing::warn!(%why, "search index has an old schema; rebuilding it");
            std::fs::remove_dir_all(&dir)?;
            let _ = std::fs::remove_file(indexer::state_file_for(&dir));
            std::fs::create_dir_all(&dir)?;
            lingshi_search::TantivyEngine::open(&dir, load_synonyms(config)).map(Arc::new)
        }
        other => other.map(Arc::new),
    }
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

/// Check and normalise the editable fields (trim, uppercase countries, UTC expiry).
pub fn validate(mut f: ArticleFields) -> Result<ArticleFields, FieldError> {
    f.slug = f.slug.trim().to_string();
    if f.slug.is_empty()
        || f.slug.len() > 100
        || !f
            .slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad(
            "slug",
            format!(
                "slug {:?} must be 1 to 100 lowercase letters, digits and hyphens",
                f.slug
            ),
        ));
    }
    f.locale = f.locale.trim().to_string();
    let locale_ok = !f.locale.is_empty()
        && f.locale.len() <= 35
        && f.locale
            .split('-')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !locale_ok {
        return Err(bad(
            "locale",
            format!("locale {:?} is not a BCP 47 tag like zh-CN or en", f.locale),
        ));
    }
    f.title = f.title.trim().to_string();
    if f.title.is_empty() || f.title.chars().count() > 200 {
        return Err(bad("title", "title must have 1 to 200 characters"));
    }
    f.summary = f.summary.trim().to_string();
    if f.summary.chars().count() > 500 {
        return Err(bad("summary", "summary must have at most 500 characters"));
    }
    if f.body_markdown.chars().count() > BODY_MAX_CHARS {
        return Err(bad(
            "body_markdown",
            format!("body must have at most {BODY_MAX_CHARS} characters"),
        ));
    }
    if !CATEGORIES.contains(&f.category.as_str()) {
        return Err(bad(
            "category",
            format!(
                "category {:?} must be one of {}",
                f.category,
                CATEGORIES.join(", ")
            ),
        ));
    }
    let mut countries = Vec::with_capacity(f.countries.len());
    for c in &f.countries {
        let up = c.trim().to_ascii_uppercase();
        if !is_country_code(&up) {
            return Err(bad(
                "countries",
                format!("country {c:?} is not an ISO 3166-1 alpha-2 code like BE"),
            ));
        }
        if !countries.contains(&up) {
            countries.push(up);
        }
    }
    f.countries = countries;
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
    f.tags = tags;
    if !matches!(f.status.as_str(), "draft" | "published" | "archived") {
        return Err(bad(
            "status",
            format!("status {:?} must be draft, published or archived", f.status),
        ));
    }
    if let Some(s) = &f.severity {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(bad(
                "severity",
                format!("severity {s:?} must be low, medium, high or critical"),
            ));
        }
    }
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
    if let Some(e) = &f.expires_at {
        let t = parse_time(e.trim()).ok_or_else(|| {
            bad(
                "expires_at",
                format!("expires_at {e:?} is not an RFC 3339 time like 2027-01-31T00:00:00Z"),
            )
        })?;
        f.expires_at = Some(fmt_time(t));
    }
    Ok(f)
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// The contract's article object.
pub fn article_json(a: &ArticleRecord) -> Value {
    let mut v = json!({
        "id": a.id, "slug": a.slug, "locale": a.locale, "title": a.title, "summary": a.summary,
        "body_markdown": a.body_markdown, "body_html": a.body_html, "category": a.category,
        "countries": json_list(&a.countries), "tags": json_list(&a.tags), "status": a.status,
        "version": a.version, "created_at": a.created_at, "updated_at": a.updated_at,
        "published_at": a.published_at, "expires_at": a.expires_at, "severity": a.severity,
    });
    if let (Some(lat), Some(lon), Some(r)) = (a.area_lat, a.area_lon, a.area_radius_km) {
        v["area"] = json!({"lat": lat, "lon": lon, "radius_km": r});
    } else {
        v["area"] = Value::Null;
    }
    v
}

pub fn fields_of(a: &ArticleRecord) -> ArticleFields {
    ArticleFields {
        slug: a.slug.clone(),
        locale: a.locale.clone(),
        title: a.title.clone(),
        summary: a.summary.clone(),
        body_markdown: a.body_markdown.clone(),
        category: a.category.clone(),
        countries: json_list(&a.countries),
        tags: json_list(&a.tags),
        status: a.status.clone(),
        severity: a.severity.clone(),
        area: match (a.area_lat, a.area_lon, a.area_radius_km) {
            (Some(lat), Some(lon), Some(radius_km)) => Some(Area {
                lat,
                lon,
                radius_km,
            }),
            _ => None,
        },
        expires_at: a.expires_at.clone(),
    }
}

/// Visible to the public now: published and not expired.
pub fn is_live(a: &ArticleRecord) -> bool {
    a.status == "published"
        && a.expires_at
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|t| t > Utc::now())
}

/// The index's view of an article; `None` when it must not be in the index.
pub fn to_doc(a: &ArticleRecord) -> Option<Doc> {
    if a.status == "archived" {
        return None;
    }
    Some(Doc {
        id: a.id.clone(),
        slug: a.slug.clone(),
        locale: a.locale.clone(),
        title: a.title.clone(),
        summary: a.summary.clone(),
        body: markdown_text(&a.body_markdown),
        category: a.category.clone(),
        countries: json_list(&a.countries),
        tags: json_list(&a.tags),
        published: is_live(a),
    })
}

/// Great-circle distance in kilometres.
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().asin()
}

fn severity_rank(s: Option<&str>) -> u8 {
    match s {
        Some("critical") => 4,
        Some("high") => 3,
        Some("medium") => 2,
        Some("low") => 1,
        _ => 0,
    }
}

/// Where a search request comes from, for filters and gap records.
#[derive(Debug, Default, Clone)]
pub struct SearchRequest {
    pub q: String,
    pub locale: Option<String>,
    pub country: Option<String>,
    pub category: Option<String>,
    pub limit: usize,
    pub include_unpublished: bool,
}

#[derive(Clone)]
pub struct Kb {
    pub store: Store,
    pub engine: Arc<dyn SearchEngine>,
    /// Wakes the indexer after an in-process save.
    pub index_wake: Arc<Notify>,
    /// Bounds concurrent suggestion searches; when all are busy a suggestion is skipped.
    pub suggest_slots: Arc<Semaphore>,
    /// When each conversation last got suggestions: a burst of messages gets one search.
    pub suggested_at: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
}

/// Least time between two suggestion searches for one conversation.
const SUGGEST_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Kb {
    pub fn require_editor(p: &Principal) -> AppResult<()> {
        if matches!(p.role(), "editor" | "admin") {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "only editors and admins manage articles",
            ))
        }
    }

    /// Save through validation; every save is a version and reaches the index.
    pub async fn save(
        &self,
        p: &Principal,
        mode: SaveMode<'_>,
        fields: ArticleFields,
    ) -> AppResult<(ArticleRecord, SaveOutcome)> {
        Self::require_editor(p)?;
        let f = validate(fields)?;
        let html = render_markdown(&f.body_markdown);
        let saved = self
            .store
            .save_article(mode, &f, &html, Some(p.id()), None)
            .await?;
        self.index_wake.notify_one();
        tracing::info!(article = %saved.0.id, slug = %saved.0.slug, locale = %saved.0.locale, version = saved.0.version, by = %p.id(), "article saved");
        Ok(saved)
    }

    pub async fn article_for_edit(&self, p: &Principal, id: &str) -> AppResult<ArticleRecord> {
        Self::require_editor(p)?;
        let found = if uuid::Uuid::parse_str(id).is_ok() {
            self.store.article(id).await?
        } else {
            None
        };
        found.ok_or_else(|| AppError::not_found("article"))
    }

    pub async fn set_status(
        &self,
        p: &Principal,
        id: &str,
        status: &str,
    ) -> AppResult<ArticleRecord> {
        let a = self.article_for_edit(p, id).await?;
        let mut f = fields_of(&a);
        f.status = status.to_string();
        Ok(self.save(p, SaveMode::Update(id), f).await?.0)
    }

    /// Make a past version current again (as a new version).
    pub async fn restore(&self, p: &Principal, id: &str, version: i64) -> AppResult<ArticleRecord> {
        self.article_for_edit(p, id).await?;
        let v = self
            .store
            .article_version(id, version)
            .await?
            .ok_or_else(|| AppError::not_found("article version"))?;
        let f: ArticleFields = serde_json::from_str(&v.snapshot)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("corrupt version snapshot: {e}")))?;
        Ok(self.save(p, SaveMode::Update(id), f).await?.0)
    }

    /// One article by slug (or id) for reading: the public sees live articles only.
    pub async fn read(
        &self,
        p: Option<&Principal>,
        key: &str,
        locale: Option<&str>,
    ) -> AppResult<ArticleRecord> {
        let editor = p.is_some_and(|p| matches!(p.role(), "editor" | "admin"));
        let candidates = if uuid::Uuid::parse_str(key).is_ok() {
            self.store.article(key).await?.into_iter().collect()
        } else {
            self.store.articles_by_slug(key).await?
        };
        let mut visible: Vec<ArticleRecord> = candidates
            .into_iter()
            .filter(|a| editor || is_live(a))
            .collect();
        if let Some(l) = locale {
            let lower = l.to_ascii_lowercase();
            let lang = lower.split('-').next().unwrap_or("").to_string();
            // Exact locale first, then the same language, then whatever exists.
            visible.sort_by_key(|a| {
                let al = a.locale.to_ascii_lowercase();
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

    /// Full-text search. Queries without hits are recorded for editors.
    pub async fn search(&self, req: SearchRequest) -> AppResult<(SearchResults, u64)> {
        let started = Instant::now();
        let text: String = req.q.chars().take(QUERY_MAX_CHARS).collect();
        let q = Query {
            text: text.clone(),
            locale: req.locale.clone(),
            country: req.country.clone(),
            category: req.category.clone(),
            include_unpublished: req.include_unpublished,
            limit: req.limit,
            offset: 0,
        };
        let engine = self.engine.clone();
        let results = tokio::task::spawn_blocking(move || engine.search(&q))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("search failed: {e}")))?;
        let took_ms = started.elapsed().as_millis() as u64;
        if results.total == 0 && !text.trim().is_empty() && !req.include_unpublished {
            let store = self.store.clone();
            let normalized = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            tokio::spawn(async move {
                if let Err(e) = store
                    .record_search_gap(
                        &text,
                        &normalized,
                        req.locale.as_deref(),
                        req.country.as_deref(),
                    )
                    .await
                {
                    e.log();
                }
            });
        }
        Ok((results, took_ms))
    }

    /// Published, unexpired safety alerts for a country (its own and those for
    /// everywhere) or near a point (within each alert's radius), most severe and
    /// newest first.
    pub async fn alerts(
        &self,
        country: Option<&str>,
        point: Option<(f64, f64)>,
        locale: Option<&str>,
    ) -> AppResult<Vec<ArticleRecord>> {
        let mut alerts: Vec<ArticleRecord> = self
            .store
            .active_alerts(&now_str())
            .await?
            .into_iter()
            .filter(|a| {
                let countries = json_list(&a.countries);
                let country_ok = country.is_none_or(|c| {
                    countries.is_empty() || countries.iter().any(|x| x.eq_ignore_ascii_case(c))
                });
                let near_ok = point.is_none_or(|(lat, lon)| {
                    match (a.area_lat, a.area_lon, a.area_radius_km) {
                        (Some(alat), Some(alon), Some(r)) => distance_km(lat, lon, alat, alon) <= r,
                        _ => false,
                    }
                });
                country_ok && near_ok
            })
            .collect();
        // One per slug: the reader's locale, else the same language, else Chinese.
        let want = locale.unwrap_or("zh-CN").to_ascii_lowercase();
        let lang = want.split('-').next().unwrap_or("").to_string();
        let pref = |a: &ArticleRecord| {
            let l = a.locale.to_ascii_lowercase();
            if l == want {
                0
            } else if l.split('-').next() == Some(lang.as_str()) {
                1
            } else if l.starts_with("zh") {
                2
            } else {
                3
            }
        };
        alerts.sort_by(|a, b| a.slug.cmp(&b.slug).then_with(|| pref(a).cmp(&pref(b))));
        alerts.dedup_by(|later, first| later.slug == first.slug);
        alerts.sort_by(|a, b| {
            severity_rank(b.severity.as_deref())
                .cmp(&severity_rank(a.severity.as_deref()))
                .then_with(|| b.published_at.cmp(&a.published_at))
                .then_with(|| b.updated_at.cmp(&a.updated_at))
        });
        Ok(alerts)
    }

    /// Send the mission's agents the top articles for a citizen's message. Runs in the
    /// background and is skipped when too many are already running: suggestions must
    /// never slow the message path.
    pub fn suggest(
        &self,
        hub: &Arc<Hub>,
        conv: &ConversationRecord,
        message: &MessageRecord,
        locale: Option<&str>,
    ) {
        if message.body.trim().chars().count() < 2 {
            return;
        }
        {
            let now = Instant::now();
            let mut seen = self.suggested_at.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&conv.id)
                .is_some_and(|t| now.duration_since(*t) < SUGGEST_EVERY)
            {
                return;
            }
            if seen.len() > 10_000 {
                seen.retain(|_, t| now.duration_since(*t) < SUGGEST_EVERY);
            }
            seen.insert(conv.id.clone(), now);
        }
        let Ok(permit) = self.suggest_slots.clone().try_acquire_owned() else {
            return;
        };
        let kb = self.clone();
        let (hub, conv, message) = (hub.clone(), conv.clone(), message.clone());
        let locale = locale.map(str::to_string);
        tokio::spawn(async move {
            let _permit = permit;
            let mut req = SearchRequest {
                q: message.body.clone(),
                locale: locale.clone(),
                country: conv.citizen_country.clone(),
                limit: 3,
                ..Default::default()
            };
            let mut hits = match kb.engine_search(&req).await {
                Ok(r) => r.hits,
                Err(e) => {
                    e.log();
                    return;
                }
            };
            if hits.len() < 3 && locale.is_some() {
                req.locale = None;
                if let Ok(more) = kb.engine_search(&req).await {
                    for h in more.hits {
                        if hits.len() < 3 && !hits.iter().any(|x| x.id == h.id) {
                            hits.push(h);
                        }
                    }
                }
            }
            if hits.is_empty() {
                return;
            }
            let frame = json!({
                "type": "suggestions", "conversation_id": conv.id, "message_id": message.id,
                "seq": message.seq, "articles": hits.iter().map(hit_json).collect::<Vec<_>>(),
            });
            hub.publish(
                &[&conv],
                Audience::StaffOnly,
                axum::extract::ws::Utf8Bytes::from(frame.to_string()),
                None,
            );
        });
    }

    /// A search that records no gap (suggestions are not citizens' searches).
    async fn engine_search(&self, req: &SearchRequest) -> AppResult<SearchResults> {
        let q = Query {
            text: req.q.chars().take(QUERY_MAX_CHARS).collect(),
            locale: req.locale.clone(),
            country: req.country.clone(),
            category: req.category.clone(),
            include_unpublished: false,
            limit: req.limit,
            offset: 0,
        };
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.search(&q))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("search failed: {e}")))
    }
}

/// A search hit as the contract shows it.
pub fn hit_json(h: &lingshi_search::Hit) -> Value {
    json!({
        "id": h.id, "slug": h.slug, "title": h.title, "snippet": h.snippet,
        "category": h.category, "locale": h.locale, "countries": h.countries, "score": h.score,
    })
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
    fn distance_is_great_circle() {
        // Brussels to Antwerp is about 41 km.
        let d = distance_km(50.8466, 4.3528, 51.2194, 4.4025);
        assert!((38.0..45.0).contains(&d), "{d}");
    }
}
