//! Conversations and messages: reads, the planned commit, read markers, the queue.
//!
//! The commit is where several nodes meet. Inside one transaction it takes its locks
//! in one global order, so two writers never wait for each other in a circle:
//!
//! 1. advisory locks on every person the batch deduplicates for (senders) or starts a
//!    conversation for (citizens), by key; after them, no other node can store a
//!    message under those keys or open a conversation for those citizens until this
//!    transaction ends, so what is read next is final;
//! 2. the stored originals of resent messages and the citizens' open conversations;
//! 3. every conversation touched, `FOR NO KEY UPDATE` in id order: the planner's
//!    `seq` numbering and compare-and-set claims run against rows nobody else can
//!    change until the commit.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::*;
use crate::domain::model::*;
use crate::domain::planner::{Load, Loaded, Plan, Writes};
use crate::domain::ports::{ConversationStore, PlanFn};

const CONVERSATION_COLUMNS: &str =
    "c.id, c.mission_id, c.citizen_id, z.display_name AS citizen_name, \
     z.country AS citizen_country, c.channel, c.status, c.priority, c.assignee_id, c.last_seq, \
     c.created_at, c.updated_at, c.labels";

const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.client_msg_id, m.sender_kind, \
     m.sender_id, m.sender_name, m.kind, m.body, m.attachments, m.created_at, m.triage";

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: Uuid,
    mission_id: String,
    citizen_id: Uuid,
    citizen_name: String,
    citizen_country: Option<String>,
    channel: String,
    status: String,
    priority: String,
    assignee_id: Option<Uuid>,
    last_seq: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    labels: serde_json::Value,
}

impl ConversationRow {
    fn into_domain(self) -> AppResult<Conversation> {
        Ok(Conversation {
            id: ConversationId(self.id),
            mission_id: MissionId::new(self.mission_id),
            citizen: CitizenRef {
                id: CitizenId(self.citizen_id),
                display_name: self.citizen_name,
                country: country(self.citizen_country.as_deref())?,
            },
            channel: word("channel", &self.channel)?,
            status: word("status", &self.status)?,
            priority: word("priority", &self.priority)?,
            assignee_id: self.assignee_id.map(AgentId),
            last_seq: self.last_seq,
            created_at: self.created_at,
            updated_at: self.updated_at,
            labels: json("labels", self.labels)?,
        })
    }
}

fn conversations(rows: Vec<ConversationRow>) -> AppResult<Vec<Conversation>> {
    rows.into_iter().map(ConversationRow::into_domain).collect()
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    conversation_id: Uuid,
    seq: i64,
    client_msg_id: Option<String>,
    sender_kind: String,
    sender_id: Option<Uuid>,
    sender_name: String,
    kind: String,
    body: String,
    attachments: serde_json::Value,
    created_at: Timestamp,
    triage: Option<serde_json::Value>,
}

impl MessageRow {
    fn into_domain(self) -> AppResult<Message> {
        Ok(Message {
            id: MessageId(self.id),
            conversation_id: ConversationId(self.conversation_id),
            seq: self.seq,
            client_msg_id: self.client_msg_id.map(ClientMsgId::from_stored),
            sender: Sender {
                kind: word("sender kind", &self.sender_kind)?,
                id: self.sender_id.map(PersonId),
                display_name: self.sender_name,
            },
            kind: word("message kind", &self.kind)?,
            body: self.body,
            attachments: json("attachments", self.attachments)?,
            created_at: self.created_at,
            triage: self.triage.map(|t| json("triage", t)).transpose()?,
        })
    }
}

fn messages(rows: Vec<MessageRow>) -> AppResult<Vec<Message>> {
    rows.into_iter().map(MessageRow::into_domain).collect()
}

/// Lock, then read, inside the transaction, what the planner needs (see the module
/// comment for the order).
async fn lock_and_load(conn: &mut PgConnection, load: &Load) -> AppResult<Loaded> {
    let mut loaded = Loaded::default();
    let mut keys: Vec<i64> = load
        .dedup_keys
        .iter()
        .map(|(p, _)| person_key(p.0))
        .chain(load.open_of.iter().map(|c| person_key(c.0)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if !keys.is_empty() {
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k")
            .bind(&keys)
            .execute(&mut *conn)
            .await?;
    }
    if !load.dedup_keys.is_empty() {
        let senders: Vec<Uuid> = load.dedup_keys.iter().map(|(p, _)| p.0).collect();
        let ids: Vec<&str> = load.dedup_keys.iter().map(|(_, c)| c.as_str()).collect();
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM UNNEST($1::uuid[], $2::text[]) AS k(sender_id, client_msg_id) \
             JOIN messages m ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id"
        ))
        .bind(&senders)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for m in messages(rows)? {
            if let (Some(s), Some(c)) = (m.sender.id, m.client_msg_id.clone()) {
                loaded.existing.insert((s, c), m);
            }
        }
    }
    if !load.open_of.is_empty() {
        let citizens: Vec<Uuid> = load.open_of.iter().map(|c| c.0).collect();
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT DISTINCT ON (citizen_id) citizen_id, id FROM conversations \
             WHERE status <> 'resolved' AND citizen_id = ANY($1) ORDER BY citizen_id, id DESC",
        )
        .bind(&citizens)
        .fetch_all(&mut *conn)
        .await?;
        for (citizen, conv) in rows {
            loaded.open.insert(CitizenId(citizen), ConversationId(conv));
        }
    }
    let mut ids: Vec<Uuid> = load.conversations.iter().map(|c| c.0).collect();
    ids.extend(loaded.existing.values().map(|m| m.conversation_id.0));
    ids.extend(loaded.open.values().map(|c| c.0));
    ids.sort_unstable();
    ids.dedup();
    if !ids.is_empty() {
        // Rows are locked as they come out of the sort: always in id order.
        let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.id = ANY($1) ORDER BY c.id FOR NO KEY UPDATE OF c"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for c in conversations(rows)? {
            loaded.conversations.insert(c.id, c);
        }
    }
    // After the conversation rows are locked: an open escalation read here stays open
    // (and no other is opened) until this transaction ends.
    if !load.escalations_for.is_empty() {
        for e in super::escalations::load_open(conn, &load.escalations_for).await? {
            loaded.escalations.insert(e.conversation_id, e);
        }
    }
    Ok(loaded)
}

/// Write what the planner decided: one statement per kind of row, whatever the size
/// of the batch (arrays bound as parameters, unnested by the server).
async fn write(conn: &mut PgConnection, w: &Writes) -> AppResult<()> {
    if !w.new_conversations.is_empty() {
        let cs = &w.new_conversations;
        sqlx::query(
            "INSERT INTO conversations (id, mission_id, citizen_id, channel, status, priority, priority_rank, \
             assignee_id, last_seq, labels, created_at, updated_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
                                  $7::bigint[], $8::uuid[], $9::bigint[], $10::jsonb[], $11::timestamptz[], \
                                  $12::timestamptz[])",
        )
        .bind(cs.iter().map(|c| c.id.0).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.mission_id.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.citizen.id.0).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.channel.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.priority.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.priority.rank()).collect::<Vec<i64>>())
        .bind(cs.iter().map(|c| c.assignee_id.map(|a| a.0)).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.last_seq).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| to_json(&c.labels)).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.created_at).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.updated_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !w.messages.is_empty() {
        let ms = &w.messages;
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, \
             sender_name, kind, body, attachments, created_at, triage) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::uuid[], \
                                  $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::timestamptz[], \
                                  $12::jsonb[])",
        )
        .bind(ms.iter().map(|m| m.id.0).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.conversation_id.0).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.seq).collect::<Vec<_>>())
        .bind(
            ms.iter()
                .map(|m| m.client_msg_id.as_ref().map(|c| c.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(ms.iter().map(|m| m.sender.kind.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.sender.id.map(|s| s.0)).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.sender.display_name.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| to_json(&m.attachments)).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .bind(ms.iter().map(|m| m.triage.as_ref().map(to_json)).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let mut link_message = Vec::new();
    let mut link_attachment = Vec::new();
    let mut link_conversation = Vec::new();
    for m in &w.messages {
        for a in &m.attachments {
            link_message.push(m.id.0);
            link_attachment.push(a.id.0);
            link_conversation.push(m.conversation_id.0);
        }
    }
    if !link_message.is_empty() {
        sqlx::query(
            "INSERT INTO message_attachments (message_id, attachment_id, conversation_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING",
        )
        .bind(link_message)
        .bind(link_attachment)
        .bind(link_conversation)
        .execute(&mut *conn)
        .await?;
    }
    if !w.conversations.is_empty() {
        let cs = &w.conversations;
        sqlx::query(
            "UPDATE conversations SET mission_id = v.mission_id, status = v.status, priority = v.priority, \
             priority_rank = v.priority_rank, assignee_id = v.assignee_id, last_seq = v.last_seq, \
             labels = v.labels, updated_at = v.updated_at \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::uuid[], \
                         $7::bigint[], $8::jsonb[], $9::timestamptz[]) \
                  AS v(id, mission_id, status, priority, priority_rank, assignee_id, last_seq, labels, updated_at) \
             WHERE conversations.id = v.id",
        )
        .bind(cs.iter().map(|c| c.id.0).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.mission_id.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.priority.as_str()).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.priority.rank()).collect::<Vec<i64>>())
        .bind(cs.iter().map(|c| c.assignee_id.map(|a| a.0)).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.last_seq).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| to_json(&c.labels)).collect::<Vec<_>>())
        .bind(cs.iter().map(|c| c.updated_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    super::escalations::write(conn, &w.escalations).await?;
    insert_audit(conn, &w.audit).await?;
    super::outbox::insert_rows(conn, &w.outbox).await?;
    Ok(())
}

#[async_trait]
impl ConversationStore for PgStore {
    async fn conversation(&self, id: ConversationId) -> AppResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE c.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ConversationRow::into_domain).transpose()
    }

    async fn list_conversations(&self, f: &ConversationFilter) -> AppResult<Vec<Conversation>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id WHERE true"
        ));
        if let Some(cid) = &f.citizen_id {
            q.push(" AND c.citizen_id = ").push_bind(cid.0);
        }
        if let Some(missions) = &f.missions {
            let ms: Vec<String> = missions.iter().map(|m| m.as_str().to_string()).collect();
            q.push(" AND (c.mission_id = ANY(").push_bind(ms).push(")");
            if let Some(a) = &f.visible_assignee {
                q.push(" OR c.assignee_id = ").push_bind(a.0);
            }
            q.push(")");
        }
        if let Some(s) = f.status {
            q.push(" AND c.status = ").push_bind(s.as_str());
        }
        if f.active_only {
            q.push(" AND c.status <> 'resolved'");
        }
        if let Some(a) = &f.assignee_id {
            q.push(" AND c.assignee_id = ").push_bind(a.0);
        }
        if let Some(p) = f.priority {
            q.push(" AND c.priority = ").push_bind(p.as_str());
        }
        if let Some(l) = &f.label {
            q.push(" AND c.labels ? ").push_bind(l.clone());
        }
        if f.queue_order {
            if let Some((rank, id)) = &f.after {
                q.push(" AND (c.priority_rank < ")
                    .push_bind(*rank)
                    .push(" OR (c.priority_rank = ")
                    .push_bind(*rank)
                    .push(" AND c.id > ")
                    .push_bind(id.0)
                    .push("))");
            }
            q.push(" ORDER BY c.priority_rank DESC, c.id ASC LIMIT ");
        } else {
            if let Some((_, id)) = &f.after {
                q.push(" AND c.id < ").push_bind(id.0);
            }
            q.push(" ORDER BY c.id DESC LIMIT ");
        }
        q.push_bind(f.limit);
        conversations(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn commit(&self, l: Load, plan: PlanFn) -> AppResult<Plan> {
        let mut tx = self.pool.begin().await?;
        let loaded = lock_and_load(&mut tx, &l).await?;
        let plan = plan(loaded);
        if !plan.writes.is_empty() {
            write(&mut tx, &plan.writes).await?;
        }
        tx.commit().await?;
        Ok(plan)
    }

    async fn messages(
        &self,
        conversation: ConversationId,
        page: MessagePage,
    ) -> AppResult<Vec<Message>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = "
        ));
        q.push_bind(conversation.0);
        if !page.include_notes {
            q.push(" AND m.kind <> 'note'");
        }
        if let Some(a) = page.after_seq {
            q.push(" AND m.seq > ").push_bind(a);
        }
        if let Some(b) = page.before_seq {
            q.push(" AND m.seq < ").push_bind(b);
        }
        // `before_seq` alone pages backwards from the newest: take the last `limit`.
        let backwards = page.before_seq.is_some() && page.after_seq.is_none();
        q.push(if backwards {
            " ORDER BY m.seq DESC LIMIT "
        } else {
            " ORDER BY m.seq ASC LIMIT "
        })
        .push_bind(page.limit);
        let mut rows = messages(q.build_query_as().fetch_all(&self.pool).await?)?;
        if backwards {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn open_conversation_of(&self, citizen: CitizenId) -> AppResult<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
             WHERE c.citizen_id = $1 AND c.status <> 'resolved' ORDER BY c.id DESC LIMIT 1"
        ))
        .bind(citizen.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ConversationRow::into_domain).transpose()
    }

    async fn set_read(
        &self,
        conversation: ConversationId,
        reader: PersonId,
        seq: i64,
    ) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO read_markers (conversation_id, reader_id, seq, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (conversation_id, reader_id) DO UPDATE SET \
             seq = GREATEST(read_markers.seq, excluded.seq), updated_at = excluded.updated_at",
        )
        .bind(conversation.0)
        .bind(reader.0)
        .bind(seq)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn read_markers(
        &self,
        reader: PersonId,
        conversations: &[ConversationId],
    ) -> AppResult<Vec<(ConversationId, i64)>> {
        if conversations.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<Uuid> = conversations.iter().map(|c| c.0).collect();
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT conversation_id, seq FROM read_markers WHERE reader_id = $1 AND conversation_id = ANY($2)",
        )
        .bind(reader.0)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(c, seq)| (ConversationId(c), seq))
            .collect())
    }

    async fn waiting_conversations(
        &self,
        mission: &MissionId,
        limit: i64,
    ) -> AppResult<Vec<Conversation>> {
        conversations(
            sqlx::query_as(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations c JOIN citizens z ON z.id = c.citizen_id \
                 WHERE c.mission_id = $1 AND c.status = 'open' AND c.assignee_id IS NULL \
                 ORDER BY c.priority_rank DESC, c.id ASC LIMIT $2"
            ))
            .bind(mission.as_str())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn agent_loads(&self, mission: &MissionId) -> AppResult<Vec<AgentLoad>> {
        let rows: Vec<(Uuid, i64, String, i64)> = sqlx::query_as(
            "SELECT a.id, a.capacity, a.presence, \
               (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = a.id AND c.status <> 'resolved') AS load \
             FROM agents a JOIN agent_missions m ON m.agent_id = a.id \
             WHERE m.mission_id = $1 AND a.role = 'agent' ORDER BY a.id",
        )
        .bind(mission.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, capacity, presence, load)| {
                Ok(AgentLoad {
                    id: AgentId(id),
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
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.sender_id = $1 AND m.client_msg_id = $2"
        ))
        .bind(sender.0)
        .bind(client_msg_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(MessageRow::into_domain).transpose()
    }

    async fn edit_message(
        &self,
        id: MessageId,
        body: &str,
        at: Timestamp,
    ) -> AppResult<Option<Message>> {
        let mut tx = self.pool.begin().await?;
        // The row lock orders concurrent edits of one message: each keeps the body it
        // replaced.
        let r = sqlx::query(
            "INSERT INTO message_edits (message_id, edited_at, body) \
             SELECT id, $1, body FROM messages WHERE id = $2 FOR UPDATE",
        )
        .bind(at)
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE messages SET body = $1 WHERE id = $2")
            .bind(body)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let row: Option<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(MessageRow::into_domain).transpose()
    }
}
