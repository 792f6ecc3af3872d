//! Canned responses and the audit log.

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::*;
use crate::domain::model::*;
use crate::domain::ports::WorkflowStore;

const CANNED_COLUMNS: &str = "id, mission_id, title, body, created_by, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct CannedRow {
    id: Uuid,
    mission_id: String,
    title: String,
    body: String,
    created_by: Uuid,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl CannedRow {
    fn into_domain(self) -> CannedResponse {
        CannedResponse {
            id: CannedId(self.id),
            mission_id: MissionId::new(self.mission_id),
            title: self.title,
            body: self.body,
            created_by: AgentId(self.created_by),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    at: Timestamp,
    actor_kind: String,
    actor_id: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    mission_id: Option<String>,
    details: serde_json::Value,
}

impl AuditRow {
    fn into_domain(self) -> AppResult<AuditEntry> {
        let actor_id = self
            .actor_id
            .as_deref()
            .map(|s| Uuid::try_parse(s).map_err(|_| corrupt("audit actor id", s)))
            .transpose()?;
        let actor = match (self.actor_kind.as_str(), actor_id) {
            ("citizen", Some(id)) => Actor::Citizen(CitizenId(id)),
            ("agent", Some(id)) => Actor::Agent(AgentId(id)),
            ("system", _) => Actor::System,
            (other, _) => return Err(corrupt("audit actor", other)),
        };
        Ok(AuditEntry {
            id: self.id,
            at: self.at,
            actor,
            action: self.action,
            target: self.target_kind.zip(self.target_id),
            mission_id: self.mission_id.map(MissionId::new),
            details: self.details,
        })
    }
}

#[async_trait]
impl WorkflowStore for PgStore {
    async fn canned_responses(&self, missions: &[MissionId]) -> AppResult<Vec<CannedResponse>> {
        let ms: Vec<&str> = missions.iter().map(MissionId::as_str).collect();
        let rows: Vec<CannedRow> = sqlx::query_as(&format!(
            "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE mission_id = ANY($1) ORDER BY mission_id, title"
        ))
        .bind(ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(CannedRow::into_domain).collect())
    }

    async fn canned_response(&self, id: CannedId) -> AppResult<Option<CannedResponse>> {
        let row: Option<CannedRow> = sqlx::query_as(&format!(
            "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(CannedRow::into_domain))
    }

    async fn save_canned_response(&self, c: &CannedResponse, audit: &AuditEntry) -> AppResult<()> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO canned_responses (id, mission_id, title, body, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, \
             updated_at = excluded.updated_at",
        )
        .bind(c.id.0)
        .bind(c.mission_id.as_str())
        .bind(&c.title)
        .bind(&c.body)
        .bind(c.created_by.0)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await;
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(AppError::Conflict(format!(
                    "mission {} already has a canned response titled {:?}",
                    c.mission_id, c.title
                )))
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        insert_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_canned_response(&self, id: CannedId, audit: &AuditEntry) -> AppResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM canned_responses WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn audit(&self, entry: &AuditEntry) -> AppResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, std::slice::from_ref(entry)).await?;
        Ok(())
    }

    async fn audit_entries(&self, f: &AuditFilter) -> AppResult<Vec<AuditEntry>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details \
             FROM audit_log WHERE true",
        );
        if let Some(a) = &f.action {
            q.push(" AND action = ").push_bind(a.clone());
        }
        if let Some(a) = &f.actor_id {
            q.push(" AND actor_id = ").push_bind(a.clone());
        }
        if let Some(t) = &f.target_id {
            q.push(" AND target_id = ").push_bind(t.clone());
        }
        if let Some(b) = &f.before {
            q.push(" AND id < ").push_bind(*b);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        let rows: Vec<AuditRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(AuditRow::into_domain).collect()
    }
}
