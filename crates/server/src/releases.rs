//! Versioned deploys: every flow set the server serves is a *release*, kept
//! in the data directory so that it can be served again (`ivr versions`,
//! `ivr deploy`, `ivr rollback`, canaries).
//!
//! ```text
//! data/releases/
//!   <id>/release.json      who deployed it, when, why; its flows' fingerprints
//!   <id>/<flow>.ivrc       each flow's bytecode (verified again when loaded)
//!   history.jsonl          every start, deploy, promote, rollback — and refusals
//!   served.json            what is served now (current, canary) and the release
//!                          the flows on disk compiled to when last deployed
//! ```
//!
//! A release's id is a hash of its flows' names and fingerprints: the same
//! flows deployed twice are one release. At start the server serves the flows
//! on disk, unless they are the ones last deployed and an operator has since
//! rolled back or left a canary running: then it serves what it served before
//! (a rollback survives a restart; editing the flows and restarting deploys them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ivr_bytecode::Program;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub type Programs = Vec<(String, Arc<Program>)>;

/// One release: a flow set as deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub id: String,
    /// Wall-clock milliseconds it was first deployed.
    pub at_ms: i64,
    pub by: String,
    #[serde(default)]
    pub note: String,
    /// (flow, fingerprint), as call records carry them.
    pub flows: Vec<(String, String)>,
}

/// A release tried on some new calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanarySpec {
    pub release: String,
    /// Of new calls, 0–100.
    pub percent: u8,
    /// Callers who always get it.
    #[serde(default)]
    pub callers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Served {
    current: String,
    #[serde(default)]
    canary: Option<CanarySpec>,
    /// The release the flows on disk compiled to when last deployed.
    #[serde(default)]
    disk: String,
}

/// What new calls get now.
pub struct Serving {
    pub current: (Release, Programs),
    pub canary: Option<(CanarySpec, Programs)>,
}

/// An answer for the operations API: status and body.
pub type Answer = (u16, Value);

/// The release store and what is served from it.
pub struct Releases {
    dir: PathBuf,
    served: Served,
    current: (Release, Programs),
    canary: Option<(CanarySpec, Programs)>,
}

/// The id of a flow set: names and fingerprints, hashed.
pub fn id_of(programs: &Programs) -> String {
    let mut parts: Vec<(String, String)> = programs.iter().map(|(n, p)| (n.clone(), ivr_call::records::fingerprint(p))).collect();
    parts.sort();
    let text: String = parts.iter().map(|(n, f)| format!("{n}={f};")).collect();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("cannot {what} `{}`: {e}", path.display())
}

/// Writes a file whole or not at all (a crash leaves the old one).
fn write_atomic(path: &Path, body: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| io("write", path, e))
}

/// A flow's bytecode file in a release: its name made safe for a file name,
/// and its fingerprint, so two names that read alike (`bank.v2`, `bank_v2`)
/// never share a file.
fn file_name(flow: &str, fingerprint: &str) -> String {
    let safe: String = flow.chars().map(|c| if c.is_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    format!("{safe}-{fingerprint}.ivrc")
}

impl Releases {
    /// Opens the store under `data_dir` and decides what to serve: the flows on
    /// disk (`disk`, just compiled), or what was served before they were last
    /// changed (see the module's comment).
    pub fn start(data_dir: &Path, disk: Result<Programs, String>, now_ms: i64) -> Result<Releases, String> {
        let dir = data_dir.join("releases");
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let disk_id = disk.as_ref().ok().map(id_of);
        let before: Option<Served> = match std::fs::read(dir.join("served.json")) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("`{}` cannot be read ({e}): what was served before is not known", dir.join("served.json").display());
                    None
                }
            },
            Err(_) => None,
        };
        let mut r = Releases { dir, served: Served::default(), current: (Release { id: String::new(), at_ms: now_ms, by: String::new(), note: String::new(), flows: Vec::new() }, Vec::new()), canary: None };
        // Serve again what was served: when the flows on disk are the ones last
        // deployed (a rollback or a canary stays), or when they do not compile
        // (a broken edit must not keep the hotline down).
        let keep = before.filter(|b| disk_id.is_none() || disk_id.as_deref() == Some(b.disk.as_str()));
        if let Some(before) = keep {
            match r.load(&before.current) {
                Ok(current) => {
                    let note = match &disk {
                        Err(e) => {
                            tracing::error!("the flows on disk do not compile ({e}): serving release {} again", before.current);
                            format!("the flows on disk do not compile: {e}")
                        }
                        Ok(_) => String::new(),
                    };
                    r.canary = before.canary.as_ref().and_then(|c| match r.load(&c.release) {
                        Ok((_, p)) => Some((c.clone(), p)),
                        Err(e) => {
                            tracing::warn!("the canary release {} cannot be served again ({e}): ended", c.release);
                            r.event(now_ms, "rollback", &before.current, "server", &format!("canary {} ended: {e}", c.release), None);
                            None
                        }
                    });
                    r.current = current;
                    r.served = Served { canary: r.canary.as_ref().map(|c| c.0.clone()), ..before };
                    r.write_served()?;
                    r.event(now_ms, "start", &r.current.0.id.clone(), "server", &note, Some(json!({"kept": true})));
                    return Ok(r);
                }
                Err(e) => {
                    tracing::warn!("release {} cannot be served again ({e})", before.current);
                    r.event(now_ms, "damaged", &before.current, "server", &e, None);
                }
            }
        }
        let disk = disk.map_err(|e| format!("{e}, and no release kept in `{}` can be served instead", r.dir.display()))?;
        let disk_id = id_of(&disk);
        let release = r.save(&disk, "server", "started with the flows on disk", now_ms)?;
        r.current = (release, disk);
        r.served = Served { current: disk_id.clone(), canary: None, disk: disk_id.clone() };
        r.write_served()?;
        r.event(now_ms, "start", &disk_id, "server", "", None);
        Ok(r)
    }

    /// Whether `programs` are the flows on disk as last deployed.
    pub fn is_last_deployed(&self, programs: &Programs) -> bool {
        id_of(programs) == self.served.disk
    }

    /// What new calls get.
    pub fn serving(&self) -> Serving {
        Serving { current: self.current.clone(), canary: self.canary.clone() }
    }

    /// Keeps `programs` as a release (once: the same flows are the same release).
    fn save(&self, programs: &Programs, by: &str, note: &str, now_ms: i64) -> Result<Release, String> {
        let id = id_of(programs);
        let at = self.dir.join(&id);
        if let Ok(r) = self.release(&id) {
            return Ok(r);
        }
        std::fs::create_dir_all(&at).map_err(|e| io("create", &at, e))?;
        for (name, p) in programs {
            write_atomic(&at.join(file_name(name, &ivr_call::records::fingerprint(p))), &ivr_bytecode::encode(p, false))?;
        }
        let mut flows: Vec<(String, String)> = programs.iter().map(|(n, p)| (n.clone(), ivr_call::records::fingerprint(p))).collect();
        flows.sort();
        let release = Release { id, at_ms: now_ms, by: by.to_string(), note: note.to_string(), flows };
        // release.json last: a release without it was cut short and is not one.
        write_atomic(&at.join("release.json"), &serde_json::to_vec_pretty(&release).unwrap_or_default())?;
        Ok(release)
    }

    fn release(&self, id: &str) -> Result<Release, String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("no release {id:?}"));
        }
        let path = self.dir.join(id).join("release.json");
        let bytes = std::fs::read(&path).map_err(|_| format!("no release {id}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("release {id}: {e}"))
    }

    /// A kept release and its programs, decoded and verified again.
    fn load(&self, id: &str) -> Result<(Release, Programs), String> {
        let release = self.release(id)?;
        let mut programs = Vec::new();
        for (name, fingerprint) in &release.flows {
            let path = self.dir.join(id).join(file_name(name, fingerprint));
            let bytes = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
            let p = ivr_bytecode::decode(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))?;
            if ivr_call::records::fingerprint(&p) != *fingerprint {
                return Err(format!("`{}` is not the flow release {id} was made of", path.display()));
            }
            programs.push((name.clone(), Arc::new(p)));
        }
        Ok((release, programs))
    }

    fn write_served(&self) -> Result<(), String> {
        write_atomic(&self.dir.join("served.json"), &serde_json::to_vec_pretty(&self.served).unwrap_or_default())
    }

    /// Appends to the history (a fresh line even after a torn one).
    fn event(&self, now_ms: i64, action: &str, release: &str, by: &str, note: &str, extra: Option<Value>) {
        use std::io::Write;
        let mut line = json!({"at_ms": now_ms, "action": action, "release": release, "by": by});
        if !note.is_empty() {
            line["note"] = json!(note);
        }
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                line[k] = v;
            }
        }
        let path = self.dir.join("history.jsonl");
        let torn = std::fs::read(&path).ok().is_some_and(|b| b.last().is_some_and(|&c| c != b'\n'));
        let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| {
            let mut text = if torn { "\n".to_string() } else { String::new() };
            text.push_str(&line.to_string());
            text.push('\n');
            f.write_all(text.as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!("cannot write `{}`: {e}", path.display());
        }
    }

    fn history(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("history.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// A deploy refused before it reached the store (the flows did not compile).
    pub fn refused(&self, now_ms: i64, by: &str, note: &str, error: &str) -> Answer {
        self.event(now_ms, "refused", "", by, note, Some(json!({"error": error})));
        (422, json!({"error": error, "current": self.current.0.id}))
    }

    /// New flows (just compiled from disk): served to every new call, or with
    /// `canary` to some of them first.
    pub fn deploy(&mut self, programs: Programs, by: &str, note: &str, canary: Option<(u8, Vec<String>)>, now_ms: i64) -> Answer {
        let previous = self.current.0.id.clone();
        let release = match self.save(&programs, by, note, now_ms) {
            Ok(r) => r,
            Err(e) => return self.refused(now_ms, by, note, &e),
        };
        let id = release.id.clone();
        self.served.disk = id.clone();
        match canary {
            Some((percent, callers)) => {
                if id == self.current.0.id {
                    let _ = self.write_served();
                    return (409, json!({"error": format!("release {id} is already the current one: nothing to try"), "current": id}));
                }
                let spec = CanarySpec { release: id.clone(), percent: percent.min(100), callers };
                self.canary = Some((spec.clone(), programs));
                self.served.canary = Some(spec.clone());
                self.event(now_ms, "canary", &id, by, note, Some(json!({"percent": spec.percent, "callers": spec.callers.len()})));
            }
            None => {
                self.current = (release, programs);
                self.canary = None;
                self.served.current = id.clone();
                self.served.canary = None;
                self.event(now_ms, "deploy", &id, by, note, None);
            }
        }
        if let Err(e) = self.write_served() {
            tracing::warn!("{e}");
        }
        let mut v = self.summary();
        v["previous"] = json!(previous);
        (200, v)
    }

    /// The canary becomes the current release.
    pub fn promote(&mut self, by: &str, now_ms: i64) -> Answer {
        let Some((spec, programs)) = self.canary.take() else {
            return (409, json!({"error": "no canary to promote", "current": self.current.0.id}));
        };
        let release = match self.release(&spec.release) {
            Ok(r) => r,
            Err(e) => {
                self.canary = Some((spec, programs));
                return (500, json!({"error": e}));
            }
        };
        self.current = (release, programs);
        self.served.current = spec.release.clone();
        self.served.canary = None;
        let _ = self.write_served();
        self.event(now_ms, "promote", &spec.release, by, "", None);
        (200, self.summary())
    }

    /// Back to `to`, or without it: a canary is ended, else the release served
    /// before the current one comes back.
    pub fn rollback(&mut self, to: Option<&str>, by: &str, now_ms: i64) -> Answer {
        let target = match to {
            Some(id) => id.to_string(),
            None => {
                if let Some((spec, _)) = self.canary.take() {
                    self.served.canary = None;
                    let _ = self.write_served();
                    self.event(now_ms, "rollback", &self.current.0.id.clone(), by, "canary ended", Some(json!({"canary": spec.release})));
                    return (200, self.summary());
                }
                // The release deployed before the current one was (rollbacks
                // are not deploys: rolling back twice goes further back, not
                // back and forth), skipping any that can no longer be served.
                let now_current = self.current.0.id.clone();
                let mut deployed: Vec<String> = Vec::new();
                for e in self.history() {
                    if matches!(e["action"].as_str(), Some("start" | "deploy" | "promote")) && e["kept"] != true {
                        if let Some(r) = e["release"].as_str().filter(|r| !r.is_empty()) {
                            deployed.retain(|x| x != r);
                            deployed.push(r.to_string());
                        }
                    }
                }
                let upto = deployed.iter().position(|r| *r == now_current).unwrap_or(deployed.len());
                let previous = deployed[..upto].iter().rev().find(|r| self.load(r).is_ok()).cloned();
                match previous {
                    Some(p) => p,
                    None => return (409, json!({"error": "no earlier release to go back to", "current": now_current})),
                }
            }
        };
        if target == self.current.0.id && self.canary.is_none() {
            return (409, json!({"error": format!("release {target} is already the current one"), "current": target}));
        }
        let (release, programs) = match self.load(&target) {
            Ok(r) => r,
            Err(e) => return (404, json!({"error": e, "current": self.current.0.id})),
        };
        self.current = (release, programs);
        self.canary = None;
        self.served.current = target.clone();
        self.served.canary = None;
        let _ = self.write_served();
        self.event(now_ms, "rollback", &target, by, "", None);
        (200, self.summary())
    }

    fn summary(&self) -> Value {
        json!({
            "current": self.current.0,
            "canary": self.canary.as_ref().map(|c| &c.0),
        })
    }

    /// Every release kept (newest first) and the history.
    pub fn list(&self) -> Answer {
        let mut releases: Vec<Release> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| self.release(&e.file_name().to_string_lossy()).ok())
            .collect();
        releases.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.id.cmp(&b.id)));
        let history = self.history();
        let skip = history.len().saturating_sub(100);
        (200, json!({
            "current": self.current.0.id,
            "canary": self.canary.as_ref().map(|c| &c.0),
            "releases": releases,
            "history": history[skip..],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(src: &str) -> Arc<Program> {
        let world = ivr_compiler::MemoryWorld::new().with("main.ivr", src).with("prompts.toml", "");
        let c = ivr_compiler::compile(&world, "main.ivr");
        Arc::new(c.program.unwrap_or_else(|| panic!("{:#?}", c.diagnostics)))
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ivr-releases-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const A: &str = "entry 100 -> main\nstep main {\n    hangup\n}\n";
    const B: &str = "entry 100 -> main\nstep main {\n    goto bye\n}\nstep bye {\n    hangup\n}\n";

    #[test]
    fn deploy_rollback_and_a_restart_that_keeps_the_rollback() {
        let d = dir("rollback");
        let (a, b) = (vec![("main".to_string(), program(A))], vec![("main".to_string(), program(B))]);
        let mut r = Releases::start(&d, Ok(a.clone()), 1).unwrap();
        let id_a = r.serving().current.0.id;
        assert_eq!(r.deploy(b.clone(), "ops", "longer pause", None, 2).0, 200);
        let id_b = r.serving().current.0.id;
        assert_ne!(id_a, id_b);
        // Back to A; a restart with B still on disk keeps A.
        assert_eq!(r.rollback(None, "ops", 3).0, 200);
        assert_eq!(r.serving().current.0.id, id_a);
        let r = Releases::start(&d, Ok(b.clone()), 4).unwrap();
        assert_eq!(r.serving().current.0.id, id_a, "a rollback survives a restart");
        // Editing the flows on disk and restarting serves them.
        let c = vec![("main".to_string(), program("entry 100 -> main\nstep main {\n    goto end\n}\nstep end {\n    hangup\n}\n"))];
        let mut r = Releases::start(&d, Ok(c), 5).unwrap();
        assert_ne!(r.serving().current.0.id, id_a);
        // Any kept release by id; an unknown one is refused and nothing changes.
        let before = r.serving().current.0.id;
        assert_eq!(r.rollback(Some("0123456789ab"), "ops", 6).0, 404);
        assert_eq!(r.rollback(Some("../../etc"), "ops", 6).0, 404);
        assert_eq!(r.serving().current.0.id, before);
        assert_eq!(r.rollback(Some(&id_b), "ops", 7).0, 200);
        assert_eq!(r.serving().current.0.id, id_b);
        let (_, list) = r.list();
        assert_eq!(list["releases"].as_array().unwrap().len(), 3);
        let actions: Vec<&str> = list["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["start", "deploy", "rollback", "start", "start", "rollback"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_canary_is_promoted_or_ended() {
        let d = dir("canary");
        let (a, b) = (vec![("main".to_string(), program(A))], vec![("main".to_string(), program(B))]);
        let mut r = Releases::start(&d, Ok(a.clone()), 1).unwrap();
        let id_a = r.serving().current.0.id;
        assert_eq!(r.deploy(a.clone(), "ops", "", Some((10, vec![])), 2).0, 409, "the current release is no canary");
        assert_eq!(r.promote("ops", 2).0, 409, "no canary yet");
        assert_eq!(r.deploy(b.clone(), "ops", "", Some((10, vec!["13800000000".into()])), 3).0, 200);
        let s = r.serving();
        assert_eq!(s.current.0.id, id_a);
        let (spec, _) = s.canary.unwrap();
        assert_eq!((spec.percent, spec.callers.len()), (10, 1));
        // A restart keeps the canary running.
        let mut r = Releases::start(&d, Ok(b.clone()), 4).unwrap();
        assert!(r.serving().canary.is_some());
        assert_eq!(r.rollback(None, "ops", 5).0, 200, "ends the canary");
        assert!(r.serving().canary.is_none());
        assert_eq!(r.serving().current.0.id, id_a);
        assert_eq!(r.deploy(b.clone(), "ops", "", Some((50, vec![])), 6).0, 200);
        assert_eq!(r.promote("ops", 7).0, 200);
        assert_eq!(r.serving().current.0.id, spec.release);
        assert!(r.serving().canary.is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn flows_that_do_not_compile_at_start_serve_the_release_served_before() {
        let d = dir("broken");
        assert!(Releases::start(&d, Err("main.ivr does not compile".into()), 1).is_err(), "nothing to fall back on");
        let (a, b) = (vec![("main".to_string(), program(A))], vec![("main".to_string(), program(B))]);
        let mut r = Releases::start(&d, Ok(a.clone()), 2).unwrap();
        r.deploy(b.clone(), "ops", "", None, 3);
        let id_b = r.serving().current.0.id;
        let r = Releases::start(&d, Err("main.ivr does not compile".into()), 4).unwrap();
        assert_eq!(r.serving().current.0.id, id_b, "the hotline stays up on the last good release");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rolling_back_twice_goes_further_back_not_back_and_forth() {
        let d = dir("twice");
        let c = vec![("main".to_string(), program("entry 100 -> main\nstep main {\n    goto end\n}\nstep end {\n    hangup\n}\n"))];
        let (a, b) = (vec![("main".to_string(), program(A))], vec![("main".to_string(), program(B))]);
        let mut r = Releases::start(&d, Ok(a.clone()), 1).unwrap();
        let id_a = r.serving().current.0.id;
        r.deploy(b.clone(), "ops", "", None, 2);
        let id_b = r.serving().current.0.id;
        r.deploy(c.clone(), "ops", "", None, 3);
        assert_eq!(r.rollback(None, "ops", 4).0, 200);
        assert_eq!(r.serving().current.0.id, id_b);
        assert_eq!(r.rollback(None, "ops", 5).0, 200);
        assert_eq!(r.serving().current.0.id, id_a, "further back");
        assert_eq!(r.rollback(None, "ops", 6).0, 409, "nothing before the first");
        assert_eq!(r.rollback(Some(&id_a), "ops", 7).0, 409, "already current");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_release_is_not_served() {
        let d = dir("damaged");
        let (a, b) = (vec![("main".to_string(), program(A))], vec![("main".to_string(), program(B))]);
        let mut r = Releases::start(&d, Ok(a.clone()), 1).unwrap();
        let id_a = r.serving().current.0.id;
        r.deploy(b.clone(), "ops", "", None, 2);
        let fp = ivr_call::records::fingerprint(&program(A));
        std::fs::write(d.join("releases").join(&id_a).join(file_name("main", &fp)), b"IVRB garbage").unwrap();
        let (code, body) = r.rollback(Some(&id_a), "ops", 3);
        assert_eq!(code, 404, "{body}");
        assert_ne!(r.serving().current.0.id, id_a, "the running release is kept");
        let _ = std::fs::remove_dir_all(&d);
    }
}
