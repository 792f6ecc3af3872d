//! The agent workflow: claiming and assignment, transfers, resolve/reopen, priority,
//! labels, presence, capacity, canned responses, the staff roster and the audit log.
//! Conversation transitions go through the writer as planner changes, so each one
//! commits with its audit entry (and any notice to the citizen) in one transaction.

use serde_json::json;

use super::model::*;
use super::planner::{Action, AssignTarget, Change, Outcome, Request, TransferTarget};
use super::types::*;
use super::{Domain, Principal};
use crate::error::{AppError, AppResult};

const LABEL_MAX_CHARS: usize = 40;

/// One row of the staff roster.
pub struct RosterEntry {
    pub agent: Agent,
    pub mission_id: MissionId,
    pub presence: Presence,
    /// Open conversations (agents only).
    pub open_conversations: Option<i64>,
}

/// A canned response with its placeholders filled for a conversation.
pub struct RenderedCanned {
    pub canned: CannedResponse,
    pub rendered: String,
}

/// Fill `{citizen_name}`, `{mission_name}` and `{agent_name}` in one pass: a value that
/// itself contains a placeholder (a citizen named `{agent_name}`) stays as written.
pub fn fill_placeholders(body: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    'outer: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        for (name, value) in values {
            let key_len = name.len() + 2;
            if tail.len() >= key_len
                && tail.as_bytes()[key_len - 1] == b'}'
                && &tail[1..key_len - 1] == *name
            {
                out.push_str(value);
                rest = &tail[key_len..];
                continue 'outer;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// A label as stored: trimmed, lowercase, 1 to 40 printable characters.
fn clean_label(l: &str) -> AppResult<String> {
    let l = l.trim().to_lowercase();
    if l.is_empty() || l.chars().count() > LABEL_MAX_CHARS || l.chars().any(|c| c.is_control()) {
        return Err(AppError::invalid(format!(
            "a label has 1 to {LABEL_MAX_CHARS} printable characters"
        )));
    }
    Ok(l)
}

impl Domain {
    /// Apply a workflow action to a conversation the caller may see.
    async fn change(&self, p: &Principal, id: &str, action: Action) -> AppResult<Outcome> {
        p.require_agent()?;
        // Reading first gives the contract's 404/403 before anything is queued; the
        // planner checks access again against the row inside the transaction.
        let conv = self.conversation_for(p, id).await?;
        let outcome = self
            .writer
            .submit(Request::Change(Change {
                conversation_id: conv.id,
                access: p.access(),
                actor: p.actor(),
                action,
            }))
            .await?;
        if outcome.changed {
            tracing::info!(conversation = %conv.id, by = %p.id(), "conversation changed");
        }
        Ok(outcome)
    }

    async fn assign_target(&self, agent_id: &str) -> AppResult<AssignTarget> {
        let id = AgentId::parse(agent_id)
            .map_err(|_| AppError::invalid(format!("no agent with id {agent_id}")))?;
        let a = self
            .store
            .agent_by_id(id)
            .await?
            .ok_or_else(|| AppError::invalid(format!("no agent with id {agent_id}")))?;
        if !matches!(a.role, Role::Agent | Role::Admin) {
            return Err(AppError::invalid(
                "conversations can only be assigned to agents and admins",
            ));
        }
        Ok(AssignTarget {
            id: a.id,
            name: a.name,
            is_admin: a.role == Role::Admin,
            missions: a.missions,
        })
    }

    /// Claim a conversation (no `agent_id`) or give it to a colleague of its mission.
    /// With `claim`, it succeeds only if nobody else holds it (409 otherwise).
    pub async fn assign(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
        claim: bool,
    ) -> AppResult<Conversation> {
        let me = p.require_agent()?.id.to_string();
        let agent = self.assign_target(agent_id.unwrap_or(&me)).await?;
        Ok(self
            .change(p, id, Action::Assign { agent, claim })
            .await?
            .conversation)
    }

    /// Move a conversation to another agent (of any mission) or another mission. The
    /// citizen sees a notice when the mission changes; access moves with it.
    pub async fn transfer(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
        mission_id: Option<&str>,
    ) -> AppResult<Conversation> {
        p.require_agent()?;
        let target = match (agent_id, mission_id) {
            (Some(a), None) => TransferTarget::Agent(self.assign_target(a).await?),
            (None, Some(m)) => {
                let mission = self
                    .config
                    .mission(m)
                    .ok_or_else(|| AppError::invalid(format!("unknown mission {m:?}")))?;
                TransferTarget::Mission(MissionId::from(mission))
            }
            _ => {
                return Err(AppError::invalid(
                    "give exactly one of agent_id or mission_id",
                ))
            }
        };
        Ok(self
            .change(p, id, Action::Transfer(target))
            .await?
            .conversation)
    }

    pub async fn resolve(&self, p: &Principal, id: &str) -> AppResult<Conversation> {
        Ok(self.change(p, id, Action::Resolve).await?.conversation)
    }

    /// Reopen: back to the queue, where auto-assignment picks an agent.
    pub async fn reopen(&self, p: &Principal, id: &str) -> AppResult<Conversation> {
        Ok(self.change(p, id, Action::Reopen).await?.conversation)
    }

    pub async fn set_priority(
        &self,
        p: &Principal,
        id: &str,
        priority: &str,
    ) -> AppResult<Conversation> {
        let priority = Priority::parse(priority)?;
        Ok(self
            .change(p, id, Action::SetPriority(priority))
            .await?
            .conversation)
    }

    /// Add and remove labels (trimmed, lowercase, at most 40 characters, 20 per
    /// conversation).
    pub async fn change_labels(
        &self,
        p: &Principal,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> AppResult<Conversation> {
        let add = add
            .iter()
            .map(|l| clean_label(l))
            .collect::<AppResult<Vec<_>>>()?;
        let remove = remove
            .iter()
            .map(|l| clean_label(l))
            .collect::<AppResult<Vec<_>>>()?;
        Ok(self
            .change(p, id, Action::Labels { add, remove })
            .await?
            .conversation)
    }

    /// The agent chooses `online` or `away`; returns their effective presence.
    pub async fn set_presence(&self, p: &Principal, status: &str) -> AppResult<Presence> {
        let a = p.require_agent()?;
        let choice = PresenceChoice::parse(status)
            .map_err(|_| AppError::invalid("status must be online or away"))?;
        let audit = AuditEntry::new(p.actor(), "presence_change", json!({"status": choice}))
            .target("agent", a.id);
        self.store.set_agent_presence(a.id, choice, &audit).await?;
        self.presence.push(a.id);
        Ok(Presence::effective(
            self.connections.agent_sockets(a.id),
            choice,
        ))
    }

    /// Admins set how many open conversations an agent holds at most.
    pub async fn set_capacity(
        &self,
        p: &Principal,
        agent_id: &str,
        capacity: i64,
    ) -> AppResult<Agent> {
        if !p.is_admin() {
            return Err(AppError::forbidden("only admins change capacity"));
        }
        if !(0..=100).contains(&capacity) {
            return Err(AppError::invalid("capacity must be between 0 and 100"));
        }
        let target = self.assign_target(agent_id).await?;
        let before = self
            .store
            .agent_by_id(target.id)
            .await?
            .ok_or_else(|| AppError::not_found("agent"))?;
        let audit = AuditEntry::new(
            p.actor(),
            "capacity_change",
            json!({"from": before.capacity, "to": capacity}),
        )
        .target("agent", target.id);
        self.store
            .set_agent_capacity(target.id, capacity, &audit)
            .await?;
        for m in &target.missions {
            self.assigner.push(m.clone());
        }
        self.store
            .agent_by_id(target.id)
            .await?
            .ok_or_else(|| AppError::not_found("agent"))
    }

    /// The caller's missions, or the one asked for if the caller serves it.
    pub fn chosen_missions(&self, p: &Principal, asked: Option<&str>) -> AppResult<Vec<MissionId>> {
        let missions = p.staff_missions(&self.config)?;
        match asked {
            None => Ok(missions),
            Some(m) if missions.iter().any(|x| x.as_str() == m) => Ok(vec![MissionId::new(m)]),
            Some(_) => Err(AppError::forbidden("you do not serve that mission")),
        }
    }

    /// Staff of the caller's missions with presence and load.
    pub async fn roster(
        &self,
        p: &Principal,
        mission: Option<&str>,
    ) -> AppResult<Vec<RosterEntry>> {
        let missions = self.chosen_missions(p, mission)?;
        let mut out: Vec<RosterEntry> = Vec::new();
        for m in &missions {
            let loads = self.store.agent_loads(m).await?;
            for a in self.store.mission_staff(m).await? {
                if out.iter().any(|e| e.agent.id == a.id) {
                    continue;
                }
                let load = loads.iter().find(|l| l.id == a.id).map(|l| l.load);
                out.push(RosterEntry {
                    presence: Presence::effective(self.connections.agent_sockets(a.id), a.presence),
                    mission_id: m.clone(),
                    open_conversations: load,
                    agent: a,
                });
            }
        }
        Ok(out)
    }

    fn check_canned(&self, title: &str, body: &str) -> AppResult<()> {
        if title.trim().is_empty() || title.chars().count() > 100 {
            return Err(AppError::invalid("title must have 1 to 100 characters"));
        }
        if body.trim().is_empty() || body.chars().count() > self.config.limits.text_max_chars {
            return Err(AppError::invalid(format!(
                "body must have 1 to {} characters",
                self.config.limits.text_max_chars
            )));
        }
        Ok(())
    }

    pub async fn canned_responses(
        &self,
        p: &Principal,
        mission: Option<&str>,
    ) -> AppResult<Vec<CannedResponse>> {
        let missions = self.chosen_missions(p, mission)?;
        self.store.canned_responses(&missions).await
    }

    pub async fn create_canned(
        &self,
        p: &Principal,
        mission_id: &str,
        title: &str,
        body: &str,
    ) -> AppResult<CannedResponse> {
        let mission = self.chosen_missions(p, Some(mission_id))?.remove(0);
        self.check_canned(title, body)?;
        let now = now();
        let c = CannedResponse {
            id: CannedId::new(),
            mission_id: mission,
            title: title.trim().to_string(),
            body: body.to_string(),
            created_by: p.require_agent()?.id,
            created_at: now,
            updated_at: now,
        };
        let audit = AuditEntry::new(p.actor(), "canned_create", json!({"title": c.title}))
            .target("canned_response", c.id)
            .mission(&c.mission_id);
        self.store.save_canned_response(&c, &audit).await?;
        Ok(c)
    }

    async fn own_canned(&self, p: &Principal, id: &str) -> AppResult<CannedResponse> {
        let id = CannedId::parse(id)?;
        let c = self
            .store
            .canned_response(id)
            .await?
            .ok_or_else(|| AppError::not_found("canned response"))?;
        if !p.staff_missions(&self.config)?.contains(&c.mission_id) {
            return Err(AppError::forbidden("you do not serve that mission"));
        }
        Ok(c)
    }

    pub async fn update_canned(
        &self,
        p: &Principal,
        id: &str,
        title: Option<&str>,
        body: Option<&str>,
    ) -> AppResult<CannedResponse> {
        let old = self.own_canned(p, id).await?;
        let title = title.unwrap_or(&old.title);
        let body = body.unwrap_or(&old.body);
        self.check_canned(title, body)?;
        let c = CannedResponse {
            title: title.trim().to_string(),
            body: body.to_string(),
            updated_at: now(),
            ..old.clone()
        };
        let audit = AuditEntry::new(
            p.actor(),
            "canned_update",
            json!({"title": c.title, "previous_title": old.title}),
        )
        .target("canned_response", c.id)
        .mission(&c.mission_id);
        self.store.save_canned_response(&c, &audit).await?;
        Ok(c)
    }

    pub async fn delete_canned(&self, p: &Principal, id: &str) -> AppResult<()> {
        let old = self.own_canned(p, id).await?;
        let audit = AuditEntry::new(p.actor(), "canned_delete", json!({"title": old.title}))
            .target("canned_response", old.id)
            .mission(&old.mission_id);
        self.store.delete_canned_response(old.id, &audit).await?;
        Ok(())
    }

    /// The conversation's mission's canned responses with placeholders filled in.
    pub async fn render_canned(
        &self,
        p: &Principal,
        conversation_id: &str,
    ) -> AppResult<Vec<RenderedCanned>> {
        p.require_agent()?;
        let conv = self.conversation_for(p, conversation_id).await?;
        let mission_name = self
            .config
            .mission(conv.mission_id.as_str())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| conv.mission_id.to_string());
        let list = self
            .store
            .canned_responses(std::slice::from_ref(&conv.mission_id))
            .await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let rendered = fill_placeholders(
                    &c.body,
                    &[
                        ("citizen_name", &conv.citizen.display_name),
                        ("mission_name", &mission_name),
                        ("agent_name", p.display_name()),
                    ],
                );
                RenderedCanned {
                    canned: c,
                    rendered,
                }
            })
            .collect())
    }

    /// The audit log, newest first (admins only).
    pub async fn audit_log(&self, p: &Principal, mut f: AuditFilter) -> AppResult<Vec<AuditEntry>> {
        if !p.is_admin() {
            return Err(AppError::forbidden("only admins read the audit log"));
        }
        if !(1..=500).contains(&f.limit) {
            return Err(AppError::invalid("limit must be between 1 and 500"));
        }
        f.limit += 1;
        self.store.audit_entries(&f).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once() {
        let values = [
            ("citizen_name", "{agent_name}"),
            ("mission_name", "Embassy"),
            ("agent_name", "Li"),
        ];
        assert_eq!(
            fill_placeholders(
                "Dear {citizen_name}, {agent_name} of the {mission_name}.",
                &values
            ),
            "Dear {agent_name}, Li of the Embassy."
        );
        assert_eq!(fill_placeholders("{ {unknown} {", &values), "{ {unknown} {");
        assert_eq!(fill_placeholders("你好{agent_name}！", &values), "你好Li！");
    }

    #[test]
    fn labels_are_normalised() {
        assert_eq!(clean_label("  Passport ").unwrap(), "passport");
        assert!(clean_label("").is_err());
        assert!(clean_label(&"x".repeat(41)).is_err());
    }
}
