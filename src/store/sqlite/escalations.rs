//! Escalations: read inside the commit for the planner, written with its plan, and
//! listed and annotated (delivery attempts) outside it.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::*;
use crate::domain::model::*;
use crate::domain::ports::EscalationStore;

const ESCALATION_COLUMNS: &str =
    "e.id, e.conversation_id, e.mission_id, c.citizen_id, z.display_name AS citizen_name, \
     z.country AS citizen_country, e.reason, e.state, e.created_at, e.delivered_at, \
     e.acknowledged_at, e.acknowledged_by, e.attempts, e.reescalations, e.alerted_at, \
     e.location_lat, e.location_lon, e.location_accuracy_m";

const FROM: &str = "FROM escalations e JOIN conversations c ON c.id = e.conversation_id \
     JOIN citizens z ON z.id = c.citizen_id";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    conversation_id: String,
    mission_id: String,
    citizen_id: String,
    citizen_name: String,
    citizen_country: Option<String>,
    reason: String,
    state: String,
    created_at: String,
    delivered_at: Option<String>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    attempts: i64,
    reescalations: i64,
    alerted_at: String,
    location_lat: Option<f64>,
    location_lon: Option<f64>,
    location_accuracy_m: Option<f64>,
}

impl Row {
    fn into_domain(self) -> AppResult<Escalation> {
        Ok(Escalation {
            id: EscalationId(uuid(&self.id)?),
            conversation_id: ConversationId(uuid(&self.conversation_id)?),
            mission_id: MissionId::new(self.mission_id),
            citizen: CitizenRef {
                id: CitizenId(uuid(&self.citizen_id)?),
                display_name: self.citizen_name,
                country: country(self.citizen_country.as_deref())?,
            },
            reason: word("escalation reason", &self.reason)?,
            state: word("escalation state", &self.state)?,
            created_at: time(&self.created_at)?,
            delivered_at: opt_time(self.delivered_at.as_deref())?,
            acknowledged_at: opt_time(self.acknowledged_at.as_deref())?,
            acknowledged_by: self.acknowledged_by,
            attempts: self.attempts,
            reescalations: self.reescalations,
            alerted_at: time(&self.alerted_at)?,
            location: match (self.location_lat, self.location_lon) {
                (Some(lat), Some(lon)) => Some(GeoPoint {
                    lat,
                    lon,
                    accuracy_m: self.location_accuracy_m,
                }),
                _ => None,
            },
        })
    }
}

fn rows(rows: Vec<Row>) -> AppResult<Vec<Escalation>> {
    rows.into_iter().map(Row::into_domain).collect()
}

impl Row {
    /// The same row, read by the commit thread's connection.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Row {
            id: r.get("id")?,
            conversation_id: r.get("conversation_id")?,
            mission_id: r.get("mission_id")?,
            citizen_id: r.get("citizen_id")?,
            citizen_name: r.get("citizen_name")?,
            citizen_country: r.get("citizen_country")?,
            reason: r.get("reason")?,
            state: r.get("state")?,
            created_at: r.get("created_at")?,
            delivered_at: r.get("delivered_at")?,
            acknowledged_at: r.get("acknowledged_at")?,
            acknowledged_by: r.get("acknowledged_by")?,
            attempts: r.get("attempts")?,
            reescalations: r.get("reescalations")?,
            alerted_at: r.get("alerted_at")?,
            location_lat: r.get("location_lat")?,
            location_lon: r.get("location_lon")?,
            location_accuracy_m: r.get("location_accuracy_m")?,
        })
    }
}

/// The open escalations of these conversations (inside the commit thread's
/// transaction).
pub(super) fn load_open(
    conn: &rusqlite::Connection,
    conversations: &[ConversationId],
) -> AppResult<Vec<Escalation>> {
    let mut out = Vec::new();
    if conversations.is_empty() {
        return Ok(out);
    }
    let mut st = conn.prepare_cached(&format!(
        "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.state != 'resolved' AND e.conversation_id = ?1"
    ))?;
    for c in conversations {
        let mut rows = st.query([c.to_string()])?;
        while let Some(r) = rows.next()? {
            out.push(Row::read(r)?.into_domain()?);
        }
    }
    Ok(out)
}

/// Write the planner's escalations (their whole state) inside the commit thread's
/// transaction.
pub(super) fn write(conn: &rusqlite::Connection, list: &[Escalation]) -> AppResult<()> {
    if list.is_empty() {
        return Ok(());
    }
    let mut st = conn.prepare_cached(
        "INSERT INTO escalations (id, conversation_id, mission_id, reason, state, created_at, \
         delivered_at, acknowledged_at, acknowledged_by, attempts, reescalations, alerted_at, \
         location_lat, location_lon, location_accuracy_m) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
         acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
         reescalations = excluded.reescalations, alerted_at = excluded.alerted_at, \
         location_lat = excluded.location_lat, location_lon = excluded.location_lon, \
         location_accuracy_m = excluded.location_accuracy_m",
    )?;
    for e in list {
        st.execute(rusqlite::params![
            e.id.to_string(),
            e.conversation_id.to_string(),
            e.mission_id.as_str(),
            e.reason.as_str(),
            e.state.as_str(),
            fmt_time(e.created_at),
            e.delivered_at.map(fmt_time),
            e.acknowledged_at.map(fmt_time),
            e.acknowledged_by,
            e.attempts,
            e.reescalations,
            fmt_time(e.alerted_at),
            e.location.map(|l| l.lat),
            e.location.map(|l| l.lon),
            e.location.and_then(|l| l.accuracy_m),
        ])?;
    }
    Ok(())
}

#[async_trait]
impl EscalationStore for SqliteStore {
    async fn escalation(&self, id: EscalationId) -> AppResult<Option<Escalation>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(Row::into_domain).transpose()
    }

    async fn escalations(&self, f: &EscalationFilter) -> AppResult<Vec<Escalation>> {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {ESCALATION_COLUMNS} {FROM} WHERE 1 = 1"));
        if let Some(missions) = &f.missions {
            q.push(" AND e.mission_id IN (");
            let mut sep = q.separated(", ");
            sep.push_bind("\u{0}");
            for m in missions {
                sep.push_bind(m.as_str().to_string());
            }
            q.push(")");
        }
        if let Some(s) = f.state {
            q.push(" AND e.state = ").push_bind(s.as_str());
        }
        q.push(" ORDER BY e.id DESC LIMIT ").push_bind(f.limit);
        rows(q.build_query_as().fetch_all(&self.read).await?)
    }

    async fn escalations_to_reescalate(
        &self,
        before: Timestamp,
        limit: i64,
    ) -> AppResult<Vec<Escalation>> {
        rows(
            sqlx::query_as(&format!(
                "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.state IN ('pending', 'delivered') \
                 AND e.alerted_at < ? ORDER BY e.alerted_at LIMIT ?"
            ))
            .bind(fmt_time(before))
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        )
    }

    async fn unacknowledged_escalations(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM escalations WHERE state IN ('pending', 'delivered')",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(n)
    }

    async fn record_escalation_attempt(
        &self,
        id: EscalationId,
        delivered_at: Option<Timestamp>,
    ) -> AppResult<Option<Escalation>> {
        let changed = {
            let mut w = self.writer().await;
            sqlx::query("UPDATE escalations SET attempts = attempts + 1 WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *w)
                .await?;
            match delivered_at {
                Some(at) => {
                    sqlx::query(
                        "UPDATE escalations SET delivered_at = COALESCE(delivered_at, ?), \
                         state = CASE WHEN state = 'pending' THEN 'delivered' ELSE state END \
                         WHERE id = ? AND delivered_at IS NULL",
                    )
                    .bind(fmt_time(at))
                    .bind(id.to_string())
                    .execute(&mut *w)
                    .await?
                    .rows_affected()
                        > 0
                }
                None => false,
            }
        };
        if changed {
            self.escalation(id).await
        } else {
            Ok(None)
        }
    }

    async fn redeliver_subject(&self, subject: &str) -> AppResult<u64> {
        let mut w = self.writer().await;
        let r = sqlx::query(
            "UPDATE outbox SET delivered_at = NULL, next_attempt_at = ? WHERE subject = ?",
        )
        .bind(fmt_time(now()))
        .bind(subject)
        .execute(&mut *w)
        .await?;
        Ok(r.rows_affected())
    }
}
