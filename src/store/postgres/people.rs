//! Staff accounts, citizens and sessions.

use async_trait::async_trait;
use uuid::Uuid;

use super::*;
use crate::domain::model::*;
use crate::domain::ports::PeopleStore;

const AGENT_COLUMNS: &str = "a.id, a.email, a.name, a.role, a.password_hash, a.capacity, a.presence, \
     ARRAY(SELECT mission_id FROM agent_missions m WHERE m.agent_id = a.id ORDER BY mission_id) AS missions";
pub(super) const CITIZEN_COLUMNS: &str = "id, external_sub, display_name, locale, country, \
     location_lat, location_lon, location_accuracy_m";

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    capacity: i64,
    presence: String,
    missions: Vec<String>,
}

impl AgentRow {
    fn into_domain(self) -> AppResult<Agent> {
        Ok(Agent {
            id: AgentId(self.id),
            email: self.email,
            name: self.name,
            role: word("role", &self.role)?,
            password_hash: self.password_hash,
            capacity: self.capacity,
            presence: word("presence", &self.presence)?,
            missions: self.missions.into_iter().map(MissionId::new).collect(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CitizenRow {
    id: Uuid,
    external_sub: Option<String>,
    display_name: String,
    locale: Option<String>,
    country: Option<String>,
    location_lat: Option<f64>,
    location_lon: Option<f64>,
    location_accuracy_m: Option<f64>,
}

impl CitizenRow {
    pub(super) fn into_domain(self) -> AppResult<Citizen> {
        Ok(Citizen {
            id: CitizenId(self.id),
            external_sub: self.external_sub,
            display_name: self.display_name,
            locale: self
                .locale
                .as_deref()
                .map(|l| Locale::parse(l).map_err(|_| corrupt("locale", l)))
                .transpose()?,
            country: country(self.country.as_deref())?,
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

#[async_trait]
impl PeopleStore for PgStore {
    async fn create_agent(&self, a: &Agent, audit: Option<&AuditEntry>) -> AppResult<()> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO agents (id, email, name, role, password_hash, capacity, presence, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(a.id.0)
        .bind(&a.email)
        .bind(&a.name)
        .bind(a.role.as_str())
        .bind(&a.password_hash)
        .bind(a.capacity)
        .bind(a.presence.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = res {
            if is_unique_violation(&e) {
                return Err(AppError::Conflict(format!(
                    "an agent with email {} already exists",
                    a.email
                )));
            }
            return Err(e.into());
        }
        let missions: Vec<&str> = a.missions.iter().map(MissionId::as_str).collect();
        sqlx::query(
            "INSERT INTO agent_missions (agent_id, mission_id) SELECT $1, m FROM unnest($2::text[]) AS m \
             ON CONFLICT DO NOTHING",
        )
        .bind(a.id.0)
        .bind(missions)
        .execute(&mut *tx)
        .await?;
        if let Some(entry) = audit {
            insert_audit(&mut tx, std::slice::from_ref(entry)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn agent_by_email(&self, email: &str) -> AppResult<Option<Agent>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents a WHERE lower(a.email) = lower($1)"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(AgentRow::into_domain).transpose()
    }

    async fn agent_by_id(&self, id: AgentId) -> AppResult<Option<Agent>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents a WHERE a.id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(AgentRow::into_domain).transpose()
    }

    async fn staff_count(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    async fn set_agent_presence(
        &self,
        id: AgentId,
        presence: PresenceChoice,
        audit: &AuditEntry,
    ) -> AppResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE agents SET presence = $1, updated_at = $2 WHERE id = $3")
            .bind(presence.as_str())
            .bind(now())
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_agent_capacity(
        &self,
        id: AgentId,
        capacity: i64,
        audit: &AuditEntry,
    ) -> AppResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE agents SET capacity = $1, updated_at = $2 WHERE id = $3")
            .bind(capacity)
            .bind(now())
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mission_staff(&self, mission: &MissionId) -> AppResult<Vec<Agent>> {
        let rows: Vec<AgentRow> = sqlx::query_as(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents a JOIN agent_missions am ON am.agent_id = a.id \
             WHERE am.mission_id = $1 ORDER BY a.name"
        ))
        .bind(mission.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AgentRow::into_domain).collect()
    }

    async fn create_citizen(&self, c: &Citizen) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(c.id.0)
        .bind(&c.external_sub)
        .bind(&c.display_name)
        .bind(c.locale.as_ref().map(|l| l.as_str()))
        .bind(c.country.as_ref().map(|c| c.as_str()))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upsert_citizen_by_sub(
        &self,
        sub: &str,
        display_name: Option<&str>,
        locale: Option<&Locale>,
        country: Option<CountryCode>,
    ) -> AppResult<Citizen> {
        let row: CitizenRow = sqlx::query_as(&format!(
            "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
             VALUES ($1, $2, COALESCE($3, 'Citizen'), $4, $5, $6, $6) \
             ON CONFLICT (external_sub) DO UPDATE SET \
               display_name = COALESCE($3, citizens.display_name), \
               locale = COALESCE($4, citizens.locale), \
               country = COALESCE($5, citizens.country), \
               updated_at = excluded.updated_at \
             RETURNING {CITIZEN_COLUMNS}"
        ))
        .bind(CitizenId::new().0)
        .bind(sub)
        .bind(display_name)
        .bind(locale.map(|l| l.as_str()))
        .bind(country.as_ref().map(|c| c.as_str()))
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        row.into_domain()
    }

    async fn citizen(&self, id: CitizenId) -> AppResult<Option<Citizen>> {
        let row: Option<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(CitizenRow::into_domain).transpose()
    }

    async fn set_citizen_location(&self, id: CitizenId, at: GeoPoint) -> AppResult<()> {
        sqlx::query(
            "UPDATE citizens SET location_lat = $1, location_lon = $2, location_accuracy_m = $3, \
             location_at = $4, updated_at = $4 WHERE id = $5",
        )
        .bind(at.lat)
        .bind(at.lon)
        .bind(at.accuracy_m)
        .bind(now())
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_citizen_profile(
        &self,
        id: CitizenId,
        locale: Option<&Locale>,
        country: Option<Option<CountryCode>>,
    ) -> AppResult<Option<Citizen>> {
        let row: Option<CitizenRow> = sqlx::query_as(&format!(
            "UPDATE citizens SET locale = CASE WHEN $1 THEN $2 ELSE locale END, \
             country = CASE WHEN $3 THEN $4 ELSE country END, updated_at = $5 WHERE id = $6 \
             RETURNING {CITIZEN_COLUMNS}"
        ))
        .bind(locale.is_some())
        .bind(locale.map(|l| l.as_str()))
        .bind(country.is_some())
        .bind(country.flatten().map(|c| c.as_str().to_string()))
        .bind(now())
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(CitizenRow::into_domain).transpose()
    }

    async fn citizens_located_in(
        &self,
        lat: (f64, f64),
        lon: (f64, f64),
    ) -> AppResult<Vec<(CitizenId, GeoPoint)>> {
        let rows: Vec<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE location_lat BETWEEN $1 AND $2 \
             AND location_lon BETWEEN $3 AND $4"
        ))
        .bind(lat.0)
        .bind(lat.1)
        .bind(lon.0)
        .bind(lon.1)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let c = r.into_domain()?;
            if let Some(at) = c.location {
                out.push((c.id, at));
            }
        }
        Ok(out)
    }

    async fn create_session(
        &self,
        token_hash: &str,
        subject: SessionSubject,
        expires_at: Timestamp,
    ) -> AppResult<()> {
        let (kind, id) = match subject {
            SessionSubject::Citizen(c) => ("citizen", c.0),
            SessionSubject::Agent(a) => ("agent", a.0),
        };
        sqlx::query(
            "INSERT INTO sessions (token_hash, kind, subject_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(kind)
        .bind(id)
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> AppResult<Option<Session>> {
        let row: Option<(String, Uuid, Timestamp, Option<Timestamp>)> = sqlx::query_as(
            "SELECT kind, subject_id, expires_at, revoked_at FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((kind, id, expires_at, revoked)) = row else {
            return Ok(None);
        };
        let subject = match kind.as_str() {
            "citizen" => SessionSubject::Citizen(CitizenId(id)),
            "agent" => SessionSubject::Agent(AgentId(id)),
            other => return Err(corrupt("session kind", other)),
        };
        Ok(Some(Session {
            subject,
            expires_at,
            revoked: revoked.is_some(),
        }))
    }

    async fn revoke_session(
        &self,
        token_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> AppResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        if let Some(entry) = audit {
            insert_audit(&mut tx, std::slice::from_ref(entry)).await?;
        }
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }
}
