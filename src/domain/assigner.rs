//! Background work that must never hold up a request: auto-assignment and presence
//! announcements. Each is one task fed by a [`MergeQueue`], a bounded set of keys
//! (missions, agents) where a repeat merges with the pending one, so a burst of
//! connects or sends costs one run, and nothing on the send path waits for a queue
//! scan.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::planner::{Action, Change, Request};
use super::principal::Access;
use super::types::*;
use super::Domain;
use crate::domain::events::Event;
use crate::domain::model::Actor;
use crate::error::AppResult;

/// A set of pending keys and one worker draining it.
pub struct MergeQueue<K> {
    state: Mutex<QueueState<K>>,
    wake: Notify,
    idle: Notify,
}

struct QueueState<K> {
    pending: BTreeSet<K>,
    busy: bool,
}

impl<K: Ord + Clone + Send + 'static> MergeQueue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(MergeQueue {
            state: Mutex::new(QueueState {
                pending: BTreeSet::new(),
                busy: false,
            }),
            wake: Notify::new(),
            idle: Notify::new(),
        })
    }

    /// Ask for a run for `key`; merges with a pending request for the same key.
    pub fn push(&self, key: K) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.pending.insert(key);
        drop(s);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<K> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.busy = !s.pending.is_empty();
        std::mem::take(&mut s.pending).into_iter().collect()
    }

    fn done(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.busy = false;
        let idle = s.pending.is_empty();
        drop(s);
        if idle {
            self.idle.notify_waiters();
        }
    }

    fn is_idle(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        !s.busy && s.pending.is_empty()
    }

    /// Wait until nothing is pending and the worker is not running: tests and
    /// shutdown drive the worker to a known state instead of sleeping.
    pub async fn settle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.is_idle() {
                return;
            }
            idle.await;
        }
    }

    /// Run `work` for each batch of keys until `stop`.
    pub fn spawn<F, Fut>(self: Arc<Self>, stop: CancellationToken, work: F)
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            loop {
                for key in self.take() {
                    work(key).await;
                }
                self.done();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = self.wake.notified() => {}
                }
            }
        });
    }
}

/// Wakes auto-assignment for a mission.
pub type Assigner = Arc<MergeQueue<MissionId>>;

impl Domain {
    /// Give waiting conversations of `mission`, most urgent and oldest first, to the
    /// online agents with the fewest open conversations below their capacity. Failures
    /// are logged; the conversation stays in the queue, where a manual claim works.
    pub async fn auto_assign(&self, mission: MissionId) {
        if let Err(e) = self.try_auto_assign(&mission).await {
            tracing::error!(error = %e.detail(), %mission, "auto-assignment failed");
        }
    }

    async fn try_auto_assign(&self, mission: &MissionId) -> AppResult<()> {
        let mut agents: Vec<_> = self
            .store
            .agent_loads(mission)
            .await?
            .into_iter()
            .filter(|a| {
                Presence::effective(self.connections.agent_sockets(a.id), a.presence)
                    == Presence::Online
                    && a.load < a.capacity
            })
            .collect();
        if agents.is_empty() {
            return Ok(());
        }
        let waiting = self.store.waiting_conversations(mission, 200).await?;
        let mut claims = Vec::new();
        for conv in waiting {
            // Fewest open conversations first; ties go to the longest-standing account.
            let Some(agent) = agents
                .iter_mut()
                .filter(|a| a.load < a.capacity)
                .min_by_key(|a| a.load)
            else {
                break;
            };
            agent.load += 1;
            claims.push(self.writer.submit(Request::Change(Change {
                conversation_id: conv.id,
                access: Access::All,
                actor: Actor::System,
                action: Action::AutoAssign {
                    agent: agent.id,
                    load: agent.load,
                },
            })));
        }
        // Submitted together, they share a commit.
        let results = futures_util::future::join_all(claims).await;
        let mut missed = false;
        for r in results {
            match r {
                Ok(o) if o.changed => {
                    tracing::info!(conversation = %o.conversation.id, agent = ?o.conversation.assignee_id, "conversation auto-assigned")
                }
                Ok(_) => missed = true,
                Err(e) => {
                    missed = true;
                    e.log();
                }
            }
        }
        if missed {
            // Someone claimed one meanwhile: its agent slot is free for the next one.
            self.assigner.push(mission.clone());
        }
        Ok(())
    }

    /// An agent's sockets or chosen status changed: tell colleagues, and hand out
    /// waiting conversations if the agent is now available.
    pub async fn announce_presence(&self, agent: AgentId) {
        let Ok(Some(a)) = self.store.agent_by_id(agent).await else {
            return;
        };
        let status = Presence::effective(self.connections.agent_sockets(a.id), a.presence);
        self.publisher.publish(Event::Presence {
            agent_id: a.id,
            name: a.name.clone(),
            missions: a.missions.clone(),
            status,
        });
        if status == Presence::Online {
            for m in a.missions {
                self.assigner.push(m);
            }
        }
    }
}
