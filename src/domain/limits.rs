//! Rate limits, in one place for every path: sign-ins per address, messages per sender
//! (the socket, the HTTP fallback and bridges share one budget), uploads per person and
//! upload bytes per address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::types::PersonId;
use crate::config::Limits as Config;
use crate::error::AppError;

/// A token bucket per key.
pub struct Limiter<K> {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens a key holds (its burst).
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        Limiter {
            rate: rate_per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
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
            Ok(())
        } else {
            Err(((cost - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

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
}
