//! Erlang C, the staffing formula call centres plan by: the chance a call
//! waits, the share answered within a target time, the average speed of
//! answer, and the fewest agents for a service level. (It assumes nobody
//! gives up; `ivr plan` checks it by simulating through the queue core.)

/// Erlang C: the probability a call waits, with `erlangs` offered to `n` agents.
pub fn erlang_c(erlangs: f64, n: usize) -> f64 {
    if n == 0 || erlangs >= n as f64 {
        return 1.0;
    }
    // Erlang B by recursion (stable), then C.
    let mut b = 1.0;
    for k in 1..=n {
        b = erlangs * b / (k as f64 + erlangs * b);
    }
    let rho = erlangs / n as f64;
    b / (1.0 - rho + rho * b)
}

/// The share answered within `within_s` (Erlang C, no abandonment).
pub fn service_level(erlangs: f64, n: usize, aht_s: f64, within_s: f64) -> f64 {
    if erlangs <= 0.0 {
        return 1.0;
    }
    if erlangs >= n as f64 {
        return 0.0;
    }
    (1.0 - erlang_c(erlangs, n) * (-(n as f64 - erlangs) * within_s / aht_s).exp()).clamp(0.0, 1.0)
}

/// Average speed of answer in seconds (Erlang C).
pub fn asa_s(erlangs: f64, n: usize, aht_s: f64) -> f64 {
    if erlangs >= n as f64 {
        return f64::INFINITY;
    }
    erlang_c(erlangs, n) * aht_s / (n as f64 - erlangs)
}

/// The fewest agents for `target` (0–1) answered within `within_s`.
pub fn agents_needed(erlangs: f64, aht_s: f64, within_s: f64, target: f64) -> usize {
    if erlangs <= 0.0 {
        return 0;
    }
    let mut n = erlangs.ceil() as usize;
    while service_level(erlangs, n, aht_s, within_s) < target && n < 100_000 {
        n += 1;
    }
    n
}


/// Deterministic traffic for simulating a day through the queue core (`ivr
/// plan`, the ACD benchmark): xorshift64, the same day for the same seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is made odd so it never sticks).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential draw with `mean` (milliseconds); an infinite mean (a
    /// caller who never gives up) is a time no simulated day reaches.
    pub fn exp(&mut self, mean: f64) -> u64 {
        if !mean.is_finite() {
            return u64::MAX / 4;
        }
        (-mean * (1.0 - self.next()).ln()) as u64
    }
}

