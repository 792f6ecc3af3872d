//! First run: while no staff account exists, the server holds a one-time setup token
//! and prints it as a link to the console; whoever opens the link creates the first
//! administrator (of every configured mission) and is signed in. The token lives only
//! in memory (as its SHA-256), so a restart prints a fresh one and a copy of the data
//! directory is no key; it stops working as soon as any staff account exists, however
//! that account was made.

use std::net::IpAddr;

use serde_json::json;
use tokio::sync::Mutex;

use super::model::{Actor, AuditEntry, SessionSubject};
use super::sessions::{new_token, token_hash, Issued, NewStaff};
use super::types::{MissionId, Role};
use super::{Domain, Principal};
use crate::error::{AppError, AppResult};

/// Open conversations auto-assigned at once to the first administrator.
const FIRST_ADMIN_CAPACITY: i64 = 5;

/// The hash of the setup token while one is open. The lock also makes two setups at
/// once take turns, so exactly one of them creates the administrator.
#[derive(Default)]
pub struct SetupGate {
    hash: Mutex<Option<String>>,
}

/// What the setup form sends.
pub struct FirstAdmin {
    pub setup_token: String,
    pub email: String,
    pub name: String,
    pub password: String,
}

impl Domain {
    /// When there is no staff account yet, open setup and return the token (to be
    /// shown once, to whoever started the server); `None` when staff exist.
    pub async fn open_setup(&self) -> AppResult<Option<String>> {
        let mut gate = self.setup.hash.lock().await;
        if self.store.staff_count().await? > 0 {
            *gate = None;
            return Ok(None);
        }
        let (token, hash) = new_token();
        *gate = Some(hash);
        Ok(Some(token))
    }

    /// Create the first administrator with the setup token and sign them in. The token
    /// works once; a wrong, used or closed token is `unauthorized`, and attempts count
    /// against the address's sign-in budget.
    pub async fn first_run_setup(&self, ip: IpAddr, req: FirstAdmin) -> AppResult<Issued> {
        self.sign_in_allowed(ip)?;
        let refused =
            || AppError::Unauthorized("the setup link is wrong or was already used".into());
        let mut gate = self.setup.hash.lock().await;
        let Some(expected) = gate.as_deref() else {
            return Err(refused());
        };
        // Both sides are hex digests of the same length: comparing them says nothing
        // about the token itself.
        if req.setup_token.len() > 200 || token_hash(&req.setup_token) != expected {
            tracing::info!("setup refused: wrong token");
            return Err(refused());
        }
        if self.store.staff_count().await? > 0 {
            *gate = None;
            return Err(refused());
        }
        let missions: Vec<MissionId> = self
            .config
            .missions
            .iter()
            .map(|m| MissionId::new(&m.id))
            .collect();
        let agent = self
            .create_staff(
                NewStaff {
                    email: req.email,
                    name: req.name,
                    role: Role::Admin,
                    missions,
                    capacity: FIRST_ADMIN_CAPACITY,
                    password: req.password,
                },
                Actor::System,
            )
            .await?;
        // Only now: a form error above leaves the link usable for a second try.
        *gate = None;
        drop(gate);
        let token = self.issue(SessionSubject::Agent(agent.id)).await?;
        tracing::info!(agent = %agent.id, "first administrator created by the setup link");
        let entry = AuditEntry::new(
            Actor::Agent(agent.id),
            "setup",
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
}
