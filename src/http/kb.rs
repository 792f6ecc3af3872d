//! Knowledge base over HTTP: public search, articles and alerts; the editor API.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppJson, AppPath, AppQuery, Auth, MaybeAuth};
use crate::app::AppState;
use crate::domain::kb::{ArticleInput, ArticleListRequest, SearchRequest};
use crate::domain::model::{Area, SaveMode};
use crate::domain::types::{fmt_time, ArticleStatus};
use crate::error::{AppError, AppResult};
use crate::wire::article_view;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/kb/search", get(search))
        .route("/v1/kb/articles", get(list).post(create))
        .route(
            "/v1/kb/articles/{key}",
            get(read).put(update).delete(archive),
        )
        .route("/v1/kb/articles/{key}/publish", post(publish))
        .route("/v1/kb/articles/{key}/versions", get(versions))
        .route(
            "/v1/kb/articles/{key}/versions/{version}/restore",
            post(restore),
        )
        .route("/v1/kb/preview", post(preview))
        .route("/v1/kb/gaps", get(gaps))
        .route("/v1/alerts", get(alerts))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    category: Option<String>,
    limit: Option<usize>,
    /// Editors: `all` includes drafts.
    status: Option<String>,
    /// The reader's language (not a filter): hits in another language are marked so
    /// the page can say "in English". Defaults to `locale`, then to the question's script.
    lang: Option<String>,
}

/// Primary language subtag of a locale, lowercased: "zh-CN" → "zh".
fn language_of(locale: &str) -> String {
    locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The language the reader reads: said outright, implied by a locale filter, or guessed
/// from the question (Han characters → Chinese, Latin letters only → English).
fn reader_language(q: &SearchQuery) -> Option<String> {
    let said = |v: &Option<String>| {
        v.as_deref()
            .map(language_of)
            .filter(|l| !l.is_empty() && l.len() <= 8 && l.bytes().all(|b| b.is_ascii_alphabetic()))
    };
    if let Some(l) = said(&q.lang).or_else(|| said(&q.locale)) {
        return Some(l);
    }
    let text = q.q.as_deref().unwrap_or("");
    let han =
        |c: char| ('\u{3400}'..='\u{9fff}').contains(&c) || ('\u{f900}'..='\u{faff}').contains(&c);
    if text.chars().any(han) {
        Some("zh".into())
    } else if text.chars().any(|c| c.is_ascii_alphabetic()) {
        Some("en".into())
    } else {
        None
    }
}

async fn search(
    State(state): State<AppState>,
    auth: MaybeAuth,
    AppQuery(q): AppQuery<SearchQuery>,
) -> AppResult<impl IntoResponse> {
    let reader = reader_language(&q);
    let (results, took_ms) = state
        .domain
        .search(
            auth.principal(),
            SearchRequest {
                q: q.q.clone().unwrap_or_default(),
                locale: q.locale.clone(),
                country: q.country,
                category: q.category,
                limit: q.limit,
                status: q.status,
            },
        )
        .await?;
    let hits: Vec<Value> = results
        .hits
        .iter()
        .map(|h| {
            let language = language_of(&h.locale);
            let other = reader.as_ref().is_some_and(|r| *r != language);
            json!({
                "id": h.id, "slug": h.slug, "title": h.title, "snippet": h.snippet,
                "category": h.category, "locale": h.locale, "language": language,
                "other_language": other, "countries": h.countries, "score": h.score,
            })
        })
        .collect();
    Ok(Json(json!({
        "hits": hits,
        "total": results.total,
        "language": reader,
        "took_ms": took_ms,
    })))
}

#[derive(Deserialize)]
struct ReadQuery {
    locale: Option<String>,
}

async fn read(
    State(state): State<AppState>,
    auth: MaybeAuth,
    AppPath(key): AppPath<String>,
    AppQuery(q): AppQuery<ReadQuery>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .domain
        .read_article(auth.principal(), &key, q.locale.as_deref())
        .await?;
    Ok(Json(article_view(&a)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    locale: Option<String>,
    category: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<impl IntoResponse> {
    let rows = state
        .domain
        .list_articles(
            &auth.principal,
            ArticleListRequest {
                status: q.status,
                locale: q.locale,
                category: q.category,
                limit: q.limit,
                offset: q.offset,
            },
        )
        .await?;
    Ok(Json(
        json!({"articles": rows.iter().map(article_view).collect::<Vec<_>>()}),
    ))
}

/// The article body of the editor API: the contract's article fields, all optional on
/// update.
#[derive(Deserialize)]
struct ArticleBody {
    slug: Option<String>,
    locale: Option<String>,
    title: Option<String>,
    summary: Option<String>,
    body_markdown: Option<String>,
    category: Option<String>,
    countries: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    status: Option<String>,
    severity: Option<String>,
    area: Option<Area>,
    expires_at: Option<String>,
}

impl ArticleBody {
    /// Overlay the fields given on `base` (the stored article on update).
    fn apply(self, base: ArticleInput) -> ArticleInput {
        ArticleInput {
            slug: self.slug.unwrap_or(base.slug),
            locale: self.locale.unwrap_or(base.locale),
            title: self.title.unwrap_or(base.title),
            summary: self.summary.unwrap_or(base.summary),
            body_markdown: self.body_markdown.unwrap_or(base.body_markdown),
            category: self.category.unwrap_or(base.category),
            countries: self.countries.unwrap_or(base.countries),
            tags: self.tags.unwrap_or(base.tags),
            status: self.status.unwrap_or(base.status),
            severity: self.severity.or(base.severity),
            area: self.area.or(base.area),
            expires_at: self.expires_at.or(base.expires_at),
        }
    }

    /// Creation needs the required fields; new articles are drafts by default.
    fn into_new(self) -> AppResult<ArticleInput> {
        let need = |v: &Option<String>, name: &str| {
            if v.is_none() {
                Err(AppError::invalid(format!("{name} is required")))
            } else {
                Ok(())
            }
        };
        need(&self.slug, "slug")?;
        need(&self.locale, "locale")?;
        need(&self.title, "title")?;
        need(&self.category, "category")?;
        Ok(self.apply(ArticleInput {
            status: "draft".into(),
            ..ArticleInput::default()
        }))
    }
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<ArticleBody>,
) -> AppResult<impl IntoResponse> {
    auth.principal.require_editor()?;
    let (a, _) = state
        .domain
        .save_article(&auth.principal, SaveMode::Create, body.into_new()?)
        .await?;
    Ok((StatusCode::CREATED, Json(article_view(&a))))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(key): AppPath<String>,
    AppJson(body): AppJson<ArticleBody>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .domain
        .update_article(&auth.principal, &key, |base| body.apply(base))
        .await?;
    Ok(Json(article_view(&a)))
}

async fn publish(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(key): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .domain
        .set_article_status(&auth.principal, &key, ArticleStatus::Published)
        .await?;
    Ok(Json(article_view(&a)))
}

/// Archive: out of search and public reads, versions kept.
async fn archive(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(key): AppPath<String>,
) -> AppResult<StatusCode> {
    state
        .domain
        .set_article_status(&auth.principal, &key, ArticleStatus::Archived)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn versions(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(key): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let rows = state.domain.article_versions(&auth.principal, &key).await?;
    let out: Vec<_> = rows
        .iter()
        .map(|v| {
            json!({
                "version": v.version, "editor_id": v.editor_id, "created_at": fmt_time(v.created_at),
                "article": v.fields,
            })
        })
        .collect();
    Ok(Json(json!({"versions": out})))
}

async fn restore(
    State(state): State<AppState>,
    auth: Auth,
    AppPath((key, version)): AppPath<(String, i64)>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .domain
        .restore_article(&auth.principal, &key, version)
        .await?;
    Ok(Json(article_view(&a)))
}

#[derive(Deserialize)]
struct PreviewRequest {
    body_markdown: String,
}

/// The server's sanitised HTML for a Markdown body (the editor's preview).
async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<PreviewRequest>,
) -> AppResult<impl IntoResponse> {
    let html = state
        .domain
        .preview_markdown(&auth.principal, &req.body_markdown)?;
    Ok(Json(json!({"body_html": html})))
}

#[derive(Deserialize)]
struct GapsQuery {
    limit: Option<i64>,
    days: Option<i64>,
}

/// The most frequent searches without hits over the last 30 days (editors).
async fn gaps(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<GapsQuery>,
) -> AppResult<impl IntoResponse> {
    let (rows, days) = state
        .domain
        .search_gaps(&auth.principal, q.days, q.limit)
        .await?;
    let out: Vec<_> = rows
        .iter()
        .map(|g| {
            json!({"query": g.normalized, "example": g.example, "count": g.count,
                   "last_seen_at": fmt_time(g.last_seen_at)})
        })
        .collect();
    Ok(Json(json!({"gaps": out, "days": days})))
}

#[derive(Deserialize)]
struct AlertsQuery {
    country: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    locale: Option<String>,
}

async fn alerts(
    State(state): State<AppState>,
    AppQuery(q): AppQuery<AlertsQuery>,
) -> AppResult<impl IntoResponse> {
    let point = match (q.lat, q.lon) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        (None, None) => None,
        _ => return Err(AppError::invalid("give both lat and lon")),
    };
    let list = state
        .domain
        .alerts(q.country.as_deref(), point, q.locale.as_deref())
        .await?;
    Ok(Json(
        json!({"alerts": list.iter().map(article_view).collect::<Vec<_>>()}),
    ))
}
