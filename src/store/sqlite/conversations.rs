//! Conversations and messages: reads, the planned commit, read markers, the queue.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};
use std::collections::HashMap;

use super::*;
use crate::domain::model::*;
use crate::domain::planner::{Load, Loaded, Plan, Writes};
use crate::domain::ports::{ConversationStore, PlanFn};

const CONVERSATION_COLUMNS: &str =
    "c.id, c.mission_id, c.citizen_id, z.display_name AS citizen_name, \
     z.country AS citizen_country, c.channel, c.status, c.priority, c.assignee_id, c.last_seq, \
     c.created_at, c.updated_at, c.labels";

const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
     sender_name, kind, body, attachments, created_at, triage";

/// Rows larger statements are split into (SQLite's bound-parameter limit is 32,766).
const CHUNK: usize = 500;

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: String,
    mission_id: String,
    citizen_id: String,
    citizen_name: String,
    citizen_country: Option<String>,
    channel: String,
    status: String,
    priority: String,
    assignee_id: Option<String>,
    last_seq: i64,
    created_at: String,
    updated_at: String,
    labels: String,
}

impl ConversationRow {
    fn into_domain(self) -> AppResult<Conversation> {
        Ok(Conversation {
            id: ConversationId(uuid(&self.id)?),
            mission_id: MissionId::new(self.mission_id),
            citizen: CitizenRef {
                id: CitizenId(uuid(&self.citizen_id)?),
                display_name: self.citizen_name,
                country: country(self.citizen_country.as_deref())?,
            },
            channel: word("channel", &self.channel)?,
            status: word("status", &self.status)?,
            priority: word("priority", &self.priority)?,
            assignee_id: self
                .assignee_id
                .as_deref()
                .map(|a| uuid(a).map(AgentId))
                .transpose()?,
            last_seq: self.last_seq,
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
            labels: json("labels", &self.labels)?,
        })
    }
}

impl ConversationRow {
    /// The same row, read by the commit thread's connection.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(ConversationRow {
            id: r.get("id")?,
            mission_id: r.get("mission_id")?,
            citizen_id: r.get("citizen_id")?,
            citizen_name: r.get("citizen_name")?,
            citizen_country: r.get("citizen_country")?,
            channel: r.get("channel")?,
            status: r.get("status")?,
            priority: r.get("priority")?,
            assignee_id: r.get("assignee_id")?,
            last_seq: r.get("last_seq")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            labels: r.get("labels")?,
        })
    }
}

fn conversations(rows: Vec<ConversationRow>) -> AppResult<Vec<Conversation>> {
    rows.into_iter().map(ConversationRow::into_domain).collect()
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    conversation_id: String,
    seq: i64,
    client_msg_id: Option<String>,
    sender_kind: String,
    sender_id: Option<String>,
    sender_name: String,
    kind: String,
    body: String,
    attachments: String,
    created_at: String,
    triage: Option<String>,
}

impl MessageRow {
    fn into_domain(self) -> AppResult<Message> {
        Ok(Message {
            id: MessageId(uuid(&self.id)?),
            conversation_id: ConversationId(uuid(&self.conversation_id)?),
            seq: self.seq,
            client_msg_id: self.client_msg_id.map(ClientMsgId::from_stored),
            sender: Sender {
                kind: word("sender kind", &self.sender_kind)?,
                id: self
                    .sender_id
                    .as_deref()
                    .map(|s| uuid(s).map(PersonId))
                    .transpose()?,
                display_name: self.sender_name,
            },
            kind: word("message kind", &self.kind)?,
            body: self.body,
            attachments: json("attachments", &self.attachments)?,
            created_at: time(&self.created_at)?,
            triage: self
                .triage
                .as_deref()
                .map(|t| json("triage", t))
                .transpose()?,
        })
    }
}

impl MessageRow {
    /// The same row, read by the commit thread's connection.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(MessageRow {
            id: r.get("id")?,
            conversation_id: r.get("conversation_id")?,
            seq: r.get("seq")?,
            client_msg_id: r.get("client_msg_id")?,
            sender_kind: r.get("sender_kind")?,
            sender_id: r.get("sender_id")?,
            sender_name: r.get("sender_name")?,
            kind: r.get("kind")?,
            body: r.get("body")?,
            attachments: r.get("attachments")?,
            created_at: r.get("created_at")?,
            triage: r.get("triage")?,
        })
    }
}

fn messages(rows: Vec<MessageRow>) -> AppResult<Vec<Message>> {
    rows.into_iter().map(MessageRow::into_domain).collect()
}

/// Read, inside the commit thread's transaction, what the planner needs: one probe
/// per key, citizen and conversation with statements prepared once.
pub(super) fn load(conn: &rusqlite::Connection, load: &Load) -> AppResult<Loaded> {
    let mut loaded = Loaded::default();
    // Messages already stored under these senders' client_msg_ids (the idempotency
    // index).
    if !load.dedup_keys.is_empty() {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ?1 AND client_msg_id = ?2"
        ))?;
        for (sender, cmid) in &load.dedup_keys {
            let mut rows = st.query(rusqlite::params![sender.to_string(), cmid.as_str()])?;
            while let Some(r) = rows.next()? {
                let m = MessageRow::read(r)?.into_domain()?;
                if let (Some(s), Some(c)) = (m.sender.id, m.client_msg_id.clone()) {
                    loaded.existing.insert((s, c), m);
                }
            }
        }
    }
    // The newest unresolved conversation of each starting citizen.
    if !load.open_of.is_empty() {
        let mut st = conn.prepare_cached(
            "SELECT MAX(id) FROM conversations WHERE status != 'resolved' AND citizen_id = ?1",
        )?;
        for citizen in &load.open_of {
            let conv: Option<String> = st.query_row([citizen.to_string()], |r| r.get(0))?;
            if let Some(conv) = conv {
                loaded.open.insert(*citizen, ConversationId(uuid(&conv)?));
            }
        }
    }
    // Every conversation touched.
    let mut ids: Vec<ConversationId> = load.conversations.clone();
    ids.extend(loaded.existing.values().map(|m| m.conversation_id));
    ids.extend(loaded.open.values().copied());
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id = ?1"
        ))?;
        for id in ids {
            let mut rows = st.query([id.to_string()])?;
            if let Some(r) = rows.next()? {
                let c = ConversationRow::read(r)?.into_domain()?;
                loaded.conversations.insert(c.id, c);
            }
        }
    }
    for e in super::escalations::load_open(conn, &load.escalations_for)? {
        loaded.escalations.insert(e.conversation_id, e);
    }
    Ok(loaded)
}

/// Write what the planner decided, inside the commit thread's transaction, one
/// prepared statement per kind of row.
pub(super) fn write(
    conn: &rusqlite::Connection,
    w: &Writes,
    before: &HashMap<ConversationId, Conversation>,
) -> AppResult<()> {
    use rusqlite::params;
    if !w.new_conversations.is_empty() {
        let mut st = conn.prepare_cached(
            "INSERT INTO conversations (id, mission_id, citizen_id, channel, status, priority, priority_rank, \
             assignee_id, last_seq, labels, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for c in &w.new_conversations {
            st.execute(params![
                c.id.to_string(),
                c.mission_id.as_str(),
                c.citizen.id.to_string(),
                c.channel.as_str(),
                c.status.as_str(),
                c.priority.as_str(),
                c.priority.rank(),
                c.assignee_id.map(|a| a.to_string()),
                c.last_seq,
                to_json(&c.labels),
                fmt_time(c.created_at),
                fmt_time(c.updated_at),
            ])?;
        }
    }
    if !w.messages.is_empty() {
        let mut st = conn.prepare_cached(
            "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
             sender_name, kind, body, attachments, created_at, triage) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for m in &w.messages {
            st.execute(params![
                m.id.to_string(),
                m.conversation_id.to_string(),
                m.seq,
                m.client_msg_id.as_ref().map(|c| c.as_str()),
                m.sender.kind.as_str(),
                m.sender.id.map(|s| s.to_string()),
                m.sender.display_name,
                m.kind.as_str(),
                m.body,
                to_json(&m.attachments),
                fmt_time(m.created_at),
                m.triage.as_ref().map(to_json),
            ])?;
        }
        let mut link = None;
        for m in w.messages.iter().filter(|m| !m.attachments.is_empty()) {
            let st = match &mut link {
                Some(st) => st,
                None => link.insert(conn.prepare_cached(
                    "INSERT OR IGNORE INTO message_attachments (message_id, attachment_id, conversation_id) \
                     VALUES (?1, ?2, ?3)",
                )?),
            };
            for a in &m.attachments {
                st.execute(params![
                    m.id.to_string(),
                    a.id.to_string(),
                    m.conversation_id.to_string()
                ])?;
            }
        }
    }
    // Each touched conversation once, with its final state. Most only moved `last_seq`
    // and `updated_at`; those rows are updated in those two columns alone, so SQLite
    // leaves the indexes on mission, status, priority and assignee alone.
    for c in &w.conversations {
        let moved = before.get(&c.id).is_some_and(|b| {
            b.mission_id == c.mission_id
                && b.status == c.status
                && b.priority == c.priority
                && b.assignee_id == c.assignee_id
                && b.labels == c.labels
        });
        if moved {
            conn.prepare_cached(
                "UPDATE conversations SET last_seq = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![
                c.id.to_string(),
                c.last_seq,
                fmt_time(c.updated_at)
            ])?;
        } else {
            conn.prepare_cached(
                "UPDATE conversations SET mission_id = ?2, status = ?3, priority = ?4, \
                 priority_rank = ?5, assignee_id = ?6, last_seq = ?7, labels = ?8, updated_at = ?9 \
                 WHERE id = ?1",
            )?
            .execute(params![
                c.id.to_string(),
                c.mission_id.as_str(),
                c.status.as_str(),
                c.priority.as_str(),
                c.priority.rank(),
                c.assignee_id.map(|a| a.to_string()),
                c.last_seq,
                to_json(&c.labels),
                fmt_time(c.updated_at),
            ])?;
        }
    }
    super::escalations::write(conn, &w.escalations)?;
    for a in &w.audit {
        insert_audit_sync(conn, a)?;
    }
    super::outbox::insert_rows_sync(conn, &w.outbox)?;
    Ok(())
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn conversation(&self, id: ConversationId) -> AppResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(ConversationRow::into_domain).transpose()
    }

    async fn list_conversations(&self, f: &ConversationFilter) -> AppResult<Vec<Conversation>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE 1 = 1"
        ));
        if let Some(cid) = &f.citizen_id {
            q.push(" AND c.citizen_id = ").push_bind(cid.to_string());
        }
        if let Some(missions) = &f.missions {
            q.push(" AND (c.mission_id IN (");
            let mut sep = q.separated(", ");
            sep.push_bind("\u{0}"); // never a mission id; keeps the list non-empty
            for m in missions {
                sep.push_bind(m.as_str().to_string());
            }
            q.push(")");
            if let Some(a) = &f.visible_assignee {
                q.push(" OR c.assignee_id = ").push_bind(a.to_string());
            }
            q.push(")");
        }
        if let Some(s) = f.status {
            q.push(" AND c.status = ").push_bind(s.as_str());
        }
        if f.active_only {
            q.push(" AND c.status != 'resolved'");
        }
        if let Some(a) = &f.assignee_id {
            q.push(" AND c.assignee_id = ").push_bind(a.to_string());
        }
        if let Some(p) = f.priority {
            q.push(" AND c.priority = ").push_bind(p.as_str());
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
                    .push_bind(id.to_string())
                    .push("))");
            }
            q.push(" ORDER BY c.priority_rank DESC, c.id ASC LIMIT ");
        } else {
            if let Some((_, id)) = &f.after {
                q.push(" AND c.id < ").push_bind(id.to_string());
            }
            q.push(" ORDER BY c.id DESC LIMIT ");
        }
        q.push_bind(f.limit);
        conversations(q.build_query_as().fetch_all(&self.read).await?)
    }

    async fn commit(&self, l: Load, plan: PlanFn) -> AppResult<Plan> {
        // Held while the commit thread works: no other write of this process runs
        // meanwhile (see the commit module).
        let _w = self.writer().await;
        self.committer.commit(l, plan).await
    }

    async fn messages(
        &self,
        conversation: ConversationId,
        page: MessagePage,
    ) -> AppResult<Vec<Message>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = "
        ));
        q.push_bind(conversation.to_string());
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
        let mut rows = messages(q.build_query_as().fetch_all(&self.read).await?)?;
        if backwards {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn open_conversation_of(&self, citizen: CitizenId) -> AppResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.citizen_id = ? AND c.status != 'resolved' ORDER BY c.id DESC LIMIT 1"
        ))
        .bind(citizen.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(ConversationRow::into_domain).transpose()
    }

    async fn set_read(
        &self,
        conversation: ConversationId,
        reader: PersonId,
        seq: i64,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO read_markers (conversation_id, reader_id, seq, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (conversation_id, reader_id) DO UPDATE SET seq = MAX(seq, excluded.seq), \
             updated_at = excluded.updated_at",
        )
        .bind(conversation.to_string())
        .bind(reader.to_string())
        .bind(seq)
        .bind(fmt_time(now()))
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn read_markers(
        &self,
        reader: PersonId,
        conversations: &[ConversationId],
    ) -> AppResult<Vec<(ConversationId, i64)>> {
        let mut out = Vec::new();
        for chunk in conversations.chunks(CHUNK) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT conversation_id, seq FROM read_markers WHERE reader_id = ",
            );
            q.push_bind(reader.to_string());
            q.push(" AND conversation_id IN (");
            let mut sep = q.separated(", ");
            for c in chunk {
                sep.push_bind(c.to_string());
            }
            q.push(")");
            let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&self.read).await?;
            for (c, seq) in rows {
                out.push((ConversationId(uuid(&c)?), seq));
            }
        }
        Ok(out)
    }

    async fn waiting_conversations(
        &self,
        mission: &MissionId,
        limit: i64,
    ) -> AppResult<Vec<Conversation>> {
        conversations(
            sqlx::query_as(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
                 WHERE c.mission_id = ? AND c.status = 'open' AND c.assignee_id IS NULL \
                 ORDER BY c.priority_rank DESC, c.id ASC LIMIT ?"
            ))
            .bind(mission.as_str())
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        )
    }

    async fn agent_loads(&self, mission: &MissionId) -> AppResult<Vec<AgentLoad>> {
        let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
            "SELECT a.id, a.capacity, a.presence, \
               (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = a.id AND c.status != 'resolved') AS load \
             FROM agents a JOIN agent_missions m ON m.agent_id = a.id \
             WHERE m.mission_id = ? AND a.role = 'agent' ORDER BY a.id",
        )
        .bind(mission.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, capacity, presence, load)| {
                Ok(AgentLoad {
                    id: AgentId(uuid(&id)?),
                    capacity,
                    presence: word("presence", &presence)?,
                    load,
                })
            })
            .collect()
    }

    async fn message_by_client_id(
        &self,
        sender: PersonId,
        client_msg_id: &ClientMsgId,
    ) -> AppResult<Option<Message>> {
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE sender_id = ? AND client_msg_id = ?"
        ))
        .bind(sender.to_string())
        .bind(client_msg_id.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(MessageRow::into_domain).transpose()
    }

    async fn edit_message(
        &self,
        id: MessageId,
        body: &str,
        at: Timestamp,
    ) -> AppResult<Option<Message>> {
        let row: Option<MessageRow> = write_tx!(self, |tx| {
            let r = sqlx::query(
                "INSERT INTO message_edits (message_id, edited_at, body) \
                 SELECT id, ?, body FROM messages WHERE id = ?",
            )
            .bind(fmt_time(at))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                None
            } else {
                sqlx::query("UPDATE messages SET body = ? WHERE id = ?")
                    .bind(body)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query_as(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
                ))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
            }
        });
        row.map(MessageRow::into_domain).transpose()
    }
}
