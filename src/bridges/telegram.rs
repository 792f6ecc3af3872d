//! The server's side of the Telegram bridge: `lingshi-telegram` speaks the Bot API and
//! defines the port it needs ([`Desk`]); this adapter implements it with the domain's
//! services, so a Telegram message takes exactly the app's path (`Domain::send`:
//! triage, routing, queue, assignment, audit) and replies follow the domain's durable
//! delivery cursor. It parses, calls the domain, and renders; it decides nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lingshi_telegram::{
    AlertItem, Author, Backlog, ChatUser, Desk, DeskError, DeskResult, ImageRef, Inbound, Lang,
    Mode, Nudges, OutItem, Outgoing, Profile, SearchHit, Settings, Submitted,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TelegramMode};
use crate::domain::conversations::SendInput;
use crate::domain::escalations::SosInput;
use crate::domain::events::{Event, Observer};
use crate::domain::kb::SearchRequest;
use crate::domain::model::Message;
use crate::domain::telegram::{nudge, Nudge, TelegramUser};
use crate::domain::types::*;
use crate::domain::{Domain, Principal};
use crate::error::AppError;

/// At most this many `/search` answers and `/alerts` items in one reply.
const SEARCH_HITS: usize = 3;
const ALERTS_SHOWN: usize = 5;

/// Start the bridge: the desk over `domain`, woken by `nudges`.
pub fn start(
    config: &Config,
    domain: Domain,
    nudges: Nudges,
    stop: CancellationToken,
    node: String,
) -> anyhow::Result<lingshi_telegram::Bridge> {
    let t = &config.telegram;
    let settings = Settings {
        token: t.token.expose().to_string(),
        api_url: t.api_url.clone(),
        mode: match t.mode {
            TelegramMode::Polling => Mode::Polling,
            TelegramMode::Webhook => Mode::Webhook,
        },
        webhook_url: t.webhook_url.clone(),
        secret_token: t.secret_token.expose().to_string(),
        poll_timeout: Duration::from_secs(t.poll_timeout_secs),
        limits: lingshi_telegram::pacing::Limits {
            chat_per_second: t.chat_per_second,
            chat_burst: t.chat_burst,
            global_per_second: t.global_per_second,
        },
        node,
    };
    let desk = Arc::new(TelegramDesk {
        domain,
        article_url: t.article_url.clone(),
    });
    lingshi_telegram::Bridge::start(settings, desk, nudges, stop)
}

/// Turns the domain's events into the bridge's nudges (new message for a chat, staff
/// typing); everything else passes by.
pub struct TelegramTap(pub Nudges);

impl Observer for TelegramTap {
    fn observe(&self, event: &Event) {
        match nudge(event, Channel::Telegram) {
            Some(Nudge::Deliver(c)) => self.0.deliver(c.to_string()),
            Some(Nudge::Typing(c)) => self.0.typing(c.to_string()),
            None => {}
        }
    }
}

/// The domain as the Telegram bridge's desk.
pub struct TelegramDesk {
    domain: Domain,
    article_url: String,
}

fn desk_error(e: AppError) -> DeskError {
    match e {
        AppError::TooLarge(m) => DeskError::TooLarge(m),
        AppError::UnsupportedMediaType(m) => DeskError::Unsupported(m),
        AppError::Unavailable(m) => DeskError::Unavailable(m),
        AppError::RateLimited { message, .. } => DeskError::Unavailable(message),
        AppError::Internal(_) => {
            e.log();
            DeskError::Internal("internal error".into())
        }
        other => DeskError::Refused(other.public_message()),
    }
}

fn lang_of(p: &Principal) -> Lang {
    match p.citizen().and_then(|c| c.locale.as_ref()) {
        Some(l) if !l.is_chinese() => Lang::En,
        _ => Lang::Zh,
    }
}

fn profile(p: &Principal, new: bool) -> Profile {
    Profile {
        lang: lang_of(p),
        country: p
            .citizen()
            .and_then(|c| c.country)
            .map(|c| c.as_str().to_string()),
        new,
    }
}

/// The address an upload from a chat is counted under. Uploads are limited per client
/// address; every Telegram photo arrives through this process, so each chat stands for
/// its own address: the discard-only prefix `100::/64` with the chat id, never routed.
fn chat_address(chat_id: i64) -> std::net::IpAddr {
    std::net::IpAddr::V6(std::net::Ipv6Addr::from(
        (0x0100u128 << 112) | (chat_id as u64 as u128),
    ))
}

fn conversation_id(s: &str) -> DeskResult<ConversationId> {
    ConversationId::parse(s).map_err(desk_error)
}

/// A search snippet as plain text (the engine marks matches in escaped HTML).
fn plain(snippet: &str) -> String {
    snippet
        .replace("<mark>", "")
        .replace("</mark>", "")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

fn out_item(m: Message) -> OutItem {
    OutItem {
        seq: m.seq,
        author: match m.sender.kind {
            SenderKind::System => Author::Service,
            _ => Author::Staff(m.sender.display_name),
        },
        text: m.body,
        images: m
            .attachments
            .into_iter()
            .map(|a| ImageRef {
                id: a.id.to_string(),
                content_type: a.content_type,
                bytes: a.bytes,
                width: a.width,
                height: a.height,
            })
            .collect(),
    }
}

impl TelegramDesk {
    async fn principal(&self, u: &ChatUser) -> DeskResult<(Principal, bool)> {
        self.domain
            .telegram_citizen(TelegramUser {
                chat_id: u.chat_id,
                display_name: u.display_name.as_deref(),
                language: u.language.as_deref(),
            })
            .await
            .map_err(desk_error)
    }

    async fn send(&self, p: &Principal, input: SendInput) -> DeskResult<Submitted> {
        let o = self.domain.send(p, input).await.map_err(desk_error)?;
        Ok(Submitted {
            duplicate: o.duplicate,
        })
    }
}

#[async_trait]
impl Desk for TelegramDesk {
    async fn citizen(&self, user: &ChatUser) -> DeskResult<Profile> {
        let (p, new) = self.principal(user).await?;
        Ok(profile(&p, new))
    }

    fn countries(&self) -> Vec<(String, String)> {
        self.domain
            .offered_countries()
            .into_iter()
            .map(|(c, m)| (c.as_str().to_string(), m))
            .collect()
    }

    async fn set_country(&self, user: &ChatUser, country: Option<&str>) -> DeskResult<Profile> {
        let (p, _) = self.principal(user).await?;
        let p = self
            .domain
            .update_citizen_profile(&p, None, Some(country))
            .await
            .map_err(desk_error)?;
        Ok(profile(&p, false))
    }

    async fn set_language(&self, user: &ChatUser, lang: Lang) -> DeskResult<Profile> {
        let (p, _) = self.principal(user).await?;
        let locale = match lang {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        };
        let p = self
            .domain
            .update_citizen_profile(&p, Some(locale), None)
            .await
            .map_err(desk_error)?;
        Ok(profile(&p, false))
    }

    async fn submit(&self, user: &ChatUser, key: &str, inbound: Inbound) -> DeskResult<Submitted> {
        let (p, _) = self.principal(user).await?;
        let base = SendInput {
            client_msg_id: key.to_string(),
            channel: Some(Channel::Telegram),
            ..Default::default()
        };
        match inbound {
            Inbound::Text(text) => {
                self.send(
                    &p,
                    SendInput {
                        body: Some(text),
                        ..base
                    },
                )
                .await
            }
            Inbound::Location {
                lat,
                lon,
                accuracy_m,
            } => {
                self.send(
                    &p,
                    SendInput {
                        body: Some(lingshi_telegram::texts::location_text(lat, lon, accuracy_m)),
                        ..base
                    },
                )
                .await
            }
            Inbound::Image { bytes, caption } => {
                if self
                    .domain
                    .sent_message(&p, key)
                    .await
                    .map_err(desk_error)?
                    .is_some()
                {
                    return Ok(Submitted { duplicate: true });
                }
                let a = self
                    .domain
                    .upload(&p, chat_address(user.chat_id), bytes)
                    .await
                    .map_err(desk_error)?;
                self.send(
                    &p,
                    SendInput {
                        kind: Some("image".into()),
                        body: Some(caption),
                        attachment_ids: vec![a.id.to_string()],
                        ..base
                    },
                )
                .await
            }
        }
    }

    async fn is_stored(&self, user: &ChatUser, key: &str) -> DeskResult<bool> {
        let (p, _) = self.principal(user).await?;
        Ok(self
            .domain
            .sent_message(&p, key)
            .await
            .map_err(desk_error)?
            .is_some())
    }

    async fn edit(&self, user: &ChatUser, key: &str, text: &str) -> DeskResult<bool> {
        let (p, _) = self.principal(user).await?;
        Ok(self
            .domain
            .edit_message(&p, key, text.to_string())
            .await
            .map_err(desk_error)?
            .is_some())
    }

    async fn set_location(
        &self,
        user: &ChatUser,
        lat: f64,
        lon: f64,
        accuracy_m: Option<f64>,
    ) -> DeskResult<()> {
        let (p, _) = self.principal(user).await?;
        let at = GeoPoint::parse(lat, lon, accuracy_m).map_err(desk_error)?;
        self.domain.set_location(&p, at).await.map_err(desk_error)
    }

    async fn search(&self, user: &ChatUser, words: &str) -> DeskResult<Vec<SearchHit>> {
        let (p, _) = self.principal(user).await?;
        let c = p.citizen().expect("a chat is a citizen");
        let (results, _) = self
            .domain
            .search(
                Some(&p),
                SearchRequest {
                    q: words.to_string(),
                    locale: c.locale.as_ref().map(|l| l.as_str().to_string()),
                    country: c.country.map(|c| c.as_str().to_string()),
                    limit: Some(SEARCH_HITS),
                    ..Default::default()
                },
            )
            .await
            .map_err(desk_error)?;
        Ok(results
            .hits
            .into_iter()
            .take(SEARCH_HITS)
            .map(|h| SearchHit {
                url: (!self.article_url.is_empty()).then(|| {
                    self.article_url
                        .replace("{slug}", &h.slug)
                        .replace("{locale}", &h.locale)
                }),
                snippet: plain(&h.snippet),
                title: h.title,
            })
            .collect())
    }

    async fn alerts(&self, user: &ChatUser) -> DeskResult<Vec<AlertItem>> {
        let (p, _) = self.principal(user).await?;
        let c = p.citizen().expect("a chat is a citizen");
        let country = c.country.map(|c| c.as_str().to_string());
        let locale = c.locale.as_ref().map(|l| l.as_str().to_string());
        let alerts = self
            .domain
            .alerts(country.as_deref(), None, locale.as_deref())
            .await
            .map_err(desk_error)?;
        Ok(alerts
            .into_iter()
            .take(ALERTS_SHOWN)
            .map(|a| AlertItem {
                title: a.fields.title,
                summary: a.fields.summary,
                severity: a.fields.severity.map(|s| s.as_str().to_string()),
            })
            .collect())
    }

    async fn sos(&self, user: &ChatUser, _key: &str) -> DeskResult<String> {
        let (p, _) = self.principal(user).await?;
        // The escalation (priority `emergency`, the 12308 hotline alerted, guidance
        // posted in the conversation and so delivered to the chat) takes the app's
        // path. The hotline numbers are answered at once whatever happens to it.
        let mut attempt = 0;
        loop {
            match self
                .domain
                .sos(&p, SosInput::default(), Channel::Telegram)
                .await
            {
                Ok(o) => {
                    if let Some(e) = o.escalation {
                        tracing::warn!(escalation = %e.id, "SOS from a telegram chat");
                    }
                    break;
                }
                Err(e @ (AppError::RateLimited { .. } | AppError::Unavailable(_)))
                    if attempt < 3 =>
                {
                    attempt += 1;
                    tracing::info!(error = %e.public_message(), attempt, "telegram SOS retried");
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e.public_message(), "telegram SOS not escalated; the citizen gets the hotline numbers");
                    break;
                }
            }
        }
        Ok(lingshi_telegram::texts::hotline(lang_of(&p)))
    }

    async fn update_handled(&self, update_id: i64) -> DeskResult<bool> {
        self.domain
            .telegram_update_handled(update_id)
            .await
            .map_err(desk_error)
    }

    async fn update_done(&self, update_id: i64) -> DeskResult<()> {
        self.domain
            .telegram_update_done(update_id)
            .await
            .map(|_| ())
            .map_err(desk_error)
    }

    async fn offset(&self) -> DeskResult<i64> {
        self.domain.telegram_offset().await.map_err(desk_error)
    }

    async fn set_offset(&self, offset: i64) -> DeskResult<()> {
        self.domain
            .set_telegram_offset(offset)
            .await
            .map_err(desk_error)
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> DeskResult<bool> {
        self.domain
            .telegram_lease(holder, ttl)
            .await
            .map_err(desk_error)
    }

    async fn backlog(&self, limit: usize) -> DeskResult<Vec<Backlog>> {
        Ok(self
            .domain
            .telegram_backlog(limit as i64)
            .await
            .map_err(desk_error)?
            .into_iter()
            .map(|b| Backlog {
                conversation: b.conversation_id.to_string(),
                chat_id: b.chat_id,
                cursor: b.cursor,
            })
            .collect())
    }

    async fn chat_of(&self, conversation: &str) -> DeskResult<Option<(i64, i64)>> {
        self.domain
            .telegram_chat_of(conversation_id(conversation)?)
            .await
            .map_err(desk_error)
    }

    async fn outgoing(&self, conversation: &str, after: i64, limit: usize) -> DeskResult<Outgoing> {
        let o = self
            .domain
            .telegram_outgoing(conversation_id(conversation)?, after, limit as i64)
            .await
            .map_err(desk_error)?;
        Ok(Outgoing {
            items: o.messages.into_iter().map(out_item).collect(),
            upto: o.upto,
        })
    }

    async fn delivered(&self, conversation: &str, seq: i64) -> DeskResult<()> {
        self.domain
            .telegram_delivered(conversation_id(conversation)?, seq)
            .await
            .map_err(desk_error)
    }

    async fn image(&self, conversation: &str, image: &str) -> DeskResult<Vec<u8>> {
        let id = AttachmentId::parse(image).map_err(desk_error)?;
        Ok(self
            .domain
            .telegram_attachment(conversation_id(conversation)?, id)
            .await
            .map_err(desk_error)?
            .bytes)
    }

    async fn undeliverable(
        &self,
        conversation: &str,
        first: i64,
        last: i64,
        reason: &str,
    ) -> DeskResult<()> {
        self.domain
            .telegram_undeliverable(conversation_id(conversation)?, (first, last), reason)
            .await
            .map_err(desk_error)
    }

    async fn housekeeping(&self) -> DeskResult<()> {
        let n = self
            .domain
            .prune_telegram_updates()
            .await
            .map_err(desk_error)?;
        if n > 0 {
            tracing::debug!(forgotten = n, "old telegram update ids forgotten");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_lose_their_markup() {
        assert_eq!(
            plain("lost <mark>passport</mark> &amp; visa &lt;EU&gt;"),
            "lost passport & visa <EU>"
        );
    }
}
