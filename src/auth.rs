//! Who is calling: password hashing, bearer tokens, identity tokens, and the principal
//! that every HTTP handler and WebSocket connection carries.
//!
//! Tokens are 256 random bits; only their SHA-256 is stored, so a copy of the database
//! does not let anyone sign in, and a session is revoked by marking its row. Tokens are
//! never logged: request logging masks the `Authorization` header, and the WebSocket
//! `hello` frame is never logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, Identity};
use crate::error::{AppError, AppResult};
use crate::store::{fmt_time, parse_time, AgentWithMissions, CitizenRecord, Store};

pub const ROLES: [&str; 3] = ["agent", "editor", "admin"];

/// The authenticated caller of a request or socket.
#[derive(Clone, Debug)]
pub enum Principal {
    Citizen(CitizenRecord),
    Agent(AgentWithMissions),
}

impl Principal {
    pub fn id(&self) -> &str {
        match self {
            Principal::Citizen(c) => &c.id,
            Principal::Agent(a) => &a.agent.id,
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Principal::Citizen(c) => &c.display_name,
            Principal::Agent(a) => &a.agent.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Citizen(_) => "citizen",
            Principal::Agent(_) => "agent",
        }
    }

    pub fn role(&self) -> &str {
        match self {
            Principal::Citizen(_) => "citizen",
            Principal::Agent(a) => &a.agent.role,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == "admin"
    }

    /// Agents and admins work conversations; editors only manage content.
    pub fn works_conversations(&self) -> bool {
        matches!(self.role(), "agent" | "admin")
    }

    /// The public view used in `welcome`, `typing` and `read` frames.
    pub fn user_json(&self) -> serde_json::Value {
        match self {
            Principal::Citizen(c) => serde_json::json!({
                "id": c.id, "kind": "citizen", "role": "citizen", "display_name": c.display_name,
                "locale": c.locale, "country": c.country,
            }),
            Principal::Agent(a) => serde_json::json!({
                "id": a.agent.id, "kind": "agent", "role": a.agent.role, "display_name": a.agent.name,
                "name": a.agent.name, "email": a.agent.email, "missions": a.missions,
            }),
        }
    }
}

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
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").expect("argon2 works"))
}

/// Resolve a bearer token to its principal; `None` for unknown, revoked or expired.
pub async fn authenticate(store: &Store, token: &str) -> AppResult<Option<(Principal, String)>> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    let hash = token_hash(token);
    let Some(s) = store.session(&hash).await? else {
        return Ok(None);
    };
    if s.revoked_at.is_some() {
        return Ok(None);
    }
    match parse_time(&s.expires_at) {
        Some(exp) if exp > Utc::now() => {}
        _ => return Ok(None),
    }
    let principal = match s.kind.as_str() {
        "citizen" => store
            .citizen_by_id(&s.subject_id)
            .await?
            .map(Principal::Citizen),
        _ => store
            .agent_by_id(&s.subject_id)
            .await?
            .map(Principal::Agent),
    };
    Ok(principal.map(|p| (p, hash)))
}

/// Issue a session for a subject; returns the token (shown once) and its hash.
pub async fn issue_session(
    store: &Store,
    kind: &str,
    subject_id: &str,
    ttl: chrono::Duration,
) -> AppResult<(String, String)> {
    let (token, hash) = new_token();
    let expires = fmt_time(Utc::now() + ttl);
    store
        .create_session(&hash, kind, subject_id, &expires)
        .await?;
    Ok((token, hash))
}

/// Claims read from a citizen's identity token.
#[derive(Debug, Deserialize, Serialize)]
pub struct IdentityClaims {
    pub sub: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

/// Verifies identity tokens with the keys from config.
pub struct IdentityVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
}

impl IdentityVerifier {
    pub fn from_config(cfg: &Identity) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if !cfg.hs256_secret.is_empty() {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(cfg.hs256_secret.expose().as_bytes()),
            ));
        }
        if !cfg.rs256_public_key_pem.trim().is_empty() {
            let k =
                DecodingKey::from_rsa_pem(cfg.rs256_public_key_pem.as_bytes()).map_err(|e| {
                    anyhow::anyhow!(
                        "identity.rs256_public_key_pem is not a PEM RSA public key: {e}"
                    )
                })?;
            keys.push((Algorithm::RS256, k));
        }
        if !cfg.es256_public_key_pem.trim().is_empty() {
            let k = DecodingKey::from_ec_pem(cfg.es256_public_key_pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!("identity.es256_public_key_pem is not a PEM EC public key: {e}")
            })?;
            keys.push((Algorithm::ES256, k));
        }
        Ok(IdentityVerifier {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The verified claims, or `unauthorized` (never which check failed in detail).
    pub fn verify(&self, token: &str) -> AppResult<IdentityClaims> {
        if !self.enabled() {
            return Err(AppError::InvalidInput(
                "identity tokens are not accepted by this server".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AppError::Unauthorized("identity_token is not a valid JWT".into()))?;
        let Some((alg, key)) = self.keys.iter().find(|(a, _)| *a == header.alg) else {
            return Err(AppError::Unauthorized(
                "identity_token is signed with an algorithm this server does not accept".into(),
            ));
        };
        let mut v = Validation::new(*alg);
        v.set_required_spec_claims(&["exp", "sub"]);
        if !self.issuer.is_empty() {
            v.set_issuer(&[&self.issuer]);
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&[&self.audience]);
        }
        let data = jsonwebtoken::decode::<IdentityClaims>(token, key, &v).map_err(|e| {
            tracing::debug!(error = %e, "identity token refused");
            AppError::Unauthorized("identity_token is invalid or expired".into())
        })?;
        if data.claims.sub.trim().is_empty() || data.claims.sub.len() > 255 {
            return Err(AppError::Unauthorized(
                "identity_token has no usable sub".into(),
            ));
        }
        Ok(data.claims)
    }
}

/// Per-client-address token bucket for session creation.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: per_minute as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `ip`; `Err(seconds)` tells when the next one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let rate = self.per_minute / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget addresses whose bucket has refilled; they lose nothing.
            let cap = self.per_minute;
            map.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < cap);
        }
        let (tokens, at) = map.entry(ip).or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(self.per_minute);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Validate a role name from the command line or API.
pub fn check_role(role: &str) -> Result<(), String> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(format!("role must be one of {}", ROLES.join(", ")))
    }
}

/// Validate the missions an agent is added to.
pub fn check_missions(config: &Config, missions: &[String]) -> Result<(), String> {
    if missions.is_empty() {
        return Err("at least one --mission is required".into());
    }
    for m in missions {
        if config.mission(m).is_none() {
            let known: Vec<&str> = config.missions.iter().map(|m| m.id.as_str()).collect();
            return Err(format!(
                "unknown mission {m:?} (configured: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
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
    fn limiter_refuses_after_burst() {
        let l = RateLimiter::new(3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        let wait = l.check(ip).unwrap_err();
        assert!(wait >= 1);
        assert!(l.check("127.0.0.2".parse().unwrap()).is_ok());
    }
}
