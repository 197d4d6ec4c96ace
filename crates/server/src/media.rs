//! The media plane of `ivr serve`: each call's RTP socket, its outgoing
//! [`Stream`] driven by one shared 20 ms clock on a thread of its own (so
//! signalling bursts on the main loop never delay the callers' audio), the
//! receive task that turns the caller's RFC 4733 packets (and tones) into
//! keys, and the relays of bridged calls. It does what the call core's
//! [`Media`] commands say and reports back; it decides nothing.
//!
//! A call has an RTP port of its own, or shares one with many calls
//! (`rtp_shared_port`): then one task reads the port 64 datagrams at a time
//! and hands each to the call whose negotiated media address sent it (the
//! core sees to it that no two calls there have the same), and the clock
//! sends a tick's packets for all of them 64 per system call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use ivr_call::{CallKey, Media, PlayId, RelaySpec, StreamSpec};
use ivr_media::relay::Rewriter;
use ivr_media::rtp;
use ivr_media::receive::{Received, Receiver, Wants};
use ivr_media::source::{source_key, LatchPolicy, SourceGuard, Verdict};
use ivr_media::stream::{Queued, Stream};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use crate::mmsg::{RecvBatch, SendBatch};
use crate::Internal;

/// One call's (or agent leg's) media.
struct Endpoint {
    rtp: Arc<UdpSocket>,
    /// The caller's outgoing audio (agent legs have none: they only relay).
    stream: Option<Stream>,
    confirmed: bool,
    receiver: Option<tokio::task::JoinHandle<()>>,
    /// Tells the receive task to forward the caller's audio.
    capture: Arc<std::sync::atomic::AtomicBool>,
    /// Set while bridged: what this side receives goes to the other.
    relay: RelaySlot,
    /// A re-INVITE's new media, for the receive task.
    moved: MovedSlot,
    spec: StreamSpec,
    /// When the caller's last accepted packet came (ms on the plane's clock).
    last_rx: Arc<std::sync::atomic::AtomicU64>,
    /// When the call was acknowledged, and whether it was already reported silent.
    confirmed_at: u64,
    reported_silent: bool,
    /// On a shared port (`rtp` is the shared socket; the receive state is
    /// the plane's, see [`OnShared`]): its packets are sent in batches.
    shared: bool,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(r) = self.receiver.take() {
            r.abort();
        }
    }
}

/// The RTP port many calls share, on one local address.
struct SharedPort {
    socket: Arc<UdpSocket>,
    calls: Demux,
}

/// The calls on a shared port, by the address their packets come from.
type Demux = Arc<std::sync::Mutex<HashMap<SocketAddr, CallRx>>>;

/// The receive buffer asked for a shared port: ~60 ms of 2,500 calls'
/// packets, so a moment when the receive thread waits for a core drops none.
const SHARED_RECEIVE_BUFFER: usize = 8 << 20;

/// Whether a port shared by many calls can get the receive buffer it
/// needs here (CAP_NET_ADMIN, or net.core.rmem_max raised): with the
/// default (~200 KiB) it holds ~2 ms of 2,500 calls' packets, and a moment
/// the receive thread waits for a core would drop callers' packets and
/// keys. Without it every call gets a port of its own (each with a buffer),
/// and the server says so.
pub fn shared_port_can_hold(local: Option<SocketAddr>) -> bool {
    let ip = local.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |l| l.ip());
    let granted = std::net::UdpSocket::bind((ip, 0)).map(|s| crate::mmsg::deep_buffers(s.as_raw_fd(), SHARED_RECEIVE_BUFFER)).unwrap_or(0);
    if granted < SHARED_RECEIVE_BUFFER / 2 {
        warn!(granted_kib = granted / 1024, wanted_kib = SHARED_RECEIVE_BUFFER / 1024, "no RTP port shared by calls: its receive buffer cannot be made deep enough here, so each call gets a port of its own; raise net.core.rmem_max to 16777216 (or give the server CAP_NET_ADMIN) to share one");
        return false;
    }
    true
}

/// One call's place on a shared port, kept by the plane on the main
/// thread: the demultiplexer changes (a call in, a move, a call out) in the
/// order the core made them, so an address the core freed and gave to
/// another call is never taken back by a change still on its way.
struct OnShared {
    calls: Demux,
    call: CallKey,
    /// The caller's media address (as [`source_key`]): its packets are the ones from here.
    remote: SocketAddr,
}

impl OnShared {
    /// The call joins the port; `None` if another call there has its
    /// address (the core prevents that; the call then takes a port of its own).
    fn join(calls: &Demux, call: CallKey, remote: SocketAddr, rx: CallRx) -> Option<OnShared> {
        let remote = source_key(remote);
        let mut map = locked(&calls);
        if map.get(&remote).is_some_and(|other| other.call != call) {
            warn!(call = call.0, %remote, "another call on the shared RTP port has this media address");
            return None;
        }
        map.insert(remote, rx);
        Some(OnShared { calls: calls.clone(), call, remote })
    }

    fn leave(&self) {
        let mut calls = locked(&self.calls);
        if calls.get(&self.remote).is_some_and(|rx| rx.call == self.call) {
            calls.remove(&self.remote);
        }
    }

    /// The caller's media moved (a re-INVITE the core accepted): its
    /// packets come from the new address now. A hold to no address
    /// (`c=0.0.0.0`) keeps its place, as the core does.
    fn moved(&mut self, to: StreamSpec) {
        let key = source_key(to.remote);
        let mut calls = locked(&self.calls);
        if !calls.get(&self.remote).is_some_and(|rx| rx.call == self.call) {
            return;
        }
        if key == self.remote || key.ip().is_unspecified() {
            if let Some(rx) = calls.get_mut(&self.remote) {
                rx.renegotiate(to);
            }
            return;
        }
        if calls.contains_key(&key) {
            // The core refuses such a move, so this cannot happen; if it did,
            // the call stays where it is rather than take another's packets.
            warn!(call = self.call.0, remote = %key, "another call on the shared RTP port has this address; the move is not taken");
            return;
        }
        if let Some(mut rx) = calls.remove(&self.remote) {
            rx.renegotiate(to);
            calls.insert(key, rx);
        }
        self.remote = key;
    }
}

/// The clock's frame: every stream is ticked once in it.
const FRAME: std::time::Duration = std::time::Duration::from_millis(20);
/// How far behind the clock catches up instead of skipping frames: one
/// frame. (Catching up three was measured worse: on a saturated machine the
/// catching up took the cores the callers' packets needed, and the clock
/// fell further behind — docs/PERFORMANCE.md.)
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(20);
/// The frame's slots (5 ms each): each call's stream is ticked in one of
/// them, so the clock's sends are spread over the frame, and commands (a
/// key's prompt) wait at most for one slot's work, not a whole frame's.
/// Finer slots were tried: 20 of 1 ms left each slot too little work to
/// split over two threads, and one thread could not keep up with 2,500 calls
/// (docs/PERFORMANCE.md).
const SLOTS: usize = 4;

/// Every call's media state, owned by the clock thread; the main loop sends
/// it commands ([`Cmd`]) and never waits for it. Calls are kept by the slot
/// they are ticked in.
struct Calls {
    slots: Vec<HashMap<CallKey, Endpoint>>,
    slot_of: HashMap<CallKey, usize>,
    /// The slot ticked last.
    current: usize,
    /// When each slot was last ticked.
    ran_at: Vec<std::time::Instant>,
    /// Plays that finished as they were queued (reported after the slot's).
    played_early: Vec<(CallKey, PlayId)>,
    /// The clock's send batches (one for each thread of a slot's work), allocated once.
    batches: [SendBatch; 2],
}

impl Calls {
    fn new() -> Calls {
        Calls { slots: (0..SLOTS).map(|_| HashMap::new()).collect(), slot_of: HashMap::new(), current: 0, ran_at: vec![std::time::Instant::now(); SLOTS], played_early: Vec::new(), batches: Default::default() }
    }

    fn get(&self, call: &CallKey) -> Option<&Endpoint> {
        self.slots.get(*self.slot_of.get(call)?)?.get(call)
    }

    fn get_mut(&mut self, call: &CallKey) -> Option<&mut Endpoint> {
        self.slots.get_mut(*self.slot_of.get(call)?)?.get_mut(call)
    }

    /// A new call, in the slot its key falls in (calls spread evenly).
    fn insert(&mut self, call: CallKey, e: Endpoint) {
        self.remove(&call);
        let slot = (call.0 % SLOTS as u64) as usize;
        self.slots[slot].insert(call, e);
        self.slot_of.insert(call, slot);
    }

    fn remove(&mut self, call: &CallKey) -> Option<Endpoint> {
        let slot = self.slot_of.remove(call)?;
        self.slots.get_mut(slot)?.remove(call)
    }

    /// `call` sent a frame just now (a prompt started at once): from now on
    /// it is ticked in the slot ticked last, its next frame 20 ms from now.
    fn rephase(&mut self, call: CallKey) {
        let to = self.current;
        let Some(from) = self.slot_of.get_mut(&call) else { return };
        if *from != to {
            if let Some(e) = self.slots[*from].remove(&call) {
                self.slots[to].insert(call, e);
            }
            *from = to;
        }
    }

    /// How long before `call`'s next tick it is now (ms, 0–20).
    fn early_ms(&self, call: &CallKey) -> u32 {
        let since = self.slot_of.get(call).map_or(FRAME, |s| self.ran_at[*s].elapsed());
        FRAME.saturating_sub(since).as_millis() as u32
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&CallKey, &mut Endpoint)> {
        self.slots.iter_mut().flat_map(|s| s.iter_mut())
    }
}

/// What the media clock did, for the core: reported after each slot that
/// finished a play, and at the end of every frame with the clock's load.
pub struct Ticked {
    pub played: Vec<(CallKey, PlayId)>,
    /// At the end of a frame: how late its latest slot started after it was
    /// due, and how long the frame's work took in all (ms).
    pub load: Option<(f64, f64)>,
    /// Calls whose caller has been silent for the RTP timeout (checked once a second).
    pub silent: Vec<CallKey>,
}

/// A change to the media state, carried out on the clock thread.
type Cmd = Box<dyn FnOnce(&mut Calls) + Send>;

/// Every call's media.
pub struct Plane {
    cmds: std::sync::mpsc::Sender<Cmd>,
    /// Taken by the clock thread when it starts.
    cmd_rx: Option<std::sync::mpsc::Receiver<Cmd>>,
    tx: UnboundedSender<Internal>,
    /// The plane's clock (receive tasks stamp packets on it).
    started: std::time::Instant,
    /// The runtime the RTP sockets and receive tasks live on: a thread of its
    /// own, so 50 packets a second from every caller never queue ahead of
    /// the signalling (SIP, keys, the tick) on the main loop's thread.
    receive: tokio::runtime::Handle,
    /// Shared RTP ports, by local address (opened when a call first needs one).
    shared: HashMap<SocketAddr, SharedPort>,
    /// Shared ports that could not be opened, and when (tried again after a while).
    shared_failed: HashMap<SocketAddr, std::time::Instant>,
    /// The calls on shared ports (see [`OnShared`]).
    on_shared: HashMap<CallKey, OnShared>,
}



/// Calls in one slot at which its work is split over two threads.
const PARALLEL_TICK_CALLS: usize = 256;

impl Plane {
    pub fn new(tx: UnboundedSender<Internal>) -> Plane {
        // A runtime driven by a thread of its own for as long as the process lives.
        let receive = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
            Ok(rt) => {
                let handle = rt.handle().clone();
                let spawned = std::thread::Builder::new().name("rtp-receive".into()).spawn(move || rt.block_on(std::future::pending::<()>()));
                match spawned {
                    Ok(_) => handle,
                    Err(e) => {
                        warn!("no thread for RTP receive ({e}); receiving on the main loop's");
                        tokio::runtime::Handle::current()
                    }
                }
            }
            Err(e) => {
                warn!("no runtime for RTP receive ({e}); receiving on the main loop's");
                tokio::runtime::Handle::current()
            }
        };
        let (cmds, cmd_rx) = std::sync::mpsc::channel();
        Plane { cmds, cmd_rx: Some(cmd_rx), tx, started: std::time::Instant::now(), receive, shared: HashMap::new(), shared_failed: HashMap::new(), on_shared: HashMap::new() }
    }

    /// Starts the media clock on a thread of its own: every 5 ms it
    /// sends the next 20 ms of the calls in that slot of the frame, and
    /// reports to the main loop ([`Ticked`]). It stops when the main loop
    /// is gone.
    pub fn start_clock(&mut self, rtp_timeout_ms: u64) -> std::io::Result<()> {
        let Some(cmds) = self.cmd_rx.take() else { return Ok(()) };
        let (tx, started) = (self.tx.clone(), self.started);
        let slot_len = FRAME / SLOTS as u32;
        std::thread::Builder::new().name("media-clock".into()).spawn(move || {
            let mut calls = Calls::new();
            let mut next = std::time::Instant::now() + slot_len;
            let (mut slot, mut frames, mut skipped) = (0usize, 0u64, 0u64);
            let (mut late_ms, mut work_ms) = (0f64, 0f64);
            loop {
                // Between slots, commands are carried out as they come: a
                // prompt queued on an idle call starts now, not at its tick.
                match cmds.recv_timeout(next.saturating_duration_since(std::time::Instant::now())) {
                    Ok(cmd) => {
                        cmd(&mut calls);
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                late_ms = late_ms.max(next.elapsed().as_secs_f64() * 1_000.0);
                let work = std::time::Instant::now();
                let mut played = tick(&mut calls.slots[slot], &mut calls.batches);
                played.append(&mut calls.played_early);
                calls.current = slot;
                calls.ran_at[slot] = work;
                slot += 1;
                next += slot_len;
                let end_of_frame = slot == SLOTS;
                let silent = if end_of_frame && rtp_timeout_ms > 0 && (frames + 1) % 50 == 0 { silent(&mut calls, started.elapsed().as_millis() as u64, rtp_timeout_ms) } else { Vec::new() };
                work_ms += work.elapsed().as_secs_f64() * 1_000.0;
                let load = end_of_frame.then_some((late_ms, work_ms));
                if (load.is_some() || !played.is_empty()) && tx.send(Internal::Ticked(Ticked { played, load, silent })).is_err() {
                    return;
                }
                if end_of_frame {
                    (slot, late_ms, work_ms) = (0, 0.0, 0.0);
                    frames += 1;
                    // Up to a frame behind (the machine stalled the thread),
                    // the slots catch up: late packets are played out by the
                    // callers' jitter buffers, missing ones are gaps. Further
                    // behind, whole frames are skipped.
                    let now = std::time::Instant::now();
                    if now > next + CATCH_UP {
                        let behind = ((now - next).as_nanos() / FRAME.as_nanos()) as u32;
                        next += FRAME * behind;
                        skipped += u64::from(behind);
                    }
                    if frames % 50 == 0 && skipped > 0 {
                        warn!(frames = skipped, "the media clock fell behind and skipped frames in the last second (the machine is overloaded): callers heard gaps");
                        skipped = 0;
                    }
                }
            }
        })?;
        Ok(())
    }

    /// Has the clock thread carry out `f` (in order with every other command).
    fn on(&self, f: impl FnOnce(&mut Calls) + Send + 'static) {
        let _ = self.cmds.send(Box::new(f));
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Carries out one command; `Open` answers whether the port could be
    /// bound (the caller feeds that to the core at once).
    pub fn perform(&mut self, m: Media) -> Option<(CallKey, bool)> {
        match m {
            Media::Open { call, local, stream, leg, shared } => {
                // Registered with the receive runtime's reactor; the tick sends on it from here.
                let rt = self.receive.clone();
                let entered = rt.enter();
                let opened = if shared { self.shared_port(local).map(|p| (p.socket.clone(), Some(p.calls.clone()))) } else { bind(local).map(|s| (s, None)) };
                drop(entered);
                let (rtp, demux) = match opened {
                    Ok(o) => o,
                    Err(e) => {
                        // A shared port that cannot be opened says so once (below), not per call.
                        if !shared {
                            warn!("cannot bind RTP port {local}: {e}");
                        }
                        return Some((call, false));
                    }
                };
                let capture = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let relay: RelaySlot = Arc::new(std::sync::Mutex::new(None));
                let moved: MovedSlot = Arc::new(std::sync::Mutex::new(None));
                let last_rx = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let (mut out, mut receiver) = (None, None);
                if !leg {
                    let rx = CallRx::new(call, stream, Shared { capture: capture.clone(), relay: relay.clone(), moved: moved.clone(), last_rx: last_rx.clone(), clock: self.started }, self.tx.clone());
                    match &demux {
                        Some(calls) => match OnShared::join(calls, call, stream.remote, rx) {
                            Some(o) => {
                                self.on_shared.insert(call, o);
                            }
                            None => return Some((call, false)),
                        },
                        None => receiver = Some(spawn_receiver(&self.receive, rtp.clone(), rx)),
                    }
                    out = Some(Stream::new(stream.codec, stream.remote, stream.send, stream.ptime_ms, stream.ssrc_seed));
                }
                let shared = demux.is_some();
                let e = Endpoint { rtp, stream: out, confirmed: false, receiver, capture, relay, moved, spec: stream, last_rx, confirmed_at: 0, reported_silent: false, shared };
                self.on(move |c| c.insert(call, e));
                return Some((call, true));
            }
            Media::Confirmed { call } => {
                let now = self.now_ms();
                self.with(call, move |e| {
                    e.confirmed = true;
                    e.confirmed_at = now;
                });
            }
            Media::Play { call, id, audio, .. } => self.on(move |c| {
                // Nothing playing: the first frame goes now, not at the next
                // tick, and the stream is ticked from now on.
                let early_ms = c.early_ms(&call);
                let Some(e) = c.get_mut(&call) else { return };
                let (rtp, confirmed) = (&e.rtp, e.confirmed);
                let Some(s) = e.stream.as_mut() else { return };
                if let Queued::Started { done } = s.queue_now(id.0, audio, confirmed, early_ms, |packet, to| {
                    let _ = rtp.try_send_to(packet, to);
                }) {
                    c.played_early.extend(done.map(|d| (call, PlayId(d))));
                    c.rephase(call);
                }
            }),
            Media::Stop { call } => self.stream(call, Stream::stop),
            Media::Hold { call, music } => self.stream(call, move |s| s.set_hold(music)),
            Media::Renegotiate { call, stream } => {
                if let Some(o) = self.on_shared.get_mut(&call) {
                    o.moved(stream);
                }
                self.with(call, move |e| {
                    if let Some(s) = e.stream.as_mut() {
                        s.renegotiate(stream.codec, stream.remote, stream.send, stream.ptime_ms);
                    }
                    e.spec = stream;
                    if !e.shared {
                        *locked(&e.moved) = Some(stream);
                    }
                });
            }
            Media::Capture { call, on } => self.with(call, move |e| e.capture.store(on, std::sync::atomic::Ordering::Relaxed)),
            Media::Bridge { caller, leg, to_leg, to_caller } => self.bridge(caller, leg, to_leg, to_caller),
            Media::Unbridge { caller, leg } => {
                self.with(leg, |e| set_relay(&e.relay, None));
                self.with(caller, |e| {
                    set_relay(&e.relay, None);
                    if let Some(s) = e.stream.as_mut() {
                        s.set_muted(false);
                    }
                });
            }
            Media::Retarget { call, to } => self.with(call, move |e| {
                if let Some(r) = locked(&e.relay).as_mut() {
                    r.retarget(to);
                }
            }),
            Media::Close { call } => {
                if let Some(o) = self.on_shared.remove(&call) {
                    o.leave();
                }
                self.on(move |c| {
                    // Dropped: its receive task is aborted.
                    c.remove(&call);
                });
            }
        }
        None
    }

    /// The shared RTP port on `local`, opened (with its receive task) the
    /// first time a call needs it. Call inside the receive runtime.
    fn shared_port(&mut self, local: SocketAddr) -> std::io::Result<&SharedPort> {
        if !self.shared.contains_key(&local) {
            // A port another process holds is not tried again for every call
            // (each would then try it and take a port of its own).
            if self.shared_failed.get(&local).is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(10)) {
                return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
            }
            let s = match std::net::UdpSocket::bind(local) {
                Ok(s) => s,
                Err(e) => {
                    warn!(%local, "cannot open the RTP port shared by calls ({e}): for 10 s calls take ports of their own, then it is tried again");
                    self.shared_failed.insert(local, std::time::Instant::now());
                    return Err(e);
                }
            };
            s.set_nonblocking(true)?;
            let granted = crate::mmsg::deep_buffers(s.as_raw_fd(), SHARED_RECEIVE_BUFFER);
            if granted < SHARED_RECEIVE_BUFFER / 2 {
                warn!(%local, granted_kib = granted / 1024, "the shared RTP port's receive buffer is small: at a busy moment callers' packets (and keys) are dropped; raise net.core.rmem_max to 16777216 or give the server CAP_NET_ADMIN");
            }
            let socket = Arc::new(UdpSocket::from_std(s)?);
            let calls: Demux = Arc::default();
            spawn_shared_receiver(&self.receive, socket.clone(), calls.clone());
            info!(%local, receive_buffer_kib = granted / 1024, "RTP port shared by calls");
            self.shared.insert(local, SharedPort { socket, calls });
        }
        self.shared.get(&local).ok_or_else(|| std::io::Error::other("shared port"))
    }

    fn with(&mut self, call: CallKey, f: impl FnOnce(&mut Endpoint) + Send + 'static) {
        self.on(move |c| {
            if let Some(e) = c.get_mut(&call) {
                f(e);
            }
        });
    }

    fn stream(&mut self, call: CallKey, f: impl FnOnce(&mut Stream) + Send + 'static) {
        self.on(move |c| {
            if let Some(s) = c.get_mut(&call).and_then(|e| e.stream.as_mut()) {
                f(s);
            }
        });
    }

    fn bridge(&mut self, caller: CallKey, leg: CallKey, to_leg: RelaySpec, to_caller: RelaySpec) {
        let rt = self.receive.clone();
        self.on(move |g| bridge(g, &rt, caller, leg, to_leg, to_caller));
    }
}

fn bridge(g: &mut Calls, rt: &tokio::runtime::Handle, caller: CallKey, leg: CallKey, to_leg: RelaySpec, to_caller: RelaySpec) {
    {
        let (Some(c), Some(l)) = (g.get(&caller), g.get(&leg)) else { return };
        let caller_remote = c.stream.as_ref().map_or(c.spec.remote, Stream::remote);
        let leg_remote = to_leg.to.unwrap_or(l.spec.remote);
        let relay_to_leg = Relay::new(l.rtp.clone(), leg_remote, to_leg.seed, to_leg.audio_pt, to_leg.dtmf);
        let relay_to_caller = Relay::new(c.rtp.clone(), to_caller.to.unwrap_or(caller_remote), to_caller.seed, to_caller.audio_pt, to_caller.dtmf);
        set_relay(&c.relay, Some(relay_to_leg));
        let Some(l) = g.get_mut(&leg) else { return };
        set_relay(&l.relay, Some(relay_to_caller));
        if l.receiver.is_none() {
            l.receiver = Some(spawn_leg_receiver(rt, l.rtp.clone(), leg_remote, to_leg.audio_pt, to_leg.dtmf.map(|d| d.1), l.relay.clone()));
        }
        if let Some(s) = g.get_mut(&caller).and_then(|e| e.stream.as_mut()) {
            s.stop();
            s.set_hold(None);
            s.set_muted(true);
        }
    }
}

impl Plane {
    /// The caller's RTP comes from elsewhere than negotiated (NAT): send there.
    pub fn latch(&mut self, call: CallKey, addr: SocketAddr) {
        info!(%addr, "RTP latched to the caller's source address");
        self.stream(call, move |s| s.latch(addr));
    }
}

/// Calls whose caller has sent no accepted RTP for `timeout_ms` since they
/// were acknowledged (each reported once): a caller who has gone, or an
/// offer that pointed our audio at someone else. Calls on hold both ways
/// (we do not send) are left alone.
fn silent(calls: &mut Calls, now: u64, timeout_ms: u64) -> Vec<CallKey> {
    let mut out = Vec::new();
    for (call, e) in calls.iter_mut() {
        if e.stream.is_none() || !e.confirmed || e.reported_silent || !e.spec.send {
            continue;
        }
        let last = e.last_rx.load(std::sync::atomic::Ordering::Relaxed).max(e.confirmed_at);
        if now.saturating_sub(last) > timeout_ms {
            e.reported_silent = true;
            out.push(*call);
        }
    }
    out.sort_unstable();
    out
}

/// Sends the next 20 ms of every call in a slot; returns the plays that finished.
fn tick(calls: &mut HashMap<CallKey, Endpoint>, batches: &mut [SendBatch; 2]) -> Vec<(CallKey, PlayId)> {
    let mut all: Vec<(&CallKey, &mut Endpoint)> = calls.iter_mut().filter(|(_, e)| e.stream.is_some()).collect();
    let [one, two] = batches;
    if all.len() >= PARALLEL_TICK_CALLS {
        // The tick's sends are the server's biggest cost: with many calls
        // they are split over two threads (sockets are shared, streams are
        // per call).
        let mid = all.len() / 2;
        let (a, b) = all.split_at_mut(mid);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| tick_some(a, one));
            let mut mine = tick_some(b, two);
            mine.extend(other.join().unwrap_or_default());
            mine
        })
    } else {
        tick_some(&mut all, one)
    }
}

/// Calls on a shared port send through `batch`: 64 packets per system call.
fn tick_some(calls: &mut [(&CallKey, &mut Endpoint)], batch: &mut SendBatch) -> Vec<(CallKey, PlayId)> {
    let mut played = Vec::new();
    for (key, e) in calls.iter_mut() {
        let rtp = &e.rtp;
        let shared = e.shared.then(|| rtp.as_raw_fd());
        let Some(stream) = e.stream.as_mut() else { continue };
        if let Some(done) = stream.tick(e.confirmed, |packet, to| {
            if !shared.is_some_and(|fd| batch.push(fd, packet, to)) {
                let _ = rtp.try_send_to(packet, to);
            }
        }) {
            played.push((**key, PlayId(done)));
        }
    }
    batch.flush();
    played
}

fn set_relay(slot: &RelaySlot, relay: Option<Relay>) {
    *locked(slot) = relay;
}

/// A lock whose holder panicked is taken as it is: one call's bug (caught
/// per packet) never leaves its relay, moves or the shared port unusable.
fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bind(local: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let s = std::net::UdpSocket::bind(local)?;
    s.set_nonblocking(true)?;
    Ok(Arc::new(UdpSocket::from_std(s)?))
}

/// Forwards one leg's RTP to the other leg of a bridged call: the payload as
/// it came (both legs use the same codec), under this side's own SSRC, with
/// continuous sequence numbers and timestamps, and the telephone-event payload
/// type the receiving side negotiated.
pub struct Relay {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    rewrite: Rewriter,
}

/// A receive task's relay, set while the call is bridged.
pub type RelaySlot = Arc<std::sync::Mutex<Option<Relay>>>;

impl Relay {
    /// `audio_pt`: the bridged codec's payload type; `dtmf`: (payload type
    /// coming in, payload type to send), when both sides have events.
    pub fn new(socket: Arc<UdpSocket>, to: SocketAddr, seed: u64, audio_pt: u8, dtmf: Option<(u8, u8)>) -> Relay {
        Relay { socket, to, rewrite: Rewriter::new(seed, audio_pt, dtmf) }
    }

    /// The other side's media moved (a re-INVITE).
    pub fn retarget(&mut self, to: SocketAddr) {
        self.to = to;
    }

    pub fn forward(&mut self, p: &rtp::RtpPacket) {
        if let Some(out) = self.rewrite.packet(p) {
            let _ = self.socket.try_send_to(out, self.to);
        }
    }
}

/// Receives an agent leg's RTP (only from the agent's media address and
/// port, strict) and relays it to the caller.
pub fn spawn_leg_receiver(rt: &tokio::runtime::Handle, socket: Arc<UdpSocket>, remote: SocketAddr, audio_pt: u8, dtmf_pt: Option<u8>, relay: RelaySlot) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        let mut buf = [0u8; 2048];
        let mut guard = SourceGuard::new(0, remote, audio_pt, dtmf_pt, LatchPolicy::Strict);
        let started = tokio::time::Instant::now();
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let Some(p) = rtp::parse(&buf[..n]) else { continue };
            if let Verdict::Dropped(_) = guard.accept(started.elapsed().as_millis() as u64, from, &p) {
                continue;
            }
            if let Some(r) = locked(&relay).as_mut() {
                r.forward(&p);
            }
        }
    })
}

/// A caller's media moved (re-INVITE): the receive task takes it from here.
pub type MovedSlot = Arc<std::sync::Mutex<Option<StreamSpec>>>;

/// What a caller's receive state shares with the plane.
pub struct Shared {
    /// Forward the caller's audio (recording).
    pub capture: Arc<std::sync::atomic::AtomicBool>,
    pub relay: RelaySlot,
    pub moved: MovedSlot,
    /// Stamped with the plane's clock at each accepted packet.
    pub last_rx: Arc<std::sync::atomic::AtomicU64>,
    pub clock: std::time::Instant,
}

/// What becomes of one caller's RTP: each packet goes through the call's
/// [`Receiver`] (the source guard, RFC 4733 and in-band keys, audio for a
/// recording, the relay while bridged). A third party's packets are dropped.
struct CallRx {
    call: CallKey,
    receiver: Receiver,
    shared: Shared,
    /// Packets accepted so far (the plane's `last_rx` moves when this does).
    accepted: u64,
    tx: UnboundedSender<Internal>,
}

impl CallRx {
    fn new(call: CallKey, stream: StreamSpec, shared: Shared, tx: UnboundedSender<Internal>) -> CallRx {
        // Latching (callers behind NAT): send to wherever the caller's RTP
        // comes from instead of accepting it only from the negotiated address.
        let policy = if stream.latch { LatchPolicy::Latch } else { LatchPolicy::Strict };
        let now = shared.clock.elapsed().as_millis() as u64;
        let receiver = Receiver::new(now, stream.remote, stream.codec, stream.dtmf_payload_type, policy, stream.inband_dtmf);
        CallRx { call, receiver, shared, accepted: 0, tx }
    }

    fn renegotiate(&mut self, m: StreamSpec) {
        let now = self.shared.clock.elapsed().as_millis() as u64;
        self.receiver.renegotiate(now, m.remote, m.codec, m.dtmf_payload_type);
    }

    /// Takes one datagram; false once the main loop is gone.
    fn packet(&mut self, from: SocketAddr, data: &[u8]) -> bool {
        let CallRx { call, receiver, shared, accepted, tx } = self;
        let now = shared.clock.elapsed().as_millis() as u64;
        let mut slot = locked(&shared.relay);
        let wants = Wants { relay: slot.is_some(), audio: shared.capture.load(std::sync::atomic::Ordering::Relaxed) };
        let mut open = true;
        receiver.packet(now, from, data, wants, |r| {
            let sent = match r {
                Received::Latched(addr) => tx.send(Internal::Latch(*call, addr)),
                Received::Key(key, source) => tx.send(Internal::Digit(*call, key, source)),
                Received::Audio(pcm) => tx.send(Internal::Audio(*call, pcm.to_vec())),
                Received::Relay(p) => {
                    if let Some(r) = slot.as_mut() {
                        r.forward(p);
                    }
                    Ok(())
                }
            };
            open &= sent.is_ok();
        });
        drop(slot);
        let stats = receiver.guard().stats();
        if stats.accepted_audio + stats.accepted_events != *accepted {
            *accepted = stats.accepted_audio + stats.accepted_events;
            shared.last_rx.store(now, std::sync::atomic::Ordering::Relaxed);
        }
        open
    }
}

/// Receives a caller's RTP on its own port.
fn spawn_receiver(rt: &tokio::runtime::Handle, socket: Arc<UdpSocket>, mut rx: CallRx) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let moved = locked(&rx.shared.moved).take();
            if let Some(m) = moved {
                rx.renegotiate(m);
            }
            if !rx.packet(from, &buf[..n]) {
                return;
            }
        }
    })
}

/// Receives a shared port's RTP, up to 64 datagrams per system call, each
/// handed to the call whose media address sent it; anyone else's are dropped.
fn spawn_shared_receiver(rt: &tokio::runtime::Handle, socket: Arc<UdpSocket>, calls: Demux) {
    rt.spawn(async move {
        let mut batch = RecvBatch::default();
        let fd = socket.as_raw_fd();
        let mut batches = 0u64;
        loop {
            if socket.readable().await.is_err() {
                return;
            }
            // Read until the socket is empty (that clears its readiness).
            loop {
                let n = match socket.try_io(tokio::io::Interest::READABLE, || batch.recv(fd)) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // Not expected on an unconnected UDP socket: say so, and
                        // do not spin on it.
                        warn!("reading the shared RTP port: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        break;
                    }
                };
                // Delivered under the lock; taken again for each batch.
                let gone = {
                    let mut calls = locked(&calls);
                    let mut gone = false;
                    for i in 0..n {
                        let Some((from, data)) = batch.get(i) else { continue };
                        let key = source_key(from);
                        let Some(rx) = calls.get_mut(&key) else { continue };
                        // A bug in one call's packet handling ends that call's
                        // reception (it is then ended as silent), never the port's.
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rx.packet(from, data))) {
                            Ok(true) => {}
                            Ok(false) => gone = true,
                            Err(_) => {
                                tracing::error!(call = rx.call.0, "receiving this call's RTP failed; it no longer receives");
                                calls.remove(&key);
                            }
                        }
                    }
                    gone
                };
                if gone {
                    // The main loop is gone.
                    return;
                }
                // A flood never keeps the other calls' tasks (own ports,
                // agents' legs) off this thread for long.
                batches += 1;
                if batches % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivr_media::sdp::Codec;

    fn spec(remote: &str) -> StreamSpec {
        StreamSpec { codec: Codec::Pcmu, remote: remote.parse().unwrap(), send: true, ptime_ms: 20, dtmf_payload_type: Some(101), inband_dtmf: false, latch: false, ssrc_seed: 1 }
    }

    fn demux(p: &Plane, local: SocketAddr) -> Vec<(SocketAddr, u64)> {
        let d = locked(&p.shared[&local].calls);
        let mut v: Vec<_> = d.iter().map(|(a, rx)| (*a, rx.call.0)).collect();
        v.sort();
        v
    }

    fn open(p: &mut Plane, call: u64, local: SocketAddr, remote: &str) -> Option<(CallKey, bool)> {
        p.perform(Media::Open { call: CallKey(call), local, stream: spec(remote), leg: false, shared: true })
    }

    /// The demultiplexer follows the core's changes in the core's order: a
    /// move, then a new call at the freed address (an SBC reusing a port at
    /// once), then the calls ending — whatever the clock thread is doing
    /// (it is not even started here).
    #[test]
    fn the_shared_ports_calls_follow_the_cores_changes_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _in_rt = rt.enter();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = Plane::new(tx);
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (x, y): (SocketAddr, SocketAddr) = ("127.0.0.1:4000".parse().unwrap(), "127.0.0.1:4002".parse().unwrap());
        assert_eq!(open(&mut p, 1, port, "127.0.0.1:4000"), Some((CallKey(1), true)));
        p.perform(Media::Renegotiate { call: CallKey(1), stream: spec("127.0.0.1:4002") });
        assert_eq!(open(&mut p, 2, port, "127.0.0.1:4000"), Some((CallKey(2), true)));
        assert_eq!(demux(&p, port), [(x, 2), (y, 1)]);
        // A hold to no address keeps the call's place.
        p.perform(Media::Renegotiate { call: CallKey(1), stream: spec("0.0.0.0:4002") });
        assert_eq!(demux(&p, port), [(x, 2), (y, 1)]);
        // A third call at an address another has is refused (the core then gives it a port of its own).
        assert_eq!(open(&mut p, 3, port, "127.0.0.1:4002"), Some((CallKey(3), false)));
        assert_eq!(demux(&p, port), [(x, 2), (y, 1)]);
        p.perform(Media::Close { call: CallKey(1) });
        assert_eq!(demux(&p, port), [(x, 2)]);
        p.perform(Media::Close { call: CallKey(2) });
        assert!(demux(&p, port).is_empty());
    }
}
