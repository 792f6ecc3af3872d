//! Staff accounts, citizens and sessions.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::*;
use crate::domain::model::*;
use crate::domain::ports::PeopleStore;

const AGENT_COLUMNS: &str = "id, email, name, role, password_hash, capacity, presence";
pub(super) const CITIZEN_COLUMNS: &str = "id, external_sub, display_name, locale, country, \
     location_lat, location_lon, location_accuracy_m";

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    capacity: i64,
    presence: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct CitizenRow {
    id: String,
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
            id: CitizenId(uuid(&self.id)?),
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

impl SqliteStore {
    async fn with_missions(&self, row: Option<AgentRow>) -> AppResult<Option<Agent>> {
        let Some(r) = row else { return Ok(None) };
        let missions: Vec<(String,)> = sqlx::query_as(
            "SELECT mission_id FROM agent_missions WHERE agent_id = ? ORDER BY mission_id",
        )
        .bind(&r.id)
        .fetch_all(&self.read)
        .await?;
        Ok(Some(Agent {
            id: AgentId(uuid(&r.id)?),
            email: r.email,
            name: r.name,
            role: word("role", &r.role)?,
            password_hash: r.password_hash,
            capacity: r.capacity,
            presence: word("presence", &r.presence)?,
            missions: missions.into_iter().map(|(m,)| MissionId::new(m)).collect(),
        }))
    }
}

async fn fetch_citizen_by_sub(conn: &mut SqliteConnection, sub: &str) -> AppResult<Citizen> {
    let row: CitizenRow = sqlx::query_as(&format!(
        "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE external_sub = ?"
    ))
    .bind(sub)
    .fetch_one(conn)
    .await?;
    row.into_domain()
}

#[async_trait]
impl PeopleStore for SqliteStore {
    async fn create_agent(&self, a: &Agent, audit: Option<&AuditEntry>) -> AppResult<()> {
        let now = fmt_time(now());
        write_tx!(self, |tx| {
            let res = sqlx::query(
                "INSERT INTO agents (id, email, name, role, password_hash, capacity, presence, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(a.id.to_string())
            .bind(&a.email)
            .bind(&a.name)
            .bind(a.role.as_str())
            .bind(&a.password_hash)
            .bind(a.capacity)
            .bind(a.presence.as_str())
            .bind(&now)
            .bind(&now)
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
            for m in &a.missions {
                sqlx::query(
                    "INSERT OR IGNORE INTO agent_missions (agent_id, mission_id) VALUES (?, ?)",
                )
                .bind(a.id.to_string())
                .bind(m.as_str())
                .execute(&mut *tx)
                .await?;
            }
            if let Some(entry) = audit {
                insert_audit(&mut tx, entry).await?;
            }
        });
        Ok(())
    }

    async fn agent_by_email(&self, email: &str) -> AppResult<Option<Agent>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE email = ?"
        ))
        .bind(email)
        .fetch_optional(&self.read)
        .await?;
        self.with_missions(row).await
    }

    async fn agent_by_id(&self, id: AgentId) -> AppResult<Option<Agent>> {
        let row: Option<AgentRow> =
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?"))
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await?;
        self.with_missions(row).await
    }

    async fn staff_count(&self) -> AppResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
            .fetch_one(&self.read)
            .await?;
        Ok(n)
    }

    async fn set_agent_presence(
        &self,
        id: AgentId,
        presence: PresenceChoice,
        audit: &AuditEntry,
    ) -> AppResult<()> {
        write_tx!(self, |tx| {
            sqlx::query("UPDATE agents SET presence = ?, updated_at = ? WHERE id = ?")
                .bind(presence.as_str())
                .bind(fmt_time(now()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, audit).await?;
        });
        Ok(())
    }

    async fn set_agent_capacity(
        &self,
        id: AgentId,
        capacity: i64,
        audit: &AuditEntry,
    ) -> AppResult<()> {
        write_tx!(self, |tx| {
            sqlx::query("UPDATE agents SET capacity = ?, updated_at = ? WHERE id = ?")
                .bind(capacity)
                .bind(fmt_time(now()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            insert_audit(&mut tx, audit).await?;
        });
        Ok(())
    }

    async fn mission_staff(&self, mission: &MissionId) -> AppResult<Vec<Agent>> {
        let rows: Vec<AgentRow> = sqlx::query_as(
            "SELECT a.id, a.email, a.name, a.role, a.password_hash, a.capacity, a.presence FROM agents a \
             JOIN agent_missions m ON m.agent_id = a.id WHERE m.mission_id = ? ORDER BY a.name",
        )
        .bind(mission.as_str())
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(a) = self.with_missions(Some(r)).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    async fn create_citizen(&self, c: &Citizen) -> AppResult<()> {
        let now = fmt_time(now());
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id.to_string())
        .bind(&c.external_sub)
        .bind(&c.display_name)
        .bind(c.locale.as_ref().map(|l| l.as_str()))
        .bind(c.country.as_ref().map(|c| c.as_str().to_string()))
        .bind(&now)
        .bind(&now)
        .execute(&mut *w)
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
        let now = fmt_time(now());
        let locale = locale.map(|l| l.as_str().to_string());
        let country = country.map(|c| c.as_str().to_string());
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
        .bind(CitizenId::new().to_string())
        .bind(sub)
        .bind(display_name.unwrap_or("Citizen"))
        .bind(&locale)
        .bind(&country)
        .bind(&now)
        .bind(&now)
        .bind(display_name)
        .bind(&locale)
        .bind(&country)
        .execute(&mut *w)
        .await?;
        fetch_citizen_by_sub(&mut w, sub).await
    }

    async fn citizen(&self, id: CitizenId) -> AppResult<Option<Citizen>> {
        let row: Option<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(CitizenRow::into_domain).transpose()
    }

    async fn set_citizen_location(&self, id: CitizenId, at: GeoPoint) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "UPDATE citizens SET location_lat = ?, location_lon = ?, location_accuracy_m = ?, \
             location_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(at.lat)
        .bind(at.lon)
        .bind(at.accuracy_m)
        .bind(fmt_time(now()))
        .bind(fmt_time(now()))
        .bind(id.to_string())
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn update_citizen_profile(
        &self,
        id: CitizenId,
        locale: Option<&Locale>,
        country: Option<Option<CountryCode>>,
    ) -> AppResult<Option<Citizen>> {
        let mut w = self.writer().await;
        let r = sqlx::query(
            "UPDATE citizens SET locale = CASE WHEN ? THEN ? ELSE locale END, \
             country = CASE WHEN ? THEN ? ELSE country END, updated_at = ? WHERE id = ?",
        )
        .bind(locale.is_some())
        .bind(locale.map(|l| l.as_str().to_string()))
        .bind(country.is_some())
        .bind(country.flatten().map(|c| c.as_str().to_string()))
        .bind(fmt_time(now()))
        .bind(id.to_string())
        .execute(&mut *w)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let row: CitizenRow = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_one(&mut *w)
        .await?;
        row.into_domain().map(Some)
    }

    async fn citizens_located_in(
        &self,
        lat: (f64, f64),
        lon: (f64, f64),
    ) -> AppResult<Vec<(CitizenId, GeoPoint)>> {
        let rows: Vec<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE location_lat BETWEEN ? AND ? \
             AND location_lon BETWEEN ? AND ?"
        ))
        .bind(lat.0)
        .bind(lat.1)
        .bind(lon.0)
        .bind(lon.1)
        .fetch_all(&self.read)
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
            SessionSubject::Citizen(c) => ("citizen", c.to_string()),
            SessionSubject::Agent(a) => ("agent", a.to_string()),
        };
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO sessions (token_hash, kind, subject_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(kind)
        .bind(id)
        .bind(fmt_time(now()))
        .bind(fmt_time(expires_at))
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> AppResult<Option<Session>> {
        let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT kind, subject_id, expires_at, revoked_at FROM sessions WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let Some((kind, subject, expires, revoked)) = row else {
            return Ok(None);
        };
        let id = uuid(&subject)?;
        let subject = match kind.as_str() {
            "citizen" => SessionSubject::Citizen(CitizenId(id)),
            "agent" => SessionSubject::Agent(AgentId(id)),
            other => return Err(corrupt("session kind", other)),
        };
        Ok(Some(Session {
            subject,
            expires_at: time(&expires)?,
            revoked: revoked.is_some(),
        }))
    }

    async fn revoke_session(
        &self,
        token_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> AppResult<bool> {
        Ok(write_tx!(self, |tx| {
            let r = sqlx::query(
                "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
            )
            .bind(fmt_time(now()))
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
            if let Some(entry) = audit {
                insert_audit(&mut tx, entry).await?;
            }
            r.rows_affected() > 0
        }))
    }
}
