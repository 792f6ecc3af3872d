//! Rate limits, in one place for every path: sign-ins per address, messages per sender
//! (the socket, the HTTP fallback and bridges share one budget), uploads per person and
//! upload bytes per address.
//!
//! With several nodes each node keeps its own buckets, and every token one node hands
//! out is reported ([`Limiters::mirror_to`]) and charged on the others
//! ([`Limiters::charge`]), so a client cannot multiply its allowance by spreading its
//! requests over the nodes.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::types::PersonId;
use crate::config::Limits as Config;
use crate::error::AppError;

/// Told about every token a limiter hands out (the key and the cost).
pub type Mirror<K> = Box<dyn Fn(&K, f64) + Send + Sync>;

/// A token bucket per key.
pub struct Limiter<K> {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens a key holds (its burst).
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
    mirror: OnceLock<Mirror<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Limiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
            mirror: OnceLock::new(),
        }
    }

    /// Report every token taken here (set once, by the wiring of a cluster node).
    pub fn set_mirror(&self, mirror: Mirror<K>) {
        let _ = self.mirror.set(mirror);
    }

    /// Tokens for `key` were taken on another node: take them here too (never below
    /// zero, so a burst elsewhere delays this node by at most one refill).
    pub fn charge(&self, key: &K, cost: f64) {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        *tokens = (*tokens - cost).max(0.0);
    }

    /// `n` per minute with a burst of `n`.
    pub fn per_minute(n: u32) -> Self {
        Self::new(f64::from(n) / 60.0, f64::from(n))
    }

    /// Take `cost` tokens for `key`; `Err(seconds)` tells when they will be there.
    pub fn take(&self, key: &K, cost: f64) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget keys whose bucket has refilled; they lose nothing.
            let (rate, cap) = (self.rate, self.burst);
            map.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < cap);
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            drop(map);
            if let Some(m) = self.mirror.get() {
                m(key, cost);
            }
            Ok(())
        } else {
            Err(((cost - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Where a node reports the tokens it hands out: (limiter name, key, cost).
pub type Report = Arc<dyn Fn(&'static str, String, f64) + Send + Sync>;

/// Every limiter of the service.
pub struct Limiters {
    pub sign_ins: Limiter<IpAddr>,
    pub sends: Limiter<PersonId>,
    pub uploads: Limiter<PersonId>,
    pub upload_bytes: Limiter<IpAddr>,
}

impl Limiters {
    pub fn new(c: &Config) -> Self {
        let per_sec = f64::from(c.frames_per_second);
        let bytes_per_hour = c.upload_bytes_per_address_per_hour as f64;
        Limiters {
            sign_ins: Limiter::per_minute(c.sessions_per_minute),
            sends: Limiter::new(per_sec, per_sec),
            uploads: Limiter::per_minute(c.uploads_per_minute),
            upload_bytes: Limiter::new(bytes_per_hour / 3600.0, bytes_per_hour),
        }
    }
}

impl Limiters {
    /// Report every token handed out here to `report`, named by limiter, keyed by the
    /// key's text form (what [`Limiters::charge`] reads on another node).
    pub fn mirror_to(&self, report: Report) {
        fn ip(l: &Limiter<IpAddr>, name: &'static str, r: &Report) {
            let r = r.clone();
            l.set_mirror(Box::new(move |k, cost| r(name, k.to_string(), cost)));
        }
        fn person(l: &Limiter<PersonId>, name: &'static str, r: &Report) {
            let r = r.clone();
            l.set_mirror(Box::new(move |k, cost| r(name, k.to_string(), cost)));
        }
        ip(&self.sign_ins, "sign_ins", &report);
        person(&self.sends, "sends", &report);
        person(&self.uploads, "uploads", &report);
        ip(&self.upload_bytes, "upload_bytes", &report);
    }

    /// Charge tokens another node handed out; unknown names and keys are ignored.
    pub fn charge(&self, limiter: &str, key: &str, cost: f64) {
        let ip = || key.parse::<IpAddr>().ok();
        let person = || uuid::Uuid::try_parse(key).ok().map(PersonId);
        match limiter {
            "sign_ins" => ip().map(|k| self.sign_ins.charge(&k, cost)),
            "upload_bytes" => ip().map(|k| self.upload_bytes.charge(&k, cost)),
            "sends" => person().map(|k| self.sends.charge(&k, cost)),
            "uploads" => person().map(|k| self.uploads.charge(&k, cost)),
            _ => None,
        };
    }
}

/// The contract's 429 with `Retry-After`.
pub fn limited(what: &str, retry_after_secs: u64) -> AppError {
    AppError::RateLimited {
        message: what.to_string(),
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_burst_and_tells_when_to_retry() {
        let l: Limiter<IpAddr> = Limiter::per_minute(3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.take(&ip, 1.0).is_ok());
        }
        let wait = l.take(&ip, 1.0).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        assert!(l.take(&"127.0.0.2".parse().unwrap(), 1.0).is_ok());
        let bytes: Limiter<IpAddr> = Limiter::new(1.0, 100.0);
        assert!(bytes.take(&ip, 60.0).is_ok());
        assert_eq!(bytes.take(&ip, 60.0).unwrap_err(), 20);
    }

    #[test]
    fn tokens_taken_on_another_node_count_here() {
        let config = Config {
            sessions_per_minute: 3,
            ..Config::default()
        };
        let here = Limiters::new(&config);
        let there = Arc::new(Limiters::new(&config));
        let other = there.clone();
        here.mirror_to(Arc::new(move |name, key, cost| {
            other.charge(name, &key, cost)
        }));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(here.sign_ins.take(&ip, 1.0).is_ok());
        assert!(here.sign_ins.take(&ip, 1.0).is_ok());
        assert!(there.sign_ins.take(&ip, 1.0).is_ok());
        assert!(
            there.sign_ins.take(&ip, 1.0).is_err(),
            "two of three tokens were spent on the other node"
        );
        let p = PersonId(uuid::Uuid::now_v7());
        let burst = f64::from(config.frames_per_second);
        assert!(here.sends.take(&p, burst).is_ok());
        assert!(
            there.sends.take(&p, 1.0).is_err(),
            "the send budget is shared"
        );
    }
}
