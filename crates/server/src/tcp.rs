//! SIP over TCP: one task per connection frames messages by Content-Length and
//! hands them to the main loop; answers come back through the connection's
//! channel. What a stranger can hold is bounded: connections at once (in all
//! and per source address, with file descriptors kept in reserve so UDP calls
//! and their RTP still work when TCP is exhausted), an idle connection's life,
//! and the time a whole message may take from its first byte (a drip of one
//! byte at a time does not extend it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ivr_sip::endpoint::MAX_MESSAGE_BYTES;
use ivr_sip::framing::Framer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::Internal;

/// A connection with no complete message for this long is closed (keep-alive
/// CRLFs do not count as messages).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What SIP over TCP may hold.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections at once, in all (lowered to what the file-descriptor
    /// limit allows after the reserve).
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_source: usize,
    /// A message must be complete this long after its first byte.
    pub message_deadline_ms: u64,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits { max_connections: 1_024, max_per_source: 32, message_deadline_ms: 10_000 }
    }
}

/// File descriptors kept for UDP calls (an RTP socket each) and the process.
const FD_RESERVE: u64 = 256;

/// Raises the soft file-descriptor limit to the hard one (each call holds an
/// RTP socket, each TCP peer a connection); returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1_024;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        lim.rlim_cur as u64
    }
    #[cfg(not(unix))]
    {
        1_024
    }
}

/// The connections open, in all and by source.
#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One accepted connection's place, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.total = o.total.saturating_sub(1);
        if let Some(n) = o.by_source.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                o.by_source.remove(&self.ip);
            }
        }
    }
}

pub async fn accept(listener: TcpListener, local: SocketAddr, limits: TcpLimits, fd_limit: u64, tx: mpsc::UnboundedSender<Internal>) {
    let max_total = limits.max_connections.min(fd_limit.saturating_sub(FD_RESERVE) as usize);
    if max_total < limits.max_connections {
        warn!(fd_limit, max_total, "the file-descriptor limit allows fewer SIP/TCP connections than configured");
    }
    let open = Arc::new(Mutex::new(Open::default()));
    let mut warned = false;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ip = peer.ip();
                let admitted = {
                    let mut o = open.lock().unwrap_or_else(|p| p.into_inner());
                    let mine = o.by_source.get(&ip).copied().unwrap_or(0);
                    if o.total >= max_total || mine >= limits.max_per_source {
                        Err(o.total >= max_total)
                    } else {
                        o.total += 1;
                        *o.by_source.entry(ip).or_default() += 1;
                        Ok(())
                    }
                };
                match admitted {
                    Ok(()) => {
                        warned = false;
                        let slot = Slot { open: open.clone(), ip };
                        tokio::spawn(connection(stream, local, peer, limits, slot, tx.clone()));
                    }
                    Err(all) => {
                        // Closed at once: the stranger holds nothing.
                        if all && !warned {
                            warn!(max_total, "SIP/TCP connections exhausted; refusing new ones (UDP is unaffected)");
                            warned = true;
                        }
                        debug!(%peer, "SIP/TCP connection refused: over the limit");
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                debug!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, local: SocketAddr, peer: SocketAddr, limits: TcpLimits, _slot: Slot, tx: mpsc::UnboundedSender<Internal>) {
    let (mut read, mut write) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if tx.send(Internal::TcpOpen(peer, out_tx)).is_err() {
        return;
    }
    let started = tokio::time::Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut framer = Framer::new(MAX_MESSAGE_BYTES);
    let mut buf = vec![0u8; 8192];
    // Idle is counted from the last whole message: CRLF keep-alives alone do
    // not keep a connection (and its place under the caps) for ever.
    let mut last_message = tokio::time::Instant::now();
    loop {
        // Mid-message: the absolute deadline of this message; else the idle time.
        let deadline = match framer.deadline(limits.message_deadline_ms) {
            Some(at) => started + Duration::from_millis(at),
            None => last_message + IDLE_TIMEOUT,
        };
        tokio::select! {
            r = tokio::time::timeout_at(deadline, read.read(&mut buf)) => {
                let n = match r {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        info!(%peer, "closing an idle or stalled SIP/TCP connection");
                        break;
                    }
                };
                match framer.push_at(now_ms(), &buf[..n]) {
                    Ok(messages) => {
                        if !messages.is_empty() {
                            last_message = tokio::time::Instant::now();
                        }
                        for m in messages {
                            if tx.send(Internal::Sip(local, peer, m)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        info!(%peer, "closing a SIP/TCP connection: the stream cannot be framed");
                        if let ivr_sip::framing::FrameError::TooLarge(Some(head)) = e {
                            // The main loop answers 513 through this connection, then it closes.
                            let _ = tx.send(Internal::TooLarge(peer, head));
                            if let Ok(Some(data)) = tokio::time::timeout(Duration::from_secs(1), out_rx.recv()).await {
                                let _ = write.write_all(&data).await;
                            }
                        }
                        break;
                    }
                }
            }
            Some(data) = out_rx.recv() => {
                if write.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Internal::TcpClosed(peer));
}
