//! Pacing within Telegram's limits: about one message a second per chat (after a short
//! burst) and about thirty a second over all chats. Sending faster earns 429s and, if
//! repeated, longer bans, so the bridge never relies on them: it paces itself.
//!
//! A send is counted from the moment it starts until its response arrived and for a
//! window after that, so however long a request takes on the wire, Telegram never sees
//! more than the allowed number in any window: requests in flight count as "now", and
//! completed ones count from their completion, which is after Telegram received them.
//! Per chat, a token bucket refilled at the chat rate is charged at completion time for
//! the same reason, and one chat never has two sends in flight (order).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits to keep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub chat_per_second: f64,
    pub chat_burst: u32,
    pub global_per_second: u32,
}

/// Slack added to the one-second window for clock granularity and scheduling.
const WINDOW: Duration = Duration::from_millis(1050);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    busy: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Completion times of recent sends, oldest first.
    recent: VecDeque<Instant>,
    in_flight: usize,
    chats: HashMap<i64, Bucket>,
}

/// Why a send must wait, and until when it may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// This chat is at its rate (or has a send in flight).
    Chat(Instant),
    /// Every chat is: the global window is full.
    Global(Instant),
}

/// The shared pacer of one bot.
#[derive(Debug)]
pub struct Pacer {
    limits: Limits,
    state: Mutex<State>,
}

/// Permission for one request; its completion is recorded when dropped.
#[derive(Debug)]
pub struct Permit {
    pacer: Arc<Pacer>,
    chat: Option<i64>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pacer.finish(self.chat, Instant::now());
    }
}

impl Pacer {
    pub fn new(limits: Limits) -> Arc<Pacer> {
        Arc::new(Pacer {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let burst = self.limits.chat_burst as f64;
        let gained =
            now.saturating_duration_since(b.at).as_secs_f64() * self.limits.chat_per_second;
        b.tokens = (b.tokens + gained).min(burst);
        b.at = b.at.max(now);
    }

    /// When the global window has room again (`None`: now).
    fn global_wait(&self, s: &mut State, now: Instant) -> Option<Instant> {
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            s.recent.pop_front();
        }
        let limit = self.limits.global_per_second as usize;
        if s.recent.len() + s.in_flight < limit {
            return None;
        }
        // Full: room comes when the oldest completion leaves the window, or, if the
        // window is all in flight, shortly after one completes.
        Some(match s.recent.front() {
            Some(oldest) if s.in_flight < limit => *oldest + WINDOW,
            _ => now + Duration::from_millis(20),
        })
    }

    /// Start a request to `chat` now if the limits allow it.
    pub fn try_start(self: &Arc<Self>, chat: i64, now: Instant) -> Result<Permit, Wait> {
        let mut s = self.lock();
        let rate = self.limits.chat_per_second;
        {
            let burst = self.limits.chat_burst as f64;
            let b = s.chats.entry(chat).or_insert(Bucket {
                tokens: burst,
                at: now,
                busy: false,
            });
            if b.busy {
                return Err(Wait::Chat(now + Duration::from_millis(20)));
            }
            self.refill(b, now);
            if b.tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate);
                return Err(Wait::Chat(now + wait));
            }
        }
        if let Some(at) = self.global_wait(&mut s, now) {
            return Err(Wait::Global(at));
        }
        s.in_flight += 1;
        if let Some(b) = s.chats.get_mut(&chat) {
            b.busy = true;
        }
        Ok(Permit {
            pacer: self.clone(),
            chat: Some(chat),
        })
    }

    /// Start a request that is not a message to a chat (a chat action): it only needs
    /// room in the global window, and is skipped rather than delayed.
    pub fn try_start_extra(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut s = self.lock();
        if self.global_wait(&mut s, now).is_some() {
            return None;
        }
        s.in_flight += 1;
        Some(Permit {
            pacer: self.clone(),
            chat: None,
        })
    }

    /// Wait until a request to `chat` may start.
    pub async fn start(self: &Arc<Self>, chat: i64) -> Permit {
        loop {
            match self.try_start(chat, Instant::now()) {
                Ok(p) => return p,
                Err(Wait::Chat(at) | Wait::Global(at)) => {
                    tokio::time::sleep_until(at.into()).await;
                }
            }
        }
    }

    fn finish(&self, chat: Option<i64>, now: Instant) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.recent.push_back(now);
        if let Some(chat) = chat {
            if let Some(b) = s.chats.get_mut(&chat) {
                b.busy = false;
                let burst = self.limits.chat_burst as f64;
                let gained =
                    now.saturating_duration_since(b.at).as_secs_f64() * self.limits.chat_per_second;
                b.tokens = (b.tokens + gained).min(burst) - 1.0;
                b.at = b.at.max(now);
            }
        }
        if s.chats.len() > 50_000 {
            // Forget chats whose bucket is full again: they lose nothing.
            let rate = self.limits.chat_per_second;
            let burst = self.limits.chat_burst as f64;
            s.chats.retain(|_, b| {
                b.busy
                    || b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
    }

    /// Requests started and not finished.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(chat_per_second: f64, chat_burst: u32, global: u32) -> Arc<Pacer> {
        Pacer::new(Limits {
            chat_per_second,
            chat_burst,
            global_per_second: global,
        })
    }

    #[test]
    fn a_chat_gets_its_burst_then_one_a_second() {
        let p = pacer(1.0, 2, 30);
        let t0 = Instant::now();
        drop(p.try_start(1, t0).unwrap());
        drop(p.try_start(1, t0).unwrap());
        let wait = match p.try_start(1, t0) {
            Err(Wait::Chat(at)) => at,
            other => panic!("expected a chat wait, got {other:?}"),
        };
        assert!(wait > t0 + Duration::from_millis(900));
        // Other chats are not held back.
        drop(p.try_start(2, t0).unwrap());
    }

    #[test]
    fn one_send_in_flight_per_chat() {
        let p = pacer(10.0, 5, 30);
        let t0 = Instant::now();
        let first = p.try_start(7, t0).unwrap();
        assert!(matches!(p.try_start(7, t0), Err(Wait::Chat(_))));
        drop(first);
        assert!(p.try_start(7, t0).is_ok());
    }

    #[test]
    fn the_global_window_counts_in_flight_and_recent_sends() {
        let p = pacer(1.0, 3, 3);
        let t0 = Instant::now();
        let a = p.try_start(1, t0).unwrap();
        let b = p.try_start(2, t0).unwrap();
        drop(p.try_start(3, t0).unwrap());
        assert!(matches!(p.try_start(4, t0), Err(Wait::Global(_))));
        assert!(p.try_start_extra(t0).is_none());
        drop(a);
        drop(b);
        // Completed, but still inside the window.
        assert!(matches!(
            p.try_start(4, Instant::now()),
            Err(Wait::Global(_))
        ));
        let later = Instant::now() + WINDOW + Duration::from_millis(5);
        assert!(p.try_start(4, later).is_ok());
    }
}
