//! Knowledge base: articles, versions, the index queue, search gaps, alerts.
//!
//! Every node keeps its own search index, fed by the one `index_queue`. Two things
//! make that safe with several nodes:
//!
//! - writers take a transaction lock right before inserting a queue row, so queue
//!   numbers become visible in the order they were handed out: an indexer that has
//!   applied `seq` n never sees a smaller number appear later;
//! - rows are pruned only below the position of every node that followed the queue
//!   within the retention (`index_followers`); a node away for longer finds the
//!   queue pruned past its position and is told to rebuild its index.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::*;
use crate::domain::model::*;
use crate::domain::ports::KbStore;

const ARTICLE_COLUMNS: &str =
    "id, slug, locale, title, summary, body_markdown, body_html, category, \
     countries, tags, status, version, severity, area_lat, area_lon, area_radius_km, expires_at, \
     source_hash, created_at, updated_at, published_at";

/// Nodes that have not followed the queue for this long no longer hold pruning back.
const FOLLOWER_RETENTION: &str = "7 days";
/// How often a node records its position while it only polls.
const FOLLOWER_HEARTBEAT: Duration = Duration::from_secs(60);

#[derive(sqlx::FromRow)]
struct ArticleRow {
    id: Uuid,
    slug: String,
    locale: String,
    title: String,
    summary: String,
    body_markdown: String,
    body_html: String,
    category: String,
    countries: serde_json::Value,
    tags: serde_json::Value,
    status: String,
    version: i64,
    severity: Option<String>,
    area_lat: Option<f64>,
    area_lon: Option<f64>,
    area_radius_km: Option<f64>,
    expires_at: Option<Timestamp>,
    source_hash: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    published_at: Option<Timestamp>,
}

impl ArticleRow {
    fn into_domain(self) -> AppResult<Article> {
        let countries: Vec<String> = json("countries", self.countries)?;
        Ok(Article {
            id: ArticleId(self.id),
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
                tags: json("tags", self.tags)?,
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
                expires_at: self.expires_at,
            },
            body_html: self.body_html,
            version: self.version,
            source_hash: self.source_hash,
            created_at: self.created_at,
            updated_at: self.updated_at,
            published_at: self.published_at,
        })
    }
}

fn articles(rows: Vec<ArticleRow>) -> AppResult<Vec<Article>> {
    rows.into_iter().map(ArticleRow::into_domain).collect()
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    article_id: Uuid,
    version: i64,
    snapshot: serde_json::Value,
    editor_id: Option<Uuid>,
    created_at: Timestamp,
}

impl VersionRow {
    fn into_domain(self) -> AppResult<ArticleVersion> {
        Ok(ArticleVersion {
            article_id: ArticleId(self.article_id),
            version: self.version,
            fields: json("version snapshot", self.snapshot)?,
            editor_id: self.editor_id.map(AgentId),
            created_at: self.created_at,
        })
    }
}

async fn fetch_article_by_id(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<Article>> {
    let row: Option<ArticleRow> = sqlx::query_as(&format!(
        "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(ArticleRow::into_domain).transpose()
}

/// Queue index rows at the end of the caller's transaction (see the module comment
/// for the lock).
async fn enqueue_index(
    conn: &mut PgConnection,
    articles: &[String],
    now: Timestamp,
) -> Result<(), sqlx::Error> {
    if articles.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_SPACE)
        .bind(LOCK_INDEX_QUEUE)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO index_queue (article_id, enqueued_at) SELECT a, $2 FROM unnest($1::text[]) AS a",
    )
    .bind(articles)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

impl PgStore {
    /// Record how far this node's index has applied the queue.
    async fn record_follower(&self, applied: i64) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO index_followers (node, applied, seen_at) VALUES ($1, $2, now()) \
             ON CONFLICT (node) DO UPDATE SET applied = excluded.applied, seen_at = now()",
        )
        .bind(&*self.follower)
        .bind(applied)
        .execute(&self.pool)
        .await?;
        *self.follower_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }
}

/// One save inside the caller's transaction: the article's id and what was done.
async fn save_in(
    conn: &mut PgConnection,
    mode: SaveMode,
    f: &ArticleFields,
    body_html: &str,
    editor: Option<AgentId>,
    source_hash: Option<&str>,
    now: Timestamp,
) -> AppResult<(ArticleId, SaveOutcome)> {
    // Locked: two editors (or an editor and an import) saving one article at once
    // take turns, and each sees the other's version.
    let existing = match mode {
        SaveMode::Update(id) => {
            let row: Option<ArticleRow> = sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = $1 FOR UPDATE"
            ))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?;
            row.map(ArticleRow::into_domain).transpose()?
        }
        SaveMode::Create | SaveMode::Upsert => {
            let row: Option<ArticleRow> = sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE slug = $1 AND locale = $2 FOR UPDATE"
            ))
            .bind(&f.slug)
            .bind(f.locale.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            row.map(ArticleRow::into_domain).transpose()?
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
    let countries: Vec<&str> = f.countries.iter().map(CountryCode::as_str).collect();
    let res = sqlx::query(
        "INSERT INTO articles (id, slug, locale, title, summary, body_markdown, body_html, category, \
         countries, tags, status, version, severity, area_lat, area_lon, area_radius_km, expires_at, \
         expiry_indexed, source_hash, created_at, updated_at, published_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, false, $18, $19, $19, $20) \
         ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, locale = excluded.locale, \
         title = excluded.title, summary = excluded.summary, body_markdown = excluded.body_markdown, \
         body_html = excluded.body_html, category = excluded.category, countries = excluded.countries, \
         tags = excluded.tags, status = excluded.status, version = excluded.version, \
         severity = excluded.severity, area_lat = excluded.area_lat, area_lon = excluded.area_lon, \
         area_radius_km = excluded.area_radius_km, expires_at = excluded.expires_at, expiry_indexed = false, \
         source_hash = excluded.source_hash, updated_at = excluded.updated_at, \
         published_at = excluded.published_at",
    )
    .bind(id.0)
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
    .bind(f.expires_at)
    .bind(source_hash)
    .bind(now)
    .bind(published_at)
    .execute(&mut *conn)
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
        "INSERT INTO article_versions (article_id, version, snapshot, editor_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.0)
    .bind(version)
    .bind(to_json(f))
    .bind(editor.map(|e| e.0))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    enqueue_index(&mut *conn, &[id.to_string()], now).await?;
    Ok((id, outcome))
}

#[async_trait]
impl KbStore for PgStore {
    async fn article(&self, id: ArticleId) -> AppResult<Option<Article>> {
        let mut conn = self.pool.acquire().await?;
        fetch_article_by_id(&mut conn, id.0).await
    }

    async fn articles_by_slug(&self, slug: &str) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE slug = $1 ORDER BY locale"
            ))
            .bind(slug)
            .fetch_all(&self.pool)
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
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {ARTICLE_COLUMNS} FROM articles WHERE true"));
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
        articles(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn articles_page(&self, after: Option<ArticleId>, limit: i64) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.map(|a| a.0))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn article_count(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM articles")
            .fetch_one(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let (id, outcome) =
            save_in(&mut tx, mode, f, body_html, editor, source_hash, now()).await?;
        let saved = fetch_article_by_id(&mut tx, id.0)
            .await?
            .ok_or_else(|| AppError::not_found("article"))?;
        tx.commit().await?;
        Ok((saved, outcome))
    }

    async fn import_articles(
        &self,
        items: &[ArticleImport],
    ) -> AppResult<Vec<AppResult<SaveOutcome>>> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            // A savepoint each: a failed item is undone alone.
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
        tx.commit().await?;
        Ok(out)
    }

    async fn articles_by_ids(&self, ids: &[ArticleId]) -> AppResult<Vec<Article>> {
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ANY($1)"
            ))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn article_versions(&self, id: ArticleId) -> AppResult<Vec<ArticleVersion>> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT article_id, version, snapshot, editor_id, created_at FROM article_versions \
             WHERE article_id = $1 ORDER BY version DESC",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
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
             WHERE article_id = $1 AND version = $2",
        )
        .bind(id.0)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(VersionRow::into_domain).transpose()
    }

    async fn enqueue_full_reindex(&self) -> AppResult<()> {
        let mut tx = self.pool.begin().await?;
        enqueue_index(&mut tx, &["*".to_string()], now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn index_queue_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> AppResult<Vec<(i64, Option<ArticleId>)>> {
        let due = self
            .follower_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= FOLLOWER_HEARTBEAT);
        if due {
            self.record_follower(seq).await?;
        }
        let (pruned,): (Option<i64>,) =
            sqlx::query_as("SELECT value FROM store_meta WHERE name = 'index_pruned'")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or((None,));
        if let Some(pruned) = pruned.filter(|p| seq < *p) {
            // Rows this index has not applied are gone: rebuild from the articles.
            return Ok(vec![(pruned, None)]);
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, article_id FROM index_queue WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(seq, id)| {
                Ok((
                    seq,
                    if id == "*" {
                        None
                    } else {
                        Some(ArticleId(
                            Uuid::try_parse(&id).map_err(|_| corrupt("article id", &id))?,
                        ))
                    },
                ))
            })
            .collect()
    }

    async fn max_index_seq(&self) -> AppResult<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as(
            "SELECT GREATEST((SELECT MAX(seq) FROM index_queue), \
                             (SELECT value FROM store_meta WHERE name = 'index_pruned'))",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }

    async fn prune_index_queue(&self, upto: i64) -> AppResult<()> {
        self.record_follower(upto).await?;
        let mut tx = self.pool.begin().await?;
        let (floor,): (Option<i64>,) = sqlx::query_as(&format!(
            "SELECT MIN(applied) FROM index_followers WHERE seen_at > now() - interval '{FOLLOWER_RETENTION}'"
        ))
        .fetch_one(&mut *tx)
        .await?;
        let Some(floor) = floor.filter(|f| *f > 0) else {
            return Ok(());
        };
        sqlx::query("DELETE FROM index_queue WHERE seq <= $1")
            .bind(floor)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO store_meta (name, value) VALUES ('index_pruned', $1) \
             ON CONFLICT (name) DO UPDATE SET value = GREATEST(store_meta.value, excluded.value)",
        )
        .bind(floor)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM index_followers WHERE seen_at < now() - interval '{FOLLOWER_RETENTION}'"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn queue_expired_articles(&self, now: Timestamp) -> AppResult<usize> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<(Uuid,)> = sqlx::query_as(
            "UPDATE articles SET expiry_indexed = true WHERE status = 'published' AND NOT expiry_indexed \
             AND expires_at IS NOT NULL AND expires_at <= $1 RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<String> = ids.into_iter().map(|(id,)| id.to_string()).collect();
        enqueue_index(&mut tx, &ids, now).await?;
        tx.commit().await?;
        Ok(ids.len())
    }

    async fn record_search_gap(
        &self,
        query: &str,
        normalized: &str,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO search_gaps (query, normalized, locale, country, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(query)
        .bind(normalized)
        .bind(locale)
        .bind(country)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn top_search_gaps(&self, since: Timestamp, limit: i64) -> AppResult<Vec<SearchGap>> {
        let rows: Vec<(String, String, i64, Timestamp)> = sqlx::query_as(
            "SELECT normalized, MAX(query), COUNT(*) AS n, MAX(at) FROM search_gaps WHERE at >= $1 \
             GROUP BY normalized ORDER BY n DESC, MAX(at) DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(normalized, example, count, last_seen_at)| SearchGap {
                normalized,
                example,
                count,
                last_seen_at,
            })
            .collect())
    }

    async fn active_alerts(&self, now: Timestamp) -> AppResult<Vec<Article>> {
        articles(
            sqlx::query_as(&format!(
                "SELECT {ARTICLE_COLUMNS} FROM articles WHERE category = 'safety_alert' AND status = 'published' \
                 AND (expires_at IS NULL OR expires_at > $1)"
            ))
            .bind(now)
            .fetch_all(&self.pool)
            .await?,
        )
    }
}
