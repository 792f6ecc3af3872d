//! What a failed Bot API call means for delivery.

use std::time::Duration;

use teloxide::{ApiError, RequestError};

/// How a failed request is handled.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Flood control: wait this long, then send the same thing again.
    RetryAfter(Duration),
    /// Network trouble, a server error, an unreadable answer: retry with backoff.
    Transient(String),
    /// The chat cannot be reached at all (the user blocked the bot, deleted their
    /// account, the chat does not exist): nothing pending can be delivered.
    ChatGone(String),
    /// Telegram refused this one message; the next ones may go through.
    Rejected(String),
}

impl Failure {
    pub fn classify(e: &RequestError) -> Failure {
        match e {
            RequestError::RetryAfter(s) => Failure::RetryAfter(s.duration()),
            RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
                Failure::Transient(e.to_string())
            }
            RequestError::MigrateToChatId(_) => Failure::ChatGone("the chat moved".into()),
            RequestError::Api(api) => match api {
                ApiError::BotBlocked => Failure::ChatGone("the user blocked the bot".into()),
                ApiError::ChatNotFound | ApiError::UserNotFound => {
                    Failure::ChatGone("the chat does not exist".into())
                }
                ApiError::UserDeactivated => {
                    Failure::ChatGone("the user deleted their account".into())
                }
                ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::BotKickedFromChannel
                | ApiError::GroupDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::CantTalkWithBots
                | ApiError::NotEnoughRightsToPostMessages => Failure::ChatGone(api.to_string()),
                // A bad token or a server that answers without a known description
                // (a 5xx, a proxy) is not this message's fault.
                ApiError::InvalidToken => Failure::Transient(api.to_string()),
                ApiError::Unknown(text) if transient_description(text) => {
                    Failure::Transient(text.clone())
                }
                other => Failure::Rejected(other.to_string()),
            },
            // `RequestError` is non-exhaustive across versions: treat anything new as
            // worth retrying.
            #[allow(unreachable_patterns)]
            _ => Failure::Transient(e.to_string()),
        }
    }
}

/// Descriptions of errors that are the server's, not the request's.
fn transient_description(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("internal server error")
        || t.contains("bad gateway")
        || t.contains("service unavailable")
        || t.contains("gateway timeout")
        || t.contains("too many requests")
        || t.starts_with("internal")
        || t.is_empty()
}

/// Delay before the next attempt after `attempts` transient failures in a row: 1 s,
/// 2 s, 4 s, ... up to a minute, with jitter so that many chats do not retry in step.
pub fn backoff(attempts: u32) -> Duration {
    let base = 2f64
        .powi(attempts.saturating_sub(1).min(6) as i32)
        .min(60.0);
    let jitter = 0.8 + 0.4 * rand_fraction();
    Duration::from_secs_f64(base * jitter)
}

/// A fraction in [0, 1) without pulling in a random-number crate.
fn rand_fraction() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

/// An error as it may be logged: the token never appears.
pub fn redact(text: &str, token: &str) -> String {
    if token.is_empty() {
        text.to_string()
    } else {
        text.replace(token, "<token>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teloxide::types::Seconds;

    #[test]
    fn classifies_what_telegram_answers() {
        assert_eq!(
            Failure::classify(&RequestError::RetryAfter(Seconds::from_seconds(3))),
            Failure::RetryAfter(Duration::from_secs(3))
        );
        assert!(matches!(
            Failure::classify(&RequestError::Api(ApiError::BotBlocked)),
            Failure::ChatGone(_)
        ));
        assert!(matches!(
            Failure::classify(&RequestError::Api(ApiError::ChatNotFound)),
            Failure::ChatGone(_)
        ));
        assert!(matches!(
            Failure::classify(&RequestError::Api(ApiError::Unknown(
                "Internal Server Error".into()
            ))),
            Failure::Transient(_)
        ));
        assert!(matches!(
            Failure::classify(&RequestError::Api(ApiError::MessageIsTooLong)),
            Failure::Rejected(_)
        ));
    }

    #[test]
    fn backoff_grows_to_a_minute() {
        assert!(backoff(1) <= Duration::from_secs_f64(1.2));
        assert!(backoff(3) >= Duration::from_secs_f64(3.2));
        assert!(backoff(30) <= Duration::from_secs(72));
        assert!(backoff(30) >= Duration::from_secs(48));
    }

    #[test]
    fn tokens_are_redacted() {
        assert_eq!(redact("url /bot123:abc/x", "123:abc"), "url /bot<token>/x");
    }
}
