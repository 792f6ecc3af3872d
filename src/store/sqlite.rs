//! The SQLite implementation: one file under the data dir, WAL, `synchronous=FULL`,
//! foreign keys on, a busy timeout for the CLI writing while the server runs.
//!
//! Reads go through a small pool. Every write of this process goes through one
//! connection behind an async mutex, so writers never race each other for SQLite's
//! single write lock (which would turn into `SQLITE_BUSY` on deferred transactions),
//! and the message writer can commit many messages per fsync.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::now_str;
use super::records::*;
use crate::error::{AppError, AppResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const CONVERSATION_COLUMNS: &str =
    "c.id, c.mission_id, c.citizen_id, z.display_name AS citizen_name, \
     z.country AS citizen_country, c.channel, c.status, c.priority, c.assignee_id, c.last_seq, \
     c.created_at, c.updated_at, c.labels";

const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
     sender_name, kind, body, attachments, created_at";

/// The write connection, held while a write (or a batch of them) runs.
pub type WriteConn<'a> = MutexGuard<'a, SqliteConnection>;

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) read: SqlitePool,
    pub(super) write: std::sync::Arc<Mutex<SqliteConnection>>,
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
}

impl SqliteStore {
    /// Open (creating if needed) `DATA_DIR/lingshi.db` and apply pending migrations.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let path = data_dir.join("lingshi.db");
        let opts = options(&path);
        let mut write = SqliteConnection::connect_with(&opts)
            .await
            .with_context(|| format!("cannot open database {}", path.display()))?;
        MIGRATOR
            .run(&mut write)
            .await
            .context("cannot apply database migrations")?;
        let read = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .context("cannot open database read pool")?;
        Ok(SqliteStore {
            read,
            write: std::sync::Arc::new(Mutex::new(write)),
        })
    }

    /// The database answers (readiness).
    pub async fn ping(&self) -> AppResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        let mut w = self.write.lock().await;
        // Fold the WAL back into the main file so a restart opens fast.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *w)
            .await;
    }

    pub async fn writer(&self) -> WriteConn<'_> {
        self.write.lock().await
    }

    // ----- agents -------------------------------------------------------------------

    pub async fn create_agent(
        &self,
        email: &str,
        name: &str,
        role: &str,
        password_hash: &str,
        capacity: i64,
        missions: &[String],
    ) -> AppResult<String> {
        let id = Uuid::now_v7().to_string();
        let now = now_str();
        let mut w = self.writer().await;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let res = sqlx::query(
            "INSERT INTO agents (id, email, name, role, password_hash, capacity, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(email)
        .bind(name)
        .bind(role)
        .bind(password_hash)
        .bind(capacity)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = res {
            if is_unique_violation(&e) {
                return Err(AppError::Conflict(format!(
                    "an agent with email {email} already exists"
                )));
            }
            return Err(e.into());
        }
        for m in missions {
            sqlx::query(
                "INSERT OR IGNORE INTO agent_missions (agent_id, mission_id) VALUES (?, ?)",
            )
            .bind(&id)
            .bind(m)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn agent_by_email(&self, email: &str) -> AppResult<Option<AgentWithMissions>> {
        let agent: Option<AgentRecord> = sqlx::query_as(
            "SELECT id, email, name, role, password_hash, capacity, presence FROM agents WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.read)
        .await?;
        self.with_missions(agent).await
    }

    pub async fn agent_by_id(&self, id: &str) -> AppResult<Option<AgentWithMissions>> {
        let agent: Option<AgentRecord> = sqlx::query_as(
            "SELECT id, email, name, role, password_hash, capacity, presence FROM agents WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        self.with_missions(agent).await
    }

    async fn with_missions(
        &self,
        agent: Option<AgentRecord>,
    ) -> AppResult<Option<AgentWithMissions>> {
        let Some(agent) = agent else { return Ok(None) };
        let missions: Vec<(String,)> = sqlx::query_as(
            "SELECT mission_id FROM agent_missions WHERE agent_id = ? ORDER BY mission_id",
        )
        .bind(&agent.id)
        .fetch_all(&self.read)
        .await?;
        Ok(Some(AgentWithMissions {
            agent,
            missions: missions.into_iter().map(|(m,)| m).collect(),
        }))
    }

    // ----- citizens -----------------------------------------------------------------

    pub async fn create_guest(
        &self,
        display_name: &str,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<CitizenRecord> {
        let id = Uuid::now_v7().to_string();
        let now = now_str();
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO citizens (id, display_name, locale, country, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(display_name)
        .bind(locale)
        .bind(country)
        .bind(&now)
        .bind(&now)
        .execute(&mut *w)
        .await?;
        Ok(CitizenRecord {
            id,
            external_sub: None,
            display_name: display_name.to_string(),
            locale: locale.map(str::to_string),
            country: country.map(str::to_string),
        })
    }

    /// The citizen behind an identity-token `sub`, created on first sight. Profile
    /// fields given now replace the stored ones; absent ones keep what is stored.
    pub async fn upsert_citizen_by_sub(
        &self,
        sub: &str,
        display_name: Option<&str>,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<CitizenRecord> {
        let now = now_str();
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (external_sub) DO UPDATE SET \
               display_name = COALESCE(?, display_name), \
               locale = COALESCE(?, locale), \
               country = COALESCE(?, country), \
               updated_at = excluded.updated_at",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(sub)
        .bind(display_name.unwrap_or("Citizen"))
        .bind(locale)
        .bind(country)
        .bind(&now)
        .bind(&now)
        .bind(display_name)
        .bind(locale)
        .bind(country)
        .execute(&mut *w)
        .await?;
        let c: CitizenRecord = sqlx::query_as(
            "SELECT id, external_sub, display_name, locale, country FROM citizens WHERE external_sub = ?",
        )
        .bind(sub)
        .fetch_one(&mut *w)
        .await?;
        Ok(c)
    }

    pub async fn citizen_by_id(&self, id: &str) -> AppResult<Option<CitizenRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, external_sub, display_name, locale, country FROM citizens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    // ----- sessions -----------------------------------------------------------------

    pub async fn create_session(
        &self,
        token_hash: &str,
        kind: &str,
        subject_id: &str,
        expires_at: &str,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO sessions (token_hash, kind, subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(kind)
        .bind(subject_id)
        .bind(now_str())
        .bind(expires_at)
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> AppResult<Option<SessionRecord>> {
        Ok(sqlx::query_as(
            "SELECT kind, subject_id, expires_at, revoked_at FROM sessions WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    pub async fn revoke_session(&self, token_hash: &str) -> AppResult<bool> {
        let mut w = self.writer().await;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(now_str())
        .bind(token_hash)
        .execute(&mut *w)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    // ----- conversations ------------------------------------------------------------

    pub async fn conversation(&self, id: &str) -> AppResult<Option<ConversationRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    pub async fn list_conversations(
        &self,
        f: &ConversationFilter,
    ) -> AppResult<Vec<ConversationRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE 1 = 1"
        ));
        if let Some(cid) = &f.citizen_id {
            q.push(" AND c.citizen_id = ").push_bind(cid.clone());
        }
        if let Some(missions) = &f.missions {
            q.push(" AND (c.mission_id IN (");
            let mut sep = q.separated(", ");
            sep.push_bind("\u{0}"); // never a mission id; keeps the list non-empty
            for m in missions {
                sep.push_bind(m.clone());
            }
            q.push(")");
            if let Some(a) = &f.visible_assignee {
                q.push(" OR c.assignee_id = ").push_bind(a.clone());
            }
            q.push(")");
        }
        if let Some(s) = &f.status {
            q.push(" AND c.status = ").push_bind(s.clone());
        }
        if f.active_only {
            q.push(" AND c.status != 'resolved'");
        }
        if let Some(a) = &f.assignee_id {
            q.push(" AND c.assignee_id = ").push_bind(a.clone());
        }
        if let Some(p) = &f.priority {
            q.push(" AND c.priority = ").push_bind(p.clone());
        }
        if let Some(l) = &f.label {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(c.labels) WHERE json_each.value = ")
                .push_bind(l.clone())
                .push(")");
        }
        if f.queue_order {
            if let Some((rank, id)) = &f.after {
                q.push(" AND (c.priority_rank < ")
                    .push_bind(*rank)
                    .push(" OR (c.priority_rank = ")
                    .push_bind(*rank)
                    .push(" AND c.id > ")
                    .push_bind(id.clone())
                    .push("))");
            }
            q.push(" ORDER BY c.priority_rank DESC, c.id ASC LIMIT ");
        } else {
            if let Some((_, id)) = &f.after {
                q.push(" AND c.id < ").push_bind(id.clone());
            }
            q.push(" ORDER BY c.id DESC LIMIT ");
        }
        q.push_bind(f.limit);
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }

    /// The citizen's newest conversation that is not resolved (a read, no lock).
    pub async fn open_conversation_of(
        &self,
        citizen_id: &str,
    ) -> AppResult<Option<ConversationRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.citizen_id = ? AND c.status != 'resolved' ORDER BY c.id DESC LIMIT 1"
        ))
        .bind(citizen_id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// The citizen's newest conversation that is not resolved, else a new one.
    /// Runs under the write lock so two devices sending at once share one conversation.
    pub async fn find_or_create_conversation(
        &self,
        citizen_id: &str,
        mission_id: &str,
        channel: &str,
    ) -> AppResult<(ConversationRecord, bool)> {
        let mut w = self.writer().await;
        let existing: Option<ConversationRecord> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.citizen_id = ? AND c.status != 'resolved' ORDER BY c.id DESC LIMIT 1"
        ))
        .bind(citizen_id)
        .fetch_optional(&mut *w)
        .await?;
        if let Some(c) = existing {
            return Ok((c, false));
        }
        let id = Uuid::now_v7().to_string();
        let now = now_str();
        sqlx::query(
            "INSERT INTO conversations (id, mission_id, citizen_id, channel, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 'open', ?, ?)",
        )
        .bind(&id)
        .bind(mission_id)
        .bind(citizen_id)
        .bind(channel)
        .bind(&now)
        .bind(&now)
        .execute(&mut *w)
        .await?;
        let c = fetch_conversation(&mut w, &id)
            .await?
            .context("conversation vanished after insert")?;
        Ok((c, true))
    }

    /// Change routing/workflow fields of a conversation. `Ok(None)` when
    /// `only_if_waiting` was set and the conversation was no longer waiting.
    pub async fn update_conversation(
        &self,
        id: &str,
        u: &ConversationUpdate<'_>,
    ) -> AppResult<Option<ConversationRecord>> {
        let mut w = self.writer().await;
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE conversations SET updated_at = ");
        q.push_bind(now_str());
        if let Some(s) = u.status {
            q.push(", status = ").push_bind(s.to_string());
        }
        if let Some(a) = u.assignee {
            q.push(", assignee_id = ").push_bind(a.map(str::to_string));
        }
        if let Some(m) = u.mission_id {
            q.push(", mission_id = ").push_bind(m.to_string());
        }
        if let Some(p) = u.priority {
            q.push(", priority = ")
                .push_bind(p.to_string())
                .push(", priority_rank = ")
                .push_bind(priority_rank(p));
        }
        if let Some(l) = u.labels {
            q.push(", labels = ").push_bind(l.to_string());
        }
        q.push(" WHERE id = ").push_bind(id.to_string());
        if u.only_if_waiting {
            q.push(" AND status = 'open' AND assignee_id IS NULL");
        }
        let r = q.build().execute(&mut *w).await?;
        if r.rows_affected() == 0 {
            if u.only_if_waiting {
                return Ok(None);
            }
            return Err(AppError::not_found("conversation"));
        }
        Ok(fetch_conversation(&mut w, id).await?)
    }

    /// Agents (role `agent`) serving `mission`, with their capacity and current load.
    pub async fn agent_loads(&self, mission: &str) -> AppResult<Vec<AgentLoad>> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.capacity, a.presence, \
               (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = a.id AND c.status != 'resolved') AS load \
             FROM agents a JOIN agent_missions m ON m.agent_id = a.id \
             WHERE m.mission_id = ? AND a.role = 'agent' ORDER BY a.id",
        )
        .bind(mission)
        .fetch_all(&self.read)
        .await?)
    }

    /// Conversations of `mission` waiting for an agent, in queue order.
    pub async fn waiting_conversations(
        &self,
        mission: &str,
        limit: i64,
    ) -> AppResult<Vec<ConversationRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.mission_id = ? AND c.status = 'open' AND c.assignee_id IS NULL \
             ORDER BY c.priority_rank DESC, c.id ASC LIMIT ?"
        ))
        .bind(mission)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    pub async fn set_agent_presence(&self, agent_id: &str, presence: &str) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query("UPDATE agents SET presence = ?, updated_at = ? WHERE id = ?")
            .bind(presence)
            .bind(now_str())
            .bind(agent_id)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    pub async fn set_agent_capacity(&self, agent_id: &str, capacity: i64) -> AppResult<bool> {
        let mut w = self.writer().await;
        let r = sqlx::query("UPDATE agents SET capacity = ?, updated_at = ? WHERE id = ?")
            .bind(capacity)
            .bind(now_str())
            .bind(agent_id)
            .execute(&mut *w)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Staff of a mission (for presence lists and assignment pickers).
    pub async fn mission_staff(&self, mission: &str) -> AppResult<Vec<AgentRecord>> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.email, a.name, a.role, a.password_hash, a.capacity, a.presence FROM agents a \
             JOIN agent_missions m ON m.agent_id = a.id WHERE m.mission_id = ? ORDER BY a.name",
        )
        .bind(mission)
        .fetch_all(&self.read)
        .await?)
    }

    // ----- canned responses ---------------------------------------------------------

    pub async fn canned_responses(&self, missions: &[String]) -> AppResult<Vec<CannedResponse>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, mission_id, title, body, created_by, created_at, updated_at FROM canned_responses WHERE mission_id IN (",
        );
        let mut sep = q.separated(", ");
        sep.push_bind("\u{0}");
        for m in missions {
            sep.push_bind(m.clone());
        }
        q.push(") ORDER BY mission_id, title");
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }

    pub async fn canned_response(&self, id: &str) -> AppResult<Option<CannedResponse>> {
        Ok(sqlx::query_as(
            "SELECT id, mission_id, title, body, created_by, created_at, updated_at FROM canned_responses WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Insert (`id` None) or update a canned response; titles are unique per mission.
    pub async fn save_canned_response(
        &self,
        id: Option<&str>,
        mission_id: &str,
        title: &str,
        body: &str,
        author: &str,
    ) -> AppResult<CannedResponse> {
        let now = now_str();
        let mut w = self.writer().await;
        let new_id = Uuid::now_v7().to_string();
        let res = match id {
            None => {
                sqlx::query(
                    "INSERT INTO canned_responses (id, mission_id, title, body, created_by, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&new_id)
                .bind(mission_id)
                .bind(title)
                .bind(body)
                .bind(author)
                .bind(&now)
                .bind(&now)
                .execute(&mut *w)
                .await
            }
            Some(id) => {
                sqlx::query("UPDATE canned_responses SET title = ?, body = ?, updated_at = ? WHERE id = ?")
                    .bind(title)
                    .bind(body)
                    .bind(&now)
                    .bind(id)
                    .execute(&mut *w)
                    .await
            }
        };
        match res {
            Err(e) if is_unique_violation(&e) => {
                return Err(AppError::Conflict(format!(
                    "mission {mission_id} already has a canned response titled {title:?}"
                )))
            }
            Err(e) => return Err(e.into()),
            Ok(r) if r.rows_affected() == 0 => return Err(AppError::not_found("canned response")),
            Ok(_) => {}
        }
        let id = id.unwrap_or(&new_id);
        Ok(sqlx::query_as(
            "SELECT id, mission_id, title, body, created_by, created_at, updated_at FROM canned_responses WHERE id = ?",
        )
        .bind(id)
        .fetch_one(&mut *w)
        .await?)
    }

    pub async fn delete_canned_response(&self, id: &str) -> AppResult<bool> {
        let mut w = self.writer().await;
        let r = sqlx::query("DELETE FROM canned_responses WHERE id = ?")
            .bind(id)
            .execute(&mut *w)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ----- audit log ----------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub async fn audit(
        &self,
        actor_kind: &str,
        actor_id: Option<&str>,
        action: &str,
        target_kind: Option<&str>,
        target_id: Option<&str>,
        mission_id: Option<&str>,
        details: &serde_json::Value,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(now_str())
        .bind(actor_kind)
        .bind(actor_id)
        .bind(action)
        .bind(target_kind)
        .bind(target_id)
        .bind(mission_id)
        .bind(details.to_string())
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    /// Audit entries, newest first, optionally filtered.
    pub async fn audit_entries(
        &self,
        action: Option<&str>,
        actor_id: Option<&str>,
        target_id: Option<&str>,
        before_id: Option<&str>,
        limit: i64,
    ) -> AppResult<Vec<AuditRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details FROM audit_log WHERE 1 = 1",
        );
        if let Some(a) = action {
            q.push(" AND action = ").push_bind(a.to_string());
        }
        if let Some(a) = actor_id {
            q.push(" AND actor_id = ").push_bind(a.to_string());
        }
        if let Some(t) = target_id {
            q.push(" AND target_id = ").push_bind(t.to_string());
        }
        if let Some(b) = before_id {
            q.push(" AND id < ").push_bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }

    // ----- attachments --------------------------------------------------------------

    pub async fn insert_attachment(&self, a: &AttachmentRecord) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO attachments (id, sha256, content_type, bytes, width, height, thumb_sha256, \
             thumb_content_type, uploader_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(&a.sha256)
        .bind(&a.content_type)
        .bind(a.bytes)
        .bind(a.width)
        .bind(a.height)
        .bind(&a.thumb_sha256)
        .bind(&a.thumb_content_type)
        .bind(&a.uploader_id)
        .bind(&a.created_at)
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    pub async fn attachment(&self, id: &str) -> AppResult<Option<AttachmentRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, sha256, content_type, bytes, width, height, thumb_sha256, thumb_content_type, \
             uploader_id, created_at FROM attachments WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Conversations whose messages hold the attachment.
    pub async fn attachment_conversations(&self, id: &str) -> AppResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT conversation_id FROM message_attachments WHERE attachment_id = ?",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }

    /// Delete uploads older than `cutoff` that no message references; returns the file
    /// hashes no longer used by any upload (the caller removes those files).
    pub async fn collect_unreferenced_attachments(&self, cutoff: &str) -> AppResult<Vec<String>> {
        let mut w = self.writer().await;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await?;
        let doomed: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, sha256, thumb_sha256 FROM attachments a WHERE created_at < ? \
             AND NOT EXISTS (SELECT 1 FROM message_attachments m WHERE m.attachment_id = a.id) LIMIT 1000",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut hashes = Vec::new();
        for (id, sha, thumb) in &doomed {
            sqlx::query("DELETE FROM attachments WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            hashes.push(sha.clone());
            hashes.push(thumb.clone());
        }
        hashes.sort();
        hashes.dedup();
        let mut unused = Vec::new();
        for h in hashes {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM attachments WHERE sha256 = ? OR thumb_sha256 = ?",
            )
            .bind(&h)
            .bind(&h)
            .fetch_one(&mut *tx)
            .await?;
            if n == 0 {
                unused.push(h);
            }
        }
        tx.commit().await?;
        Ok(unused)
    }

    // ----- messages -----------------------------------------------------------------

    pub async fn messages(
        &self,
        conversation_id: &str,
        page: MessagePage,
    ) -> AppResult<Vec<MessageRecord>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = "
        ));
        q.push_bind(conversation_id.to_string());
        if !page.include_notes {
            q.push(" AND kind != 'note'");
        }
        if let Some(a) = page.after_seq {
            q.push(" AND seq > ").push_bind(a);
        }
        if let Some(b) = page.before_seq {
            q.push(" AND seq < ").push_bind(b);
        }
        // `before_seq` alone pages backwards from the newest: take the last `limit`.
        let backwards = page.before_seq.is_some() && page.after_seq.is_none();
        q.push(if backwards {
            " ORDER BY seq DESC LIMIT "
        } else {
            " ORDER BY seq ASC LIMIT "
        })
        .push_bind(page.limit);
        let mut rows: Vec<MessageRecord> = q.build_query_as().fetch_all(&self.read).await?;
        if backwards {
            rows.reverse();
        }
        Ok(rows)
    }

    /// Commit `batch` in one transaction: one fsync for all of them. Each item gets its
    /// own result; an item that cannot be stored (unknown conversation) does not stop
    /// the others. An `Err` of the whole call means nothing was committed.
    ///
    /// The statements are batched too (a handful per call, whatever the batch size):
    /// with SQLite every statement is a round trip to the driver's thread, and the
    /// writer is the one place where all messages queue.
    pub async fn commit_messages(
        &self,
        conn: &mut SqliteConnection,
        batch: &[&NewMessage],
    ) -> Result<Vec<AppResult<Committed>>, sqlx::Error> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;

        // Messages already stored under these senders' client_msg_ids.
        let mut rows: Vec<MessageRecord> = Vec::new();
        let keyed: Vec<(&str, &str)> = batch
            .iter()
            .filter_map(|m| Some((m.sender_id.as_deref()?, m.client_msg_id.as_deref()?)))
            .collect();
        if !keyed.is_empty() {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE client_msg_id IS NOT NULL AND sender_id IN ("
            ));
            let mut senders: Vec<&str> = keyed.iter().map(|k| k.0).collect();
            senders.sort_unstable();
            senders.dedup();
            let mut sep = q.separated(", ");
            for s in senders {
                sep.push_bind(s.to_string());
            }
            q.push(") AND client_msg_id IN (");
            let mut sep = q.separated(", ");
            for (_, c) in &keyed {
                sep.push_bind(c.to_string());
            }
            q.push(")");
            rows = q.build_query_as().fetch_all(&mut *tx).await?;
        }
        let stored: HashMap<(&str, &str), &MessageRecord> = rows
            .iter()
            .filter_map(|m| Some(((m.sender_id.as_deref()?, m.client_msg_id.as_deref()?), m)))
            .collect();

        // Every conversation the batch touches, in one query.
        let mut conv_ids: Vec<&str> = batch.iter().map(|m| m.conversation_id.as_str()).collect();
        conv_ids.extend(stored.values().map(|m| m.conversation_id.as_str()));
        conv_ids.sort_unstable();
        conv_ids.dedup();
        let mut convs: HashMap<String, ConversationRecord> = HashMap::new();
        for chunk in conv_ids.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id IN ("
            ));
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id.to_string());
            }
            q.push(")");
            let rows: Vec<ConversationRecord> = q.build_query_as().fetch_all(&mut *tx).await?;
            for c in rows {
                convs.insert(c.id.clone(), c);
            }
        }

        // Number the new messages in order.
        let mut out: Vec<AppResult<Committed>> = Vec::with_capacity(batch.len());
        let mut fresh: Vec<(usize, &NewMessage)> = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        // Keys committed earlier in this very batch (a quick resend), by position in `out`.
        let mut earlier: HashMap<(&str, &str), usize> = HashMap::new();
        for m in batch {
            let key = m.sender_id.as_deref().zip(m.client_msg_id.as_deref());
            let prior = key.and_then(|k| {
                stored.get(&k).map(|r| (*r).clone()).or_else(|| {
                    earlier
                        .get(&k)
                        .and_then(|i| out[*i].as_ref().ok())
                        .map(|c| c.message.clone())
                })
            });
            if let Some(existing) = prior {
                let Some(conversation) = convs.get(&existing.conversation_id).cloned() else {
                    out.push(Err(AppError::not_found("conversation")));
                    continue;
                };
                out.push(Ok(Committed {
                    message: existing,
                    conversation,
                    duplicate: true,
                    reopened: false,
                }));
                continue;
            }
            let Some(conv) = convs.get_mut(&m.conversation_id) else {
                out.push(Err(AppError::not_found("conversation")));
                continue;
            };
            if !m.access.allows(conv) {
                out.push(Err(AppError::forbidden("this conversation is not yours")));
                continue;
            }
            let now = now_str();
            let seq = conv.last_seq + 1;
            let mut reopened = false;
            if m.reopen_if_resolved && conv.status == "resolved" {
                // Back to the queue: auto-assignment picks the agent again.
                conv.status = "open".into();
                conv.assignee_id = None;
                reopened = true;
            }
            conv.last_seq = seq;
            conv.updated_at = now.clone();
            if !touched.contains(&conv.id) {
                touched.push(conv.id.clone());
            }
            let message = MessageRecord {
                id: Uuid::now_v7().to_string(),
                conversation_id: m.conversation_id.clone(),
                seq,
                client_msg_id: m.client_msg_id.clone(),
                sender_kind: m.sender_kind.to_string(),
                sender_id: m.sender_id.clone(),
                sender_name: m.sender_name.clone(),
                kind: m.kind.to_string(),
                body: m.body.clone(),
                attachments: m.attachments.clone(),
                created_at: now,
            };
            if let Some(k) = key {
                earlier.insert(k, out.len());
            }
            fresh.push((out.len(), m));
            out.push(Ok(Committed {
                message,
                conversation: conv.clone(),
                duplicate: false,
                reopened,
            }));
        }

        // Insert the new messages, 500 rows per statement.
        for chunk in fresh.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
                 sender_name, kind, body, attachments, created_at) ",
            );
            q.push_values(chunk, |mut row, (i, _)| {
                let m = &out[*i].as_ref().expect("fresh items are Ok").message;
                row.push_bind(&m.id)
                    .push_bind(&m.conversation_id)
                    .push_bind(m.seq)
                    .push_bind(&m.client_msg_id)
                    .push_bind(&m.sender_kind)
                    .push_bind(&m.sender_id)
                    .push_bind(&m.sender_name)
                    .push_bind(&m.kind)
                    .push_bind(&m.body)
                    .push_bind(&m.attachments)
                    .push_bind(&m.created_at);
            });
            q.build().execute(&mut *tx).await?;
        }
        let links: Vec<(String, String, String)> = fresh
            .iter()
            .flat_map(|(i, m)| {
                let msg = &out[*i].as_ref().expect("fresh items are Ok").message;
                m.attachment_ids
                    .iter()
                    .map(|a| (msg.id.clone(), a.clone(), msg.conversation_id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for chunk in links.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR IGNORE INTO message_attachments (message_id, attachment_id, conversation_id) ",
            );
            q.push_values(chunk, |mut row, (m, a, c)| {
                row.push_bind(m.clone())
                    .push_bind(a.clone())
                    .push_bind(c.clone());
            });
            q.build().execute(&mut *tx).await?;
        }

        // Each touched conversation once, with its final state.
        for chunk in touched.chunks(500) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("WITH v(id, last_seq, status, assignee_id, updated_at) AS (");
            q.push_values(chunk, |mut row, id| {
                let c = &convs[id];
                row.push_bind(c.id.clone())
                    .push_bind(c.last_seq)
                    .push_bind(c.status.clone())
                    .push_bind(c.assignee_id.clone())
                    .push_bind(c.updated_at.clone());
            });
            q.push(
                ") UPDATE conversations SET last_seq = v.last_seq, status = v.status, \
                 assignee_id = v.assignee_id, updated_at = v.updated_at FROM v WHERE conversations.id = v.id",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Remember how far a participant has read (never moves backwards).
    pub async fn set_read(
        &self,
        conversation_id: &str,
        reader_id: &str,
        seq: i64,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO read_markers (conversation_id, reader_id, seq, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (conversation_id, reader_id) DO UPDATE SET seq = MAX(seq, excluded.seq), \
             updated_at = excluded.updated_at",
        )
        .bind(conversation_id)
        .bind(reader_id)
        .bind(seq)
        .bind(now_str())
        .execute(&mut *w)
        .await?;
        Ok(())
    }
}

async fn fetch_conversation(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<ConversationRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id = ?"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Queue rank of a priority: higher is served first.
pub fn priority_rank(p: &str) -> i64 {
    match p {
        "emergency" => 2,
        "urgent" => 1,
        _ => 0,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
