//! Per-source request rate limiting (token buckets), sans-IO.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::endpoint::Millis;

/// Allows each source address `rate_per_s` requests a second on average, in
/// bursts of up to `burst`. Requests over the limit are dropped unanswered (an
/// answer would only help a flood).
pub struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Millis)>,
    last_sweep: Millis,
}

/// Sources tracked at most: a spray of (spoofed) addresses never grows the
/// table past this; when it is full and none can be forgotten, a new source
/// is let through untracked (one packet from each of many sources is not a
/// per-source flood; the global limits deal with volume).
pub const MAX_TRACKED_SOURCES: usize = 65_536;

impl RateLimiter {
    pub fn new(rate_per_s: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate_per_s: rate_per_s as f64, burst: burst.max(1) as f64, buckets: HashMap::new(), last_sweep: 0 }
    }

    /// Whether a request from `ip` at `now` is allowed.
    pub fn allow(&mut self, now: Millis, ip: IpAddr) -> bool {
        let full = self.buckets.len() >= MAX_TRACKED_SOURCES && !self.buckets.contains_key(&ip);
        if full || now.saturating_sub(self.last_sweep) > 60_000 {
            // Forget sources that have been quiet long enough to be full again.
            let full_after = (self.burst / self.rate_per_s.max(0.001) * 1000.0) as Millis;
            self.buckets.retain(|_, (_, t)| now.saturating_sub(*t) < full_after);
            self.last_sweep = now;
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                return true;
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_sub(*last) as f64 * self.rate_per_s / 1000.0).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spray_of_sources_never_grows_the_table_past_its_cap() {
        let mut l = RateLimiter::new(1, 1);
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 1_000) {
            assert!(l.allow(0, IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(l.buckets.len(), MAX_TRACKED_SOURCES);
        // A flooding source that is tracked is still limited.
        let a = IpAddr::from(5u32.to_be_bytes());
        assert!(!l.allow(0, a));
    }

    #[test]
    fn bursts_then_the_rate() {
        let mut l = RateLimiter::new(10, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..8).filter(|_| l.allow(0, a)).count(), 5, "the burst");
        assert!(l.allow(0, b), "other sources are not affected");
        assert!(!l.allow(50, a));
        assert!(l.allow(100, a), "one token per 100 ms at 10/s");
        assert_eq!((0..20).filter(|i| l.allow(1_000 + i * 10, a)).count(), 6, "the burst of 5, plus 1.9 tokens refilled over 190 ms");
    }
}
