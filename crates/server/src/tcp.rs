//! SIP over TCP: one task per connection frames messages by Content-Length and
//! hands them to the main loop; answers come back through the connection's
//! channel. Idle connections, and connections stalled in the middle of a
//! message, are closed.

use std::net::SocketAddr;
use std::time::Duration;

use ivr_sip::endpoint::MAX_MESSAGE_BYTES;
use ivr_sip::framing::Framer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::Internal;

/// A connection with no complete message for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A message started but not finished within this long closes the connection.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn accept(listener: TcpListener, local: SocketAddr, tx: mpsc::UnboundedSender<Internal>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(stream, local, peer, tx.clone()));
            }
            Err(e) => {
                debug!("TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, local: SocketAddr, peer: SocketAddr, tx: mpsc::UnboundedSender<Internal>) {
    let (mut read, mut write) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    if tx.send(Internal::TcpOpen(peer, out_tx)).is_err() {
        return;
    }
    let mut framer = Framer::new(MAX_MESSAGE_BYTES);
    let mut buf = vec![0u8; 8192];
    loop {
        let timeout = if framer.is_mid_message() { PARTIAL_TIMEOUT } else { IDLE_TIMEOUT };
        tokio::select! {
            r = tokio::time::timeout(timeout, read.read(&mut buf)) => {
                let n = match r {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        info!(%peer, "closing an idle or stalled SIP/TCP connection");
                        break;
                    }
                };
                match framer.push(&buf[..n]) {
                    Ok(messages) => {
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
