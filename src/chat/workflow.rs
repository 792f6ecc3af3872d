//! The agent workflow: claiming and auto-assignment, transfers, resolve/reopen,
//! priority, labels, presence, capacity, canned responses, and the audit log of it all.

use serde_json::json;

use super::Chat;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::hub::frames;
use crate::store::{AgentWithMissions, CannedResponse, ConversationRecord, ConversationUpdate};

pub const PRIORITIES: [&str; 3] = ["normal", "urgent", "emergency"];
const LABEL_MAX_CHARS: usize = 40;
const LABELS_MAX: usize = 20;

/// An agent's effective presence: offline without sockets, else what they chose.
pub fn effective_presence(sockets: u32, chosen: &str) -> &'static str {
    match (sockets, chosen) {
        (0, _) => "offline",
        (_, "away") => "away",
        _ => "online",
    }
}

impl Chat {
    fn require_staff(p: &Principal) -> AppResult<&AgentWithMissions> {
        match p {
            Principal::Agent(a) if p.works_conversations() => Ok(a),
            _ => Err(AppError::forbidden("only agents and admins can do this")),
        }
    }

    /// Record who did what. A failure is logged and does not undo the action.
    pub async fn audit(
        &self,
        p: Option<&Principal>,
        action: &str,
        target: Option<(&str, &str)>,
        mission: Option<&str>,
        details: serde_json::Value,
    ) {
        let (kind, id) = match p {
            Some(p) => (p.kind(), Some(p.id())),
            None => ("system", None),
        };
        if let Err(e) = self
            .store
            .audit(
                kind,
                id,
                action,
                target.map(|t| t.0),
                target.map(|t| t.1),
                mission,
                &details,
            )
            .await
        {
            tracing::error!(error = ?e, action, "cannot write audit entry");
        }
    }

    async fn assignable_agent(&self, agent_id: &str) -> AppResult<AgentWithMissions> {
        let agent = if uuid::Uuid::parse_str(agent_id).is_ok() {
            self.store.agent_by_id(agent_id).await?
        } else {
            None
        };
        let agent =
            agent.ok_or_else(|| AppError::invalid(format!("no agent with id {agent_id}")))?;
        if !matches!(agent.agent.role.as_str(), "agent" | "admin") {
            return Err(AppError::invalid(
                "conversations can only be assigned to agents and admins",
            ));
        }
        Ok(agent)
    }

    /// Claim a conversation (no `agent_id`) or give it to a colleague of its mission.
    pub async fn assign(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
    ) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        let target = agent_id.unwrap_or(p.id());
        let agent = self.assignable_agent(target).await?;
        if agent.agent.role != "admin" && !agent.missions.contains(&conv.mission_id) {
            return Err(AppError::invalid(format!(
                "agent {} does not serve mission {}; transfer the conversation instead",
                agent.agent.name, conv.mission_id
            )));
        }
        let status = if conv.status == "resolved" {
            "resolved"
        } else {
            "assigned"
        };
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    status: Some(status),
                    assignee: Some(Some(&agent.agent.id)),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        tracing::info!(conversation = %id, agent = %agent.agent.id, by = %p.id(), "conversation assigned");
        self.publish_event("assigned", &[&conv], &updated);
        self.audit(
            Some(p),
            "assign",
            Some(("conversation", id)),
            Some(&updated.mission_id),
            json!({"agent_id": agent.agent.id, "previous_agent_id": conv.assignee_id}),
        )
        .await;
        if let Some(prev) = &conv.assignee_id {
            if *prev != agent.agent.id {
                self.auto_assign(&conv.mission_id).await;
            }
        }
        Ok(updated)
    }

    /// Move a conversation to another agent (of any mission) or another mission. The
    /// citizen sees a system message when the mission changes; access moves with it.
    pub async fn transfer(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
        mission_id: Option<&str>,
    ) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        let (mission, assignee) = match (agent_id, mission_id) {
            (Some(a), None) => {
                let agent = self.assignable_agent(a).await?;
                let mission =
                    if agent.agent.role == "admin" || agent.missions.contains(&conv.mission_id) {
                        conv.mission_id.clone()
                    } else {
                        agent
                            .missions
                            .first()
                            .cloned()
                            .ok_or_else(|| AppError::invalid("that agent serves no mission"))?
                    };
                (mission, Some(agent.agent.id))
            }
            (None, Some(m)) => {
                if self.config.mission(m).is_none() {
                    return Err(AppError::invalid(format!("unknown mission {m:?}")));
                }
                (m.to_string(), None)
            }
            _ => {
                return Err(AppError::invalid(
                    "give exactly one of agent_id or mission_id",
                ))
            }
        };
        let status = match (&conv.status[..], &assignee) {
            ("resolved", _) => "resolved",
            (_, Some(_)) => "assigned",
            (_, None) => "open",
        };
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    status: Some(status),
                    assignee: Some(assignee.as_deref()),
                    mission_id: Some(&mission),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        tracing::info!(conversation = %id, mission = %mission, by = %p.id(), "conversation transferred");
        self.publish_event("transferred", &[&conv], &updated);
        self.audit(
            Some(p),
            "transfer",
            Some(("conversation", id)),
            Some(&mission),
            json!({"from_mission": conv.mission_id, "to_mission": mission,
                   "from_agent_id": conv.assignee_id, "to_agent_id": assignee}),
        )
        .await;
        if mission != conv.mission_id {
            let name = self
                .config
                .mission(&mission)
                .map(|m| m.name.clone())
                .unwrap_or(mission.clone());
            self.system_message(id, format!("Transferred to the {name}. 已转至{name}。"))
                .await?;
        }
        // The new mission may have someone free; the old assignee has room again.
        self.auto_assign(&mission).await;
        if mission != conv.mission_id {
            self.auto_assign(&conv.mission_id).await;
        }
        Ok(self.store.conversation(id).await?.unwrap_or(updated))
    }

    pub async fn resolve(&self, p: &Principal, id: &str) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        if conv.status == "resolved" {
            return Ok(conv);
        }
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    status: Some("resolved"),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        self.publish_event("resolved", &[], &updated);
        self.audit(
            Some(p),
            "resolve",
            Some(("conversation", id)),
            Some(&updated.mission_id),
            json!({"agent_id": updated.assignee_id}),
        )
        .await;
        // The assignee has room for the next waiting conversation.
        self.auto_assign(&updated.mission_id).await;
        Ok(updated)
    }

    /// Reopen: back to the queue, where auto-assignment picks an agent.
    pub async fn reopen(&self, p: &Principal, id: &str) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        if conv.status != "resolved" {
            return Ok(conv);
        }
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    status: Some("open"),
                    assignee: Some(None),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        self.publish_event("reopened", &[&conv], &updated);
        self.audit(
            Some(p),
            "reopen",
            Some(("conversation", id)),
            Some(&updated.mission_id),
            json!({}),
        )
        .await;
        self.auto_assign(&updated.mission_id).await;
        Ok(self.store.conversation(id).await?.unwrap_or(updated))
    }

    pub async fn set_priority(
        &self,
        p: Option<&Principal>,
        id: &str,
        priority: &str,
    ) -> AppResult<ConversationRecord> {
        if !PRIORITIES.contains(&priority) {
            return Err(AppError::invalid(
                "priority must be normal, urgent or emergency",
            ));
        }
        let conv = match p {
            Some(p) => {
                Self::require_staff(p)?;
                self.conversation_for(p, id).await?
            }
            None => self
                .store
                .conversation(id)
                .await?
                .ok_or_else(|| AppError::not_found("conversation"))?,
        };
        if conv.priority == priority {
            return Ok(conv);
        }
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    priority: Some(priority),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        self.publish_event("priority_changed", &[], &updated);
        self.audit(
            p,
            "priority_change",
            Some(("conversation", id)),
            Some(&updated.mission_id),
            json!({"from": conv.priority, "to": priority}),
        )
        .await;
        Ok(updated)
    }

    /// Add and remove labels (trimmed, lowercase, at most 40 characters, 20 per
    /// conversation).
    pub async fn change_labels(
        &self,
        p: &Principal,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        let clean = |l: &String| -> AppResult<String> {
            let l = l.trim().to_lowercase();
            if l.is_empty()
                || l.chars().count() > LABEL_MAX_CHARS
                || l.chars().any(|c| c.is_control())
            {
                return Err(AppError::invalid(format!(
                    "a label has 1 to {LABEL_MAX_CHARS} printable characters"
                )));
            }
            Ok(l)
        };
        let mut labels: Vec<String> = serde_json::from_str(&conv.labels).unwrap_or_default();
        let before = labels.clone();
        for l in add {
            let l = clean(l)?;
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        for l in remove {
            let l = clean(l)?;
            labels.retain(|x| *x != l);
        }
        if labels.len() > LABELS_MAX {
            return Err(AppError::invalid(format!(
                "at most {LABELS_MAX} labels per conversation"
            )));
        }
        if labels == before {
            return Ok(conv);
        }
        let text = serde_json::to_string(&labels).expect("strings serialise");
        let updated = self
            .store
            .update_conversation(
                id,
                &ConversationUpdate {
                    labels: Some(&text),
                    ..Default::default()
                },
            )
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        self.hub.publish(
            &[&updated],
            crate::hub::Audience::StaffOnly,
            frames::conversation("labels_changed", &updated),
            None,
        );
        self.audit(
            Some(p),
            "labels_change",
            Some(("conversation", id)),
            Some(&updated.mission_id),
            json!({"labels": labels}),
        )
        .await;
        Ok(updated)
    }

    /// Give waiting conversations of `mission`, most urgent and oldest first, to the
    /// online agents with the fewest open conversations below their capacity. Runs
    /// whenever a conversation starts waiting or an agent gains room; failures are
    /// logged (the conversation stays in the queue, where a manual claim still works).
    pub async fn auto_assign(&self, mission: &str) {
        if let Err(e) = self.try_auto_assign(mission).await {
            tracing::error!(error = ?e, mission, "auto-assignment failed");
        }
    }

    async fn try_auto_assign(&self, mission: &str) -> AppResult<()> {
        let _guard = self.assign_lock.lock().await;
        let mut agents: Vec<_> = self
            .store
            .agent_loads(mission)
            .await?
            .into_iter()
            .filter(|a| {
                effective_presence(self.hub.agent_sockets(&a.id), &a.presence) == "online"
                    && a.load < a.capacity
            })
            .collect();
        if agents.is_empty() {
            return Ok(());
        }
        let waiting = self.store.waiting_conversations(mission, 200).await?;
        for conv in waiting {
            // Fewest open conversations first; ties go to the longest-standing account.
            let Some(agent) = agents
                .iter_mut()
                .filter(|a| a.load < a.capacity)
                .min_by_key(|a| a.load)
            else {
                break;
            };
            let updated = self
                .store
                .update_conversation(
                    &conv.id,
                    &ConversationUpdate {
                        status: Some("assigned"),
                        assignee: Some(Some(&agent.id)),
                        only_if_waiting: true,
                        ..Default::default()
                    },
                )
                .await?;
            let Some(updated) = updated else { continue };
            agent.load += 1;
            tracing::info!(conversation = %conv.id, agent = %agent.id, "conversation auto-assigned");
            self.publish_event("assigned", &[&conv], &updated);
            self.audit(
                None,
                "auto_assign",
                Some(("conversation", &conv.id)),
                Some(mission),
                json!({"agent_id": agent.id, "load": agent.load}),
            )
            .await;
        }
        Ok(())
    }

    /// An agent's sockets or chosen status changed: tell colleagues, and hand out
    /// waiting conversations if the agent is now available.
    pub async fn presence_changed(&self, agent: &AgentWithMissions) {
        let chosen = match self.store.agent_by_id(&agent.agent.id).await {
            Ok(Some(a)) => a.agent.presence,
            _ => "online".to_string(),
        };
        let status = effective_presence(self.hub.agent_sockets(&agent.agent.id), &chosen);
        self.hub.publish_to_missions(
            &agent.missions,
            frames::presence(&agent.agent.id, &agent.agent.name, status),
        );
        if status == "online" {
            for m in &agent.missions {
                self.auto_assign(m).await;
            }
        }
    }

    /// The agent chooses `online` or `away`.
    pub async fn set_presence(&self, p: &Principal, status: &str) -> AppResult<&'static str> {
        let a = Self::require_staff(p)?;
        if !matches!(status, "online" | "away") {
            return Err(AppError::invalid("status must be online or away"));
        }
        self.store.set_agent_presence(&a.agent.id, status).await?;
        self.audit(
            Some(p),
            "presence_change",
            Some(("agent", &a.agent.id)),
            None,
            json!({"status": status}),
        )
        .await;
        self.presence_changed(a).await;
        Ok(effective_presence(
            self.hub.agent_sockets(&a.agent.id),
            status,
        ))
    }

    /// Admins set how many open conversations an agent holds at most.
    pub async fn set_capacity(
        &self,
        p: &Principal,
        agent_id: &str,
        capacity: i64,
    ) -> AppResult<AgentWithMissions> {
        if !p.is_admin() {
            return Err(AppError::forbidden("only admins change capacity"));
        }
        if !(0..=100).contains(&capacity) {
            return Err(AppError::invalid("capacity must be between 0 and 100"));
        }
        let agent = self.assignable_agent(agent_id).await?;
        self.store.set_agent_capacity(agent_id, capacity).await?;
        self.audit(
            Some(p),
            "capacity_change",
            Some(("agent", agent_id)),
            None,
            json!({"from": agent.agent.capacity, "to": capacity}),
        )
        .await;
        for m in &agent.missions {
            self.auto_assign(m).await;
        }
        self.store
            .agent_by_id(agent_id)
            .await?
            .ok_or_else(|| AppError::not_found("agent"))
    }

    /// Missions whose shared data (canned responses, staff lists) `p` may use.
    pub fn staff_missions(&self, p: &Principal) -> AppResult<Vec<String>> {
        let a = Self::require_staff(p)?;
        Ok(if p.is_admin() {
            self.config.missions.iter().map(|m| m.id.clone()).collect()
        } else {
            a.missions.clone()
        })
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

    pub async fn create_canned(
        &self,
        p: &Principal,
        mission_id: &str,
        title: &str,
        body: &str,
    ) -> AppResult<CannedResponse> {
        if !self.staff_missions(p)?.iter().any(|m| m == mission_id) {
            return Err(AppError::forbidden("you do not serve that mission"));
        }
        self.check_canned(title, body)?;
        let c = self
            .store
            .save_canned_response(None, mission_id, title.trim(), body, p.id())
            .await?;
        self.audit(
            Some(p),
            "canned_create",
            Some(("canned_response", &c.id)),
            Some(mission_id),
            json!({"title": c.title}),
        )
        .await;
        Ok(c)
    }

    async fn own_canned(&self, p: &Principal, id: &str) -> AppResult<CannedResponse> {
        let c = if uuid::Uuid::parse_str(id).is_ok() {
            self.store.canned_response(id).await?
        } else {
            None
        };
        let c = c.ok_or_else(|| AppError::not_found("canned response"))?;
        if !self.staff_missions(p)?.contains(&c.mission_id) {
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
        let c = self
            .store
            .save_canned_response(Some(id), &old.mission_id, title.trim(), body, p.id())
            .await?;
        self.audit(
            Some(p),
            "canned_update",
            Some(("canned_response", id)),
            Some(&c.mission_id),
            json!({"title": c.title, "previous_title": old.title}),
        )
        .await;
        Ok(c)
    }

    pub async fn delete_canned(&self, p: &Principal, id: &str) -> AppResult<()> {
        let old = self.own_canned(p, id).await?;
        self.store.delete_canned_response(id).await?;
        self.audit(
            Some(p),
            "canned_delete",
            Some(("canned_response", id)),
            Some(&old.mission_id),
            json!({"title": old.title}),
        )
        .await;
        Ok(())
    }

    /// Fill `{citizen_name}`, `{mission_name}` and `{agent_name}` for a conversation.
    pub fn render_canned(&self, body: &str, p: &Principal, conv: &ConversationRecord) -> String {
        let mission = self
            .config
            .mission(&conv.mission_id)
            .map(|m| m.name.as_str())
            .unwrap_or(&conv.mission_id);
        body.replace("{citizen_name}", &conv.citizen_name)
            .replace("{mission_name}", mission)
            .replace("{agent_name}", p.display_name())
    }
}
