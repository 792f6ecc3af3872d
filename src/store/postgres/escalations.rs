//! Escalations: read inside the commit for the planner (after the conversation rows
//! are locked, so two nodes never both open one for the same conversation), written
//! with its plan, and listed and annotated (delivery attempts) outside it.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

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
    id: Uuid,
    conversation_id: Uuid,
    mission_id: String,
    citizen_id: Uuid,
    citizen_name: String,
    citizen_country: Option<String>,
    reason: String,
    state: String,
    created_at: Timestamp,
    delivered_at: Option<Timestamp>,
    acknowledged_at: Option<Timestamp>,
    acknowledged_by: Option<String>,
    attempts: i64,
    reescalations: i64,
    alerted_at: Timestamp,
    location_lat: Option<f64>,
    location_lon: Option<f64>,
    location_accuracy_m: Option<f64>,
}

impl Row {
    fn into_domain(self) -> AppResult<Escalation> {
        Ok(Escalation {
            id: EscalationId(self.id),
            conversation_id: ConversationId(self.conversation_id),
            mission_id: MissionId::new(self.mission_id),
            citizen: CitizenRef {
                id: CitizenId(self.citizen_id),
                display_name: self.citizen_name,
                country: country(self.citizen_country.as_deref())?,
            },
            reason: word("escalation reason", &self.reason)?,
            state: word("escalation state", &self.state)?,
            created_at: self.created_at,
            delivered_at: self.delivered_at,
            acknowledged_at: self.acknowledged_at,
            acknowledged_by: self.acknowledged_by,
            attempts: self.attempts,
            reescalations: self.reescalations,
            alerted_at: self.alerted_at,
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

/// The open escalations of these conversations (inside the commit, after their rows
/// are locked).
pub(super) async fn load_open(
    conn: &mut PgConnection,
    conversations: &[ConversationId],
) -> AppResult<Vec<Escalation>> {
    let ids: Vec<Uuid> = conversations.iter().map(|c| c.0).collect();
    rows(
        sqlx::query_as(&format!(
            "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.state <> 'resolved' AND e.conversation_id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?,
    )
}

/// Write the planner's escalations (their whole state) inside the commit.
pub(super) async fn write(conn: &mut PgConnection, list: &[Escalation]) -> AppResult<()> {
    if list.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO escalations (id, conversation_id, mission_id, reason, state, created_at, \
         delivered_at, acknowledged_at, acknowledged_by, attempts, reescalations, alerted_at, \
         location_lat, location_lon, location_accuracy_m) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
                              $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::text[], \
                              $10::bigint[], $11::bigint[], $12::timestamptz[], \
                              $13::float8[], $14::float8[], $15::float8[]) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
         acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
         reescalations = excluded.reescalations, alerted_at = excluded.alerted_at, \
         location_lat = excluded.location_lat, location_lon = excluded.location_lon, \
         location_accuracy_m = excluded.location_accuracy_m",
    )
    .bind(list.iter().map(|e| e.id.0).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.conversation_id.0).collect::<Vec<_>>())
    .bind(
        list.iter()
            .map(|e| e.mission_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(list.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.state.as_str()).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.created_at).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.delivered_at).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.acknowledged_at).collect::<Vec<_>>())
    .bind(
        list.iter()
            .map(|e| e.acknowledged_by.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(list.iter().map(|e| e.attempts).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.reescalations).collect::<Vec<_>>())
    .bind(list.iter().map(|e| e.alerted_at).collect::<Vec<_>>())
    .bind(
        list.iter()
            .map(|e| e.location.map(|l| l.lat))
            .collect::<Vec<_>>(),
    )
    .bind(
        list.iter()
            .map(|e| e.location.map(|l| l.lon))
            .collect::<Vec<_>>(),
    )
    .bind(
        list.iter()
            .map(|e| e.location.and_then(|l| l.accuracy_m))
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl EscalationStore for PgStore {
    async fn escalation(&self, id: EscalationId) -> AppResult<Option<Escalation>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Row::into_domain).transpose()
    }

    async fn escalations(&self, f: &EscalationFilter) -> AppResult<Vec<Escalation>> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {ESCALATION_COLUMNS} {FROM} WHERE true"));
        if let Some(missions) = &f.missions {
            let ms: Vec<String> = missions.iter().map(|m| m.as_str().to_string()).collect();
            q.push(" AND e.mission_id = ANY(").push_bind(ms).push(")");
        }
        if let Some(s) = f.state {
            q.push(" AND e.state = ").push_bind(s.as_str());
        }
        q.push(" ORDER BY e.id DESC LIMIT ").push_bind(f.limit);
        rows(q.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn escalations_to_reescalate(
        &self,
        before: Timestamp,
        limit: i64,
    ) -> AppResult<Vec<Escalation>> {
        rows(
            sqlx::query_as(&format!(
                "SELECT {ESCALATION_COLUMNS} {FROM} WHERE e.state IN ('pending', 'delivered') \
                 AND e.alerted_at < $1 ORDER BY e.alerted_at LIMIT $2"
            ))
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn unacknowledged_escalations(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM escalations WHERE state IN ('pending', 'delivered')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    async fn record_escalation_attempt(
        &self,
        id: EscalationId,
        delivered_at: Option<Timestamp>,
    ) -> AppResult<Option<Escalation>> {
        // One statement: the first delivery moves a pending escalation to delivered,
        // whichever node's outbox worker reports it.
        let changed: Option<(bool,)> = sqlx::query_as(
            "WITH old AS (SELECT id, delivered_at FROM escalations WHERE id = $2 FOR UPDATE) \
             UPDATE escalations e SET attempts = e.attempts + 1, \
             delivered_at = COALESCE(e.delivered_at, $1), \
             state = CASE WHEN $1::timestamptz IS NOT NULL AND e.delivered_at IS NULL AND e.state = 'pending' \
                          THEN 'delivered' ELSE e.state END \
             FROM old WHERE e.id = old.id \
             RETURNING ($1::timestamptz IS NOT NULL AND old.delivered_at IS NULL)",
        )
        .bind(delivered_at)
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        if changed.is_some_and(|(c,)| c) {
            self.escalation(id).await
        } else {
            Ok(None)
        }
    }

    async fn redeliver_subject(&self, subject: &str) -> AppResult<u64> {
        let r = sqlx::query(
            "UPDATE outbox SET delivered_at = NULL, next_attempt_at = $1 WHERE subject = $2",
        )
        .bind(now())
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
