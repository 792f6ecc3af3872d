//! Signing in and out: citizens (guests, or bound to an identity token), staff (email
//! and password), bearer tokens, and the per-address limits on sign-ins.
//!
//! Tokens are 256 random bits; only their SHA-256 is stored, so a copy of the database
//! does not let anyone sign in, and a session is revoked by marking its row. Tokens are
//! never logged.

use std::net::IpAddr;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::events::Event;
use super::model::*;
use super::types::*;
use super::{Domain, Principal};
use crate::error::{AppError, AppResult};

/// Shortest staff password.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest display name.
const NAME_MAX_CHARS: usize = 100;

/// A fresh random bearer token and the hash stored for it.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!(
        "ls_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the email is unknown, so that a wrong email and a
/// wrong password take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").expect("argon2 works"))
}

/// A display name as shown to others: control characters removed, trimmed, at most
/// 100 characters; blank means "none".
pub fn clean_name(name: Option<&str>) -> AppResult<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(AppError::invalid(format!(
            "display_name is longer than {NAME_MAX_CHARS} characters"
        )));
    }
    Ok(Some(name.to_string()))
}

/// What a citizen asks for when signing in.
#[derive(Debug, Default)]
pub struct CitizenSignIn {
    pub display_name: Option<String>,
    pub locale: Option<Locale>,
    pub country: Option<CountryCode>,
    pub identity_token: Option<String>,
}

/// A new session: the token (shown once) and who it is for.
pub struct Issued {
    pub token: String,
    pub principal: Principal,
}

/// A new staff account (command line, first-run setup).
pub struct NewStaff {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub missions: Vec<MissionId>,
    pub capacity: i64,
    pub password: String,
}

impl Domain {
    pub(super) fn sign_in_allowed(&self, ip: IpAddr) -> AppResult<()> {
        self.limits.sign_ins.take(&ip, 1.0).map_err(|wait| {
            super::limits::limited(
                "too many sign-ins from this address; try again shortly",
                wait,
            )
        })
    }

    pub(super) async fn issue(&self, subject: SessionSubject) -> AppResult<String> {
        let ttl = match subject {
            SessionSubject::Citizen(_) => {
                chrono::Duration::days(self.config.sessions.citizen_ttl_days as i64)
            }
            SessionSubject::Agent(_) => {
                chrono::Duration::hours(self.config.sessions.agent_ttl_hours as i64)
            }
        };
        let (token, hash) = new_token();
        self.store
            .create_session(&hash, subject, now() + ttl)
            .await?;
        Ok(token)
    }

    /// A guest session, or one bound to a stable citizen when the identity token
    /// verifies.
    pub async fn citizen_sign_in(&self, ip: IpAddr, req: CitizenSignIn) -> AppResult<Issued> {
        self.sign_in_allowed(ip)?;
        let name = clean_name(req.display_name.as_deref())?;
        let citizen = match req.identity_token.as_deref() {
            Some(tok) => {
                let claims = self.identity.verify(tok)?;
                // Fields given in the request win; the token's fill the gaps (a bad
                // value in the token is ignored rather than refusing the sign-in).
                let name = name.or(clean_name(claims.name.as_deref()).unwrap_or(None));
                let locale = req
                    .locale
                    .or(Locale::parse_opt(claims.locale.as_deref()).unwrap_or(None));
                let country = req
                    .country
                    .or(CountryCode::parse_opt(claims.country.as_deref()).unwrap_or(None));
                self.store
                    .upsert_citizen_by_sub(&claims.sub, name.as_deref(), locale.as_ref(), country)
                    .await?
            }
            None => {
                let c = Citizen {
                    id: CitizenId::new(),
                    external_sub: None,
                    display_name: name.unwrap_or_else(|| "Guest".into()),
                    locale: req.locale,
                    country: req.country,
                    location: None,
                };
                self.store.create_citizen(&c).await?;
                c
            }
        };
        let token = self.issue(SessionSubject::Citizen(citizen.id)).await?;
        tracing::info!(citizen = %citizen.id, bound = citizen.external_sub.is_some(), "citizen session created");
        Ok(Issued {
            token,
            principal: Principal::Citizen(citizen),
        })
    }

    /// Staff sign-in with email and password. Failures are audited and take the same
    /// time whether the email exists or not.
    pub async fn staff_sign_in(
        &self,
        ip: IpAddr,
        email: &str,
        password: String,
    ) -> AppResult<Issued> {
        self.sign_in_allowed(ip)?;
        let email = email.trim();
        let agent = self.store.agent_by_email(email).await?;
        let hash = agent
            .as_ref()
            .map(|a| a.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        let agent = match (agent, ok) {
            (Some(a), true) => a,
            (found, _) => {
                tracing::info!("agent sign-in refused");
                let mut entry = AuditEntry::new(
                    Actor::System,
                    "login_failed",
                    json!({"email": email, "ip": ip.to_string()}),
                );
                if let Some(a) = &found {
                    entry = entry.target("agent", a.id);
                }
                if let Err(e) = self.store.audit(&entry).await {
                    e.log();
                }
                return Err(AppError::Unauthorized("wrong email or password".into()));
            }
        };
        let token = self.issue(SessionSubject::Agent(agent.id)).await?;
        tracing::info!(agent = %agent.id, role = %agent.role, "agent signed in");
        let entry = AuditEntry::new(
            Actor::Agent(agent.id),
            "login",
            json!({"ip": ip.to_string()}),
        )
        .target("agent", agent.id);
        if let Err(e) = self.store.audit(&entry).await {
            e.log();
        }
        Ok(Issued {
            token,
            principal: Principal::Staff(agent),
        })
    }

    /// Resolve a bearer token to its principal and session key; `None` for unknown,
    /// revoked or expired tokens.
    pub async fn authenticate(&self, token: &str) -> AppResult<Option<(Principal, String)>> {
        if token.is_empty() || token.len() > 200 {
            return Ok(None);
        }
        let hash = token_hash(token);
        let Some(s) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        if s.revoked || s.expires_at <= now() {
            return Ok(None);
        }
        let principal = match s.subject {
            SessionSubject::Citizen(id) => self.store.citizen(id).await?.map(Principal::Citizen),
            SessionSubject::Agent(id) => self.store.agent_by_id(id).await?.map(Principal::Staff),
        };
        Ok(principal.map(|p| (p, hash)))
    }

    /// Revoke the caller's session; its open sockets close with 4401 (on every node).
    pub async fn sign_out(&self, p: &Principal, session: &str) -> AppResult<()> {
        let audit = p.staff().map(|a| {
            AuditEntry::new(Actor::Agent(a.id), "logout", json!({})).target("agent", a.id)
        });
        self.store.revoke_session(session, audit.as_ref()).await?;
        self.publisher.publish(Event::SessionRevoked {
            session: session.to_string(),
        });
        if let Some(a) = p.staff() {
            tracing::info!(agent = %a.id, "agent session revoked");
        }
        Ok(())
    }

    /// Create a staff account (command line and first-run setup); validates every
    /// field and hashes the password with argon2.
    pub async fn create_staff(&self, s: NewStaff, by: Actor) -> AppResult<Agent> {
        let email = s.email.trim().to_string();
        if !(3..=254).contains(&email.len())
            || !email.contains('@')
            || email.contains(char::is_whitespace)
        {
            return Err(AppError::invalid(format!(
                "{email:?} is not an email address"
            )));
        }
        let name = clean_name(Some(&s.name))?
            .ok_or_else(|| AppError::invalid("a name of 1 to 100 characters is required"))?;
        if !(0..=100).contains(&s.capacity) {
            return Err(AppError::invalid("capacity must be between 0 and 100"));
        }
        if s.missions.is_empty() {
            return Err(AppError::invalid("at least one mission is required"));
        }
        for m in &s.missions {
            if self.config.mission(m.as_str()).is_none() {
                let known: Vec<&str> = self.config.missions.iter().map(|m| m.id.as_str()).collect();
                return Err(AppError::invalid(format!(
                    "unknown mission {:?} (configured: {})",
                    m.as_str(),
                    known.join(", ")
                )));
            }
        }
        if s.password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AppError::invalid(format!(
                "the password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        let password = s.password;
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| AppError::Internal(e.into()))??;
        let agent = Agent {
            id: AgentId::new(),
            email,
            name,
            role: s.role,
            password_hash: hash,
            capacity: s.capacity,
            presence: PresenceChoice::Online,
            missions: s.missions,
        };
        let audit = AuditEntry::new(
            by,
            "staff_create",
            json!({"email": agent.email, "role": agent.role, "missions": agent.missions}),
        )
        .target("agent", agent.id);
        self.store.create_agent(&agent, Some(&audit)).await?;
        Ok(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_roundtrip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(token_hash(&a), ha);
        assert!(!ha.contains(&a));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(Some(" 张\u{7}三 ")).unwrap().unwrap(), "张三");
        assert_eq!(clean_name(Some("   ")).unwrap(), None);
        assert!(clean_name(Some(&"x".repeat(101))).is_err());
    }
}
