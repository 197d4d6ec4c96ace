//! The numbers contact centres are run by, from the ACD's call records.

use serde::Serialize;

use crate::{CallRecord, Millis};

/// Queue KPIs over a set of call records (direct calls excluded).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Kpi {
    /// Callers who joined a queue (those refused as full or with no agents included).
    pub offered: u64,
    pub answered: u64,
    /// Hung up while waiting.
    pub abandoned: u64,
    /// Sent on by the flow's own path: max wait, full, no agents, leave key.
    pub overflowed: u64,
    /// Answered within the threshold, of answered + abandoned (%).
    pub service_level: f64,
    pub service_level_threshold_ms: Millis,
    /// Average speed of answer (ms).
    pub asa_ms: Millis,
    /// Abandoned, of offered (%).
    pub abandon_rate: f64,
    /// Average handle time: talk + wrap-up (ms).
    pub aht_ms: Millis,
    pub longest_wait_ms: Millis,
    /// Answered, of offered (%) — 接通率.
    pub answer_rate: f64,
    /// Callers who had to queue: no agent was offered the call as it joined,
    /// or the first agent offered it did not answer.
    pub queued: u64,
    /// Queued, of offered (%) — 排队率.
    pub queue_rate: f64,
    /// The queued callers' waits (to answer or to leaving), added up: divided
    /// by the span of time it is taken over, the average number waiting (排队均长).
    pub wait_total_ms: Millis,
}

impl Kpi {
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a CallRecord>, threshold_ms: Millis) -> Kpi {
        let mut k = Kpi { service_level_threshold_ms: threshold_ms, ..Kpi::default() };
        let (mut in_time, mut wait_sum, mut handle_sum) = (0u64, 0u64, 0u64);
        for r in records.into_iter().filter(|r| r.queue.is_some()) {
            k.offered += 1;
            k.longest_wait_ms = k.longest_wait_ms.max(r.waited_ms);
            // Sums saturate: a damaged record cannot overflow them.
            // Queued: no agent was offered the call as it joined, or the first
            // one offered did not answer and it was offered again.
            if r.queued_ms > 0 || r.offers > 1 {
                k.queued += 1;
                k.wait_total_ms = k.wait_total_ms.saturating_add(r.waited_ms);
            }
            match r.result.as_str() {
                "answered" => {
                    k.answered += 1;
                    wait_sum = wait_sum.saturating_add(r.waited_ms);
                    handle_sum = handle_sum.saturating_add(r.talk_ms.saturating_add(r.wrap_up_ms));
                    if r.waited_ms <= threshold_ms {
                        in_time += 1;
                    }
                }
                "abandoned" => k.abandoned += 1,
                _ => k.overflowed += 1,
            }
        }
        let decided = k.answered + k.abandoned;
        k.service_level = if decided == 0 { 100.0 } else { in_time as f64 * 100.0 / decided as f64 };
        let of_offered = |n: u64| if k.offered == 0 { 0.0 } else { n as f64 * 100.0 / k.offered as f64 };
        k.abandon_rate = of_offered(k.abandoned);
        k.answer_rate = of_offered(k.answered);
        k.queue_rate = of_offered(k.queued);
        k.asa_ms = wait_sum.checked_div(k.answered).unwrap_or(0);
        k.aht_ms = handle_sum.checked_div(k.answered).unwrap_or(0);
        k
    }

    /// The average number of callers waiting over `span_ms` (Little's law:
    /// their waits added up, over the span).
    pub fn average_waiting(&self, span_ms: Millis) -> f64 {
        if span_ms == 0 { 0.0 } else { self.wait_total_ms as f64 / span_ms as f64 }
    }
}
