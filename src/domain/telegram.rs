//! Citizens who write from Telegram. A private chat is one stable citizen; their
//! conversations have the `telegram` channel and take the same path as the app's
//! (`Domain::send`: triage, routing, queue, assignment, audit). What the chat must be
//! sent — every message the citizen may see and did not write, strictly in `seq`
//! order — follows the durable `telegram` delivery cursor, so a restart continues
//! where delivery stopped. The Telegram protocol itself (updates, pacing, retries) is
//! the bridge's business, an adapter outside the domain; the rules are here.

use std::time::Duration;

use super::attachments::{Download, Variant};
use super::events::Event;
use super::model::*;
use super::planner::{Draft, Request, Target};
use super::sessions::clean_name;
use super::types::*;
use super::{Access, Domain, Principal};
use crate::error::{AppError, AppResult};

/// The delivery cursor's channel name.
pub const CURSOR: &str = "telegram";

/// How long handled update ids are remembered (Telegram keeps an update for a day).
const HANDLED_UPDATES_KEPT: Duration = Duration::from_secs(2 * 24 * 3600);

/// A Telegram user as their private chat shows them (untrusted text).
#[derive(Clone, Copy, Debug)]
pub struct TelegramUser<'a> {
    pub chat_id: i64,
    pub display_name: Option<&'a str>,
    /// The user's Telegram language (`zh-hans`, `en`, ...).
    pub language: Option<&'a str>,
}

/// The next messages a chat must be sent.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    /// In `seq` order; what the citizen may see and did not write.
    pub messages: Vec<Message>,
    /// How far the cursor may move once `messages` are delivered (it also passes the
    /// notes and the citizen's own messages read on the way).
    pub upto: i64,
}

/// What a bridge following a channel must do about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nudge {
    /// The conversation has a new message for the chat.
    Deliver(ConversationId),
    /// Staff are typing in the conversation.
    Typing(ConversationId),
}

/// Whether the chat of a messenger conversation is sent this message: the citizen may
/// see it (never a note) and did not write it (they wrote it in the messenger).
pub fn for_the_chat(m: &Message) -> bool {
    m.kind.citizen_may_see() && m.sender.kind != SenderKind::Citizen
}

/// What an event means for a bridge of `channel`; cheap, for the publisher's path.
pub fn nudge(event: &Event, channel: Channel) -> Option<Nudge> {
    match event {
        Event::Message { message, route } if route.channel == channel && for_the_chat(message) => {
            Some(Nudge::Deliver(message.conversation_id))
        }
        Event::Typing {
            route,
            conversation_id,
            user,
            active: true,
        } if route.channel == channel && user.kind != "citizen" => {
            Some(Nudge::Typing(*conversation_id))
        }
        _ => None,
    }
}

/// The locale a Telegram language code stands for: Chinese in any script is `zh-CN`,
/// anything else English.
pub fn locale_of_language(code: &str) -> Locale {
    let lang = code
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    Locale::parse(if lang == "zh" { "zh-CN" } else { "en" }).expect("valid tags")
}

impl Domain {
    /// The citizen of a private chat, created on first contact with the name and
    /// language Telegram shows. `true` when created.
    pub async fn telegram_citizen(&self, u: TelegramUser<'_>) -> AppResult<(Principal, bool)> {
        if u.chat_id <= 0 {
            return Err(AppError::invalid("only private chats are citizens"));
        }
        if let Some(c) = self.store.telegram_citizen(u.chat_id).await? {
            return Ok((Principal::Citizen(c), false));
        }
        let name: Option<String> = u.display_name.map(|n| n.chars().take(100).collect());
        let citizen = Citizen {
            id: CitizenId::new(),
            external_sub: None,
            display_name: clean_name(name.as_deref())
                .unwrap_or(None)
                .unwrap_or_else(|| "Telegram user".into()),
            locale: u.language.map(locale_of_language),
            country: None,
            location: None,
        };
        let (c, created) = self.store.link_telegram_chat(u.chat_id, &citizen).await?;
        if created {
            tracing::info!(citizen = %c.id, "telegram chat linked to a new citizen");
        }
        Ok((Principal::Citizen(c), created))
    }

    /// The countries citizens can choose, with the mission that serves each, in the
    /// order the missions are configured.
    pub fn offered_countries(&self) -> Vec<(CountryCode, String)> {
        let mut out: Vec<(CountryCode, String)> = Vec::new();
        for m in &self.config.missions {
            for c in &m.countries {
                if let Ok(code) = CountryCode::parse(c) {
                    if !out.iter().any(|(o, _)| *o == code) {
                        out.push((code, m.name.clone()));
                    }
                }
            }
        }
        out
    }

    /// Whether an update's effect is already done (a redelivery).
    pub async fn telegram_update_handled(&self, update_id: i64) -> AppResult<bool> {
        self.store.telegram_update_handled(update_id).await
    }

    /// Record that an update's effect is done; `false` when it was recorded already.
    pub async fn telegram_update_done(&self, update_id: i64) -> AppResult<bool> {
        self.store.mark_telegram_update(update_id, now()).await
    }

    /// Forget handled updates older than Telegram could redeliver.
    pub async fn prune_telegram_updates(&self) -> AppResult<u64> {
        let before = now() - chrono::Duration::from_std(HANDLED_UPDATES_KEPT).expect("small");
        self.store.prune_telegram_updates(before).await
    }

    /// The next `getUpdates` offset.
    pub async fn telegram_offset(&self) -> AppResult<i64> {
        self.store.telegram_offset().await
    }

    /// Confirm every update below `offset` as handled (it never moves backwards).
    pub async fn set_telegram_offset(&self, offset: i64) -> AppResult<()> {
        self.store.set_telegram_offset(offset).await
    }

    /// Take or renew the bridge's lease (one node polls and delivers at a time).
    pub async fn telegram_lease(&self, holder: &str, ttl: Duration) -> AppResult<bool> {
        let until = now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        self.store.acquire_lease(CURSOR, holder, until).await
    }

    /// Telegram conversations whose chat is behind, least recently changed first.
    pub async fn telegram_backlog(&self, limit: i64) -> AppResult<Vec<ChannelBacklog>> {
        self.store.telegram_backlog(limit).await
    }

    /// The chat a Telegram conversation is delivered to, and how far it has been sent.
    pub async fn telegram_chat_of(
        &self,
        conversation: ConversationId,
    ) -> AppResult<Option<(i64, i64)>> {
        let Some(conv) = self.store.conversation(conversation).await? else {
            return Ok(None);
        };
        if conv.channel != Channel::Telegram {
            return Ok(None);
        }
        let Some(chat) = self.store.telegram_chat_of(conv.citizen.id).await? else {
            return Ok(None);
        };
        let cursor = self.store.cursor(CURSOR, conversation).await?;
        Ok(Some((chat, cursor)))
    }

    /// What the chat of `conversation` must be sent after `after`, reading at most
    /// `limit` messages.
    pub async fn telegram_outgoing(
        &self,
        conversation: ConversationId,
        after: i64,
        limit: i64,
    ) -> AppResult<Outgoing> {
        let read = self
            .store
            .messages(
                conversation,
                MessagePage {
                    after_seq: Some(after),
                    before_seq: None,
                    limit: limit.clamp(1, 200),
                    include_notes: true,
                },
            )
            .await?;
        let upto = read.last().map_or(after, |m| m.seq);
        Ok(Outgoing {
            messages: read.into_iter().filter(for_the_chat).collect(),
            upto,
        })
    }

    /// Everything up to `seq` has reached the chat.
    pub async fn telegram_delivered(
        &self,
        conversation: ConversationId,
        seq: i64,
    ) -> AppResult<()> {
        self.store.advance_cursor(CURSOR, conversation, seq).await
    }

    /// The bytes of an image in a Telegram conversation, for its chat. Refused for an
    /// attachment no message of that conversation holds.
    pub async fn telegram_attachment(
        &self,
        conversation: ConversationId,
        attachment: AttachmentId,
    ) -> AppResult<Download> {
        if !self
            .store
            .attachment_conversations(attachment)
            .await?
            .contains(&conversation)
        {
            return Err(AppError::forbidden(
                "the attachment is not in this conversation",
            ));
        }
        let conv = self
            .store
            .conversation(conversation)
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        let citizen = self
            .store
            .citizen(conv.citizen.id)
            .await?
            .ok_or_else(|| AppError::not_found("citizen"))?;
        self.download(
            &Principal::Citizen(citizen),
            &attachment.to_string(),
            Variant::Original,
        )
        .await
    }

    /// Tell the conversation's staff, in an internal note from the service, that
    /// messages could not reach the chat (the user blocked the bot, the chat is gone).
    pub async fn telegram_undeliverable(
        &self,
        conversation: ConversationId,
        seqs: (i64, i64),
        reason: &str,
    ) -> AppResult<()> {
        let what = if seqs.0 == seqs.1 {
            format!("message {}", seqs.0)
        } else {
            format!("messages {} to {}", seqs.0, seqs.1)
        };
        let reason: String = reason.chars().take(300).collect();
        let body = format!(
            "Telegram: {what} could not be delivered to the citizen's chat ({reason}). \
             Telegram 未能送达第 {} 条起的消息。",
            seqs.0
        );
        self.writer
            .submit(Request::Message(Draft {
                target: Target::Id(conversation),
                client_msg_id: None,
                sender: Sender {
                    kind: SenderKind::System,
                    id: None,
                    display_name: "Lingshi".into(),
                },
                kind: MessageKind::Note,
                body,
                attachments: vec![],
                access: Access::All,
                reopen_if_resolved: false,
                triage: None,
                escalate: None,
                locale: None,
            }))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{Route, UserRef};

    fn message(kind: MessageKind, sender: SenderKind) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            seq: 1,
            client_msg_id: None,
            sender: Sender {
                kind: sender,
                id: None,
                display_name: "x".into(),
            },
            kind,
            body: "b".into(),
            attachments: vec![],
            created_at: now(),
            triage: None,
        }
    }

    fn route(channel: Channel) -> Route {
        Route {
            citizen: CitizenId::new(),
            mission: MissionId::new("be"),
            assignee: None,
            channel,
        }
    }

    #[test]
    fn the_chat_gets_what_the_citizen_may_see_and_did_not_write() {
        assert!(for_the_chat(&message(MessageKind::Text, SenderKind::Agent)));
        assert!(for_the_chat(&message(
            MessageKind::Image,
            SenderKind::Agent
        )));
        assert!(for_the_chat(&message(
            MessageKind::System,
            SenderKind::System
        )));
        assert!(!for_the_chat(&message(
            MessageKind::Note,
            SenderKind::Agent
        )));
        assert!(!for_the_chat(&message(
            MessageKind::Note,
            SenderKind::System
        )));
        assert!(!for_the_chat(&message(
            MessageKind::Text,
            SenderKind::Citizen
        )));
    }

    #[test]
    fn nudges_only_for_the_channel_and_never_for_notes() {
        let m = message(MessageKind::Text, SenderKind::Agent);
        let e = Event::Message {
            message: m.clone(),
            route: route(Channel::Telegram),
        };
        assert_eq!(
            nudge(&e, Channel::Telegram),
            Some(Nudge::Deliver(m.conversation_id))
        );
        let app = Event::Message {
            message: m.clone(),
            route: route(Channel::App),
        };
        assert_eq!(nudge(&app, Channel::Telegram), None);
        let note = Event::Message {
            message: message(MessageKind::Note, SenderKind::Agent),
            route: route(Channel::Telegram),
        };
        assert_eq!(nudge(&note, Channel::Telegram), None);
        let typing = |kind: &str, active| Event::Typing {
            route: route(Channel::Telegram),
            conversation_id: m.conversation_id,
            user: UserRef {
                id: PersonId(uuid::Uuid::now_v7()),
                kind: kind.into(),
                role: "agent".into(),
                display_name: "Li".into(),
            },
            active,
        };
        assert_eq!(
            nudge(&typing("agent", true), Channel::Telegram),
            Some(Nudge::Typing(m.conversation_id))
        );
        assert_eq!(nudge(&typing("agent", false), Channel::Telegram), None);
        assert_eq!(nudge(&typing("citizen", true), Channel::Telegram), None);
    }

    #[test]
    fn languages_map_to_the_two_locales() {
        assert_eq!(locale_of_language("zh-hans").as_str(), "zh-CN");
        assert_eq!(locale_of_language("zh").as_str(), "zh-CN");
        assert_eq!(locale_of_language("en").as_str(), "en");
        assert_eq!(locale_of_language("fr").as_str(), "en");
    }
}
