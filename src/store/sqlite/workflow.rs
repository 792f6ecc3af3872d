//! Canned responses and the audit log.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::*;
use crate::domain::model::*;
use crate::domain::ports::WorkflowStore;

const CANNED_COLUMNS: &str = "id, mission_id, title, body, created_by, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct CannedRow {
    id: String,
    mission_id: String,
    title: String,
    body: String,
    created_by: String,
    created_at: String,
    updated_at: String,
}

impl CannedRow {
    fn into_domain(self) -> AppResult<CannedResponse> {
        Ok(CannedResponse {
            id: CannedId(uuid(&self.id)?),
            mission_id: MissionId::new(self.mission_id),
            title: self.title,
            body: self.body,
            created_by: AgentId(uuid(&self.created_by)?),
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: String,
    actor_kind: String,
    actor_id: Option<String>,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    mission_id: Option<String>,
    details: String,
}

impl AuditRow {
    fn into_domain(self) -> AppResult<AuditEntry> {
        let actor_id = self.actor_id.as_deref().map(uuid).transpose()?;
        let actor = match (self.actor_kind.as_str(), actor_id) {
            ("citizen", Some(id)) => Actor::Citizen(CitizenId(id)),
            ("agent", Some(id)) => Actor::Agent(AgentId(id)),
            ("system", _) => Actor::System,
            (other, _) => return Err(corrupt("audit actor", other)),
        };
        Ok(AuditEntry {
            id: uuid(&self.id)?,
            at: time(&self.at)?,
            actor,
            action: self.action,
            target: self.target_kind.zip(self.target_id),
            mission_id: self.mission_id.map(MissionId::new),
            details: json("audit details", &self.details)?,
        })
    }
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn canned_responses(&self, missions: &[MissionId]) -> AppResult<Vec<CannedResponse>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE mission_id IN ("
        ));
        let mut sep = q.separated(", ");
        sep.push_bind("\u{0}");
        for m in missions {
            sep.push_bind(m.as_str().to_string());
        }
        q.push(") ORDER BY mission_id, title");
        let rows: Vec<CannedRow> = q.build_query_as().fetch_all(&self.read).await?;
        rows.into_iter().map(CannedRow::into_domain).collect()
    }

    async fn canned_response(&self, id: CannedId) -> AppResult<Option<CannedResponse>> {
        let row: Option<CannedRow> = sqlx::query_as(&format!(
            "SELECT {CANNED_COLUMNS} FROM canned_responses WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(CannedRow::into_domain).transpose()
    }

    async fn save_canned_response(&self, c: &CannedResponse, audit: &AuditEntry) -> AppResult<()> {
        write_tx!(self, |tx| {
            let res = sqlx::query(
                "INSERT INTO canned_responses (id, mission_id, title, body, created_by, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, body = excluded.body, \
                 updated_at = excluded.updated_at",
            )
            .bind(c.id.to_string())
            .bind(c.mission_id.as_str())
            .bind(&c.title)
            .bind(&c.body)
            .bind(c.created_by.to_string())
            .bind(fmt_time(c.created_at))
            .bind(fmt_time(c.updated_at))
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
            insert_audit(&mut tx, audit).await?;
        });
        Ok(())
    }

    async fn delete_canned_response(&self, id: CannedId, audit: &AuditEntry) -> AppResult<bool> {
        Ok(write_tx!(self, |tx| {
            let r = sqlx::query("DELETE FROM canned_responses WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, audit).await?;
            r.rows_affected() > 0
        }))
    }

    async fn audit(&self, entry: &AuditEntry) -> AppResult<()> {
        let mut w = self.writer().await;
        insert_audit(&mut w, entry).await?;
        Ok(())
    }

    async fn audit_entries(&self, f: &AuditFilter) -> AppResult<Vec<AuditEntry>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details \
             FROM audit_log WHERE 1 = 1",
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
            q.push(" AND id < ").push_bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        let rows: Vec<AuditRow> = q.build_query_as().fetch_all(&self.read).await?;
        rows.into_iter().map(AuditRow::into_domain).collect()
    }
}
