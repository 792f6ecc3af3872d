//! Knowledge base over HTTP: public search, articles and alerts; the editor API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppJson, AppQuery, Auth, MaybeAuth};
use crate::config::is_country_code;
use crate::error::{AppError, AppResult};
use crate::kb::{article_json, hit_json, Kb, SearchRequest};
use crate::server::AppState;
use crate::store::{Area, ArticleFields, SaveMode};

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
        .route("/v1/kb/gaps", get(gaps))
        .route("/v1/alerts", get(alerts))
}

fn clean_country(c: Option<String>) -> AppResult<Option<String>> {
    match c {
        None => Ok(None),
        Some(c) if c.trim().is_empty() => Ok(None),
        Some(c) => {
            let up = c.trim().to_ascii_uppercase();
            if is_country_code(&up) {
                Ok(Some(up))
            } else {
                Err(AppError::invalid(format!(
                    "country {c:?} is not an ISO 3166-1 alpha-2 code like BE"
                )))
            }
        }
    }
}

fn none_if_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
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
}

async fn search(
    State(state): State<AppState>,
    auth: MaybeAuth,
    AppQuery(q): AppQuery<SearchQuery>,
) -> AppResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 50"));
    }
    let category = none_if_empty(q.category);
    if let Some(c) = &category {
        if !crate::kb::CATEGORIES.contains(&c.as_str()) {
            return Err(AppError::invalid(format!("unknown category {c:?}")));
        }
    }
    let editor = auth
        .0
        .as_ref()
        .is_some_and(|a| matches!(a.principal.role(), "editor" | "admin"));
    let include_unpublished = match q.status.as_deref() {
        None | Some("published") => false,
        Some("all") if editor => true,
        Some("all") => return Err(AppError::forbidden("only editors search drafts")),
        Some(_) => return Err(AppError::invalid("status must be published or all")),
    };
    let (results, took_ms) = state
        .kb
        .search(SearchRequest {
            q: q.q.unwrap_or_default(),
            locale: none_if_empty(q.locale),
            country: clean_country(q.country)?,
            category,
            limit,
            include_unpublished,
        })
        .await?;
    Ok(Json(json!({
        "hits": results.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "total": results.total,
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
    Path(key): Path<String>,
    AppQuery(q): AppQuery<ReadQuery>,
) -> AppResult<impl IntoResponse> {
    let p = auth.0.as_ref().map(|a| &a.principal);
    let a = state.kb.read(p, &key, q.locale.as_deref()).await?;
    Ok(Json(article_json(&a)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    locale: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<impl IntoResponse> {
    Kb::require_editor(&auth.principal)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 200"));
    }
    let rows = state
        .store
        .list_articles(
            q.status.as_deref(),
            q.locale.as_deref(),
            limit,
            q.offset.unwrap_or(0).max(0),
        )
        .await?;
    Ok(Json(
        json!({"articles": rows.iter().map(article_json).collect::<Vec<_>>()}),
    ))
}

/// The article body of the editor API: the contract's article fields.
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
    /// Fill from `base` (the stored article on update); creation needs the required
    /// fields.
    fn into_fields(self, base: Option<ArticleFields>) -> AppResult<ArticleFields> {
        let need = |v: Option<String>, name: &str| {
            v.ok_or_else(|| AppError::invalid(format!("{name} is required")))
        };
        Ok(match base {
            Some(b) => ArticleFields {
                slug: self.slug.unwrap_or(b.slug),
                locale: self.locale.unwrap_or(b.locale),
                title: self.title.unwrap_or(b.title),
                summary: self.summary.unwrap_or(b.summary),
                body_markdown: self.body_markdown.unwrap_or(b.body_markdown),
                category: self.category.unwrap_or(b.category),
                countries: self.countries.unwrap_or(b.countries),
                tags: self.tags.unwrap_or(b.tags),
                status: self.status.unwrap_or(b.status),
                severity: self.severity.or(b.severity),
                area: self.area.or(b.area),
                expires_at: self.expires_at.or(b.expires_at),
            },
            None => ArticleFields {
                slug: need(self.slug, "slug")?,
                locale: need(self.locale, "locale")?,
                title: need(self.title, "title")?,
                summary: self.summary.unwrap_or_default(),
                body_markdown: self.body_markdown.unwrap_or_default(),
                category: need(self.category, "category")?,
                countries: self.countries.unwrap_or_default(),
                tags: self.tags.unwrap_or_default(),
                status: self.status.unwrap_or_else(|| "draft".into()),
                severity: self.severity,
                area: self.area,
                expires_at: self.expires_at,
            },
        })
    }
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<ArticleBody>,
) -> AppResult<impl IntoResponse> {
    Kb::require_editor(&auth.principal)?;
    let fields = body.into_fields(None)?;
    let (a, _) = state
        .kb
        .save(&auth.principal, SaveMode::Create, fields)
        .await?;
    Ok((StatusCode::CREATED, Json(article_json(&a))))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
    AppJson(body): AppJson<ArticleBody>,
) -> AppResult<impl IntoResponse> {
    let current = state.kb.article_for_edit(&auth.principal, &key).await?;
    let fields = body.into_fields(Some(crate::kb::fields_of(&current)))?;
    let (a, _) = state
        .kb
        .save(&auth.principal, SaveMode::Update(&key), fields)
        .await?;
    Ok(Json(article_json(&a)))
}

async fn publish(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .kb
        .set_status(&auth.principal, &key, "published")
        .await?;
    Ok(Json(article_json(&a)))
}

/// Archive: out of search and public reads, versions kept.
async fn archive(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> AppResult<StatusCode> {
    state
        .kb
        .set_status(&auth.principal, &key, "archived")
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn versions(
    State(state): State<AppState>,
    auth: Auth,
    Path(key): Path<String>,
) -> AppResult<impl IntoResponse> {
    state.kb.article_for_edit(&auth.principal, &key).await?;
    let rows = state.store.article_versions(&key).await?;
    let out: Vec<_> = rows
        .iter()
        .map(|v| {
            json!({
                "version": v.version, "editor_id": v.editor_id, "created_at": v.created_at,
                "article": serde_json::from_str::<serde_json::Value>(&v.snapshot).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({"versions": out})))
}

async fn restore(
    State(state): State<AppState>,
    auth: Auth,
    Path((key, version)): Path<(String, i64)>,
) -> AppResult<impl IntoResponse> {
    let a = state.kb.restore(&auth.principal, &key, version).await?;
    Ok(Json(article_json(&a)))
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
    Kb::require_editor(&auth.principal)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let days = q.days.unwrap_or(30).clamp(1, 365);
    let since = crate::store::fmt_time(chrono::Utc::now() - chrono::Duration::days(days));
    let rows = state.store.top_search_gaps(&since, limit).await?;
    let out: Vec<_> = rows
        .iter()
        .map(|(normalized, example, count, last)| {
            json!({"query": normalized, "example": example, "count": count, "last_seen_at": last})
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
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(AppError::invalid(
                    "lat must be in -90..90 and lon in -180..180",
                ));
            }
            Some((lat, lon))
        }
        (None, None) => None,
        _ => return Err(AppError::invalid("give both lat and lon")),
    };
    let country = clean_country(q.country)?;
    let list = state
        .kb
        .alerts(
            country.as_deref(),
            point,
            none_if_empty(q.locale).as_deref(),
        )
        .await?;
    Ok(Json(
        json!({"alerts": list.iter().map(article_json).collect::<Vec<_>>()}),
    ))
}
