//! Who is calling, and the access rules that follow from it. Every role check and the
//! mission access rule live here and nowhere else; adapters only ask.

use super::model::{Actor, Agent, Citizen, Conversation};
use super::types::*;
use crate::config::Config;
use crate::error::{AppError, AppResult};

/// The authenticated caller of a request, socket or bridge update.
#[derive(Clone, Debug)]
pub enum Principal {
    Citizen(Citizen),
    Staff(Agent),
}

impl Principal {
    pub fn id(&self) -> PersonId {
        match self {
            Principal::Citizen(c) => c.id.into(),
            Principal::Staff(a) => a.id.into(),
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Principal::Citizen(c) => &c.display_name,
            Principal::Staff(a) => &a.name,
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Principal::Citizen(c) => Actor::Citizen(c.id),
            Principal::Staff(a) => Actor::Agent(a.id),
        }
    }

    /// The role word shown to clients: `citizen`, `agent`, `editor` or `admin`.
    pub fn role_name(&self) -> &'static str {
        match self {
            Principal::Citizen(_) => "citizen",
            Principal::Staff(a) => a.role.as_str(),
        }
    }

    pub fn citizen(&self) -> Option<&Citizen> {
        match self {
            Principal::Citizen(c) => Some(c),
            Principal::Staff(_) => None,
        }
    }

    pub fn staff(&self) -> Option<&Agent> {
        match self {
            Principal::Staff(a) => Some(a),
            Principal::Citizen(_) => None,
        }
    }

    pub fn is_citizen(&self) -> bool {
        matches!(self, Principal::Citizen(_))
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Staff(a) if a.role == Role::Admin)
    }

    /// Agents and admins work conversations; editors only manage content.
    pub fn works_conversations(&self) -> bool {
        matches!(self, Principal::Staff(a) if matches!(a.role, Role::Agent | Role::Admin))
    }

    /// Editors and admins manage the knowledge base.
    pub fn edits_content(&self) -> bool {
        matches!(self, Principal::Staff(a) if matches!(a.role, Role::Editor | Role::Admin))
    }

    /// Whether this caller may see internal notes (and other staff-only fields).
    pub fn sees_internal(&self) -> bool {
        self.works_conversations()
    }

    /// The staff account of an agent or admin, else 403.
    pub fn require_agent(&self) -> AppResult<&Agent> {
        match self {
            Principal::Staff(a) if self.works_conversations() => Ok(a),
            _ => Err(AppError::forbidden("only agents and admins can do this")),
        }
    }

    pub fn require_editor(&self) -> AppResult<&Agent> {
        match self {
            Principal::Staff(a) if self.edits_content() => Ok(a),
            _ => Err(AppError::forbidden(
                "only editors and admins manage articles",
            )),
        }
    }

    pub fn require_admin(&self) -> AppResult<&Agent> {
        match self {
            Principal::Staff(a) if a.role == Role::Admin => Ok(a),
            _ => Err(AppError::forbidden("only admins can do this")),
        }
    }

    pub fn require_citizen(&self) -> AppResult<&Citizen> {
        match self {
            Principal::Citizen(c) => Ok(c),
            _ => Err(AppError::forbidden("only citizens can do this")),
        }
    }

    /// Missions whose shared data (canned responses, staff lists, escalations) this
    /// agent may use: an admin's are all of them.
    pub fn staff_missions(&self, config: &Config) -> AppResult<Vec<MissionId>> {
        let a = self.require_agent()?;
        Ok(if a.role == Role::Admin {
            config.missions.iter().map(MissionId::from).collect()
        } else {
            a.missions.clone()
        })
    }

    /// The conversation access rule for this caller.
    pub fn access(&self) -> Access {
        match self {
            Principal::Citizen(c) => Access::Citizen(c.id),
            Principal::Staff(a) => match a.role {
                Role::Admin => Access::All,
                Role::Agent => Access::Agent {
                    id: a.id,
                    missions: a.missions.clone(),
                },
                Role::Editor => Access::None,
            },
        }
    }
}

/// Who may see and write into which conversation. Checked against the conversation as
/// it is inside the transaction that writes, so a transfer that happens meanwhile is
/// honoured.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// A citizen: their own conversations.
    Citizen(CitizenId),
    /// An agent: their missions' conversations and those assigned to them.
    Agent {
        id: AgentId,
        missions: Vec<MissionId>,
    },
    /// Admins, and the service itself: every conversation.
    All,
    /// Editors: none.
    None,
}

impl Access {
    /// The mission access rule.
    pub fn allows(&self, conv: &Conversation) -> bool {
        match self {
            Access::Citizen(id) => conv.citizen.id == *id,
            Access::Agent { id, missions } => {
                missions.contains(&conv.mission_id) || conv.assignee_id == Some(*id)
            }
            Access::All => true,
            Access::None => false,
        }
    }
}
