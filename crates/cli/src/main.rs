//! `ivr`: check, compile, disassemble and simulate call flows.
//!
//! This binary is the only place that touches files and the terminal for the
//! compiler and the VM; they reach files through [`FsWorld`].

mod coverage;
mod expect;
mod kpis;
mod lsp;
mod plan;
mod charts;
mod replay;
mod report;
mod scenario;
mod sim;
mod suite;

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use ivr_compiler::{Compiled, Severity, World};

/// `ivr.toml`, documented in `ivr.example.toml`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// SIP listen address, or a list of them (UDP and TCP each).
    listen: Option<Listen>,
    /// RTP port range, inclusive, e.g. [20000, 29999].
    rtp_ports: Option<(u16, u16)>,
    /// One RTP port for the calls that do not latch (default: the range's first; 0: off; see ivr.example.toml).
    rtp_shared_port: Option<u16>,
    /// Flow files to serve (default: every flow in `flows/` not imported by another).
    flows: Option<Vec<PathBuf>>,
    /// Data directory of the embedded services and call records.
    data: Option<PathBuf>,
    /// The quotes file (default: `<data>/quotes.csv`).
    quotes: Option<PathBuf>,
    /// Calls at once; more get 503 with Retry-After.
    max_calls: Option<usize>,
    /// A call is ended after this many seconds (default two hours).
    max_call_s: Option<u64>,
    /// New calls a second from one address (default 50); over it INVITEs are dropped.
    new_calls_per_source: Option<u32>,
    /// Calls answered but not acknowledged from one address (default 16); over it, 503.
    awaiting_ack_per_source: Option<u32>,
    /// Calls in progress from one address (default 64); over it, 503.
    calls_per_source: Option<u32>,
    /// Addresses exempt from the per-source limits (the SIP proxies in front).
    #[serde(default)]
    trusted_sources: Vec<std::net::IpAddr>,
    /// End a call whose caller sends no RTP for this many seconds (default 60; 0: never).
    rtp_timeout_s: Option<u64>,
    /// Refuse new calls while the 20 ms media tick's smoothed lateness plus
    /// work passes this many milliseconds (default 14; 0: never).
    overload_at_ms: Option<f64>,
    /// The Server / User-Agent header; "" leaves it out (default "ivr/0.1").
    server_header: Option<String>,
    /// Answer at the source port even when a request's Via has no rport (NATed phones).
    #[serde(default)]
    force_rport: bool,
    /// SIP/TCP connections at once (default 1024), from one address (default 32),
    /// and seconds a whole message may take from its first byte (default 10).
    tcp_max_connections: Option<usize>,
    tcp_max_per_source: Option<usize>,
    tcp_message_deadline_s: Option<u64>,
    /// Ring this long before answering, in milliseconds (default 0).
    ring_ms: Option<u64>,
    /// SIP requests a second allowed from one address (default 300; trusted sources are exempt).
    rate_per_source: Option<u32>,
    /// Also detect DTMF tones in the caller's audio (default false).
    #[serde(default)]
    inband_dtmf: bool,
    /// Symmetric RTP: send to where the caller's RTP comes from (default false).
    #[serde(default)]
    latch_rtp: bool,
    /// Services answered over HTTP, by name (the rest: embedded, then stubs).
    #[serde(default)]
    services: std::collections::BTreeMap<String, ivr_services::HttpService>,
    /// Agents (坐席) by work number.
    #[serde(default)]
    agents: Vec<ivr_acd::AgentConfig>,
    /// Queues (技能组) flows can `enqueue` to.
    #[serde(default)]
    queues: Vec<ivr_acd::QueueConfig>,
    /// Caller tiers: the priorities flows may set.
    #[serde(default)]
    tiers: Vec<ivr_acd::Tier>,
    /// After-call work for direct-dialled calls, in milliseconds (default 10000).
    direct_wrap_up_ms: Option<u64>,
    /// The operations listener: /healthz, /readyz, /metrics and the admin
    /// API (default "127.0.0.1:8089"; "" or "off": none).
    ops_listen: Option<String>,
    /// The operations listener's address under its former name (the admin API's).
    admin: Option<std::net::SocketAddr>,
    /// Require `Authorization: Bearer TOKEN` on the admin API.
    admin_token: Option<String>,
    /// Require `Authorization: Bearer TOKEN` on /metrics (default: open).
    metrics_token: Option<String>,
    /// The digest realm agents' phones register in (default "ivr").
    realm: Option<String>,
    /// Where `transfer NUMBER` goes: a SIP URI with `{number}` (a gateway).
    transfer_gateway: Option<String>,
}

/// `listen = "ADDR:PORT"` or `listen = ["ADDR:PORT", …]`.
#[derive(serde::Deserialize, Clone)]
#[serde(untagged)]
enum Listen {
    One(std::net::SocketAddr),
    Many(Vec<std::net::SocketAddr>),
}

impl Config {
    /// The agents and queues, checked.
    fn acd(&self) -> Result<ivr_acd::AcdConfig, String> {
        let acd = ivr_acd::AcdConfig {
            agents: self.agents.clone(),
            queues: self.queues.clone(),
            tiers: self.tiers.clone(),
            direct_wrap_up_ms: self.direct_wrap_up_ms.unwrap_or(10_000),
        };
        acd.validate()?;
        Ok(acd)
    }

    /// The operations listener's address (health, readiness, metrics, the
    /// admin API), unless it is turned off.
    fn ops_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let ops = match self.ops_listen.as_deref().map(str::trim) {
            None => None,
            Some("" | "off") => return Ok(None),
            Some(a) => Some(a.parse::<std::net::SocketAddr>().map_err(|e| format!("ops_listen {a:?}: {e} (an address such as \"127.0.0.1:8089\", or \"off\")"))?),
        };
        match (ops, self.admin) {
            (Some(o), Some(a)) if o != a => Err(format!("ops_listen ({o}) and admin ({a}) name the same listener: keep ops_listen")),
            (o, a) => Ok(Some(o.or(a).unwrap_or_else(|| DEFAULT_OPS.parse().unwrap()))),
        }
    }
}

const DEFAULT_OPS: &str = "127.0.0.1:8089";

fn read_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// Reads project files relative to a root directory.
struct FsWorld {
    root: PathBuf,
}

impl World for FsWorld {
    fn read(&self, path: &str) -> Result<String, String> {
        let full = if path.starts_with('/') { PathBuf::from(path) } else { self.root.join(path) };
        std::fs::read_to_string(&full).map_err(|e| e.to_string().to_lowercase())
    }

    fn today(&self) -> Option<u32> {
        today_from_env()
    }
}

/// Today as the checker sees it (the compiler reads no clock): `$IVR_TODAY`
/// (YYYY-MM-DD, for tests and for checking a deploy ahead of time) or the date in Beijing.
pub(crate) fn today_from_env() -> Option<u32> {
    let date = match std::env::var("IVR_TODAY") {
        Ok(d) => d.parse::<jiff::civil::Date>().ok()?,
        Err(_) => jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").ok()?).date(),
    };
    Some(date.year() as u32 * 10_000 + date.month() as u32 * 100 + date.day() as u32)
}

#[derive(Parser)]
#[command(name = "ivr", version, about = "Write, check and run telephone call flows")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum GraphFormat {
    Dot,
    Mermaid,
    Svg,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Human,
    Json,
    Github,
}

#[derive(Subcommand)]
enum Command {
    /// Check flows for mistakes. Exit 0 when clean, 1 on errors (or warnings with
    /// --deny-warnings), 2 when a path cannot be read.
    Check {
        /// Flow files or directories (searched for *.ivr).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Also check the flows against this deployment's queues and caller tiers.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Compile a flow to a bytecode file.
    Compile {
        flow: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Leave out the source line table.
        #[arg(long)]
        strip: bool,
    },
    /// Print the bytecode of a compiled program or of a flow.
    Disasm { file: PathBuf },
    /// A language server for editors, on stdin/stdout (diagnostics, go to
    /// definition, references, hover, completion).
    Lsp,
    /// Lay flows out the one canonical way (indentation, spacing, blank lines;
    /// comments kept). With --check, change nothing and exit 1 if a file
    /// would change. Files that do not parse are left alone (exit 1).
    Fmt {
        /// Flow files or directories (searched for *.ivr).
        paths: Vec<PathBuf>,
        #[arg(long)]
        check: bool,
    },
    /// What changed for a caller between two versions of a flow: entries,
    /// steps and menus, where each key/handler/outcome leads, prompts, hours.
    /// Exit 0 when nothing changed, 1 when something did.
    Diff { old: PathBuf, new: PathBuf },
    /// Draw a flow: every step and menu, every branch labelled (keys,
    /// handlers, outcomes, opening hours, conditions, sub-flows), where calls end.
    Graph {
        flow: PathBuf,
        /// dot (Graphviz), mermaid (Markdown), or svg.
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// SVG drawn by our own layout even when Graphviz (`dot`) is installed.
        #[arg(long)]
        builtin: bool,
        /// Colour what scenarios reached (green) and never reached (red,
        /// dashed), from `ivr test --coverage --format json` saved in FILE.
        #[arg(long, value_name = "FILE")]
        coverage: Option<PathBuf>,
    },
    /// Call a flow from the terminal: hear its prompts as text and press keys.
    Sim {
        /// A flow file or a compiled program.
        flow: PathBuf,
        /// The dialed number (default: the first entry).
        #[arg(long)]
        number: Option<String>,
        /// The caller's number.
        #[arg(long, default_value = "13800138000")]
        caller: String,
        /// Start in this language.
        #[arg(long)]
        lang: Option<String>,
        /// A scripted caller: key groups separated by spaces, `.` = silence, `h` = hang up.
        #[arg(long)]
        keys: Option<String>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Stub answers for services the embedded backend does not provide (TOML).
        /// Default: sim-stubs.toml beside the flow, if present.
        #[arg(long)]
        stubs: Option<PathBuf>,
        /// A stub answer that wins over everything: SERVICE=OUTCOME[,field=value…][,delay_ms=N]
        /// (repeatable; also `enqueue`, `dial_agent`, `record`).
        #[arg(long = "stub")]
        stub: Vec<String>,
        /// Where the embedded services keep their database (default: data/ beside the flow).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The quotes file (default: data/quotes.csv beside the flow).
        #[arg(long)]
        quotes: Option<PathBuf>,
        /// Answer services only from stubs, without the embedded backend.
        #[arg(long)]
        no_embedded: bool,
        /// Configuration (services answered over HTTP). Default: ivr.toml beside the flow, if present.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Wall-clock time of the call (RFC 3339, e.g. 2026-11-23T10:00:00+08:00); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Run scenario files (*.test.toml) against their flows: each a call on a
    /// simulated clock, with stubbed services and expectations. Exit 0 when all
    /// pass, 1 on a failure (or coverage below --min-coverage), 2 when a scenario
    /// file cannot be read.
    Test {
        /// Scenario files, or folders searched for *.test.toml (e.g. flows/).
        #[arg(required_unless_present = "from_record")]
        paths: Vec<PathBuf>,
        /// Write a scenario replaying a production call instead: the server's
        /// calls.jsonl and the call's Call-ID (`ivr test --from-record
        /// flows/data/calls.jsonl a84b4c76e66710@192.0.2.4 -o flows/tests/case.test.toml`).
        #[arg(long, num_args = 2, value_names = ["CALLS_JSONL", "CALL_ID"], conflicts_with_all = ["format", "junit", "coverage", "min_coverage"])]
        from_record: Option<Vec<String>>,
        /// With --from-record: the flow the call ran (default: FLOW.ivr under
        /// flows/, FLOW being the record's flow).
        #[arg(long, requires = "from_record")]
        flow: Option<PathBuf>,
        /// With --from-record: write the scenario here (default: stdout).
        #[arg(short, long, requires = "from_record")]
        output: Option<PathBuf>,
        /// With --from-record: the centre's time zone, for the call's local time.
        #[arg(long, default_value = "Asia/Shanghai", requires = "from_record")]
        tz: String,
        /// `human` or `json` (one JSON document on stdout).
        #[arg(long, value_enum, default_value = "human")]
        format: TestFormat,
        /// Also write the results as JUnit XML to FILE (for CI).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Report, per flow, which steps, options, handlers, outcomes and
        /// branches the scenarios reached, and which they never reached.
        #[arg(long)]
        coverage: bool,
        /// Fail when a flow's coverage is below N percent (implies --coverage).
        #[arg(long, value_name = "N")]
        min_coverage: Option<f64>,
        /// Print every call's transcript, not only around failures.
        #[arg(short, long)]
        verbose: bool,
    },
    /// List the orders placed through the embedded trading service.
    Orders {
        /// The embedded services' data directory.
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Callers' recorded messages (留言): list them, or export them with an index.
    Messages {
        #[command(subcommand)]
        action: MessagesCmd,
    },
    /// List push-service subscriptions (服务定制) kept by the embedded services.
    Subscriptions {
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
    },
    /// Answer SIP calls: play the flows' prompts over RTP, take DTMF, run the flows.
    Serve {
        /// Configuration file (default: ivr.toml in the current directory, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// SIP address to listen on, UDP and TCP (repeat for several, e.g. an
        /// IPv4 and an IPv6 one); default 127.0.0.1:5060.
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
        /// Logs as text for people, or one JSON object per line for a log
        /// shipper (with the call id, flow, node and outcome as fields).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Make a running `ivr serve` recompile its flows for new calls (like SIGHUP).
    Reload {
        /// The server's data directory (where it keeps ivr.pid).
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
    },
    /// Deploy the flows on disk to a running `ivr serve`: checked here first,
    /// then compiled and kept by the server as a new release (calls in
    /// progress keep theirs). With --canary, tried on a share of new calls first.
    Deploy {
        /// ivr.toml (default: ./ivr.toml if there is one), for the flows to check.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Try the release on this share of new calls (0–100) before it serves them all.
        #[arg(long, value_name = "PERCENT")]
        canary: Option<u8>,
        /// Callers (numbers) who always get the canary, comma-separated.
        #[arg(long, value_delimiter = ',', value_name = "NUMBERS")]
        canary_callers: Vec<String>,
        /// Why: kept in the release history.
        #[arg(long, short = 'm', default_value = "")]
        note: String,
        /// The operations API (default: `ops_listen` in ./ivr.toml, else 127.0.0.1:8089).
        #[arg(long)]
        admin: Option<String>,
    },
    /// The releases a running `ivr serve` keeps: which is current, any canary, the history.
    Versions {
        #[arg(long)]
        admin: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve an earlier release again: RELEASE, or (without it) end the canary,
    /// else go back to the release before the current one.
    Rollback {
        release: Option<String>,
        #[arg(long)]
        admin: Option<String>,
    },
    /// The canary release becomes the current one, for every new call.
    Promote {
        #[arg(long)]
        admin: Option<String>,
    },
    /// Agents and queues of a running `ivr serve`: who is ready, talking, paused; who waits.
    Agents {
        /// The admin API (default: `ops_listen` in ./ivr.toml, else 127.0.0.1:8089).
        #[arg(long)]
        admin: Option<String>,
        #[arg(long)]
        json: bool,
        /// A wallboard: redraw every SECS seconds, with today's queue KPIs.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
        /// With --watch: stop after this many screens.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Change an agent's state on a running `ivr serve`.
    Agent {
        #[arg(value_enum)]
        action: AgentAction,
        /// The agent's work number.
        id: String,
        /// Why the agent pauses (break, training, …).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        admin: Option<String>,
    },
    /// The day's numbers from `ivr serve`'s records: IVR calls and menu hits,
    /// queues (service level, ASA, abandon rate, AHT), agents, survey.
    Report {
        /// The server's data directory.
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
        /// The first day (YYYY-MM-DD; default today).
        #[arg(long)]
        date: Option<String>,
        /// How many days from it (7 for a week).
        #[arg(long, default_value_t = 1)]
        days: u32,
        /// The centre's time zone, for where days begin.
        #[arg(long, default_value = "Asia/Shanghai")]
        tz: String,
        /// Service level: answered within this many seconds.
        #[arg(long, default_value_t = 20)]
        sl: u64,
        /// table (a terminal or a mail), csv (one table, see --section), json, or
        /// html (one page with tables and charts).
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Same as --format json.
        #[arg(long, hide = true)]
        json: bool,
        /// The periods the span is cut into.
        #[arg(long, value_enum, default_value_t = By::Day)]
        by: By,
        /// The table --format csv writes.
        #[arg(long, value_enum, default_value_t = kpis::Section::Periods)]
        section: kpis::Section,
        /// Also write the charts (SVG) into this directory.
        #[arg(long)]
        charts: Option<PathBuf>,
    },
    /// Staffing: agents each hour needs for a service level, from the records
    /// (arrivals, handle time, patience), by Erlang C and by simulating the day
    /// through the queue core; or what a given roster would do.
    Plan {
        /// The server's data directory (queue.jsonl).
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
        /// The first day of records to learn from (YYYY-MM-DD; default: the 28 days before today).
        #[arg(long)]
        date: Option<String>,
        #[arg(long, default_value_t = 28)]
        days: u32,
        #[arg(long, default_value = "Asia/Shanghai")]
        tz: String,
        /// Target service level, percent answered…
        #[arg(long, default_value_t = 90.0)]
        sl: f64,
        /// …within this many seconds.
        #[arg(long, default_value_t = 20.0)]
        within: f64,
        /// A roster to evaluate instead: HOUR:AGENTS or FROM-TO:AGENTS, comma-separated (e.g. 8-11:25,12:18).
        #[arg(long)]
        roster: Option<String>,
        /// Days to simulate (more: steadier figures).
        #[arg(long, default_value_t = 20)]
        sim_days: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show how a value is read aloud: the text, then the segment prompts.
    Say {
        /// The value, e.g. 10.52, -1.25, 600000, 2026-11-23, 09:30.
        #[arg(allow_negative_numbers = true)]
        value: String,
        #[arg(long, default_value = "zh")]
        lang: String,
        #[arg(long = "as", default_value = "number")]
        kind: String,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TestFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum AgentAction {
    Login,
    Ready,
    Pause,
    Logout,
}

#[derive(Subcommand)]
enum MessagesCmd {
    /// One line per message: id, time, caller, category, duration, file.
    List {
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Copy every message's WAV into DIR with an index.csv.
    Export {
        dir: PathBuf,
        #[arg(long, default_value = "flows/data")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`ivr graph … | head`), instead of panicking on EPIPE.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Checking, compiling and simulating recurse over the flow's expressions: a
    // long one (a whitelist of 2,000 VIP numbers in one `if`) needs more stack
    // than a main thread's 8 MiB. The server runs its own runtime and keeps the
    // main thread.
    if !matches!(cli.command, Command::Serve { .. }) {
        let big = std::thread::Builder::new().stack_size(1 << 30).spawn(move || run(cli));
        return match big.map(|t| t.join()) {
            Ok(Ok(code)) => code,
            _ => ExitCode::from(101),
        };
    }
    run(cli)
}

fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Check { paths, format, deny_warnings, config } => check(&paths, format, deny_warnings, config.as_deref()),
        Command::Agents { admin, json, watch: None, .. } => agents_cmd(admin, json),
        Command::Agents { admin, watch: Some(secs), count, .. } => wallboard(admin, secs, count),
        Command::Report { data, date, days, tz, sl, format, json, by, section, charts } => {
            report_cmd(&data, (date, days, &tz, by), sl, if json { ReportFormat::Json } else { format }, section, charts.as_deref())
        }
        Command::Plan { data, date, days, tz, sl, within, roster, sim_days, json } => plan_cmd(&data, date, days, &tz, (sl, within), roster.as_deref(), sim_days, json),
        Command::Agent { action, id, reason, admin } => agent_cmd(action, &id, reason, admin),
        Command::Compile { flow, output, strip } => compile_cmd(&flow, &output, strip),
        Command::Disasm { file } => disasm(&file),
        Command::Diff { old, new } => diff_cmd(&old, &new),
        Command::Fmt { paths, check } => fmt_cmd(&paths, check),
        Command::Lsp => lsp::run().map(|()| ExitCode::SUCCESS),
        Command::Graph { flow, format, output, builtin, coverage } => graph_cmd(&flow, format, output.as_deref(), builtin, coverage.as_deref()),
        Command::Sim { flow, number, caller, lang, keys, json, stubs, stub, at, data, quotes, no_embedded, config } => {
            let beside = flow.parent().unwrap_or(Path::new(".")).join("data");
            let backend = if no_embedded {
                None
            } else {
                let quotes = quotes.unwrap_or_else(|| beside.join("quotes.csv"));
                Some(data.unwrap_or(beside)).map(|d| (d, quotes))
            };
            sim_cmd(&flow, number, caller, lang, keys, json, stubs, stub, at, backend, config)
        }
        Command::Say { value, lang, kind } => say(&value, &lang, &kind),
        Command::Test { from_record: Some(args), flow, output, tz, .. } => from_record_cmd(&args, flow, output.as_deref(), &tz),
        Command::Test { paths, format, junit, coverage, min_coverage, verbose, .. } => {
            let opts = suite::Options {
                output: match format {
                    TestFormat::Human => suite::Output::Human,
                    TestFormat::Json => suite::Output::Json,
                },
                junit,
                coverage: coverage || min_coverage.is_some(),
                min_coverage,
                transcripts: if verbose { suite::Transcripts::All } else { suite::Transcripts::AroundFailures },
            };
            suite::run(&paths, &opts)
        }
        Command::Serve { config, listen, log_format } => serve(config, listen, log_format),
        Command::Reload { data } => reload(&data),
        Command::Deploy { config, canary, canary_callers, note, admin } => deploy_cmd(config, canary, canary_callers, &note, admin),
        Command::Versions { admin, json } => versions_cmd(admin, json),
        Command::Rollback { release, admin } => {
            let body = serde_json::json!({"release": release, "by": operator()});
            admin_call(admin, "POST", "/releases/rollback", Some(body)).and_then(|v| release_changed(&v))
        }
        Command::Promote { admin } => admin_call(admin, "POST", "/releases/promote", Some(serde_json::json!({"by": operator()}))).and_then(|v| release_changed(&v)),
        Command::Orders { data, json } => orders(&data, json),
        Command::Subscriptions { data } => subscriptions(&data),
        Command::Messages { action } => messages(action),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The flows under `dir` that are not imported by another (each is a project).
fn root_flows(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = BTreeSet::new();
    collect_flows(dir, &mut files).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut imported = BTreeSet::new();
    for f in &files {
        let (c, root) = compile_flow(f)?;
        for (id, src) in c.sources.files() {
            if id.0 != 0 && src.name.ends_with(".ivr") {
                imported.insert(Path::new(&root).join(&src.name));
            }
        }
    }
    Ok(files.into_iter().filter(|f| !imported.contains(f)).collect())
}

fn serve(config: Option<PathBuf>, listen: Vec<std::net::SocketAddr>, log_format: LogFormat) -> Result<ExitCode, String> {
    let level = if std::env::var_os("IVR_DEBUG").is_some() { tracing::Level::DEBUG } else { tracing::Level::INFO };
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_max_level(level);
    match log_format {
        LogFormat::Text => logs.with_ansi(color()).init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    let config = config.or_else(|| Some(PathBuf::from("ivr.toml")).filter(|p| p.is_file()));
    let cfg = match &config {
        Some(p) => read_config(p)?,
        None => Config::default(),
    };
    let where_ = config.as_ref().map_or_else(|| "the configuration".to_string(), |p| format!("`{}`", p.display()));
    let acd = cfg.acd().map_err(|e| format!("{where_}: {e}"))?;
    let ops_listen = cfg.ops_addr().map_err(|e| format!("{where_}: {e}"))?;
    let (admin_token, metrics_token) = (cfg.admin_token.clone(), cfg.metrics_token.clone());
    let realm = cfg.realm.clone().unwrap_or_else(|| "ivr".into());
    let transfer_gateway = cfg.transfer_gateway.clone();
    if let Some(g) = &transfer_gateway {
        if !g.contains("{number}") || ivr_server::contact_addr(&g.replace("{number}", "1")).is_none() {
            return Err(format!("{where_}: transfer_gateway {g:?} must be a SIP URI with an IP host and {{number}}, e.g. \"sip:{{number}}@192.0.2.1:5060\""));
        }
    }
    let flows = match cfg.flows {
        Some(f) => f,
        None => root_flows(Path::new("flows"))?,
    };
    if flows.is_empty() {
        return Err("no flows to serve: put them in flows/ or list them in ivr.toml".into());
    }
    let flows_dir = flows.first().and_then(|f| f.parent()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    // Flows that do not compile do not stop the server when a release it
    // served before can be served again (the server decides, and says so).
    let json_logs = log_format == LogFormat::Json;
    let programs = compile_all_logged(&flows, json_logs);
    let data = cfg.data.unwrap_or_else(|| flows_dir.join("data"));
    let quotes = cfg.quotes.unwrap_or_else(|| data.join("quotes.csv"));
    let store = Arc::new(ivr_services::Embedded::open(&data, &quotes).map_err(|e| format!("embedded services ({}): {e}", data.display()))?);
    let embedded: Arc<dyn ivr_services::Backend> = store.clone();
    let http: Arc<dyn ivr_services::Backend> = Arc::new(ivr_services::Http::new(cfg.services.clone()));
    let backend: Arc<dyn ivr_services::Backend> = Arc::new(ivr_services::Router::new(vec![http, embedded]));
    let server_cfg = ivr_server::ServerConfig {
        listen: match (listen.is_empty(), cfg.listen.clone()) {
            (false, _) => listen,
            (true, Some(Listen::One(a))) => vec![a],
            (true, Some(Listen::Many(v))) if !v.is_empty() => v,
            _ => vec!["127.0.0.1:5060".parse().unwrap()],
        },
        rtp_ports: cfg.rtp_ports.unwrap_or((20000, 29999)),
        // By default the range's first port is shared by the calls that can
        // share it (0: every call has a port of its own).
        rtp_shared_port: match cfg.rtp_shared_port {
            Some(0) => None,
            Some(p) => Some(p),
            None => {
                let (low, high) = cfg.rtp_ports.unwrap_or((20000, 29999));
                low.checked_add(low % 2).filter(|first| *first <= high)
            }
        },
        programs,
        flows_dir,
        backend: Some(backend),
        messages: Some(store),
        data_dir: data,
        max_calls: cfg.max_calls.unwrap_or(5000),
        ring_ms: cfg.ring_ms.unwrap_or(0),
        rate_per_source: cfg.rate_per_source.unwrap_or(300),
        inband_dtmf: cfg.inband_dtmf,
        latch_rtp: cfg.latch_rtp,
        // A reload recompiles the flows and reads the agents and queues again
        // (other settings need a restart).
        reload: Some(std::sync::Arc::new(move || {
            let acd = match &config {
                Some(p) => read_config(p)?.acd().map_err(|e| format!("`{}`: {e}", p.display()))?,
                None => ivr_acd::AcdConfig::default(),
            };
            // The flows as the configuration names them now (a flow added to
            // `flows = […]` is deployed with the rest).
            let flows = match config.as_ref().map(|p| read_config(p)).transpose()?.and_then(|c| c.flows) {
                Some(f) => f,
                None if config.is_some() => flows.clone(),
                None => root_flows(Path::new("flows"))?,
            };
            Ok(ivr_server::Reloaded { programs: compile_all_logged(&flows, json_logs)?, acd })
        })),
        acd,
        ops_listen,
        admin_token,
        metrics_token,
        realm,
        transfer_gateway,
        limits: ivr_server::CallLimits { max_call_ms: cfg.max_call_s.map_or(2 * 3_600_000, |s| s.saturating_mul(1_000)), ..Default::default() },
        per_source: {
            let d = ivr_server::SourceLimits::default();
            ivr_server::SourceLimits {
                new_calls_per_s: cfg.new_calls_per_source.unwrap_or(d.new_calls_per_s),
                awaiting_ack: cfg.awaiting_ack_per_source.unwrap_or(d.awaiting_ack),
                calls: cfg.calls_per_source.unwrap_or(d.calls),
                trusted: cfg.trusted_sources.clone(),
            }
        },
        user_agent: match cfg.server_header.as_deref() {
            None => Some("ivr/0.1".to_string()),
            Some("") => None,
            Some(s) => Some(s.to_string()),
        },
        force_rport: cfg.force_rport,
        overload_at_ms: cfg.overload_at_ms.unwrap_or(20.0),
        rtp_timeout_ms: cfg.rtp_timeout_s.unwrap_or(60).saturating_mul(1_000),
        tcp: {
            let d = ivr_server::TcpLimits::default();
            ivr_server::TcpLimits {
                max_connections: cfg.tcp_max_connections.unwrap_or(d.max_connections),
                max_per_source: cfg.tcp_max_per_source.unwrap_or(d.max_per_source),
                message_deadline_ms: cfg.tcp_message_deadline_s.map_or(d.message_deadline_ms, |s| s.saturating_mul(1_000)),
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(ivr_server::run(server_cfg)).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Compiles every flow to serve; any error refuses the whole set.
fn compile_all(flows: &[PathBuf]) -> Result<Vec<(String, Arc<ivr_bytecode::Program>)>, String> {
    compile_all_logged(flows, false)
}

/// The same, the diagnostics written as log events (`--log-format json`:
/// one JSON object per line, never a drawing) when `as_logs`.
fn compile_all_logged(flows: &[PathBuf], as_logs: bool) -> Result<Vec<(String, Arc<ivr_bytecode::Program>)>, String> {
    let mut programs = Vec::new();
    for f in flows {
        let (c, root) = compile_flow(f)?;
        if as_logs {
            for d in &c.diagnostics {
                let v = report::json(&c.sources, &root, d);
                let at = format!("{}:{}:{}", v["file"].as_str().unwrap_or(""), v["line"], v["column"]);
                match d.severity {
                    ivr_compiler::Severity::Error => tracing::error!(code = d.code, at = %at, "{}", d.message),
                    ivr_compiler::Severity::Warning => tracing::warn!(code = d.code, at = %at, "{}", d.message),
                }
            }
        } else {
            print_human(&c, &root);
        }
        let Some(p) = c.program else {
            return Err(format!("{} does not compile", f.display()));
        };
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // Two flows answering one number: which one a caller gets would be an accident.
        for e in &p.entries {
            if let Some((other, _)) = programs.iter().find(|(_, q): &&(String, Arc<ivr_bytecode::Program>)| q.entries.iter().any(|x| x.number == e.number)) {
                return Err(format!("number {} is answered by two flows, {other} and {name}: give each number one flow", e.number));
            }
        }
        programs.push((name, Arc::new(p)));
    }
    Ok(programs)
}

/// `ivr test --from-record CALLS CALL_ID`: a scenario replaying a production call.
fn from_record_cmd(args: &[String], flow: Option<PathBuf>, output: Option<&Path>, tz: &str) -> Result<ExitCode, String> {
    let [calls, call_id] = args else { return Err("--from-record takes the calls.jsonl file and a Call-ID".into()) };
    let record = replay::find_record(Path::new(calls), call_id)?;
    let name = record["flow"].as_str().unwrap_or("");
    let flow = match flow {
        Some(f) => f,
        None => {
            let candidates = [PathBuf::from("flows").join(format!("{name}.ivr")), PathBuf::from(format!("{name}.ivr"))];
            candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| format!("the call ran flow `{name}`: say where it is with --flow"))?
        }
    };
    let (c, root) = compile_flow(&flow)?;
    print_human(&c, &root);
    let program = c.program.ok_or_else(|| format!("{} does not compile", flow.display()))?;
    let fingerprint = ivr_call::records::fingerprint(&program);
    let out_dir = output.and_then(Path::parent).filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let text = replay::scenario(&record, &flow, out_dir, &fingerprint, tz)?;
    match output {
        Some(path) => {
            std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
            std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            eprintln!("wrote {}: run it with `ivr test {}`", path.display(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Who is deploying, for the release history: $IVR_OPERATOR, else the login name and host.
fn operator() -> String {
    if let Ok(o) = std::env::var("IVR_OPERATOR") {
        return o;
    }
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    if host.is_empty() { user } else { format!("{user}@{host}") }
}

/// A wall-clock instant in the centre's time zone (`$IVR_TZ`, else Asia/Shanghai, as `ivr report`).
fn when(ms: &serde_json::Value) -> String {
    let zone = std::env::var("IVR_TZ").ok().and_then(|z| jiff::tz::TimeZone::get(&z).ok()).or_else(|| jiff::tz::TimeZone::get("Asia/Shanghai").ok()).unwrap_or(jiff::tz::TimeZone::UTC);
    ms.as_i64().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map_or_else(|| "?".into(), |t| t.to_zoned(zone).strftime("%Y-%m-%d %H:%M:%S %Z").to_string())
}

/// Says what new calls get after a deploy, promote or rollback.
fn release_changed(v: &serde_json::Value) -> Result<ExitCode, String> {
    let current = &v["current"];
    println!("current release {} ({} by {})", current["id"].as_str().unwrap_or("?"), when(&current["at_ms"]), current["by"].as_str().unwrap_or("?"));
    if let Some(c) = v["canary"].as_object() {
        let callers = c.get("callers").and_then(|c| c.as_array()).map_or(0, Vec::len);
        println!("canary release {} on {}% of new calls and {callers} listed callers (`ivr promote` or `ivr rollback`)", c["release"].as_str().unwrap_or("?"), c["percent"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ivr deploy`: check the flows here, then have the server load them.
fn deploy_cmd(config: Option<PathBuf>, canary: Option<u8>, canary_callers: Vec<String>, note: &str, admin: Option<String>) -> Result<ExitCode, String> {
    if canary.is_some_and(|p| p > 100) {
        return Err("--canary is a share of new calls, 0-100".into());
    }
    let config = config.or_else(|| Some(PathBuf::from("ivr.toml")).filter(|p| p.is_file()));
    let flows = match config.as_ref().map(|p| read_config(p)).transpose()?.and_then(|c| c.flows) {
        Some(f) => f,
        None => root_flows(Path::new("flows"))?,
    };
    if flows.is_empty() {
        return Err("no flows to deploy: put them in flows/ or list them in ivr.toml".into());
    }
    // The same check the server makes: a mistake is refused here, before it is sent.
    compile_all(&flows).map_err(|e| format!("{e}: not deployed; the server keeps its current release"))?;
    let mut body = serde_json::json!({"by": operator(), "note": note});
    if canary.is_some() || !canary_callers.is_empty() {
        body["canary_percent"] = serde_json::json!(canary.unwrap_or(0));
        body["canary_callers"] = serde_json::json!(canary_callers);
    }
    // The server compiles the flows again and decodes their prompts: it may take a while.
    let v = admin_call_at(admin, config.as_deref(), "POST", "/releases", Some(body), 120)?;
    if v["current"]["id"].is_string() && v["canary"].is_null() && v["previous"] == v["current"]["id"] {
        println!("nothing changed: release {} was already current", v["current"]["id"].as_str().unwrap_or("?"));
    }
    release_changed(&v)
}

/// `ivr versions`.
fn versions_cmd(admin: Option<String>, json: bool) -> Result<ExitCode, String> {
    let v = admin_call(admin, "GET", "/releases", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let current = v["current"].as_str().unwrap_or("");
    let canary = v["canary"]["release"].as_str().unwrap_or("");
    println!("{:<2} {:<12}  {:<23}  {:<20}  {}", "", "release", "first deployed", "by", "flows / note");
    for r in v["releases"].as_array().into_iter().flatten() {
        let id = r["id"].as_str().unwrap_or("");
        let mark = if id == current { "*" } else if id == canary { "c" } else { "" };
        let flows: Vec<String> = r["flows"].as_array().into_iter().flatten().filter_map(|f| Some(format!("{}@{}", f[0].as_str()?, &f[1].as_str()?.get(..8)?))).collect();
        let note = r["note"].as_str().filter(|n| !n.is_empty()).map(|n| format!(" — {n}")).unwrap_or_default();
        println!("{mark:<2} {id:<12}  {:<23}  {:<20}  {}{note}", when(&r["at_ms"]), r["by"].as_str().unwrap_or(""), flows.join(" "));
    }
    println!();
    println!("history (newest last):");
    let history = v["history"].as_array().cloned().unwrap_or_default();
    for e in history.iter().skip(history.len().saturating_sub(15)) {
        let extra = match e["action"].as_str() {
            Some("refused") => format!(": {}", e["error"].as_str().unwrap_or("")),
            Some("canary") => format!(" on {}% and {} callers", e["percent"], e["callers"]),
            _ => e["note"].as_str().map(|n| format!(" — {n}")).unwrap_or_default(),
        };
        println!("  {}  {:<8} {:<12} by {}{extra}", when(&e["at_ms"]), e["action"].as_str().unwrap_or(""), e["release"].as_str().unwrap_or(""), e["by"].as_str().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

/// The admin API's base URL and token: `--admin`, else ./ivr.toml, else the default.
/// The admin API's base URL and token: `--admin`, else `config` (or ./ivr.toml), else the default.
fn admin_base_of(admin: Option<String>, config: Option<&Path>) -> Result<(String, Option<String>), String> {
    let path = config.map(Path::to_path_buf).or_else(|| Some(PathBuf::from("ivr.toml")).filter(|p| p.is_file()));
    let cfg = path.map(|p| read_config(&p)).transpose()?;
    let token = std::env::var("IVR_ADMIN_TOKEN").ok().or_else(|| cfg.as_ref().and_then(|c| c.admin_token.clone()));
    let configured = cfg.as_ref().map(Config::ops_addr).transpose()?.flatten();
    let addr = admin.or_else(|| configured.map(|a| a.to_string())).unwrap_or_else(|| DEFAULT_OPS.to_string());
    let base = if addr.starts_with("http://") { addr } else { format!("http://{addr}") };
    Ok((base.trim_end_matches('/').to_string(), token))
}

fn admin_call(admin: Option<String>, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value, String> {
    admin_call_at(admin, None, method, path, body, 5)
}

/// An operations API call to the server `--admin` or `config` names, waiting up to `secs`.
fn admin_call_at(admin: Option<String>, config: Option<&Path>, method: &str, path: &str, body: Option<serde_json::Value>, secs: u64) -> Result<serde_json::Value, String> {
    let (base, token) = admin_base_of(admin, config)?;
    let url = format!("{base}{path}");
    let mut req = ureq::request(method, &url).timeout(std::time::Duration::from_secs(secs));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => r.into_json().map_err(|e| format!("{url}: {e}")),
        Err(ureq::Error::Status(code, r)) => {
            let msg = r.into_json::<serde_json::Value>().ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_default();
            Err(format!("{msg} (HTTP {code} from {url})"))
        }
        Err(ureq::Error::Transport(t)) => Err(format!("no server answers at {base} ({}); is `ivr serve` running, and is that its `ops_listen`?", t.kind())),
    }
}

/// `text` padded to `width` terminal columns (CJK characters take two).
fn pad(text: &str, width: usize) -> String {
    let cols: usize = text.chars().map(|c| if matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6) { 2 } else { 1 }).sum();
    format!("{text}{}", " ".repeat(width.saturating_sub(cols)))
}

fn ms(v: &serde_json::Value) -> String {
    let s = v.as_u64().unwrap_or(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// `ivr agents`: the live wallboard, as a table.
fn agents_cmd(admin: Option<String>, json: bool) -> Result<ExitCode, String> {
    let state = admin_call(admin, "GET", "/state", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&state).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    print_state(&state);
    Ok(ExitCode::SUCCESS)
}

/// `ivr agents --watch`: the wallboard (大屏幕) — callers waiting, longest
/// wait, agents by state, and the KPIs since the server started.
fn wallboard(admin: Option<String>, secs: u64, count: Option<u64>) -> Result<ExitCode, String> {
    let tty = std::io::stdout().is_terminal();
    for n in 1.. {
        let state = admin_call(admin.clone(), "GET", "/state", None)?;
        let kpi = admin_call(admin.clone(), "GET", "/kpi", None)?;
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        let k = &kpi["all"];
        println!(
            "{}   offered {}  answered {}  abandoned {}  SL(20s) {:.1}%  ASA {:.1} s  AHT {:.0} s",
            jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S"),
            k["offered"].as_u64().unwrap_or(0),
            k["answered"].as_u64().unwrap_or(0),
            k["abandoned"].as_u64().unwrap_or(0),
            k["service_level"].as_f64().unwrap_or(0.0),
            k["asa_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            k["aht_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        );
        println!();
        print_state(&state);
        let _ = std::io::stdout().flush();
        if count.is_some_and(|c| n >= c) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_state(state: &serde_json::Value) {
    println!("{:<8} {:<12} {:<10} {:>7}  {:>5}  {:<16} skills", "agent", "name", "state", "for", "calls", "reason");
    for a in state["agents"].as_array().into_iter().flatten() {
        let skills = a["skills"].as_array().into_iter().flatten().map(|s| format!("{}:{}", s[0].as_str().unwrap_or(""), s[1])).collect::<Vec<_>>().join(" ");
        println!(
            "{:<8} {} {:<10} {:>7}  {:>5}  {:<16} {skills}",
            a["id"].as_str().unwrap_or(""),
            pad(a["name"].as_str().unwrap_or(""), 12),
            a["state"].as_str().unwrap_or(""),
            ms(&a["for_ms"]),
            a["calls"].as_u64().unwrap_or(0),
            a["reason"].as_str().unwrap_or(""),
        );
    }
    println!();
    println!("{:<16} {:<14} {:>7} {:>8} {:>8}  agents", "queue", "strategy", "waiting", "longest", "talking");
    for q in state["queues"].as_array().into_iter().flatten() {
        let by_state = q["agents"].as_object().into_iter().flatten().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        println!(
            "{:<16} {:<14} {:>7} {:>8} {:>8}  {by_state}",
            q["name"].as_str().unwrap_or(""),
            q["strategy"].as_str().unwrap_or(""),
            q["waiting"].as_u64().unwrap_or(0),
            ms(&q["longest_wait_ms"]),
            q["talking"].as_u64().unwrap_or(0)
        );
    }
}

/// `ivr agent login|ready|pause|logout ID`.
fn agent_cmd(action: AgentAction, id: &str, reason: Option<String>, admin: Option<String>) -> Result<ExitCode, String> {
    let action = match action {
        AgentAction::Login => "login",
        AgentAction::Ready => "ready",
        AgentAction::Pause => "pause",
        AgentAction::Logout => "logout",
    };
    let body = serde_json::json!({ "reason": reason.unwrap_or_else(|| "paused".into()) });
    let a = admin_call(admin, "POST", &format!("/agents/{id}/{action}"), Some(body))?;
    let reason = a["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
    println!("agent {id}: {}{reason}", a["state"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Hour,
    Day,
    Week,
    Month,
}

/// The report's span in the centre's time zone, cut into periods: hours,
/// days, weeks (from Monday) or calendar months, each clipped to the span.
fn report_window(date: Option<String>, days: u32, tz: &str, by: By) -> Result<kpis::Window, String> {
    let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone {tz}: {e}"))?;
    let day = match date {
        Some(d) => d.parse::<jiff::civil::Date>().map_err(|e| format!("--date {d}: {e}"))?,
        None => jiff::Timestamp::now().to_zoned(zone.clone()).date(),
    };
    let end = day.checked_add(jiff::Span::new().days(days.clamp(1, 3_660) as i64)).map_err(|e| e.to_string())?;
    let at = |d: jiff::civil::DateTime| d.to_zoned(zone.clone()).map(|z| z.timestamp().as_millisecond()).map_err(|e| e.to_string());
    let (from_ms, to_ms) = (at(day.to_datetime(jiff::civil::Time::midnight()))?, at(end.to_datetime(jiff::civil::Time::midnight()))?);
    let mut periods = Vec::new();
    let mut start = match by {
        By::Hour | By::Day => day.to_datetime(jiff::civil::Time::midnight()),
        By::Week => day.checked_sub(jiff::Span::new().days(i64::from(day.weekday().to_monday_zero_offset()))).map_err(|e| e.to_string())?.to_datetime(jiff::civil::Time::midnight()),
        By::Month => day.first_of_month().to_datetime(jiff::civil::Time::midnight()),
    };
    while at(start)? < to_ms {
        let step = match by {
            By::Hour => jiff::Span::new().hours(1),
            By::Day => jiff::Span::new().days(1),
            By::Week => jiff::Span::new().weeks(1),
            By::Month => jiff::Span::new().months(1),
        };
        let next = start.checked_add(step).map_err(|e| e.to_string())?;
        let label = match by {
            By::Hour => start.strftime("%Y-%m-%d %H:00").to_string(),
            By::Day => start.date().to_string(),
            By::Week => format!("week of {}", start.date()),
            By::Month => start.strftime("%Y-%m").to_string(),
        };
        periods.push((label, at(start)?.max(from_ms), at(next)?.min(to_ms)));
        start = next;
    }
    let hour_zone = zone.clone();
    Ok(kpis::Window {
        from_ms,
        to_ms,
        labels: (day.to_string(), end.to_string()),
        by: format!("{by:?}").to_lowercase(),
        periods,
        now_ms: jiff::Timestamp::now().as_millisecond(),
        hour_of: Box::new(move |ms| jiff::Timestamp::from_millisecond(ms).map_or(0, |t| t.to_zoned(hour_zone.clone()).hour() as u8)),
    })
}

/// `ivr report`.
fn report_cmd(data: &Path, (date, days, tz, by): (Option<String>, u32, &str, By), sl: u64, format: ReportFormat, section: kpis::Section, charts: Option<&Path>) -> Result<ExitCode, String> {
    let window = report_window(date, days, tz, by)?;
    if !["calls.jsonl", "queue.jsonl", "agents.jsonl"].iter().any(|f| data.join(f).is_file()) {
        eprintln!("warning: no records in `{}` (calls.jsonl, queue.jsonl, agents.jsonl): is it the server's data directory? (--data)", data.display());
    }
    let report = kpis::build(data, &window, sl.saturating_mul(1000))?;
    if let Some(dir) = charts {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        for (name, svg) in charts::all(&report) {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        }
    }
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?),
        ReportFormat::Table => print!("{}", kpis::render(&report)),
        ReportFormat::Csv => print!("{}", kpis::csv(&report, section)),
        ReportFormat::Html => print!("{}", charts::html(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ivr plan`: staffing from the records.
#[allow(clippy::too_many_arguments)]
fn plan_cmd(data: &Path, date: Option<String>, days: u32, tz: &str, (sl, within): (f64, f64), roster: Option<&str>, sim_days: u32, json: bool) -> Result<ExitCode, String> {
    let zone = jiff::tz::TimeZone::get(tz).map_err(|e| format!("time zone {tz}: {e}"))?;
    let days = days.max(1);
    let first = match date {
        Some(d) => d.parse::<jiff::civil::Date>().map_err(|e| format!("--date {d}: {e}"))?,
        None => jiff::Timestamp::now().to_zoned(zone.clone()).date().checked_sub(jiff::Span::new().days(days as i64)).map_err(|e| e.to_string())?,
    };
    let end = first.checked_add(jiff::Span::new().days(days as i64)).map_err(|e| e.to_string())?;
    let at = |d: jiff::civil::Date| d.to_zoned(zone.clone()).map(|z| z.timestamp().as_millisecond()).map_err(|e| e.to_string());
    let (from_ms, to_ms) = (at(first)?, at(end)?);
    if !(0.0..=100.0).contains(&sl) || within <= 0.0 {
        return Err("--sl is a percentage (0-100) and --within a positive number of seconds".into());
    }
    let roster = roster.map(plan::parse_roster).transpose()?;
    let path = data.join("queue.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    };
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let when = |ms: i64| -> Option<(i64, usize)> {
        if ms < from_ms || ms >= to_ms {
            return None;
        }
        let local = jiff::Timestamp::from_millisecond(ms).ok()?.to_zoned(zone.clone());
        let day = local.date().since(jiff::civil::date(2000, 1, 1)).ok()?.get_days();
        Some((i64::from(day), local.hour() as usize))
    };
    let demand = plan::Demand::from_records(&lines, days, when);
    if demand.calls.iter().all(|c| *c == 0.0) {
        println!("no queued calls in `{}` from {first} to {end}: nothing to plan from", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let hours = plan::plan(&demand, sl / 100.0, within, roster.as_ref(), sim_days.clamp(1, 365));
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"demand": demand, "hours": hours})).map_err(|e| e.to_string())?);
    } else {
        print!("{}", plan::render(&hours, sl / 100.0, within, &demand));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ivr reload`: asks the running server (by its pid file) to recompile its flows.
fn reload(data: &Path) -> Result<ExitCode, String> {
    let pid_file = data.join("ivr.pid");
    let pid = std::fs::read_to_string(&pid_file).map_err(|e| format!("no running server found ({}: {e})", pid_file.display()))?;
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} does not hold a process id", pid_file.display()));
    }
    // The server answers in reload.json: wait for its count to move past the
    // one we saw, then report what it said (a refused reload fails here too,
    // so a deploy script sees it).
    let result = data.join("reload.json");
    let read = || -> Option<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(&result).ok()?).ok() };
    let seq_of = |v: &serde_json::Value| if v["pid"].as_u64().map(|p| p.to_string()).as_deref() == Some(pid) { v["seq"].as_u64().unwrap_or(0) } else { 0 };
    let before = read().map_or(0, |v| seq_of(&v));
    // A pid file left by a server that died may name another process by now.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).replace('\0', " ")).unwrap_or_default();
    if cfg!(target_os = "linux") && !(cmdline.contains("ivr") && cmdline.contains("serve")) {
        return Err(format!("{} names pid {pid}, which is not a running `ivr serve` (a server that stopped without cleaning up?)", pid_file.display()));
    }
    let status = std::process::Command::new("kill").args(["-HUP", pid]).status().map_err(|e| format!("cannot signal {pid}: {e}"))?;
    if !status.success() {
        return Err(format!("the server (pid {pid}) is not running"));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = read().filter(|v| seq_of(v) > before) {
            if v["ok"] == true && v["unchanged"] == true {
                eprintln!("the server (pid {pid}) found the flows on disk unchanged since they were last deployed: it keeps what it serves");
                return Ok(ExitCode::SUCCESS);
            }
            if v["ok"] == true {
                eprintln!("the server (pid {pid}) reloaded its flows; new calls get them, calls in progress keep theirs");
                return Ok(ExitCode::SUCCESS);
            }
            return Err(format!("the server (pid {pid}) refused the reload and keeps its current flows: {}", v["error"].as_str().unwrap_or("see its log")));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("asked the server (pid {pid}) to reload, but it gave no answer within 60 s; see its log"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn open_store(data: &Path) -> Result<ivr_services::Store, String> {
    let db = data.join("ivr.db");
    if !db.is_file() {
        return Err(format!("no database at `{}` (the embedded services create it on first use)", db.display()));
    }
    ivr_services::Store::open(&db).map_err(|e| format!("`{}`: {e}", db.display()))
}

fn orders(data: &Path, json: bool) -> Result<ExitCode, String> {
    let store = open_store(data)?;
    let rows = store.orders().map_err(|e| e.to_string())?;
    for o in &rows {
        if json {
            let v = serde_json::json!({
                "order_no": o.order_no, "key": o.key, "account": o.account, "code": o.code, "side": o.side,
                "price": o.price, "shares": o.shares, "state": o.state, "placed_ms": o.placed_ms,
            });
            println!("{v}");
        } else {
            println!("{}  {}  {:<4} {}  {:>10} × {:<8} {}", o.order_no, o.account, o.side, o.code, o.price, o.shares, o.state);
        }
    }
    if !json {
        eprintln!("{} order{}", rows.len(), if rows.len() == 1 { "" } else { "s" });
    }
    Ok(ExitCode::SUCCESS)
}

fn messages(action: MessagesCmd) -> Result<ExitCode, String> {
    match action {
        MessagesCmd::List { data, json } => {
            let store = open_store(&data)?;
            for m in store.messages().map_err(|e| e.to_string())? {
                if json {
                    let v = serde_json::json!({"id": m.id, "at_ms": m.at_ms, "caller": m.caller, "category": m.category,
                        "duration_ms": m.duration_ms, "file": m.file});
                    println!("{v}");
                } else {
                    println!("{}  {}  {}  {}  {:.1}s  {}", m.id, m.at_ms, m.caller, m.category, m.duration_ms as f64 / 1000.0, m.file);
                }
            }
        }
        MessagesCmd::Export { dir, data } => {
            let store = open_store(&data)?;
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            let mut index = String::from("id,at_ms,caller,category,duration_ms,file\n");
            let list = store.messages().map_err(|e| e.to_string())?;
            for m in &list {
                let name = format!("{}.wav", m.id);
                std::fs::copy(data.join(&m.file), dir.join(&name)).map_err(|e| format!("cannot copy `{}`: {e}", m.file))?;
                index.push_str(&format!("{},{},{},{},{},{name}\n", m.id, m.at_ms, m.caller, m.category, m.duration_ms));
            }
            std::fs::write(dir.join("index.csv"), index).map_err(|e| format!("cannot write the index: {e}"))?;
            eprintln!("exported {} message{} to {}", list.len(), if list.len() == 1 { "" } else { "s" }, dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn subscriptions(data: &Path) -> Result<ExitCode, String> {
    let store = open_store(data)?;
    for (caller, topic, channel) in store.subscriptions().map_err(|e| e.to_string())? {
        println!("{caller}  {topic}  {channel}");
    }
    Ok(ExitCode::SUCCESS)
}

fn say(value: &str, lang: &str, kind: &str) -> Result<ExitCode, String> {
    let l = ivr_speech::Lang::parse(lang).ok_or_else(|| format!("--lang {lang}: use zh or en"))?;
    let k = ivr_speech::Kind::parse(kind)
        .ok_or_else(|| format!("--as {kind}: use number, digits, money, percent, date or time"))?;
    match ivr_speech::read(k, value, l) {
        Ok(r) => {
            println!("{}", r.text());
            for s in &r.segments {
                println!("{s}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Splits a flow path into the world root and the main file's name.
fn split(flow: &Path) -> (String, String) {
    let root = flow.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let name = flow.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (if root.is_empty() { ".".into() } else { root }, name)
}

fn compile_flow(flow: &Path) -> Result<(Compiled, String), String> {
    compile_flow_for(flow, None)
}

/// Compiles `flow`, checked against the deployment's queues when given.
fn compile_flow_for(flow: &Path, site: Option<&ivr_compiler::Site>) -> Result<(Compiled, String), String> {
    if !flow.is_file() {
        return Err(format!("cannot read `{}`: no such file", flow.display()));
    }
    let (root, name) = split(flow);
    let world = FsWorld { root: PathBuf::from(&root) };
    Ok((ivr_compiler::compile_for(&world, &name, site), root))
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_human(c: &Compiled, root: &str) {
    for d in &c.diagnostics {
        eprint!("{}", report::human(&c.sources, root, d, color()));
    }
}

fn check(paths: &[PathBuf], format: Format, deny_warnings: bool, config: Option<&Path>) -> Result<ExitCode, String> {
    let site = match config {
        Some(p) => {
            let cfg = read_config(p)?;
            let acd = cfg.acd().map_err(|e| format!("`{}`: {e}", p.display()))?;
            Some(ivr_compiler::Site { queues: acd.queues.iter().map(|q| q.name.to_string()).collect(), tiers: acd.tiers.iter().map(|t| (t.name.clone(), t.priority)).collect() })
        }
        None => None,
    };
    let mut files = BTreeSet::new();
    for p in paths {
        if p.is_dir() {
            collect_flows(p, &mut files).map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
        } else if p.is_file() {
            files.insert(p.clone());
        } else {
            return Err(format!("cannot read `{}`: no such file or directory", p.display()));
        }
    }
    // A file imported by another is checked as part of it, not on its own.
    let mut imported = BTreeSet::new();
    let mut results = Vec::new();
    let _quiet = PanicCatcher::install();
    for f in &files {
        let (c, root) = check_file(f, |f| compile_flow_for(f, site.as_ref()))?;
        for (id, src) in c.sources.files() {
            if id.0 != 0 && src.name.ends_with(".ivr") {
                imported.insert(Path::new(&root).join(&src.name));
            }
        }
        results.push((f.clone(), c, root));
    }
    let mut seen = BTreeSet::new();
    let (mut errors, mut warnings) = (0, 0);
    let mut json_out = Vec::new();
    for (f, c, root) in &results {
        if imported.contains(f) && results.len() > 1 {
            continue;
        }
        for d in &c.diagnostics {
            // The last line of defence: a diagnostic that cannot be drawn is
            // still counted and shown, without its source.
            let drawn = std::panic::catch_unwind(|| {
                let file = c.sources.get(d.span.file);
                let key = (report::display_path(root, &file.name), d.span.start, d.span.end, d.code);
                let out = match format {
                    Format::Human => Drawn::Text(report::human(&c.sources, root, d, color())),
                    Format::Json => Drawn::Json(report::json(&c.sources, root, d)),
                    Format::Github => Drawn::Text(report::github(&c.sources, root, d)),
                };
                (key, out)
            });
            let (key, out) = drawn.unwrap_or_else(|_| {
                let text = format!("{}: [{}] {} (internal error: its place in the file cannot be shown)", f.display(), d.code, d.message);
                let out = match format {
                    Format::Json => Drawn::Json(serde_json::json!({"code": d.code, "file": f.display().to_string(), "message": d.message})),
                    _ => Drawn::Text(text),
                };
                ((f.display().to_string(), d.span.start, d.span.end, d.code), out)
            });
            if !seen.insert(key) {
                continue;
            }
            match d.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match (format, out) {
                (Format::Human, Drawn::Text(t)) => eprint!("{t}"),
                (Format::Github, Drawn::Text(t)) => println!("{t}"),
                (_, Drawn::Json(v)) => json_out.push(v),
                (_, Drawn::Text(t)) => eprintln!("{t}"),
            }
        }
    }
    let checked = results.iter().filter(|(f, ..)| !(imported.contains(f) && results.len() > 1)).count();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"files": checked, "errors": errors, "warnings": warnings, "diagnostics": json_out})
        ),
        _ => eprintln!(
            "checked {checked} flow{}: {errors} error{}, {warnings} warning{}",
            if checked == 1 { "" } else { "s" },
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        ),
    }
    Ok(if errors > 0 || (deny_warnings && warnings > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One diagnostic drawn for output.
enum Drawn {
    Text(String),
    Json(serde_json::Value),
}

/// Checks one flow file with `compile`. Should the checker crash on it, the
/// crash becomes an internal-error diagnostic (E9999) of that file, so a
/// directory check still reports every other file.
fn check_file(
    f: &Path,
    compile: impl FnOnce(&Path) -> Result<(Compiled, String), String>,
) -> Result<(Compiled, String), String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile(f))) {
        Ok(result) => result,
        Err(payload) => {
            let why = PanicCatcher::last().unwrap_or_else(|| {
                payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default()
            });
            let (root, name) = split(f);
            let text = std::fs::read(f).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let mut sources = ivr_compiler::SourceMap::default();
            let id = sources.add(name, text);
            let d = ivr_compiler::Diagnostic::new(
                ivr_compiler::Code::InternalError,
                format!("the checker crashed on this file: {why}"),
                ivr_compiler::Span::new(id, 0, 0),
                "while checking this file",
            )
            .with_help("this is a bug in ivr, not a mistake in the flow: please report it with this file. Other files were checked");
            Ok((Compiled { program: None, diagnostics: vec![d], sources }, root))
        }
    }
}

/// While it lives, a panic prints nothing and its message and place are kept
/// for [`check_file`]'s diagnostic; dropping it restores the usual hook.
struct PanicCatcher;

static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl PanicCatcher {
    fn install() -> PanicCatcher {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(format!("{msg}{at}"));
            }
        }));
        PanicCatcher
    }

    fn last() -> Option<String> {
        LAST_PANIC.lock().ok()?.take()
    }
}

impl Drop for PanicCatcher {
    fn drop(&mut self) {
        let _ = std::panic::take_hook();
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn a_crash_on_one_file_is_that_files_internal_error() {
        let _quiet = PanicCatcher::install();
        let (c, _) = check_file(Path::new("flows/none.ivr"), |_| panic!("boom")).unwrap();
        assert_eq!(c.diagnostics.len(), 1);
        let d = &c.diagnostics[0];
        assert_eq!((d.code, d.severity), ("E9999", Severity::Error));
        assert!(d.message.contains("boom") && d.message.contains("main.rs"), "{}", d.message);
        assert_eq!(c.sources.get(d.span.file).name, "none.ivr");
        // The next file is checked as usual.
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/bank_hotline.ivr");
        let (c, _) = check_file(&shipped, |f| compile_flow_for(f, None)).unwrap();
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
    }
}

fn collect_flows(dir: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_flows(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ivr") {
            out.insert(path);
        }
    }
    Ok(())
}

fn compile_cmd(flow: &Path, output: &Path, strip: bool) -> Result<ExitCode, String> {
    let (c, root) = compile_flow(flow)?;
    print_human(&c, &root);
    let Some(program) = c.program else {
        eprintln!("error: {} not compiled", flow.display());
        return Ok(ExitCode::from(1));
    };
    let bytes = ivr_bytecode::encode(&program, strip);
    std::fs::write(output, &bytes).map_err(|e| format!("cannot write `{}`: {e}", output.display()))?;
    eprintln!("wrote {} ({} bytes, {} instructions)", output.display(), bytes.len(), program.code.len());
    Ok(ExitCode::SUCCESS)
}

/// `ivr graph`: the flow drawn as dot, Mermaid or SVG (Graphviz's layout when
/// it is installed, else our own).
fn graph_cmd(flow: &Path, format: GraphFormat, output: Option<&Path>, builtin: bool, coverage: Option<&Path>) -> Result<ExitCode, String> {
    let g = match flow_graph(flow, "; fix them to draw it")? {
        Ok(g) => g,
        Err(code) => return Ok(code),
    };
    let g = match coverage {
        Some(file) => g.with_coverage(missed_parts(file, flow)?.iter().map(String::as_str)),
        None => g,
    };
    let text = match format {
        GraphFormat::Dot => g.dot(),
        GraphFormat::Mermaid => g.mermaid(),
        GraphFormat::Svg if builtin => g.svg(),
        GraphFormat::Svg => graphviz_svg(&g.dot()).unwrap_or_else(|| g.svg()),
    };
    match output {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The parts of `flow` never reached, from `ivr test --coverage --format json`.
fn missed_parts(file: &Path, flow: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("`{}` is not `ivr test --coverage --format json` output: {e}", file.display()))?;
    let same = |p: &str| {
        let canon = |p: &Path| std::fs::canonicalize(p).ok();
        canon(Path::new(p)).is_some_and(|c| Some(c) == canon(flow))
    };
    let flows = v["coverage"].as_array().ok_or_else(|| format!("`{}` has no coverage: run `ivr test --coverage --format json`", file.display()))?;
    let Some(f) = flows.iter().find(|f| f["flow"].as_str().is_some_and(same)) else {
        let listed: Vec<&str> = flows.iter().filter_map(|f| f["flow"].as_str()).collect();
        return Err(format!("`{}` has no coverage of {} (it has: {})", file.display(), flow.display(), listed.join(", ")));
    };
    Ok(f["kinds"].as_object().into_iter().flat_map(|k| k.values()).flat_map(|k| k["missed"].as_array().cloned().unwrap_or_default()).filter_map(|m| m["label"].as_str().map(str::to_string)).collect())
}

/// A flow's graph, or its diagnostics printed (with `hint` after "has errors") and exit 1.
fn flow_graph(flow: &Path, hint: &str) -> Result<Result<ivr_compiler::graph::FlowGraph, ExitCode>, String> {
    if !flow.is_file() {
        return Err(format!("cannot read `{}`: no such file", flow.display()));
    }
    let (root, name) = split(flow);
    match ivr_compiler::graph::graph(&FsWorld { root: PathBuf::from(&root) }, &name) {
        Ok(g) => Ok(Ok(g)),
        Err(c) => {
            print_human(&c, &root);
            eprintln!("error: {} has errors{hint}", flow.display());
            Ok(Err(ExitCode::from(1)))
        }
    }
}

/// A flow's graph and program, or its diagnostics printed and exit 1.
fn graph_and_program(flow: &Path) -> Result<Result<(ivr_compiler::graph::FlowGraph, ivr_bytecode::Program), ExitCode>, String> {
    let graph = match flow_graph(flow, "")? {
        Ok(g) => g,
        Err(code) => return Ok(Err(code)),
    };
    let (root, name) = split(flow);
    let c = ivr_compiler::compile(&FsWorld { root: PathBuf::from(&root) }, &name);
    Ok(c.program.map(|p| (graph, p)).ok_or(ExitCode::from(1)))
}

/// `ivr fmt [--check] PATH...`.
fn fmt_cmd(paths: &[PathBuf], check: bool) -> Result<ExitCode, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect_ivr(p, &mut files);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(format!("cannot read `{}`: no such file or directory", p.display()));
        }
    }
    files.sort();
    let mut failed = false;
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read `{}`: {e}", f.display()))?;
        let (_, diags) = ivr_syntax::parse(ivr_syntax::FileId(0), &text);
        if !diags.is_empty() {
            eprintln!("{}: not formatted: it does not parse (run `ivr check` to see why)", f.display());
            failed = true;
            continue;
        }
        let formatted = ivr_syntax::format::format(&text);
        if formatted == text {
            continue;
        }
        if check {
            println!("{} would be reformatted", f.display());
            failed = true;
        } else {
            std::fs::write(f, formatted).map_err(|e| format!("cannot write `{}`: {e}", f.display()))?;
            println!("formatted {}", f.display());
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn collect_ivr(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_ivr(&p, out);
        } else if p.extension().is_some_and(|x| x == "ivr") {
            out.push(p);
        }
    }
}

/// `ivr diff OLD NEW`: the changes a caller would notice.
fn diff_cmd(old: &Path, new: &Path) -> Result<ExitCode, String> {
    let (a, b) = match (graph_and_program(old)?, graph_and_program(new)?) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return Ok(code),
    };
    let changes = ivr_compiler::diff::diff((&a.0, &a.1), (&b.0, &b.1));
    if changes.is_empty() {
        println!("no change a caller would notice");
        return Ok(ExitCode::SUCCESS);
    }
    for c in &changes {
        println!("{}: {}", c.place, c.what);
    }
    println!("{} change{}", changes.len(), if changes.len() == 1 { "" } else { "s" });
    Ok(ExitCode::from(1))
}

/// `dot -Tsvg`, when Graphviz is installed.
fn graphviz_svg(dot: &str) -> Option<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(dot.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A compiled program file, or a flow compiled on the spot.
fn load_program(file: &Path) -> Result<Result<ivr_bytecode::Program, ExitCode>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    if bytes.starts_with(&ivr_bytecode::MAGIC) {
        return ivr_bytecode::decode(&bytes).map(Ok).map_err(|e| format!("`{}`: {e}", file.display()));
    }
    let (c, root) = compile_flow(file)?;
    print_human(&c, &root);
    Ok(c.program.ok_or(ExitCode::from(1)))
}

fn disasm(file: &Path) -> Result<ExitCode, String> {
    match load_program(file)? {
        Ok(p) => {
            print!("{}", ivr_bytecode::disassemble(&p));
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

/// Reads the caller's moves from the terminal, one line per turn.
struct Terminal {
    interactive: bool,
    queued: VecDeque<sim::Step>,
}

/// The terminal's echo turned off until dropped (for a secret typed at `ivr sim`).
struct NoEcho(libc::termios);

impl NoEcho {
    fn on() -> Option<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own; on any
        // failure (not a terminal) nothing is changed.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(NoEcho(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `on`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

impl sim::Caller for Terminal {
    fn next(&mut self, moment: &sim::Moment) -> sim::Move {
        if !moment.asked() {
            return sim::Move::NotYet;
        }
        let listening_for = moment.listening.unwrap_or_default();
        let step = loop {
            if let Some(s) = self.queued.pop_front() {
                break s;
            }
            if self.interactive {
                let secret = if moment.secret { ", secret: not shown as you type" } else { "" };
                eprint!("keys for {listening_for} (Enter = silence, h = hang up{secret})> ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            // A PIN typed at the terminal is not echoed (nor left on the screen).
            let quiet = (self.interactive && moment.secret).then(NoEcho::on).flatten();
            let read = std::io::stdin().lock().read_line(&mut line);
            if quiet.is_some() {
                eprintln!();
            }
            drop(quiet);
            match read {
                Ok(0) | Err(_) => break sim::Step::Hangup,
                Ok(_) => {}
            }
            if line.trim().is_empty() {
                break sim::Step::Silence;
            }
            match sim::parse_script(&line) {
                Ok(steps) => self.queued.extend(steps),
                Err(e) => eprintln!("{e}"),
            }
        };
        match step {
            sim::Step::Keys(k) => sim::Move::Keys(k),
            sim::Step::Silence => sim::Move::Silence,
            sim::Step::Hangup => sim::Move::Hangup,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sim_cmd(
    flow: &Path,
    number: Option<String>,
    caller: String,
    lang: Option<String>,
    keys: Option<String>,
    json: bool,
    stubs: Option<PathBuf>,
    stub_args: Vec<String>,
    at: Option<String>,
    backend: Option<(PathBuf, PathBuf)>,
    config: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let config = config.or_else(|| {
        let beside = flow.parent().unwrap_or(Path::new(".")).join("ivr.toml");
        beside.is_file().then_some(beside)
    });
    let http: Option<Arc<dyn ivr_services::Backend>> = match &config {
        Some(path) => {
            let cfg = read_config(path)?;
            Some(Arc::new(ivr_services::Http::new(cfg.services)))
        }
        None => None,
    };
    let program = match load_program(flow)? {
        Ok(p) => Arc::new(p),
        Err(code) => return Ok(code),
    };
    let stub_file = stubs.or_else(|| {
        let beside = flow.parent().unwrap_or(Path::new(".")).join("sim-stubs.toml");
        beside.is_file().then_some(beside)
    });
    let stub_set = match &stub_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read `{}`: {e}", f.display()))?;
            sim::Stubs::from_toml(&text).map_err(|e| format!("`{}`: {e}", f.display()))?
        }
        None => sim::Stubs::default(),
    };
    let mut overrides = sim::Stubs::default();
    for a in &stub_args {
        overrides.add_arg(a).map_err(|e| format!("--stub {a}: {e}"))?;
    }
    // The embedded services keep a database beside the flow: opened only for
    // a flow that asks one of them (or records a message), never left behind otherwise.
    let embedded_needed = program.ops.iter().any(|o| match &o.kind {
        ivr_bytecode::OpKind::Request { service, .. } => ivr_services::EMBEDDED_SERVICES.contains(&service.as_str()),
        ivr_bytecode::OpKind::Record { .. } => true,
        _ => false,
    });
    let backend: Option<Arc<dyn ivr_services::Backend>> = match backend.filter(|_| embedded_needed) {
        Some((data, quotes)) => Some(Arc::new(
            ivr_services::Embedded::open(&data, &quotes).map_err(|e| format!("embedded services ({}): {e}", data.display()))?,
        )),
        None => None,
    };
    let wall_clock_ms = match at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|e| format!("--at {t}: {e}"))?
            .as_millisecond(),
        None => jiff::Timestamp::now().as_millisecond(),
    };
    let number = match number {
        Some(n) => n,
        None => program.entries.first().map(|e| e.number.clone()).ok_or("the program has no entry")?,
    };
    let cfg = sim::SimConfig {
        number,
        caller,
        language: lang,
        wall_clock_ms,
        overrides,
        http,
        backend,
        stubs: stub_set,
        call_id: format!("sim-{wall_clock_ms}"),
        max_silences: 20,
        unanswered: sim::Unanswered::Default,
        probes_from: None,
    };
    let mut scripted;
    let mut terminal;
    let caller: &mut dyn sim::Caller = match keys {
        Some(k) => {
            scripted = sim::parse_script(&k).map_err(|e| format!("--keys: {e}"))?.into_iter().collect::<VecDeque<_>>();
            &mut scripted
        }
        None => {
            terminal = Terminal { interactive: std::io::stdin().is_terminal(), queued: VecDeque::new() };
            &mut terminal
        }
    };
    let stdout = std::io::stdout();
    let mut emit = |r: &sim::Record| {
        let mut lock = stdout.lock();
        let _ = writeln!(lock, "{}", if json { r.to_json() } else { r.to_human() });
    };
    match sim::run(program, &cfg, caller, &mut emit)? {
        sim::Ended::Normally => Ok(ExitCode::SUCCESS),
        // A scripted call in CI fails on a fault (a loop the guard stopped, a runtime error).
        sim::Ended::Fault(message) => {
            eprintln!("the call ended in a fault: {message}");
            Ok(ExitCode::from(3))
        }
    }
}
