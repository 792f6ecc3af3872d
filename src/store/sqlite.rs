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
     c.created_at, c.updated_at";

const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
     sender_name, kind, body, attachments, created_at";

/// The write connection, held while a write (or a batch of them) runs.
pub type WriteConn<'a> = MutexGuard<'a, SqliteConnection>;

#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: std::sync::Arc<Mutex<SqliteConnection>>,
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
        missions: &[String],
    ) -> AppResult<String> {
        let id = Uuid::now_v7().to_string();
        let now = now_str();
        let mut w = self.writer().await;
        let mut tx = w.begin().await?;
        let res = sqlx::query(
            "INSERT INTO agents (id, email, name, role, password_hash, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(email)
        .bind(name)
        .bind(role)
        .bind(password_hash)
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
            "SELECT id, email, name, role, password_hash, capacity FROM agents WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.read)
        .await?;
        self.with_missions(agent).await
    }

    pub async fn agent_by_id(&self, id: &str) -> AppResult<Option<AgentWithMissions>> {
        let agent: Option<AgentRecord> = sqlx::query_as(
            "SELECT id, email, name, role, password_hash, capacity FROM agents WHERE id = ?",
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
        if let Some(b) = &f.before_id {
            q.push(" AND c.id < ").push_bind(b.clone());
        }
        q.push(" ORDER BY c.id DESC LIMIT ").push_bind(f.limit);
        Ok(q.build_query_as().fetch_all(&self.read).await?)
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

    /// Change routing/workflow fields of a conversation; `None` keeps a field.
    pub async fn update_conversation(
        &self,
        id: &str,
        status: Option<&str>,
        assignee: Option<Option<&str>>,
        mission_id: Option<&str>,
    ) -> AppResult<ConversationRecord> {
        let mut w = self.writer().await;
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("UPDATE conversations SET updated_at = ");
        q.push_bind(now_str());
        if let Some(s) = status {
            q.push(", status = ").push_bind(s.to_string());
        }
        if let Some(a) = assignee {
            q.push(", assignee_id = ").push_bind(a.map(str::to_string));
        }
        if let Some(m) = mission_id {
            q.push(", mission_id = ").push_bind(m.to_string());
        }
        q.push(" WHERE id = ").push_bind(id.to_string());
        let r = q.build().execute(&mut *w).await?;
        if r.rows_affected() == 0 {
            return Err(AppError::not_found("conversation"));
        }
        fetch_conversation(&mut w, id)
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))
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

    pub async fn message_by_client_id(
        &self,
        sender_id: &str,
        client_msg_id: &str,
    ) -> AppResult<Option<MessageRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
        ))
        .bind(sender_id)
        .bind(client_msg_id)
        .fetch_optional(&self.read)
        .await?)
    }

    /// Commit `batch` in one transaction: one fsync for all of them. Each item gets its
    /// own result; an item that cannot be stored (unknown conversation) does not stop
    /// the others. An `Err` of the whole call means nothing was committed.
    pub async fn commit_messages(
        &self,
        conn: &mut SqliteConnection,
        batch: &[&NewMessage],
    ) -> Result<Vec<AppResult<Committed>>, sqlx::Error> {
        let mut tx = conn.begin().await?;
        let mut convs: HashMap<String, ConversationRecord> = HashMap::new();
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            if let (Some(sender), Some(cmid)) = (&m.sender_id, &m.client_msg_id) {
                let existing: Option<MessageRecord> = sqlx::query_as(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
                ))
                .bind(sender)
                .bind(cmid)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(message) = existing {
                    let conversation = match convs.get(&message.conversation_id) {
                        Some(c) => c.clone(),
                        None => fetch_conversation(&mut tx, &message.conversation_id)
                            .await?
                            .ok_or_else(|| sqlx::Error::RowNotFound)?,
                    };
                    out.push(Ok(Committed {
                        message,
                        conversation,
                        duplicate: true,
                        reopened: false,
                    }));
                    continue;
                }
            }
            if !convs.contains_key(&m.conversation_id) {
                match fetch_conversation(&mut tx, &m.conversation_id).await? {
                    Some(c) => {
                        convs.insert(c.id.clone(), c);
                    }
                    None => {
                        out.push(Err(AppError::not_found("conversation")));
                        continue;
                    }
                }
            }
            let conv = convs.get_mut(&m.conversation_id).expect("inserted above");
            let now = now_str();
            let seq = conv.last_seq + 1;
            let mut reopened = false;
            if m.reopen_if_resolved && conv.status == "resolved" {
                conv.status = if conv.assignee_id.is_some() {
                    "assigned".into()
                } else {
                    "open".into()
                };
                reopened = true;
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
                created_at: now.clone(),
            };
            sqlx::query(
                "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
                 sender_name, kind, body, attachments, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&message.id)
            .bind(&message.conversation_id)
            .bind(seq)
            .bind(&message.client_msg_id)
            .bind(&message.sender_kind)
            .bind(&message.sender_id)
            .bind(&message.sender_name)
            .bind(&message.kind)
            .bind(&message.body)
            .bind(&message.attachments)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE conversations SET last_seq = ?, status = ?, updated_at = ? WHERE id = ?",
            )
            .bind(seq)
            .bind(&conv.status)
            .bind(&now)
            .bind(&conv.id)
            .execute(&mut *tx)
            .await?;
            conv.last_seq = seq;
            conv.updated_at = now;
            out.push(Ok(Committed {
                message,
                conversation: conv.clone(),
                duplicate: false,
                reopened,
            }));
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

    pub async fn counts(&self) -> AppResult<Counts> {
        let (conversations,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM conversations")
            .fetch_one(&self.read)
            .await?;
        let (messages,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.read)
            .await?;
        Ok(Counts {
            conversations,
            messages,
        })
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

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
