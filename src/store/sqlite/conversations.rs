//! Conversations and messages: reads, the planned commit, read markers, the queue.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
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

fn messages(rows: Vec<MessageRow>) -> AppResult<Vec<Message>> {
    rows.into_iter().map(MessageRow::into_domain).collect()
}

/// Read, inside the transaction, what the planner needs.
async fn load(conn: &mut SqliteConnection, load: &Load) -> AppResult<Loaded> {
    let mut loaded = Loaded::default();
    // Messages already stored under these senders' client_msg_ids: one probe of the
    // idempotency index per key (a join on the keys, not `sender IN (..) AND cmid IN
    // (..)`, whose cross product costs senders × keys probes per batch).
    for chunk in load.dedup_keys.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {MESSAGE_COLUMNS} FROM (VALUES "));
        let mut sep = q.separated(", ");
        for (sender, cmid) in chunk {
            sep.push("(")
                .push_bind_unseparated(sender.to_string())
                .push_unseparated(", ")
                .push_bind_unseparated(cmid.as_str().to_string())
                .push_unseparated(")");
        }
        q.push(
            ") AS k JOIN messages ON messages.sender_id = k.column1 \
             AND messages.client_msg_id = k.column2",
        );
        let rows: Vec<MessageRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        for m in messages(rows)? {
            if let (Some(s), Some(c)) = (m.sender.id, m.client_msg_id.clone()) {
                loaded.existing.insert((s, c), m);
            }
        }
    }
    // The newest unresolved conversation of each starting citizen.
    for chunk in load.open_of.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT citizen_id, MAX(id) FROM conversations WHERE status != 'resolved' AND citizen_id IN (",
        );
        let mut sep = q.separated(", ");
        for c in chunk {
            sep.push_bind(c.to_string());
        }
        q.push(") GROUP BY citizen_id");
        let rows: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
        for (citizen, conv) in rows {
            loaded
                .open
                .insert(CitizenId(uuid(&citizen)?), ConversationId(uuid(&conv)?));
        }
    }
    // Every conversation touched, in one query per chunk.
    let mut ids: Vec<ConversationId> = load.conversations.clone();
    ids.extend(loaded.existing.values().map(|m| m.conversation_id));
    ids.extend(loaded.open.values().copied());
    ids.sort();
    ids.dedup();
    for chunk in ids.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id IN ("
        ));
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(id.to_string());
        }
        q.push(")");
        let rows: Vec<ConversationRow> = q.build_query_as().fetch_all(&mut *conn).await?;
        for c in conversations(rows)? {
            loaded.conversations.insert(c.id, c);
        }
    }
    if !load.escalations_for.is_empty() {
        for e in super::escalations::load_open(conn, &load.escalations_for).await? {
            loaded.escalations.insert(e.conversation_id, e);
        }
    }
    Ok(loaded)
}

/// Write what the planner decided, in statements batched across the whole plan (every
/// statement is a round trip to SQLite's thread, and the writer is where all messages
/// queue).
async fn write(
    conn: &mut SqliteConnection,
    w: &Writes,
    before: &HashMap<ConversationId, Conversation>,
) -> AppResult<()> {
    for chunk in w.new_conversations.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO conversations (id, mission_id, citizen_id, channel, status, priority, priority_rank, \
             assignee_id, last_seq, labels, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.id.to_string())
                .push_bind(c.mission_id.as_str().to_string())
                .push_bind(c.citizen.id.to_string())
                .push_bind(c.channel.as_str())
                .push_bind(c.status.as_str())
                .push_bind(c.priority.as_str())
                .push_bind(c.priority.rank())
                .push_bind(c.assignee_id.map(|a| a.to_string()))
                .push_bind(c.last_seq)
                .push_bind(to_json(&c.labels))
                .push_bind(fmt_time(c.created_at))
                .push_bind(fmt_time(c.updated_at));
        });
        q.build().execute(&mut *conn).await?;
    }
    for chunk in w.messages.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
             sender_name, kind, body, attachments, created_at, triage) ",
        );
        q.push_values(chunk, |mut row, m| {
            row.push_bind(m.id.to_string())
                .push_bind(m.conversation_id.to_string())
                .push_bind(m.seq)
                .push_bind(m.client_msg_id.as_ref().map(|c| c.as_str().to_string()))
                .push_bind(m.sender.kind.as_str())
                .push_bind(m.sender.id.map(|s| s.to_string()))
                .push_bind(&m.sender.display_name)
                .push_bind(m.kind.as_str())
                .push_bind(&m.body)
                .push_bind(to_json(&m.attachments))
                .push_bind(fmt_time(m.created_at))
                .push_bind(m.triage.as_ref().map(to_json));
        });
        q.build().execute(&mut *conn).await?;
    }
    let links: Vec<(String, String, String)> = w
        .messages
        .iter()
        .flat_map(|m| {
            m.attachments.iter().map(|a| {
                (
                    m.id.to_string(),
                    a.id.to_string(),
                    m.conversation_id.to_string(),
                )
            })
        })
        .collect();
    for chunk in links.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR IGNORE INTO message_attachments (message_id, attachment_id, conversation_id) ",
        );
        q.push_values(chunk, |mut row, (m, a, c)| {
            row.push_bind(m).push_bind(a).push_bind(c);
        });
        q.build().execute(&mut *conn).await?;
    }
    // Each touched conversation once, with its final state. Most batches only move
    // `last_seq` and `updated_at`; those rows are updated in those two columns alone,
    // so SQLite leaves the indexes on mission, status, priority and assignee alone.
    let (moved, changed): (Vec<&Conversation>, Vec<&Conversation>) =
        w.conversations.iter().partition(|c| {
            before.get(&c.id).is_some_and(|b| {
                b.mission_id == c.mission_id
                    && b.status == c.status
                    && b.priority == c.priority
                    && b.assignee_id == c.assignee_id
                    && b.labels == c.labels
            })
        });
    for chunk in moved.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("WITH v(id, last_seq, updated_at) AS (");
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.id.to_string())
                .push_bind(c.last_seq)
                .push_bind(fmt_time(c.updated_at));
        });
        q.push(
            ") UPDATE conversations SET last_seq = v.last_seq, updated_at = v.updated_at \
             FROM v WHERE conversations.id = v.id",
        );
        q.build().execute(&mut *conn).await?;
    }
    for chunk in changed.chunks(CHUNK) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "WITH v(id, mission_id, status, priority, priority_rank, assignee_id, last_seq, labels, updated_at) AS (",
        );
        q.push_values(chunk, |mut row, c| {
            row.push_bind(c.id.to_string())
                .push_bind(c.mission_id.as_str().to_string())
                .push_bind(c.status.as_str())
                .push_bind(c.priority.as_str())
                .push_bind(c.priority.rank())
                .push_bind(c.assignee_id.map(|a| a.to_string()))
                .push_bind(c.last_seq)
                .push_bind(to_json(&c.labels))
                .push_bind(fmt_time(c.updated_at));
        });
        q.push(
            ") UPDATE conversations SET mission_id = v.mission_id, status = v.status, \
             priority = v.priority, priority_rank = v.priority_rank, assignee_id = v.assignee_id, \
             last_seq = v.last_seq, labels = v.labels, updated_at = v.updated_at \
             FROM v WHERE conversations.id = v.id",
        );
        q.build().execute(&mut *conn).await?;
    }
    super::escalations::write(conn, &w.escalations).await?;
    for a in &w.audit {
        insert_audit(conn, a).await?;
    }
    super::outbox::insert_rows(conn, &w.outbox).await?;
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

    async fn commit(&self, l: Load, plan: PlanFn<'_>) -> AppResult<Plan> {
        let mut w = self.writer().await;
        let mut tx = sqlx::Connection::begin_with(&mut *w, "BEGIN IMMEDIATE").await?;
        let loaded = load(&mut tx, &l).await?;
        let before = loaded.conversations.clone();
        let plan = plan(loaded);
        if !plan.writes.is_empty() {
            write(&mut tx, &plan.writes, &before).await?;
        }
        tx.commit().await?;
        Ok(plan)
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
