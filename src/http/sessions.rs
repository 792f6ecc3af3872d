//! Sign-in for citizens (guest or identity token) and staff (email + password),
//! sign-out, the caller's own profile, a citizen's shared location, and the first-run
//! setup of the first administrator.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{client_ip, AppJson, Auth};
use crate::app::AppState;
use crate::domain::sessions::CitizenSignIn;
use crate::domain::setup::FirstAdmin;
use crate::domain::types::{CountryCode, GeoPoint, Locale};
use crate::domain::Principal;
use crate::error::AppResult;
use crate::wire::UserView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/citizen/sessions", post(citizen_session).delete(revoke))
        .route("/v1/agent/sessions", post(agent_session).delete(revoke))
        .route("/v1/citizen/location", put(location))
        .route("/v1/me", get(me))
        .route("/v1/setup", post(setup))
}

#[derive(Deserialize)]
struct CitizenSessionRequest {
    display_name: Option<String>,
    locale: Option<String>,
    country: Option<String>,
    identity_token: Option<String>,
}

fn session_body(token: String, p: &Principal) -> serde_json::Value {
    match p {
        Principal::Citizen(c) => json!({
            "token": token,
            "citizen": {
                "id": c.id, "display_name": c.display_name,
                "locale": c.locale, "country": c.country,
            }
        }),
        Principal::Staff(a) => json!({
            "token": token,
            "agent": {
                "id": a.id, "name": a.name, "email": a.email,
                "role": a.role, "missions": a.missions,
            }
        }),
    }
}

async fn citizen_session(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    AppJson(req): AppJson<CitizenSessionRequest>,
) -> AppResult<impl IntoResponse> {
    let issued = state
        .domain
        .citizen_sign_in(
            client_ip(&info),
            CitizenSignIn {
                display_name: req.display_name,
                locale: Locale::parse_opt(req.locale.as_deref())?,
                country: CountryCode::parse_opt(req.country.as_deref())?,
                identity_token: req.identity_token,
            },
        )
        .await?;
    Ok((
        StatusCode::OK,
        Json(session_body(issued.token, &issued.principal)),
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
    let issued = state
        .domain
        .staff_sign_in(client_ip(&info), &req.email, req.password)
        .await?;
    Ok((
        StatusCode::OK,
        Json(session_body(issued.token, &issued.principal)),
    ))
}

#[derive(Deserialize)]
struct SetupRequest {
    setup_token: String,
    email: String,
    name: String,
    password: String,
}

/// The first administrator, created with the link printed by `lingshi serve`.
async fn setup(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    AppJson(req): AppJson<SetupRequest>,
) -> AppResult<impl IntoResponse> {
    let issued = state
        .domain
        .first_run_setup(
            client_ip(&info),
            FirstAdmin {
                setup_token: req.setup_token,
                email: req.email,
                name: req.name,
                password: req.password,
            },
        )
        .await?;
    Ok((
        StatusCode::OK,
        Json(session_body(issued.token, &issued.principal)),
    ))
}

/// Revoke the calling token; its open sockets are closed with 4401.
async fn revoke(State(state): State<AppState>, auth: Auth) -> AppResult<StatusCode> {
    state
        .domain
        .sign_out(&auth.principal, &auth.session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(auth: Auth) -> impl IntoResponse {
    Json(json!({"user": UserView::of(&auth.principal)}))
}

#[derive(Deserialize)]
struct LocationRequest {
    lat: f64,
    lon: f64,
    accuracy_m: Option<f64>,
}

async fn location(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<LocationRequest>,
) -> AppResult<StatusCode> {
    let at = GeoPoint::parse(req.lat, req.lon, req.accuracy_m)?;
    state.domain.set_location(&auth.principal, at).await?;
    Ok(StatusCode::NO_CONTENT)
}
