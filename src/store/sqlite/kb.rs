//! Knowledge base: articles, versions, the index queue, search gaps, alerts.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::*;
use crate::domain::model::*;
use crate::domain::ports::KbStore;

const ARTICLE_COLUMNS: &str =
    "id, slug, locale, title, summary, body_markdown, body_html, category, \
     countries, tags, status, version, severity, area_lat, area_lon, area_radius_km, expires_at, \
     source_hash, created_at, updated_at, published_at";

#[derive(sqlx::FromRow)]
struct ArticleRow {
    id: String,
    slug: String,
    locale: String,
    title: String,
    summary: String,
    body_markdown: String,
    body_html: String,
    category: String,
    countries: String,
    tags: String,
    status: String,
    version: i64,
    severity: Option<String>,
    area_lat: Option<f64>,
    area_lon: Option<f64>,
    area_radius_km: Option<f64>,
    expires_at: Option<String>,
    source_hash: Option<String>,
    created_at: String,
    updated_at: String,
    published_at: Option<String>,
}

impl ArticleRow {
    fn into_domain(self) -> AppResult<Article> {
        let countries: Vec<String> = json("countries", &self.countries)?;
        Ok(Article {
            id: ArticleId(uuid(&self.id)?),
            fields: ArticleFields {
                slug: self.slug,
                locale: Locale::parse(&self.locale).map_err(|_| corrupt("locale", &self.locale))?,
                title: self.title,
                summary: self.summary,
                body_markdown: self.body_markdown,
                category: word("category", &self.category)?,
                countries: countries
                    .iter()
                    .map(|c| CountryCode::parse(c).map_err(|_| corrupt("country", c)))
                    .collect::<AppResult<_>>()?,
                tags: json("tags", &self.tags)?,
                status: word("article status", &self.status)?,
                severity: self
                    .severity
                    .as_deref()
                    .map(|s| word("severity", s))
                    .transpose()?,
                area: match (self.area_lat, self.area_lon, self.area_radius_km) {
                    (Some(lat), Some(lon), Some(radius_km)) => Some(Area {
                        lat,
                        lon,
                        radius_km,
                    }),
                    _ => None,
                },
                expires_at: opt_time(self.expires_at.as_deref())?,
            },
            body_html: self.body_html,
            version: self.version,
            source_hash: self.source_hash,
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
            published_at: opt_time(self.published_at.as_deref())?,
        })
    }
}

fn articles(rows: Vec<ArticleRow>) -> AppResult<Vec<Article>> {
    rows.into_iter().map(ArticleRow::into_domain).collect()
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    article_id: String,
    version: i64,
    snapshot: String,
    editor_id: Option<String>,
    created_at: String,
}

impl VersionRow {
    fn into_domain(self) -> AppResult<ArticleVersion> {
        Ok(ArticleVersion {
            article_id: ArticleId(uuid(&self.article_id)?),
            version: self.version,
            fields: json("version snapshot", &self.snapshot)?,
            editor_id: self
                .editor_id
                .as_deref()
                .map(|e| uuid(e).map(AgentId))
                .transpose()?,
            created_at: time(&self.created_at)?,
        })
    }
}

async fn fetch_article(
    conn: &mut SqliteConnection,
    sql_where: &str,
    binds: &[&str],
) -> AppResult<Option<Article>> {
    let sql = format!("SELECT {ARTICLE_COLUMNS} FROM articles WHERE {sql_where}");
    let mut q = sqlx::query_as::<_, ArticleRow>(&sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_optional(conn)
        .await?
        .map(ArticleRow::into_domain)
        .transpose()
}

async fn enqueue_index(
    conn: &mut SqliteConnection,
    article: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO index_queue (article_id, enqueued_at) VALUES (?, ?)")
        .bind(article)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// One save inside the caller's transaction: the article's id and what was done.
async fn save_in(
    tx: &mut SqliteConnection,
    mode: SaveMode,
    f: &ArticleFields,
    body_html: &str,
    editor: Option<AgentId>,
    source_hash: Option<&str>,
    now: Timestamp,
) -> AppResult<(ArticleId, SaveOutcome)> {
    let existing = match mode {
        SaveMode::Update(id) => fetch_article(&mut *tx, "id = ?", &[&id.to_string()]).await?,
        SaveMode::Create | SaveMode::Upsert => {
            fetch_article(
                &mut *tx,
                "slug = ? AND locale = ?",
                &[&f.slug, f.locale.as_str()],
            )
            .await?
        }
    };
    let (id, version, outcome, published_at) =
        match mode.plan(existing.as_ref(), f, source_hash, now)? {
            SavePlan::Unchanged(id) => return Ok((id, SaveOutcome::Unchanged)),
            SavePlan::Write {
                id,
                version,
                outcome,
                published_at,
            } => (id, version, outcome, published_at),
        };
    let stamp = fmt_time(now);
    let countries: Vec<&str> = f.countries.iter().map(CountryCode::as_str).collect();
    let res = sqlx::query(
        "INSERT INTO articles (id, slug, locale, title, summary, body_markdown, body_html, category, \
         countries, tags, status, version, severity, area_lat, area_lon, area_radius_km, expires_at, \
         expiry_indexed, source_hash, created_at, updated_at, published_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, locale = excluded.locale, \
         title = excluded.title, summary = excluded.summary, body_markdown = excluded.body_markdown, \
         body_html = excluded.body_html, category = excluded.category, countries = excluded.countries, \
         tags = excluded.tags, status = excluded.status, version = excluded.version, \
         severity = excluded.severity, area_lat = excluded.area_lat, area_lon = excluded.area_lon, \
         area_radius_km = excluded.area_radius_km, expires_at = excluded.expires_at, expiry_indexed = 0, \
         source_hash = excluded.source_hash, updated_at = excluded.updated_at, \
         published_at = excluded.published_at",
    )
    .bind(id.to_string())
    .bind(&f.slug)
    .bind(f.locale.as_str())
    .bind(&f.title)
    .bind(&f.summary)
    .bind(&f.body_markdown)
    .bind(body_html)
    .bind(f.category.as_str())
    .bind(to_json(&countries))
    .bind(to_json(&f.tags))
    .bind(f.status.as_str())
    .bind(version)
    .bind(f.severity.map(|s| s.as_str()))
    .bind(f.area.map(|a| a.lat))
    .bind(f.area.map(|a| a.lon))
    .bind(f.area.map(|a| a.radius_km))
    .bind(f.expires_at.map(fmt_time))
    .bind(source_hash)
    .bind(&stamp)
    .bind(&stamp)
    .bind(published_at.map(fmt_time))
    .execute(&mut *tx)
    .await;
    if let Err(e) = res {
        if is_unique_violation(&e) {
            return Err(AppError::Conflict(format!(
                "an article with slug {:?} and locale {:?} already exists",
                f.slug,
                f.locale.as_str()
            )));
        }
        return Err(e.into());
    }
    sqlx::query(
        "INSERT INTO article_versions (article_id, version, snapshot, editor_id, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(version)
    .bind(to_json(f))
    .bind(editor.map(|e| e.to_string()))
    .bind(&stamp)
    .execute(&mut *tx)
    .await?;
    enqueue_index(&mut *tx, &id.to_string(), &stamp).await?;
    Ok((id, outcome))
}

#[async_trait]
impl KbStore for SqliteStore {
    async fn article(&self, id: ArticleId) -> AppResult<Option<Article>> {
        let row: Option<ArticleRow> = sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(ArticleRow::into_domain).transpose()
    }

    async fn articles_by_slug(&self, slug: &str) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE slug = ? ORDER BY locale"
            ))
            .bind(slug)
            .fetch_all(&self.read)
            .await?,
        )
    }

    async fn list_articles(
        &self,
        status: Option<ArticleStatus>,
        locale: Option<&Locale>,
        category: Option<Category>,
        limit: i64,
        offset: i64,
    ) -> AppResult<Vec<Article>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE 1 = 1"
        ));
        if let Some(s) = status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(l) = locale {
            q.push(" AND locale = ").push_bind(l.as_str().to_string());
        }
        if let Some(c) = category {
            q.push(" AND category = ").push_bind(c.as_str());
        }
        q.push(" ORDER BY updated_at DESC, id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        articles(q.build_query_as().fetch_all(&self.read).await?)
    }

    async fn articles_page(&self, after: Option<ArticleId>, limit: i64) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id > ? ORDER BY id LIMIT ?"
            ))
            .bind(after.map(|a| a.to_string()).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        )
    }

    async fn article_count(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM articles")
            .fetch_one(&self.read)
            .await?;
        Ok(n)
    }

    async fn save_article(
        &self,
        mode: SaveMode,
        f: &ArticleFields,
        body_html: &str,
        editor: Option<AgentId>,
        source_hash: Option<&str>,
    ) -> AppResult<(Article, SaveOutcome)> {
        let now = now();
        Ok(write_tx!(self, |tx| {
            let (id, outcome) =
                save_in(&mut tx, mode, f, body_html, editor, source_hash, now).await?;
            let saved = fetch_article(&mut tx, "id = ?", &[&id.to_string()])
                .await?
                .ok_or_else(|| AppError::not_found("article"))?;
            (saved, outcome)
        }))
    }

    async fn import_articles(
        &self,
        items: &[ArticleImport],
    ) -> AppResult<Vec<AppResult<SaveOutcome>>> {
        let now = now();
        Ok(write_tx!(self, |tx| {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let mut item = sqlx::Connection::begin(&mut *tx).await?;
                let r = save_in(
                    &mut item,
                    SaveMode::Upsert,
                    &it.fields,
                    &it.body_html,
                    None,
                    Some(&it.source_hash),
                    now,
                )
                .await;
                match r {
                    Ok((_, outcome)) => {
                        item.commit().await?;
                        out.push(Ok(outcome));
                    }
                    Err(e) => {
                        item.rollback().await?;
                        out.push(Err(e));
                    }
                }
            }
            out
        }))
    }

    async fn articles_by_ids(&self, ids: &[ArticleId]) -> AppResult<Vec<Article>> {
        let mut out = Vec::with_capacity(ids.len());
        // SQLite's default limit on bound parameters is well above a queue page.
        for chunk in ids.chunks(500) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id IN ("
            ));
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id.to_string());
            }
            q.push(")");
            out.extend(articles(q.build_query_as().fetch_all(&self.read).await?)?);
        }
        Ok(out)
    }

    async fn article_versions(&self, id: ArticleId) -> AppResult<Vec<ArticleVersion>> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT article_id, version, snapshot, editor_id, created_at FROM article_versions \
             WHERE article_id = ? ORDER BY version DESC",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(VersionRow::into_domain).collect()
    }

    async fn article_version(
        &self,
        id: ArticleId,
        version: i64,
    ) -> AppResult<Option<ArticleVersion>> {
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT article_id, version, snapshot, editor_id, created_at FROM article_versions \
             WHERE article_id = ? AND version = ?",
        )
        .bind(id.to_string())
        .bind(version)
        .fetch_optional(&self.read)
        .await?;
        row.map(VersionRow::into_domain).transpose()
    }

    async fn enqueue_full_reindex(&self) -> AppResult<()> {
        let mut w = self.writer().await;
        enqueue_index(&mut w, "*", &fmt_time(now())).await?;
        Ok(())
    }

    async fn index_queue_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> AppResult<Vec<(i64, Option<ArticleId>)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, article_id FROM index_queue WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(seq, id)| {
                Ok((
                    seq,
                    if id == "*" {
                        None
                    } else {
                        Some(ArticleId(uuid(&id)?))
                    },
                ))
            })
            .collect()
    }

    async fn max_index_seq(&self) -> AppResult<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM index_queue")
            .fetch_one(&self.read)
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn prune_index_queue(&self, upto: i64) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query("DELETE FROM index_queue WHERE seq <= ?")
            .bind(upto)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    async fn queue_expired_articles(&self, now: Timestamp) -> AppResult<usize> {
        let now = fmt_time(now);
        Ok(write_tx!(self, |tx| {
            let ids: Vec<(String,)> = sqlx::query_as(
                "UPDATE articles SET expiry_indexed = 1 WHERE status = 'published' AND expiry_indexed = 0 \
                 AND expires_at IS NOT NULL AND expires_at <= ? RETURNING id",
            )
            .bind(&now)
            .fetch_all(&mut *tx)
            .await?;
            for (id,) in &ids {
                enqueue_index(&mut tx, id, &now).await?;
            }
            ids.len()
        }))
    }

    async fn record_search_gap(
        &self,
        query: &str,
        normalized: &str,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO search_gaps (query, normalized, locale, country, at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(query)
        .bind(normalized)
        .bind(locale)
        .bind(country)
        .bind(fmt_time(now()))
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn top_search_gaps(&self, since: Timestamp, limit: i64) -> AppResult<Vec<SearchGap>> {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT normalized, MAX(query), COUNT(*) AS n, MAX(at) FROM search_gaps WHERE at >= ? \
             GROUP BY normalized ORDER BY n DESC, MAX(at) DESC LIMIT ?",
        )
        .bind(fmt_time(since))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(normalized, example, count, last)| {
                Ok(SearchGap {
                    normalized,
                    example,
                    count,
                    last_seen_at: time(&last)?,
                })
            })
            .collect()
    }

    async fn active_alerts(&self, now: Timestamp) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE category = 'safety_alert' AND status = 'published' \
                 AND (expires_at IS NULL OR expires_at > ?)"
            ))
            .bind(fmt_time(now))
            .fetch_all(&self.read)
            .await?,
        )
    }
}
