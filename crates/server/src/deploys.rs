//! Deploys in the shell: the operations API's `/releases` requests and
//! SIGHUP, carried out without stalling calls. Compiling the flows and
//! decoding their prompts take a blocking thread; the main loop only changes
//! the release store's state (small files) and hands the core the result.
//!
//! ```text
//! POST /releases ─► compile (blocking) ─► Internal::Compiled ─► store.deploy ─┐
//! rollback / promote ─────────────────────────────────────────► store.…  ─────┤
//!                        Internal::Prepared ◄─ decode prompts (blocking) ◄────┘
//!                               └─► core: Input::Reload, then the answer
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use ivr_call::{AdminRequest, Core, Flow, Input};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The stack a deploy compiles on (as `ivr check`'s): reserved, not used.
const COMPILE_STACK: usize = 1 << 30;

use crate::releases::{Programs, Releases};
use crate::{Internal, Reloaded, Reloader};

/// Who asked, and so who hears the answer.
pub enum Origin {
    /// The operations API: the answer goes back on the channel.
    Api(oneshot::Sender<(u16, Value)>),
    /// SIGHUP (`ivr reload`): the answer is written to `reload.json`.
    Signal,
}

/// A deploy's compilation, back from its thread.
pub struct Compiled {
    result: Result<Reloaded, String>,
    body: Body,
    origin: Origin,
}

/// What new calls get, ready for the core, back from its thread.
pub struct Prepared {
    seq: u64,
    flows: Vec<Flow>,
    canary: Option<ivr_call::Canary>,
    acd: ivr_acd::AcdConfig,
    answer: (u16, Value),
    origin: Origin,
}

#[derive(serde::Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
    /// Deploy as a canary: this share of new calls (0–100) …
    #[serde(default)]
    canary_percent: Option<u8>,
    /// … and these callers.
    #[serde(default)]
    canary_callers: Vec<String>,
    /// Roll back to this release.
    #[serde(default)]
    release: Option<String>,
    /// Deploy only when the flows on disk changed since they were last deployed
    /// (a reload: a rollback or a canary stays).
    #[serde(default)]
    if_changed: bool,
}

impl Body {
    /// Who, as the operator said (bounded, one line: it goes into the history).
    fn by(&self) -> String {
        self.by.as_deref().unwrap_or("ops API").chars().filter(|c| !c.is_control()).take(80).collect()
    }

    fn note(&self) -> String {
        self.note.as_deref().unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

pub struct Deploys {
    pub releases: Releases,
    reloader: Option<Reloader>,
    flows_dir: PathBuf,
    data_dir: PathBuf,
    /// The agents and queues in use (a rollback keeps them; a deploy reads them again).
    acd: ivr_acd::AcdConfig,
    /// Counts what was handed to the prompt-decoding thread: only the latest is served.
    seq: u64,
    /// A deploy's flows are being compiled: another waits its turn (refused).
    compiling: bool,
    reloads: u64,
    tx: mpsc::UnboundedSender<Internal>,
}

pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Decodes the prompts of a flow set (the slow part of serving one).
fn prepare(programs: &Programs, flows_dir: &std::path::Path, release: &str) -> Vec<Flow> {
    programs
        .iter()
        .map(|(name, p)| {
            let read = |rel: &str| ivr_media::audio::EncodedPrompt::load(&flows_dir.join(rel)).map_err(|e| e.to_string());
            Flow::new(name, p.clone(), Arc::new(ivr_call::PromptAudio::build(p, &read))).in_release(release)
        })
        .collect()
}

impl Deploys {
    pub fn new(releases: Releases, reloader: Option<Reloader>, flows_dir: PathBuf, data_dir: PathBuf, acd: ivr_acd::AcdConfig, tx: mpsc::UnboundedSender<Internal>) -> Deploys {
        Deploys { releases, reloader, flows_dir, data_dir, acd, seq: 0, compiling: false, reloads: 0, tx }
    }

    /// The flows the releases say new calls get, prepared here and now (at start).
    pub fn serve_now(&mut self, core: &mut Core, now: u64) {
        let serving = self.releases.serving();
        let flows = prepare(&serving.current.1, &self.flows_dir, &serving.current.0.id);
        let canary = serving.canary.map(|(spec, programs)| ivr_call::Canary { flows: prepare(&programs, &self.flows_dir, &spec.release), percent: spec.percent, callers: spec.callers });
        core.handle(now, Input::Reload { flows, canary, acd: self.acd.clone() });
    }

    /// A SIGHUP: the flows on disk deployed, if they changed.
    pub fn signal(&mut self) {
        let body = Body { by: Some("reload (SIGHUP)".into()), if_changed: true, ..Body::default() };
        self.compile(body, Origin::Signal);
    }

    /// A `/releases` request from the operations API.
    pub fn request(&mut self, req: &AdminRequest, reply: oneshot::Sender<(u16, Value)>) {
        let path = req.path.split('?').next().unwrap_or("");
        let body: Body = if req.body.iter().all(u8::is_ascii_whitespace) {
            Body::default()
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => return answer(Origin::Api(reply), (400, json!({"error": format!("the body: {e}")})), &self.data_dir, &mut self.reloads),
            }
        };
        let origin = Origin::Api(reply);
        let now = wall_ms();
        match (req.method.as_str(), path) {
            ("GET", "/releases") => {
                let a = self.releases.list();
                answer(origin, a, &self.data_dir, &mut self.reloads)
            }
            ("POST", "/releases") => {
                if body.release.is_some() {
                    return answer(origin, (400, json!({"error": "POST /releases deploys the flows on disk; to serve a kept release, POST /releases/rollback {\"release\": …}"})), &self.data_dir, &mut self.reloads);
                }
                if body.canary_percent.is_some_and(|p| p > 100) {
                    return answer(origin, (400, json!({"error": "canary_percent is a share of new calls, 0-100"})), &self.data_dir, &mut self.reloads);
                }
                let listed = body.canary_callers.iter().any(|c| !c.trim().is_empty());
                if body.canary_percent == Some(0) && !listed {
                    return answer(origin, (400, json!({"error": "a canary on 0% of calls and no listed callers would take no call"})), &self.data_dir, &mut self.reloads);
                }
                self.compile(body, origin);
            }
            ("POST", "/releases/promote") => {
                let a = self.releases.promote(&body.by(), now);
                self.serve(a, None, origin);
            }
            ("POST", "/releases/rollback") => {
                let a = self.releases.rollback(body.release.as_deref(), &body.by(), now);
                self.serve(a, None, origin);
            }
            (_, "/releases" | "/releases/promote" | "/releases/rollback") => answer(origin, (405, json!({"error": "use GET /releases or POST"})), &self.data_dir, &mut self.reloads),
            _ => answer(origin, (404, json!({"error": "no such route"})), &self.data_dir, &mut self.reloads),
        }
    }

    /// Compiles the flows on disk on a thread of its own; `compiled` goes on.
    fn compile(&mut self, body: Body, origin: Origin) {
        let Some(reloader) = self.reloader.clone() else {
            return answer(origin, (409, json!({"error": "this server was started without a reloader"})), &self.data_dir, &mut self.reloads);
        };
        // One compilation at a time: a burst of deploys cannot take every core.
        if self.compiling {
            return answer(origin, (409, json!({"error": "a deploy is being compiled; try again when it is done"})), &self.data_dir, &mut self.reloads);
        }
        self.compiling = true;
        let tx = self.tx.clone();
        // On a thread of its own with the stack `ivr check` has: the checker
        // recurses as deep as a flow nests (a chain of 20,000 sub-flows
        // overflowed a blocking thread's 2 MiB and aborted the server).
        let job = Arc::new(std::sync::Mutex::new(Some((body, origin))));
        let send = move |tx: &mpsc::UnboundedSender<Internal>, job: &std::sync::Mutex<Option<(Body, Origin)>>, result: Result<Reloaded, String>| {
            if let Some((body, origin)) = job.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(Internal::Compiled(Box::new(Compiled { result, body, origin })));
            }
        };
        let (on_thread, tx_thread) = (job.clone(), tx.clone());
        let spawned = std::thread::Builder::new().name("compile".into()).stack_size(COMPILE_STACK).spawn(move || {
            // A compiler bug is a refused deploy, never a server stuck "compiling".
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reloader())).unwrap_or_else(|_| Err("the flows could not be compiled (a bug in ivr: see the log)".into()));
            send(&tx_thread, &on_thread, result);
        });
        if let Err(e) = spawned {
            // No thread: the deploy is refused, and the next may try again.
            send(&tx, &job, Err(format!("no thread to compile on: {e}")));
        }
    }

    /// The flows on disk compiled (or not): kept as a release and served.
    pub fn compiled(&mut self, c: Compiled) {
        let Compiled { result, body, origin } = c;
        self.compiling = false;
        let now = wall_ms();
        let (by, note) = (body.by(), body.note());
        let reloaded = match result {
            Ok(r) => r,
            Err(e) => {
                let a = self.releases.refused(now, &by, &note, &e);
                return answer(origin, a, &self.data_dir, &mut self.reloads);
            }
        };
        if body.if_changed && self.releases.is_last_deployed(&reloaded.programs) {
            // The flows on disk are the ones last deployed: a rollback or a canary stays.
            let a = (200, json!({"unchanged": true, "current": self.releases.serving().current.0, "canary": self.releases.serving().canary.map(|c| c.0)}));
            return self.serve(a, Some(reloaded.acd), origin);
        }
        let callers: Vec<String> = body.canary_callers.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
        let canary = (body.canary_percent.is_some() || !callers.is_empty()).then(|| (body.canary_percent.unwrap_or(0), callers));
        let a = self.releases.deploy(reloaded.programs, &by, &note, canary, now);
        let acd = (a.0 == 200).then_some(reloaded.acd);
        self.serve(a, acd, origin);
    }

    /// After a change of the store: prompts decoded on a blocking thread, then
    /// `prepared` hands them to the core and answers. A refusal is answered now.
    fn serve(&mut self, a: (u16, Value), acd: Option<ivr_acd::AcdConfig>, origin: Origin) {
        if a.0 != 200 {
            return answer(origin, a, &self.data_dir, &mut self.reloads);
        }
        if let Some(acd) = acd {
            self.acd = acd;
        }
        self.seq += 1;
        let (seq, serving, flows_dir, acd, tx) = (self.seq, self.releases.serving(), self.flows_dir.clone(), self.acd.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let flows = prepare(&serving.current.1, &flows_dir, &serving.current.0.id);
            let canary = serving.canary.map(|(spec, programs)| ivr_call::Canary { flows: prepare(&programs, &flows_dir, &spec.release), percent: spec.percent, callers: spec.callers });
            let _ = tx.send(Internal::Prepared(Box::new(Prepared { seq, flows, canary, acd, answer: a, origin })));
        });
    }

    /// New calls get what was prepared (unless something newer is on its way).
    pub fn prepared(&mut self, core: &mut Core, now: u64, p: Prepared) {
        if p.seq == self.seq {
            core.handle(now, Input::Reload { flows: p.flows, canary: p.canary, acd: p.acd });
        }
        answer(p.origin, p.answer, &self.data_dir, &mut self.reloads);
    }
}

/// Answers the API, or for a SIGHUP writes `reload.json` (for `ivr reload`
/// to wait on): `seq` counts reloads since this server started; `pid` tells
/// one server's counts from another's.
fn answer(origin: Origin, (code, body): (u16, Value), data_dir: &std::path::Path, reloads: &mut u64) {
    match origin {
        Origin::Api(reply) => {
            let _ = reply.send((code, body));
        }
        Origin::Signal => {
            *reloads += 1;
            let error = (code != 200).then(|| body["error"].as_str().unwrap_or("refused").to_string());
            if let Some(e) = &error {
                warn!("reload refused, keeping the current flows: {e}");
            }
            let line = json!({"pid": std::process::id(), "seq": *reloads, "ok": code == 200, "error": error, "unchanged": body["unchanged"] == true});
            let tmp = data_dir.join("reload.json.tmp");
            if let Err(e) = std::fs::write(&tmp, line.to_string()).and_then(|()| std::fs::rename(&tmp, data_dir.join("reload.json"))) {
                warn!("cannot write reload.json: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checker recurses as deep as a flow nests: a deploy compiles on a
    /// stack that holds what `ivr check` holds (a blocking thread's 2 MiB
    /// overflowed, and a stack overflow aborts the whole server).
    #[test]
    fn a_deploy_compiles_on_a_stack_as_deep_as_ivr_checks() {
        let d = std::env::temp_dir().join(format!("ivr-deploys-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let world = ivr_compiler::MemoryWorld::new().with("main.ivr", "entry 1 -> main\nstep main {\n    hangup\n}\n").with("prompts.toml", "");
        let program = Arc::new(ivr_compiler::compile(&world, "main.ivr").program.expect("a flow"));
        let releases = Releases::start(&d, Ok(vec![("main".to_string(), program)]), 1).expect("a release store");
        // What a checker walking 20,000 nested sub-flows needs: ~64 MiB of frames.
        fn deep(n: u64) -> u64 {
            let frame = std::hint::black_box([n; 400]);
            if n == 0 { 0 } else { frame[0].min(1) + deep(std::hint::black_box(n - 1)) }
        }
        let reloader: Reloader = Arc::new(|| Err(format!("walked {} levels", deep(20_000))));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut deploys = Deploys::new(releases, Some(reloader), d.clone(), d.clone(), ivr_acd::AcdConfig::default(), tx);
        deploys.signal();
        match rx.blocking_recv() {
            Some(Internal::Compiled(c)) => assert_eq!(c.result.err().as_deref(), Some("walked 20000 levels")),
            _ => panic!("no compiled deploy"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
