//! Admission by load: new calls are refused (503 with Retry-After) before the
//! media of the calls in progress suffers. The host reports each media tick:
//! how late it started and how long its work took; when their smoothed sum
//! uses most of the tick's period, the node is overloaded until it has
//! clearly recovered (hysteresis, so admission does not flap). A count of
//! calls (`max_calls`) cannot see this: the same number of calls costs more
//! when each also sends audio, or the machine is shared.

/// The media tick's period.
pub const TICK_MS: f64 = 20.0;

#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Smoothed (late + work) per tick, in milliseconds.
    load_ms: f64,
    overloaded: bool,
    /// Refuse new calls above this (default 70% of the tick).
    pub close_at_ms: f64,
    /// Take them again below this (default 35%).
    pub open_at_ms: f64,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission { load_ms: 0.0, overloaded: false, close_at_ms: 0.7 * TICK_MS, open_at_ms: 0.35 * TICK_MS }
    }
}

impl Admission {
    /// Refusing new calls when the smoothed tick load passes `close_at_ms`
    /// (0: never), taking them again below half of it.
    pub fn closing_at(close_at_ms: f64) -> Admission {
        Admission { close_at_ms, open_at_ms: close_at_ms / 2.0, ..Admission::default() }
    }

    /// One media tick: it started `late_ms` after it was due and its work
    /// took `work_ms`. Returns whether the node's state changed.
    pub fn tick(&mut self, late_ms: f64, work_ms: f64) -> bool {
        // About a second of memory at 50 ticks a second.
        let sample = (late_ms.max(0.0) + work_ms.max(0.0)).min(10.0 * TICK_MS);
        self.load_ms += (sample - self.load_ms) * 0.05;
        let was = self.overloaded;
        if self.close_at_ms <= 0.0 {
            self.overloaded = false;
        } else if self.load_ms > self.close_at_ms {
            self.overloaded = true;
        } else if self.load_ms < self.open_at_ms {
            self.overloaded = false;
        }
        was != self.overloaded
    }

    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sustained_lateness_closes_admission_and_recovery_reopens_it_without_flapping() {
        let mut a = Admission::default();
        // Light load: a tick's work takes 3 ms.
        for _ in 0..500 {
            a.tick(0.0, 3.0);
        }
        assert!(!a.is_overloaded());
        // One slow tick (a page fault, a GC-like pause elsewhere) is not overload.
        a.tick(40.0, 5.0);
        assert!(!a.is_overloaded());
        // Sustained: ticks late by 10 ms and taking 8 ms.
        let mut ticks = 0;
        while !a.is_overloaded() {
            a.tick(10.0, 8.0);
            ticks += 1;
            assert!(ticks < 200, "overload is noticed within a few seconds");
        }
        assert!(ticks > 5, "but not on the first late tick: {ticks}");
        // Halfway back (between the thresholds): still refusing.
        for _ in 0..500 {
            a.tick(0.0, 10.0);
        }
        assert!(a.is_overloaded(), "hysteresis: load at {:.1} ms", a.load_ms());
        for _ in 0..500 {
            a.tick(0.0, 3.0);
        }
        assert!(!a.is_overloaded());
    }
}
