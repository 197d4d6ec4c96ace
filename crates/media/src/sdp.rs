//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and
//! telephone-event (RFC 4733), honouring ptime and direction (hold).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// What a remote offer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub address: IpAddr,
    pub port: u16,
    /// Offered payload types, in the offerer's order of preference.
    pub payload_types: Vec<u8>,
    pub rtpmap: Vec<(u8, String)>,
    pub ptime_ms: Option<u32>,
    pub direction: Direction,
}

/// The negotiated stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub remote: std::net::SocketAddr,
    pub codec: Codec,
    pub dtmf_payload_type: Option<u8>,
    pub ptime_ms: u32,
    /// Whether the remote wants to hear us (false when it put the call on hold).
    pub send: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio codec in common (we speak PCMU and PCMA)")]
    NoCommonCodec,
}

pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    let bad = |m: &str| SdpError::Malformed(m.to_string());
    let mut session_addr: Option<IpAddr> = None;
    let mut media_addr: Option<IpAddr> = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut rtpmap = Vec::new();
    let mut ptime = None;
    let mut direction = Direction::SendRecv;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else { continue };
        match kind {
            "c" => {
                let addr = value.split_whitespace().nth(2).ok_or_else(|| bad("c= line without an address"))?;
                let addr: IpAddr = addr.split('/').next().unwrap_or(addr).parse().map_err(|_| bad("c= address is not an IP address"))?;
                if audio.is_some() && in_audio {
                    media_addr = Some(addr);
                } else if audio.is_none() {
                    session_addr = Some(addr);
                }
            }
            "m" => {
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or("");
                in_audio = media == "audio" && audio.is_none();
                if in_audio {
                    let port: u16 = parts.next().and_then(|p| p.split('/').next()?.parse().ok()).ok_or_else(|| bad("m= line without a port"))?;
                    let _proto = parts.next().ok_or_else(|| bad("m= line without a protocol"))?;
                    let pts: Vec<u8> = parts.filter_map(|p| p.parse().ok()).collect();
                    audio = Some((port, pts));
                }
            }
            "a" if in_audio => {
                if let Some(rest) = value.strip_prefix("rtpmap:") {
                    if let Some((pt, enc)) = rest.split_once(' ') {
                        if let Ok(pt) = pt.parse() {
                            rtpmap.push((pt, enc.trim().to_string()));
                        }
                    }
                } else if let Some(p) = value.strip_prefix("ptime:") {
                    ptime = p.trim().parse().ok();
                } else {
                    direction = match value.trim() {
                        "sendonly" => Direction::SendOnly,
                        "recvonly" => Direction::RecvOnly,
                        "inactive" => Direction::Inactive,
                        "sendrecv" => Direction::SendRecv,
                        _ => direction,
                    };
                }
            }
            _ => {}
        }
    }
    let (port, payload_types) = audio.ok_or_else(|| bad("no audio stream (m=audio)"))?;
    let address = media_addr.or(session_addr).ok_or_else(|| bad("no connection address (c=)"))?;
    Ok(Offer { address, port, payload_types, rtpmap, ptime_ms: ptime, direction })
}

impl Offer {
    fn encoding(&self, pt: u8) -> Option<String> {
        self.rtpmap.iter().find(|(p, _)| *p == pt).map(|(_, e)| e.to_ascii_lowercase())
    }

    /// Picks the offerer's preferred codec we support, and telephone-event.
    pub fn negotiate(&self) -> Result<Negotiated, SdpError> {
        self.negotiate_keeping(None)
    }

    /// Like [`Offer::negotiate`], but keeps `current` when the offer still has
    /// it (a re-INVITE on a bridged call, whose audio is relayed as it is).
    pub fn negotiate_keeping(&self, current: Option<Codec>) -> Result<Negotiated, SdpError> {
        let offered: Vec<Codec> = self
            .payload_types
            .iter()
            .filter_map(|&pt| match (pt, self.encoding(pt).as_deref()) {
                (0, None) | (_, Some("pcmu/8000")) => Some(Codec::Pcmu),
                (8, None) | (_, Some("pcma/8000")) => Some(Codec::Pcma),
                _ => None,
            })
            .collect();
        let codec = current.filter(|c| offered.contains(c)).or(offered.first().copied()).ok_or(SdpError::NoCommonCodec)?;
        let dtmf = self
            .payload_types
            .iter()
            .copied()
            .find(|&pt| self.encoding(pt).is_some_and(|e| e.starts_with("telephone-event/8000")));
        let ptime_ms = self.ptime_ms.filter(|p| (10..=60).contains(p) && p % 10 == 0).unwrap_or(20);
        Ok(Negotiated {
            remote: std::net::SocketAddr::new(self.address, self.port),
            codec,
            dtmf_payload_type: dtmf,
            ptime_ms,
            send: matches!(self.direction, Direction::SendRecv | Direction::RecvOnly),
        })
    }
}

/// Our answer: one audio stream at `local`, the negotiated codec and events.
pub fn answer(n: &Negotiated, local: std::net::SocketAddr, session_id: u64, version: u64) -> String {
    let ip = match local.ip() {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let addr = local.ip();
    let pt = n.codec.payload_type();
    let mut s = format!(
        "v=0\r\no=ivr {session_id} {version} IN {ip} {addr}\r\ns=ivr\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}",
        local.port()
    );
    if let Some(d) = n.dtmf_payload_type {
        s.push_str(&format!(" {d}"));
    }
    s.push_str(&format!("\r\na=rtpmap:{pt} {}/8000\r\n", n.codec.name()));
    if let Some(d) = n.dtmf_payload_type {
        s.push_str(&format!("a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-15\r\n"));
    }
    s.push_str(&format!("a=ptime:{}\r\n{}\r\n", n.ptime_ms, if n.send { "a=sendrecv" } else { "a=recvonly" }));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

    #[test]
    fn negotiates_the_offerers_preference_and_events() {
        let n = parse_offer(OFFER).unwrap().negotiate().unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.dtmf_payload_type, Some(101));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        let a = answer(&n, "127.0.0.1:20000".parse().unwrap(), 1, 1);
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/8000"));
    }

    #[test]
    fn static_payload_types_need_no_rtpmap_and_ipv6_works() {
        let o = parse_offer("v=0\nc=IN IP6 ::1\nm=audio 7000 RTP/AVP 0\n").unwrap();
        let n = o.negotiate().unwrap();
        assert_eq!((n.codec, n.dtmf_payload_type, n.ptime_ms), (Codec::Pcmu, None, 20));
        assert_eq!(n.remote, "[::1]:7000".parse().unwrap());
        assert!(answer(&n, "[::1]:20000".parse().unwrap(), 1, 1).contains("c=IN IP6 ::1"));
    }

    #[test]
    fn no_common_codec_and_malformed_offers() {
        let g729 = "v=0\nc=IN IP4 127.0.0.1\nm=audio 7000 RTP/AVP 18\na=rtpmap:18 G729/8000\n";
        assert_eq!(parse_offer(g729).unwrap().negotiate(), Err(SdpError::NoCommonCodec));
        assert!(parse_offer("v=0\nm=audio 7000 RTP/AVP 0\n").is_err(), "no c=");
        assert!(parse_offer("v=0\nc=IN IP4 nonsense\nm=audio 1 RTP/AVP 0\n").is_err());
        assert!(parse_offer("garbage").is_err());
    }

    #[test]
    fn hold_is_seen() {
        let held = OFFER.replace("a=ptime:20\r\n", "a=ptime:20\r\na=sendonly\r\n");
        assert!(!parse_offer(&held).unwrap().negotiate().unwrap().send);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            if let Ok(o) = parse_offer(&s) { let _ = o.negotiate(); }
        }
    }
}
