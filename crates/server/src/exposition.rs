//! `GET /metrics`: what the call core counted ([`ivr_call::metrics`]), the
//! queues and agents, and the record writer, rendered with prometheus-client
//! in the Prometheus text format (0.0.4) at each scrape. The main loop only
//! copies the counts ([`Scrape`]); rendering runs in the listener's task.
//!
//! Names are `ivr_<noun>_<unit>` (counters end in `_total`, durations are
//! seconds). Labels are bounded: flows, services, queues and states the
//! deployment configured, outcome classes and SIP methods from fixed lists;
//! never a caller's number or a call id.

use std::fmt::Error;

use ivr_call::metrics::{EndClass, Histogram, Metrics, METHODS, STATUS_CLASSES};
use ivr_call::KeySource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What one scrape renders, copied out of the main loop.
#[derive(Debug)]
pub struct Scrape {
    pub core: Metrics,
    pub records: crate::records::Status,
}

/// The scrape in the Prometheus text format.
pub fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(scrape)));
    let mut out = String::new();
    // Writing to a String fails only if an encoder does; ours do not.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

#[derive(Debug)]
struct Collect(Scrape);

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

impl Collector for Collect {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let Scrape { core: m, records } = &self.0;
        let s = &m.stats;

        gauge(&mut e, "ivr_calls_active", "Callers' calls in progress", [([], m.calls_active as u64)])?;
        // Every flow loaded, at zero until it takes a call, and flows a reload retired.
        let mut started: std::collections::BTreeMap<&str, u64> = m.flows.iter().map(|(f, _)| (f.as_str(), 0)).collect();
        started.extend(s.calls_started.iter().map(|(f, n)| (f.as_str(), *n)));
        counter(&mut e, "ivr_calls_started", "Calls taken, by the flow that answered them (not_in_service: a number no flow serves)", started.into_iter().map(|(f, n)| ([("flow", f)], n)))?;
        let ended = EndClass::ALL.iter().map(|c| {
            // Calls a crash left open are closed when the server starts again.
            let n = s.calls_ended[*c as usize] + if *c == EndClass::ServerCrashed { records.recovered_calls } else { 0 };
            ([("outcome", c.name())], n)
        });
        counter(&mut e, "ivr_calls_ended", "Calls ended, by outcome class", ended)?;
        // Each release this process served, so a canary can be judged beside the current one.
        let mut releases: std::collections::BTreeMap<&str, ivr_call::metrics::ReleaseCounts> = m.releases.iter().map(|(r, _, _)| (r.as_str(), ivr_call::metrics::ReleaseCounts::default())).collect();
        releases.extend(s.releases.iter().map(|(r, c)| (r.as_str(), c.clone())));
        counter(&mut e, "ivr_release_calls_started", "Calls taken, by the release (deployed version of the flows) that answered them", releases.iter().map(|(r, c)| ([("release", *r)], c.started)))?;
        let by_outcome = releases.iter().flat_map(|(r, c)| EndClass::ALL.iter().map(move |k| ([("release", *r), ("outcome", k.name())], c.ended[*k as usize])));
        counter(&mut e, "ivr_release_calls_ended", "Calls ended, by release and outcome class", by_outcome)?;
        if !m.releases.is_empty() {
            let mut info = e.encode_descriptor("ivr_release", "The releases new calls get: current, and a canary with its share of new calls (%)", None, MetricType::Info)?;
            for (release, role, share) in &m.releases {
                let share = share.to_string();
                info.encode_info(&[("release", release.as_str()), ("role", *role), ("share", share.as_str())])?;
            }
        }
        histogram(&mut e, "ivr_call_setup_seconds", "From a call's INVITE received to its 200 sent (ringing included)", [([], &s.setup)])?;
        histogram(&mut e, "ivr_call_duration_seconds", "Calls' durations, from the INVITE to the end", [([], &s.duration)])?;

        let sip = [("received", &s.sip_received), ("sent", &s.sip_sent)];
        let requests = sip.iter().flat_map(|(dir, c)| METHODS.iter().zip(c.requests).map(move |(m, n)| ([("direction", *dir), ("method", *m)], n)));
        counter(&mut e, "ivr_sip_requests", "SIP requests by method (received: before any shedding; sent: retransmissions included)", requests)?;
        let responses = sip.iter().flat_map(|(dir, c)| STATUS_CLASSES.iter().zip(c.responses).map(move |(k, n)| ([("direction", *dir), ("class", *k)], n)));
        counter(&mut e, "ivr_sip_responses", "SIP responses by status class", responses)?;
        let shed = [("rate", m.shed.rate), ("new_call_rate", m.shed.new_call_rate), ("awaiting_ack", m.shed.awaiting_ack), ("source_calls", m.shed.source_calls), ("capacity", m.shed.capacity), ("overload", m.shed.overload)];
        counter(&mut e, "ivr_shed_messages", "SIP messages dropped or refused (503) by each protection", shed.map(|(p, n)| ([("protection", p)], n)))?;
        gauge(&mut e, "ivr_admission_overloaded", "1 while new calls are refused because the media clock is overloaded", [([], m.overloaded as u64)])?;
        gauge_f64(&mut e, "ivr_media_tick_load_seconds", "The 20 ms media tick's smoothed lateness plus work", m.tick_load_ms / 1_000.0)?;
        gauge(&mut e, "ivr_draining", "1 while stopping: new calls get 503, calls in progress finish", [([], m.draining as u64)])?;

        counter(&mut e, "ivr_dtmf_keys", "Keys received, by how they came (rfc4733 events, SIP INFO, in-band tones)", KeySource::ALL.iter().map(|k| ([("source", k.name())], s.keys[*k as usize])))?;

        let outcomes = s.services.iter().flat_map(|(svc, st)| st.outcomes.iter().map(move |(o, n)| ([("service", svc.as_str()), ("outcome", o.as_str())], *n)));
        counter(&mut e, "ivr_service_requests", "Service requests answered, by service and outcome (one the flow declared, timeout, failed, else other)", outcomes)?;
        histogram(&mut e, "ivr_service_request_duration_seconds", "Service requests, sent to answered", s.services.iter().map(|(svc, st)| ([("service", svc.as_str())], &st.latency)))?;

        let queues = &m.acd.queues;
        gauge(&mut e, "ivr_queue_waiting_calls", "Callers waiting in each queue", queues.iter().map(|q| ([("queue", q.name.as_str())], q.waiting as u64)))?;
        let longest = queues.iter().map(|q| ([("queue", q.name.as_str())], q.longest_wait_ms as f64 / 1_000.0));
        family(&mut e, "ivr_queue_longest_wait_seconds", "How long the longest-waiting caller of each queue has waited", MetricType::Gauge, longest, |m, v| m.encode_gauge(&v))?;
        gauge(&mut e, "ivr_queue_talking_calls", "Callers of each queue talking to an agent", queues.iter().map(|q| ([("queue", q.name.as_str())], q.talking as u64)))?;
        let states = ivr_acd::AgentState::NAMES;
        let members = queues.iter().flat_map(|q| states.iter().map(move |st| ([("queue", q.name.as_str()), ("state", *st)], q.agents.get(*st).copied().unwrap_or(0) as u64)));
        gauge(&mut e, "ivr_queue_agents", "Agents with each queue's skill, by state", members)?;
        let agents = states.iter().map(|st| ([("state", *st)], m.acd.agents.iter().filter(|a| a.state == *st).count() as u64));
        if !m.acd.agents.is_empty() {
            gauge(&mut e, "ivr_agents", "Agents by state", agents)?;
        }

        gauge(&mut e, "ivr_record_backlog_lines", "Call-record lines queued and not yet on disk", [([], records.backlog_lines)])?;
        counter(&mut e, "ivr_record_write_errors", "Failed writes of call records", [([], records.write_errors)])?;

        if !m.flows.is_empty() {
            let mut info = e.encode_descriptor("ivr_flow", "The flows new calls get, with the fingerprint of each (calls keep the version they started with)", None, MetricType::Info)?;
            for (name, version) in &m.flows {
                info.encode_info(&[("flow", name.as_str()), ("version", version.as_str())])?;
            }
        }
        Ok(())
    }
}

/// One metric family: its HELP and TYPE, then each series (none: left out).
fn family<L: EncodeLabelSet, V>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (L, V)>,
    mut sample: impl FnMut(&mut MetricEncoder, V) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in series {
        sample(&mut m.encode_family(&labels)?, v)?;
    }
    Ok(())
}

fn counter<'a, const N: usize>(e: &mut DescriptorEncoder, name: &str, help: &str, series: impl IntoIterator<Item = (Labels<'a, N>, u64)>) -> Result<(), Error> {
    family(e, name, help, MetricType::Counter, series, |m, v| m.encode_counter::<NoLabelSet, _, u64>(&v, None))
}

fn gauge<'a, const N: usize>(e: &mut DescriptorEncoder, name: &str, help: &str, series: impl IntoIterator<Item = (Labels<'a, N>, u64)>) -> Result<(), Error> {
    family(e, name, help, MetricType::Gauge, series, |m, v| m.encode_gauge(&v))
}

fn gauge_f64(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), Error> {
    family(e, name, help, MetricType::Gauge, [([] as Labels<0>, v)], |m, v| m.encode_gauge(&v))
}

/// A histogram the core kept in milliseconds, in seconds.
fn histogram<'h, const N: usize>(e: &mut DescriptorEncoder, name: &str, help: &str, series: impl IntoIterator<Item = (Labels<'h, N>, &'h Histogram)>) -> Result<(), Error> {
    family(e, name, help, MetricType::Histogram, series, |m, h| {
        let buckets: Vec<(f64, u64)> = h.buckets().map(|(bound_ms, n)| (bound_ms as f64 / 1_000.0, n)).collect();
        m.encode_histogram::<NoLabelSet>(h.sum_ms() as f64 / 1_000.0, h.count(), &buckets, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_server_exposes_every_bounded_series_at_zero_and_no_empty_family() {
        let text = render(Scrape { core: idle(), records: Default::default() });
        assert!(text.contains("# TYPE ivr_calls_ended_total counter\n"), "{text}");
        for c in EndClass::ALL {
            assert!(text.contains(&format!("ivr_calls_ended_total{{outcome=\"{}\"}} 0\n", c.name())), "{text}");
        }
        assert!(text.contains("ivr_sip_requests_total{direction=\"received\",method=\"INVITE\"} 0\n"));
        assert!(text.contains("ivr_call_setup_seconds_bucket{le=\"0.005\"} 0\n"), "{text}");
        assert!(text.contains("ivr_call_setup_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("ivr_flow_info{flow=\"bank\",version=\"0123456789abcdef\"} 1\n"), "{text}");
        assert!(text.contains("ivr_release_info{release=\"5f4e3d2c1b0a\",role=\"canary\",share=\"10\"} 1\n"), "{text}");
        assert!(text.contains("ivr_release_calls_started_total{release=\"0a1b2c3d4e5f\"} 0\n"), "each release served, before its first call");
        assert!(text.contains("ivr_calls_started_total{flow=\"bank\"} 0\n"), "each flow loaded, before its first call");
        assert!(!text.contains("ivr_queue_"), "no queues");
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(names.insert(line.split(' ').nth(2).unwrap().to_string()), "one TYPE per family: {line}");
        }
    }

    #[test]
    fn queues_and_agents_show_every_state_and_no_caller() {
        let mut m = idle();
        let agent = |id: &str, state: &'static str| ivr_acd::AgentView {
            id: id.into(),
            name: String::new(),
            state,
            reason: None,
            for_ms: 0,
            call: None,
            calls: 0,
            registered: true,
            skills: vec![],
            time_in_ms: Default::default(),
        };
        m.acd.agents = vec![agent("1001", "talking"), agent("1002", "ready")];
        let caller = ivr_acd::CallerView { call: ivr_acd::CallId(77), priority: 0, waited_ms: 12_500, position: 1, ringing: false };
        m.acd.queues = vec![ivr_acd::QueueView {
            name: "general".into(),
            strategy: "longest_idle",
            waiting: 1,
            longest_wait_ms: 12_500,
            talking: 1,
            agents: [("talking".to_string(), 1), ("ready".to_string(), 1)].into_iter().collect(),
            callers: vec![caller],
        }];
        let text = render(Scrape { core: m, records: crate::records::Status { backlog_lines: 3, ..Default::default() } });
        for line in [
            "ivr_queue_waiting_calls{queue=\"general\"} 1",
            "ivr_queue_longest_wait_seconds{queue=\"general\"} 12.5",
            "ivr_queue_talking_calls{queue=\"general\"} 1",
            "ivr_queue_agents{queue=\"general\",state=\"wrap_up\"} 0",
            "ivr_queue_agents{queue=\"general\",state=\"talking\"} 1",
            "ivr_agents{state=\"ready\"} 1",
            "ivr_agents{state=\"logged_out\"} 0",
            "ivr_record_backlog_lines 3",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
        assert!(!text.contains("77"), "no call key");
    }

    fn idle() -> Metrics {
        Metrics {
            stats: Default::default(),
            shed: Default::default(),
            calls_active: 0,
            draining: false,
            overloaded: false,
            tick_load_ms: 0.0,
            flows: vec![("bank".into(), "0123456789abcdef".into())],
            releases: vec![("0a1b2c3d4e5f".into(), "current", 90), ("5f4e3d2c1b0a".into(), "canary", 10)],
            acd: ivr_acd::Snapshot { queues: vec![], agents: vec![] },
        }
    }
}
