//! One update in, its effect done once: messages of private chats become messages of
//! the citizen's conversation (text, photos, image documents, locations), edits
//! become edits, commands are answered, group chats are refused politely.

use std::time::Duration;

use teloxide::net::Download;
use teloxide::payloads::SendMessageSetters;
use teloxide::prelude::Requester;
use teloxide::types::{
    CallbackQuery, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, Message, ParseMode, Update,
    UpdateKind, User,
};
use teloxide::RequestError;

use crate::desk::*;
use crate::failure::Failure;
use crate::texts;
use crate::Shared;

/// Telegram lets bots download files of at most 20 MB.
pub const DOWNLOAD_MAX: u32 = 20 * 1024 * 1024;

/// Attempts at an update that keeps failing for reasons that may pass before the bridge
/// gives up on it (and tells the citizen to send it again).
const ATTEMPTS_MAX: u32 = 5;

/// The namespace of message keys (UUIDv5 of `telegram:{bot}:{chat}:{message}`).
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c696e67_7368_4954_8c65_6772616d0001);

/// The key a Telegram message is stored under: the same for every delivery of the
/// update that carries it, and for its edits.
pub fn message_key(bot: u64, chat: i64, message: i32) -> String {
    uuid::Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("telegram:{bot}:{chat}:{message}").as_bytes(),
    )
    .to_string()
}

/// Why an update could not be handled now; it will come again.
#[derive(Debug)]
pub struct Retry(pub String);

impl From<DeskError> for Retry {
    fn from(e: DeskError) -> Self {
        Retry(e.to_string())
    }
}

fn user_of(u: &User) -> (Option<String>, Option<String>) {
    let name = match &u.last_name {
        Some(l) if !l.is_empty() => format!("{} {}", u.first_name, l),
        _ => u.first_name.clone(),
    };
    (Some(name), u.language_code.clone())
}

/// A command and its argument, if `text` is one addressed to this bot.
fn command<'a>(text: &'a str, bot_username: &str) -> Option<(String, &'a str)> {
    let text = text.trim_start();
    let rest = text.strip_prefix('/')?;
    let (word, arg) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let (name, to) = match word.split_once('@') {
        Some((n, to)) => (n, Some(to)),
        None => (word, None),
    };
    if to.is_some_and(|to| !to.eq_ignore_ascii_case(bot_username)) {
        return None;
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_ascii_lowercase(), arg))
}

/// A flag emoji for a country code (regional indicator letters).
fn flag(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_uppercase())
        .filter_map(|c| char::from_u32(0x1F1E6 + (c as u32 - 'A' as u32)))
        .collect()
}

fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

impl Shared {
    /// Handle one update. `Err` means nothing conclusive happened and the update must
    /// be offered again (polling does not move past it; a webhook call answers 503).
    pub(crate) async fn handle(&self, update: Update) -> Result<(), Retry> {
        let Some(me) = self.me.get().cloned() else {
            return Err(Retry("the bot is not identified yet".into()));
        };
        let id = update.id.0;
        let chat = update.chat().map(|c| c.id.0).unwrap_or(0);
        let lock = &self.chat_locks[(chat.unsigned_abs() % self.chat_locks.len() as u64) as usize];
        let _one_at_a_time = lock.lock().await;
        if self.desk.update_handled(id as i64).await? {
            tracing::debug!(update = id, "telegram update handled before; skipped");
            return Ok(());
        }
        let result = match update.kind {
            UpdateKind::Message(m) => self.message(&me, m).await,
            UpdateKind::EditedMessage(m) => self.edited(&me, m).await,
            UpdateKind::CallbackQuery(q) => self.callback(q).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => {
                self.failures_of(id, false);
            }
            Err(Retry(why)) => {
                let attempts = self.failures_of(id, true);
                if attempts < ATTEMPTS_MAX {
                    tracing::warn!(update = id, attempts, error = %self.redact(&why), "telegram update not handled; it will be retried");
                    return Err(Retry(why));
                }
                tracing::error!(update = id, attempts, error = %self.redact(&why), "telegram update given up; the citizen is asked to send it again");
                if chat > 0 {
                    self.reply(chat, texts::try_later(Lang::Zh).into(), None)
                        .await;
                }
            }
        }
        self.desk.update_done(id as i64).await?;
        Ok(())
    }

    /// Count a failure (or clear the count); returns the failures so far.
    fn failures_of(&self, update: u32, failed: bool) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !failed {
            f.remove(&update);
            return 0;
        }
        if f.len() > 10_000 {
            f.clear();
        }
        let n = f.entry(update).or_insert(0);
        *n += 1;
        *n
    }

    async fn message(&self, me: &crate::Me, m: Message) -> Result<(), Retry> {
        if m.from.as_ref().is_some_and(|u| u.is_bot) {
            return Ok(());
        }
        if !m.chat.is_private() {
            if m.chat.is_group() || m.chat.is_supergroup() {
                // Answer only what is addressed to the bot (commands, replies): in a
                // group everyone's messages may arrive.
                let addressed = m.text().is_some_and(|t| t.starts_with('/'))
                    || m.reply_to_message()
                        .and_then(|r| r.from.as_ref())
                        .is_some_and(|u| u.id.0 == me.id);
                if addressed {
                    self.reply(m.chat.id.0, texts::private_only().into(), None)
                        .await;
                }
            }
            return Ok(());
        }
        let (display_name, language) = m.from.as_ref().map(user_of).unwrap_or_default();
        let user = ChatUser {
            chat_id: m.chat.id.0,
            display_name,
            language,
        };
        let key = message_key(me.id, user.chat_id, m.id.0);
        if let Some(text) = m.text() {
            if let Some((cmd, arg)) = command(text, &me.username) {
                return self.command(&user, &key, &cmd, arg).await;
            }
            return self
                .submit(&user, &key, Inbound::Text(text.to_string()))
                .await;
        }
        if let Some(loc) = m.location().or(m.venue().map(|v| &v.location)) {
            self.desk
                .set_location(&user, loc.latitude, loc.longitude, loc.horizontal_accuracy)
                .await
                .or_else(|e| if e.is_transient() { Err(e) } else { Ok(()) })?;
            return self
                .submit(
                    &user,
                    &key,
                    Inbound::Location {
                        lat: loc.latitude,
                        lon: loc.longitude,
                        accuracy_m: loc.horizontal_accuracy,
                    },
                )
                .await;
        }
        let caption = m.caption().unwrap_or_default().to_string();
        if let Some(sizes) = m.photo() {
            let Some(largest) = sizes
                .iter()
                .max_by_key(|p| (p.width as u64) * (p.height as u64))
            else {
                return Ok(());
            };
            return self
                .image(&user, &key, &largest.file.id.0, largest.file.size, caption)
                .await;
        }
        if let Some(doc) = m.document() {
            let mime = doc.mime_type.as_ref().map(|m| m.essence_str().to_string());
            let named_image = doc.file_name.as_deref().is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                [".png", ".jpg", ".jpeg", ".webp", ".gif"]
                    .iter()
                    .any(|e| n.ends_with(e))
            });
            if mime.as_deref().is_some_and(|m| m.starts_with("image/")) || named_image {
                return self
                    .image(&user, &key, &doc.file.id.0, doc.file.size, caption)
                    .await;
            }
        }
        // Stickers, voice, video, contacts, polls...: say what can be passed on.
        let lang = self.lang_of(&user).await;
        self.reply(user.chat_id, texts::unsupported(lang).into(), None)
            .await;
        Ok(())
    }

    /// The language to answer in: the citizen's choice, else their Telegram language.
    async fn lang_of(&self, user: &ChatUser) -> Lang {
        match self.desk.citizen(user).await {
            Ok(p) => p.lang,
            Err(_) => texts::lang_of(user.language.as_deref()),
        }
    }

    async fn submit(&self, user: &ChatUser, key: &str, inbound: Inbound) -> Result<(), Retry> {
        match self.desk.submit(user, key, inbound).await {
            Ok(s) => {
                if s.duplicate {
                    tracing::debug!("telegram message stored before; not stored again");
                }
                Ok(())
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => {
                let lang = self.lang_of(user).await;
                let text = match e {
                    DeskError::TooLarge(_) => texts::too_big(lang),
                    DeskError::Unsupported(_) => texts::unsupported(lang),
                    _ => texts::refused(lang),
                };
                tracing::info!(error = %e, "telegram message refused");
                self.reply(user.chat_id, text.into(), None).await;
                Ok(())
            }
        }
    }

    async fn image(
        &self,
        user: &ChatUser,
        key: &str,
        file_id: &str,
        size: u32,
        caption: String,
    ) -> Result<(), Retry> {
        if self.desk.is_stored(user, key).await? {
            return Ok(());
        }
        // A missing size reads as u32::MAX; only a known size is judged here.
        if size != u32::MAX && size > DOWNLOAD_MAX {
            let lang = self.lang_of(user).await;
            self.reply(user.chat_id, texts::too_big(lang).into(), None)
                .await;
            return Ok(());
        }
        let file = match self
            .bot
            .get_file(teloxide::types::FileId(file_id.to_string()))
            .await
        {
            Ok(f) => f,
            Err(e) => return self.file_failed(user, e).await,
        };
        let mut bytes: Vec<u8> =
            Vec::with_capacity((file.meta.size as usize).min(DOWNLOAD_MAX as usize));
        if let Err(e) = self.bot.download_file(&file.path, &mut bytes).await {
            return Err(Retry(format!("file download failed: {e}")));
        }
        if bytes.len() > DOWNLOAD_MAX as usize {
            let lang = self.lang_of(user).await;
            self.reply(user.chat_id, texts::too_big(lang).into(), None)
                .await;
            return Ok(());
        }
        self.submit(user, key, Inbound::Image { bytes, caption })
            .await
    }

    async fn file_failed(&self, user: &ChatUser, e: RequestError) -> Result<(), Retry> {
        match Failure::classify(&e) {
            Failure::Rejected(why) => {
                // "file is too big" and its kin.
                tracing::info!(error = %self.redact(&why), "telegram refused the file");
                let lang = self.lang_of(user).await;
                self.reply(user.chat_id, texts::too_big(lang).into(), None)
                    .await;
                Ok(())
            }
            other => Err(Retry(format!("getFile failed: {other:?}"))),
        }
    }

    async fn edited(&self, me: &crate::Me, m: Message) -> Result<(), Retry> {
        if !m.chat.is_private() || m.from.as_ref().is_some_and(|u| u.is_bot) {
            return Ok(());
        }
        let (display_name, language) = m.from.as_ref().map(user_of).unwrap_or_default();
        let user = ChatUser {
            chat_id: m.chat.id.0,
            display_name,
            language,
        };
        if let Some(loc) = m.location() {
            // A live location moving: the last location follows, no new message.
            return self
                .desk
                .set_location(&user, loc.latitude, loc.longitude, loc.horizontal_accuracy)
                .await
                .or_else(|e| {
                    if e.is_transient() {
                        Err(e.into())
                    } else {
                        Ok(())
                    }
                });
        }
        let Some(text) = m.text().or(m.caption()) else {
            return Ok(());
        };
        if m.text().is_some() && command(text, &me.username).is_some() {
            return Ok(());
        }
        let key = message_key(me.id, user.chat_id, m.id.0);
        match self.desk.edit(&user, &key, text).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::debug!("edit of a message that was not stored; ignored");
                Ok(())
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => {
                tracing::info!(error = %e, "telegram edit refused");
                Ok(())
            }
        }
    }

    async fn callback(&self, q: CallbackQuery) -> Result<(), Retry> {
        // Stop the button's spinner whatever happens next.
        let _ = self.bot.answer_callback_query(q.id.clone()).await;
        let Some(chat) = q.message.as_ref().map(|m| m.chat().clone()) else {
            return Ok(());
        };
        if !chat.is_private() {
            return Ok(());
        }
        let (display_name, language) = user_of(&q.from);
        let user = ChatUser {
            chat_id: chat.id.0,
            display_name,
            language,
        };
        match q.data.as_deref().and_then(|d| d.strip_prefix("country:")) {
            Some("other") => self.set_country(&user, None).await,
            Some(code) if is_country_code(code) => self.set_country(&user, Some(code)).await,
            _ => Ok(()),
        }
    }

    async fn set_country(&self, user: &ChatUser, code: Option<&str>) -> Result<(), Retry> {
        match self.desk.set_country(user, code).await {
            Ok(p) => {
                let mission = code.and_then(|c| {
                    self.desk
                        .countries()
                        .into_iter()
                        .find(|(cc, _)| cc == c)
                        .map(|(_, m)| m)
                });
                self.reply(
                    user.chat_id,
                    texts::escape(&texts::country_set(p.lang, code, mission.as_deref())),
                    None,
                )
                .await;
                Ok(())
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(_) => {
                let lang = self.lang_of(user).await;
                self.reply(user.chat_id, texts::country_usage(lang).into(), None)
                    .await;
                Ok(())
            }
        }
    }

    async fn command(&self, user: &ChatUser, key: &str, cmd: &str, arg: &str) -> Result<(), Retry> {
        let profile = self.desk.citizen(user).await?;
        let lang = profile.lang;
        match cmd {
            "start" => {
                let countries = self.desk.countries();
                let keyboard = (!countries.is_empty()).then(|| {
                    let mut rows: Vec<Vec<InlineKeyboardButton>> = countries
                        .chunks(3)
                        .map(|row| {
                            row.iter()
                                .map(|(code, _)| {
                                    InlineKeyboardButton::callback(
                                        format!("{} {code}", flag(code)),
                                        format!("country:{code}"),
                                    )
                                })
                                .collect()
                        })
                        .collect();
                    rows.push(vec![InlineKeyboardButton::callback(
                        texts::other_country_label(),
                        "country:other",
                    )]);
                    InlineKeyboardMarkup::new(rows)
                });
                let text = texts::escape(&texts::greeting(keyboard.is_some()));
                self.reply(user.chat_id, text, keyboard).await;
            }
            "country" => {
                let code = arg.trim().to_ascii_uppercase();
                if code == "OTHER" {
                    return self.set_country(user, None).await;
                }
                if !is_country_code(&code) {
                    self.reply(user.chat_id, texts::country_usage(lang).into(), None)
                        .await;
                    return Ok(());
                }
                return self.set_country(user, Some(&code)).await;
            }
            "lang" | "language" => {
                let want = match arg.trim().to_ascii_lowercase().as_str() {
                    "zh" | "cn" | "zh-cn" | "中文" => Some(Lang::Zh),
                    "en" | "english" => Some(Lang::En),
                    _ => None,
                };
                match want {
                    Some(l) => {
                        let p = self.desk.set_language(user, l).await?;
                        self.reply(user.chat_id, texts::lang_set(p.lang).into(), None)
                            .await;
                    }
                    None => {
                        self.reply(user.chat_id, texts::lang_usage().into(), None)
                            .await
                    }
                }
            }
            "help" => {
                self.reply(user.chat_id, texts::escape(&texts::help(lang)), None)
                    .await;
            }
            "search" => {
                if arg.trim().is_empty() {
                    self.reply(user.chat_id, texts::search_usage(lang).into(), None)
                        .await;
                } else {
                    let hits = match self.desk.search(user, arg).await {
                        Ok(h) => h,
                        Err(e) if e.is_transient() => return Err(e.into()),
                        Err(_) => vec![],
                    };
                    self.reply(user.chat_id, texts::search_results(lang, &hits), None)
                        .await;
                }
            }
            "alerts" => {
                let items = self.desk.alerts(user).await?;
                self.reply(
                    user.chat_id,
                    texts::alerts(lang, &items, profile.country.as_deref()),
                    None,
                )
                .await;
            }
            "sos" => {
                let text = self.desk.sos(user, key).await?;
                self.reply(user.chat_id, texts::escape(&text), None).await;
            }
            _ => {
                self.reply(user.chat_id, texts::unknown_command(lang).into(), None)
                    .await;
            }
        }
        Ok(())
    }

    /// Answer the chat (HTML), paced like every message; best effort: a reply that
    /// cannot be sent is logged, never retried forever.
    pub(crate) async fn reply(
        &self,
        chat: i64,
        html: String,
        keyboard: Option<InlineKeyboardMarkup>,
    ) {
        for attempt in 0..3 {
            let permit = self.pacer.start(chat).await;
            let mut req = self
                .bot
                .send_message(ChatId(chat), html.clone())
                .parse_mode(ParseMode::Html);
            if let Some(k) = keyboard.clone() {
                req = req.reply_markup(k);
            }
            let r = req.await;
            drop(permit);
            match r {
                Ok(_) => return,
                Err(e) => match Failure::classify(&e) {
                    Failure::RetryAfter(d) if attempt < 2 => {
                        tokio::time::sleep(d).await;
                    }
                    Failure::Transient(_) if attempt < 2 => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    other => {
                        tracing::info!(failure = %self.redact(&format!("{other:?}")), "telegram reply not sent");
                        return;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_message_and_differ_between_messages() {
        let a = message_key(1, 42, 7);
        assert_eq!(a, message_key(1, 42, 7));
        assert_ne!(a, message_key(1, 42, 8));
        assert_ne!(a, message_key(2, 42, 7));
        assert_ne!(a, message_key(1, 43, 7));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn commands_are_parsed_with_or_without_the_bot_name() {
        assert_eq!(command("/start", "lingshi_bot"), Some(("start".into(), "")));
        assert_eq!(
            command("/search  lost passport ", "lingshi_bot"),
            Some(("search".into(), "lost passport"))
        );
        assert_eq!(
            command("/Country@Lingshi_Bot be", "lingshi_bot"),
            Some(("country".into(), "be"))
        );
        assert_eq!(command("/start@other_bot", "lingshi_bot"), None);
        assert_eq!(command("hello /start", "lingshi_bot"), None);
        assert_eq!(command("/", "lingshi_bot"), None);
        assert_eq!(command("/路径", "lingshi_bot"), None);
    }

    #[test]
    fn flags_are_regional_indicators() {
        assert_eq!(flag("BE"), "🇧🇪");
    }
}
