//! Knowledge-base SQL: articles, versions, the index queue, search gaps, alerts.

use sqlx::{Connection, QueryBuilder, Sqlite};
use uuid::Uuid;

use super::now_str;
use super::records::*;
use super::sqlite::SqliteStore;
use crate::error::{AppError, AppResult};

const ARTICLE_COLUMNS: &str =
    "id, slug, locale, title, summary, body_markdown, body_html, category, \
     countries, tags, status, version, severity, area_lat, area_lon, area_radius_km, expires_at, \
     source_hash, created_at, updated_at, published_at";

impl SqliteStore {
    pub async fn article(&self, id: &str) -> AppResult<Option<ArticleRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Articles with this slug, in every locale.
    pub async fn articles_by_slug(&self, slug: &str) -> AppResult<Vec<ArticleRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE slug = ? ORDER BY locale"
        ))
        .bind(slug)
        .fetch_all(&self.read)
        .await?)
    }

    /// Editors' listing, newest change first.
    pub async fn list_articles(
        &self,
        status: Option<&str>,
        locale: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> AppResult<Vec<ArticleRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE 1 = 1"
        ));
        if let Some(s) = status {
            q.push(" AND status = ").push_bind(s.to_string());
        }
        if let Some(l) = locale {
            q.push(" AND locale = ").push_bind(l.to_string());
        }
        q.push(" ORDER BY updated_at DESC, id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(offset);
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }

    /// Articles in id order after `after_id`, for full index rebuilds.
    pub async fn articles_page(&self, after_id: &str, limit: i64) -> AppResult<Vec<ArticleRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id > ? ORDER BY id LIMIT ?"
        ))
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn article_count(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM articles")
            .fetch_one(&self.read)
            .await?;
        Ok(n)
    }

    /// Create or update the article `slug` + `locale` (or `id` when given), store a
    /// version snapshot and queue it for the indexer, all in one transaction.
    /// `source_hash` (imports) skips files whose content did not change.
    pub async fn save_article(
        &self,
        mode: SaveMode<'_>,
        f: &ArticleFields,
        body_html: &str,
        editor_id: Option<&str>,
        source_hash: Option<&str>,
    ) -> AppResult<(ArticleRecord, SaveOutcome)> {
        let now = now_str();
        let mut w = self.write.lock().await;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let existing: Option<ArticleRecord> = match mode {
            SaveMode::Update(id) => {
                sqlx::query_as(&format!(
                    "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ?"
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
            SaveMode::Create | SaveMode::Upsert => {
                sqlx::query_as(&format!(
                    "SELECT {ARTICLE_COLUMNS} FROM articles WHERE slug = ? AND locale = ?"
                ))
                .bind(&f.slug)
                .bind(&f.locale)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        match (mode, &existing) {
            (SaveMode::Update(_), None) => return Err(AppError::not_found("article")),
            (SaveMode::Create, Some(e)) => {
                return Err(AppError::Conflict(format!(
                    "an article with slug {:?} and locale {:?} exists (id {}); update it with PUT",
                    e.slug, e.locale, e.id
                )))
            }
            _ => {}
        }
        if let (Some(e), Some(h)) = (&existing, source_hash) {
            if e.source_hash.as_deref() == Some(h) {
                return Ok((e.clone(), SaveOutcome::Unchanged));
            }
        }
        let countries = serde_json::to_string(&f.countries).expect("strings serialise");
        let tags = serde_json::to_string(&f.tags).expect("strings serialise");
        let (article_id, version, outcome, published_at) = match &existing {
            Some(e) => {
                let published_at = match (&e.published_at, f.status.as_str()) {
                    (Some(p), _) => Some(p.clone()),
                    (None, "published") => Some(now.clone()),
                    (None, _) => None,
                };
                (
                    e.id.clone(),
                    e.version + 1,
                    SaveOutcome::Updated,
                    published_at,
                )
            }
            None => (
                Uuid::now_v7().to_string(),
                1,
                SaveOutcome::Created,
                (f.status == "published").then(|| now.clone()),
            ),
        };
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
        .bind(&article_id)
        .bind(&f.slug)
        .bind(&f.locale)
        .bind(&f.title)
        .bind(&f.summary)
        .bind(&f.body_markdown)
        .bind(body_html)
        .bind(&f.category)
        .bind(&countries)
        .bind(&tags)
        .bind(&f.status)
        .bind(version)
        .bind(&f.severity)
        .bind(f.area.map(|a| a.lat))
        .bind(f.area.map(|a| a.lon))
        .bind(f.area.map(|a| a.radius_km))
        .bind(&f.expires_at)
        .bind(source_hash)
        .bind(&now)
        .bind(&now)
        .bind(&published_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = res {
            if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) {
                return Err(AppError::Conflict(format!(
                    "an article with slug {:?} and locale {:?} already exists",
                    f.slug, f.locale
                )));
            }
            return Err(e.into());
        }
        sqlx::query(
            "INSERT INTO article_versions (article_id, version, snapshot, editor_id, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&article_id)
        .bind(version)
        .bind(serde_json::to_string(f).expect("fields serialise"))
        .bind(editor_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO index_queue (article_id, enqueued_at) VALUES (?, ?)")
            .bind(&article_id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        let saved: ArticleRecord = sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE id = ?"
        ))
        .bind(&article_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((saved, outcome))
    }

    pub async fn article_versions(&self, id: &str) -> AppResult<Vec<ArticleVersionRecord>> {
        Ok(sqlx::query_as(
            "SELECT article_id, version, snapshot, editor_id, created_at FROM article_versions \
             WHERE article_id = ? ORDER BY version DESC",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn article_version(
        &self,
        id: &str,
        version: i64,
    ) -> AppResult<Option<ArticleVersionRecord>> {
        Ok(sqlx::query_as(
            "SELECT article_id, version, snapshot, editor_id, created_at FROM article_versions \
             WHERE article_id = ? AND version = ?",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Ask the indexer for a full rebuild (used while another process holds the index).
    pub async fn enqueue_full_reindex(&self) -> AppResult<()> {
        let mut w = self.write.lock().await;
        sqlx::query("INSERT INTO index_queue (article_id, enqueued_at) VALUES ('*', ?)")
            .bind(now_str())
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Queue rows after `seq`, oldest first.
    pub async fn index_queue_after(&self, seq: i64, limit: i64) -> AppResult<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT seq, article_id FROM index_queue WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn max_index_seq(&self) -> AppResult<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM index_queue")
            .fetch_one(&self.read)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Forget queue rows the index has applied.
    pub async fn prune_index_queue(&self, upto: i64) -> AppResult<()> {
        let mut w = self.write.lock().await;
        sqlx::query("DELETE FROM index_queue WHERE seq <= ?")
            .bind(upto)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Queue published articles whose expiry has passed, once each.
    pub async fn queue_expired_articles(&self, now: &str) -> AppResult<usize> {
        let mut w = self.write.lock().await;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<(String,)> = sqlx::query_as(
            "UPDATE articles SET expiry_indexed = 1 WHERE status = 'published' AND expiry_indexed = 0 \
             AND expires_at IS NOT NULL AND expires_at <= ? RETURNING id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (id,) in &ids {
            sqlx::query("INSERT INTO index_queue (article_id, enqueued_at) VALUES (?, ?)")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    pub async fn record_search_gap(
        &self,
        query: &str,
        normalized: &str,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<()> {
        let mut w = self.write.lock().await;
        sqlx::query(
            "INSERT INTO search_gaps (query, normalized, locale, country, at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(query)
        .bind(normalized)
        .bind(locale)
        .bind(country)
        .bind(now_str())
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    /// The most frequent no-hit queries since `since`: (normalized query, an example as
    /// typed, count, last seen).
    pub async fn top_search_gaps(
        &self,
        since: &str,
        limit: i64,
    ) -> AppResult<Vec<(String, String, i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT normalized, MAX(query), COUNT(*) AS n, MAX(at) FROM search_gaps WHERE at >= ? \
             GROUP BY normalized ORDER BY n DESC, MAX(at) DESC LIMIT ?",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// Published safety alerts that have not expired.
    pub async fn active_alerts(&self, now: &str) -> AppResult<Vec<ArticleRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ARTICLE_COLUMNS} FROM articles WHERE category = 'safety_alert' AND status = 'published' \
             AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }
}
