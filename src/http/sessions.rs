//! Sign-in for citizens (guest or identity token) and staff (email + password).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{client_ip, AppJson, Auth};
use crate::auth::{issue_session, verify_password, Principal};
use crate::config::is_country_code;
use crate::error::{AppError, AppResult};
use crate::server::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/citizen/sessions", post(citizen_session).delete(revoke))
        .route("/v1/agent/sessions", post(agent_session).delete(revoke))
}

fn rate_limit(state: &AppState, info: &ConnectInfo<SocketAddr>) -> AppResult<()> {
    state
        .session_limiter
        .check(client_ip(info))
        .map_err(|wait| AppError::RateLimited {
            message: "too many sign-ins from this address; try again shortly".into(),
            retry_after_secs: wait,
        })
}

#[derive(Deserialize)]
struct CitizenSessionRequest {
    display_name: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    identity_token: Option<String>,
}

fn clean_name(name: Option<String>) -> AppResult<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid(
            "display_name is longer than 100 characters",
        ));
    }
    Ok(Some(name.to_string()))
}

fn clean_locale(locale: Option<String>) -> AppResult<Option<String>> {
    let Some(l) = locale else { return Ok(None) };
    let ok = !l.is_empty()
        && l.len() <= 35
        && l.split('-')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !ok {
        return Err(AppError::invalid(format!(
            "locale {l:?} is not a BCP 47 tag like zh-CN or en"
        )));
    }
    Ok(Some(l))
}

fn clean_country(country: Option<String>) -> AppResult<Option<String>> {
    let Some(c) = country else { return Ok(None) };
    let upper = c.trim().to_ascii_uppercase();
    if !is_country_code(&upper) {
        return Err(AppError::invalid(format!(
            "country {c:?} is not an ISO 3166-1 alpha-2 code like BE"
        )));
    }
    Ok(Some(upper))
}

async fn citizen_session(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    AppJson(req): AppJson<CitizenSessionRequest>,
) -> AppResult<impl IntoResponse> {
    rate_limit(&state, &info)?;
    let name = clean_name(req.display_name)?;
    let locale = clean_locale(req.locale)?;
    let country = clean_country(req.country)?;
    let citizen = match req.identity_token.as_deref() {
        Some(tok) => {
            let claims = state.identity.verify(tok)?;
            let name = name.or(clean_name(claims.name).unwrap_or(None));
            let locale = locale.or(clean_locale(claims.locale).unwrap_or(None));
            let country = country.or(clean_country(claims.country).unwrap_or(None));
            state
                .store
                .upsert_citizen_by_sub(
                    &claims.sub,
                    name.as_deref(),
                    locale.as_deref(),
                    country.as_deref(),
                )
                .await?
        }
        None => {
            state
                .store
                .create_guest(
                    name.as_deref().unwrap_or("Guest"),
                    locale.as_deref(),
                    country.as_deref(),
                )
                .await?
        }
    };
    let ttl = chrono::Duration::days(state.config.sessions.citizen_ttl_days as i64);
    let (token, _) = issue_session(&state.store, "citizen", &citizen.id, ttl).await?;
    tracing::info!(citizen = %citizen.id, bound = citizen.external_sub.is_some(), "citizen session created");
    Ok((
        StatusCode::OK,
        Json(json!({
            "token": token,
            "citizen": {
                "id": citizen.id, "display_name": citizen.display_name,
                "locale": citizen.locale, "country": citizen.country,
            }
        })),
    ))
}

#[derive(Deserialize)]
struct AgentSessionRequest {
    email: String,
    password: String,
}

async fn agent_session(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    AppJson(req): AppJson<AgentSessionRequest>,
) -> AppResult<impl IntoResponse> {
    rate_limit(&state, &info)?;
    let agent = state.store.agent_by_email(req.email.trim()).await?;
    // Verify against a dummy hash for unknown emails so timing does not reveal them.
    let hash = agent
        .as_ref()
        .map(|a| a.agent.password_hash.clone())
        .unwrap_or_else(|| crate::auth::dummy_hash().to_string());
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let agent = match (agent, ok) {
        (Some(a), true) => a,
        (found, _) => {
            tracing::info!("agent sign-in refused");
            let details = json!({"email": req.email.trim(), "ip": client_ip(&info).to_string()});
            state
                .chat
                .audit(
                    None,
                    "login_failed",
                    found.as_ref().map(|a| ("agent", a.agent.id.as_str())),
                    None,
                    details,
                )
                .await;
            return Err(AppError::Unauthorized("wrong email or password".into()));
        }
    };
    let ttl = chrono::Duration::hours(state.config.sessions.agent_ttl_hours as i64);
    let (token, _) = issue_session(&state.store, "agent", &agent.agent.id, ttl).await?;
    tracing::info!(agent = %agent.agent.id, role = %agent.agent.role, "agent signed in");
    let who = Principal::Agent(agent.clone());
    state
        .chat
        .audit(
            Some(&who),
            "login",
            Some(("agent", &agent.agent.id)),
            None,
            json!({"ip": client_ip(&info).to_string()}),
        )
        .await;
    Ok((
        StatusCode::OK,
        Json(json!({
            "token": token,
            "agent": {
                "id": agent.agent.id, "name": agent.agent.name, "email": agent.agent.email,
                "role": agent.agent.role, "missions": agent.missions,
            }
        })),
    ))
}

/// Revoke the calling token; its open sockets are closed with 4401.
async fn revoke(State(state): State<AppState>, auth: Auth) -> AppResult<StatusCode> {
    state.store.revoke_session(&auth.session).await?;
    state.hub.close_session(&auth.session);
    if let Principal::Agent(a) = &auth.principal {
        tracing::info!(agent = %a.agent.id, "agent session revoked");
        state
            .chat
            .audit(
                Some(&auth.principal),
                "logout",
                Some(("agent", &a.agent.id)),
                None,
                json!({}),
            )
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
