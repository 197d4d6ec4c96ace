//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and
//! telephone-event (RFC 4733), honouring ptime and direction (hold).
//!
//! An offer may hold more than that one stream: video, a second audio stream,
//! an SRTP twin of the audio. We use the first audio stream we can (plain RTP,
//! not declined, a codec in common) and decline every other one, and the
//! answer ([`Offer::answer`]) has one m= line per offered m= line, in the same
//! order, as RFC 3264 section 6 requires; the declined ones have port 0.

use std::net::{IpAddr, SocketAddr};

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

impl Direction {
    /// The direction an answer gives to a stream offered as `self` (RFC 3264
    /// section 6.1): what the offerer sends, we receive, and the other way round.
    pub fn answered(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(attribute: &str) -> Option<Direction> {
        Some(match attribute {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// Without the offerer's receiving (its connection address is 0.0.0.0 or
    /// `::`, the RFC 2543 way of putting a call on hold: nothing can reach it).
    fn without_receiving(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

/// The transport (the `proto` field) of an m= line, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain RTP over UDP: `RTP/AVP`, or `RTP/AVPF` (its RTCP feedback is
    /// optional, the media the same).
    Rtp,
    /// SRTP (`RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVP(F)`), which we do not
    /// speak yet.
    Srtp,
    /// Anything else (RTP over TCP, non-RTP media).
    Other,
}

impl Transport {
    pub fn of(proto: &str) -> Transport {
        let p = proto.to_ascii_uppercase();
        if p == "RTP/AVP" || p == "RTP/AVPF" {
            Transport::Rtp
        } else if p.ends_with("/SAVP") || p.ends_with("/SAVPF") {
            Transport::Srtp
        } else {
            Transport::Other
        }
    }
}

/// One m= section of an offer, as offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// 0: the offerer declines (or removes) this stream.
    pub port: u16,
    pub proto: String,
    /// The format list as written (payload type numbers for RTP).
    pub formats: Vec<String>,
    /// Its own c= address, else the session's.
    pub address: Option<IpAddr>,
    /// The formats that are payload type numbers.
    pub payload_types: Vec<u8>,
    pub rtpmap: Vec<(u8, String)>,
    pub ptime_ms: Option<u32>,
    /// Its own direction attribute, else the session's, else sendrecv.
    pub direction: Direction,
}

impl MediaSection {
    pub fn transport(&self) -> Transport {
        Transport::of(&self.proto)
    }

    /// Declined by the offerer (port 0, RFC 3264 section 5.1): never negotiated.
    pub fn is_declined(&self) -> bool {
        self.port == 0
    }

    fn encoding(&self, pt: u8) -> Option<String> {
        self.rtpmap.iter().find(|(p, _)| *p == pt).map(|(_, e)| e.to_ascii_lowercase())
    }

    /// The codecs we speak among those offered, in the offerer's order.
    fn codecs(&self) -> Vec<Codec> {
        self.payload_types
            .iter()
            .filter_map(|&pt| match (pt, self.encoding(pt).as_deref()) {
                (0, None) | (_, Some("pcmu/8000")) => Some(Codec::Pcmu),
                (8, None) | (_, Some("pcma/8000")) => Some(Codec::Pcma),
                _ => None,
            })
            .collect()
    }
}

/// What a remote offer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    // The audio stream negotiation uses (or, when none can be used, the first
    // audio stream), copied from `media` for convenience.
    pub address: IpAddr,
    pub port: u16,
    /// Offered payload types, in the offerer's order of preference.
    pub payload_types: Vec<u8>,
    pub rtpmap: Vec<(u8, String)>,
    pub ptime_ms: Option<u32>,
    pub direction: Direction,
    /// Every m= section of the offer, in order: the answer has one for each.
    pub media: Vec<MediaSection>,
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

/// Why an offer cannot be used. Every one of them is answered 488 Not
/// Acceptable Here; they differ so that the reason can be logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio codec in common (we speak PCMU and PCMA)")]
    NoCommonCodec,
    /// Every audio stream of the offer has port 0.
    #[error("the offer declines its audio stream (port 0)")]
    AudioDeclined,
    /// The audio is offered only over SRTP, which we do not speak yet.
    #[error("audio offered only over SRTP (RTP/SAVP, RTP/SAVPF), which we do not support")]
    SecureOnly,
    /// The audio is offered only over a transport we do not speak.
    #[error("audio offered only over {0}, which we do not support (we speak RTP/AVP)")]
    UnsupportedTransport(String),
}

/// A section while it is read: direction and address may come from the session.
struct Section {
    media: MediaSection,
    address: Option<IpAddr>,
    direction: Option<Direction>,
}

/// An m= line's fields go back into our answer, so each must be a plain SDP
/// token (visible ASCII): nothing of the offer's bytes reaches our message
/// unchecked.
fn token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A format that can be an RTP payload type. The field is 7 bits, so a larger
/// number can never match a packet, and written into a header it would set
/// the marker bit; 72-76 are reserved (RFC 3551, RFC 5761) because RTCP sent
/// on the RTP port reads as RTP of those types, so a telephone-event there
/// would turn RTCP reports into key presses. Such formats are not offered
/// payload types at all.
fn rtp_payload_type(format: &str) -> Option<u8> {
    let pt: u8 = format.parse().ok()?;
    (pt <= 127 && !(72..=76).contains(&pt)).then_some(pt)
}

pub fn parse_offer(text: &str) -> Result<Offer, SdpError> {
    let bad = |m: &str| SdpError::Malformed(m.to_string());
    let mut session_addr: Option<IpAddr> = None;
    let mut session_direction: Option<Direction> = None;
    let mut sections: Vec<Section> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else { continue };
        match kind {
            "c" => {
                let addr = value.split_whitespace().nth(2).ok_or_else(|| bad("c= line without an address"))?;
                let addr: IpAddr = addr.split('/').next().unwrap_or(addr).parse().map_err(|_| bad("c= address is not an IP address"))?;
                match sections.last_mut() {
                    Some(s) => s.address = Some(addr),
                    None => session_addr = Some(addr),
                }
            }
            "m" => {
                let mut parts = value.split_whitespace();
                let media = parts.next().filter(|m| token(m)).ok_or_else(|| bad("m= line without a media type"))?;
                let port: u16 = parts.next().and_then(|p| p.split('/').next()?.parse().ok()).ok_or_else(|| bad("m= line without a port"))?;
                let proto = parts.next().filter(|p| token(p)).ok_or_else(|| bad("m= line without a protocol"))?;
                let formats: Vec<String> = parts.map(str::to_string).collect();
                if formats.is_empty() || !formats.iter().all(|f| token(f)) {
                    return Err(bad("m= line without a format"));
                }
                let payload_types = formats.iter().filter_map(|p| rtp_payload_type(p)).collect();
                sections.push(Section {
                    media: MediaSection {
                        media: media.to_string(),
                        port,
                        proto: proto.to_string(),
                        formats,
                        address: None,
                        payload_types,
                        rtpmap: Vec::new(),
                        ptime_ms: None,
                        direction: Direction::SendRecv,
                    },
                    address: None,
                    direction: None,
                });
            }
            "a" => {
                let Some(s) = sections.last_mut() else {
                    // Session level: a direction is every stream's default (RFC 4566 section 6).
                    session_direction = Direction::parse(value.trim()).or(session_direction);
                    continue;
                };
                if let Some(rest) = value.strip_prefix("rtpmap:") {
                    if let Some((pt, enc)) = rest.split_once(' ') {
                        if let Some(pt) = rtp_payload_type(pt) {
                            s.media.rtpmap.push((pt, enc.trim().to_string()));
                        }
                    }
                } else if let Some(p) = value.strip_prefix("ptime:") {
                    s.media.ptime_ms = p.trim().parse().ok();
                } else if let Some(d) = Direction::parse(value.trim()) {
                    s.direction = Some(d);
                }
            }
            _ => {}
        }
    }
    let media: Vec<MediaSection> = sections
        .into_iter()
        .map(|s| MediaSection {
            address: s.address.or(session_addr),
            direction: s.direction.or(session_direction).unwrap_or(Direction::SendRecv),
            ..s.media
        })
        .collect();
    let audio = select(&media).ok().or_else(|| media.iter().position(|m| m.media == "audio")).ok_or_else(|| bad("no audio stream (m=audio)"))?;
    let a = &media[audio];
    let address = a.address.ok_or_else(|| bad("no connection address (c=)"))?;
    Ok(Offer {
        address,
        port: a.port,
        payload_types: a.payload_types.clone(),
        rtpmap: a.rtpmap.clone(),
        ptime_ms: a.ptime_ms,
        direction: a.direction,
        media,
    })
}

/// The audio stream to use: the first that is not declined, is plain RTP and
/// has a codec we speak (an offer with both an RTP/AVP and an RTP/SAVP audio
/// stream gets the RTP/AVP one). When there is none, the error says why,
/// most fundamental reason first.
fn select(media: &[MediaSection]) -> Result<usize, SdpError> {
    let audio = || media.iter().enumerate().filter(|(_, m)| m.media == "audio");
    if audio().next().is_none() {
        return Err(SdpError::Malformed("no audio stream (m=audio)".to_string()));
    }
    let live = || audio().filter(|(_, m)| !m.is_declined());
    let Some((_, first_live)) = live().next() else {
        return Err(SdpError::AudioDeclined);
    };
    let mut rtp = live().filter(|(_, m)| m.transport() == Transport::Rtp).peekable();
    if rtp.peek().is_none() {
        return Err(if live().any(|(_, m)| m.transport() == Transport::Srtp) {
            SdpError::SecureOnly
        } else {
            SdpError::UnsupportedTransport(first_live.proto.clone())
        });
    }
    rtp.find(|(_, m)| !m.codecs().is_empty()).map(|(i, _)| i).ok_or(SdpError::NoCommonCodec)
}

impl Offer {
    /// Picks the offerer's preferred codec we support, and telephone-event.
    pub fn negotiate(&self) -> Result<Negotiated, SdpError> {
        self.negotiate_keeping(None)
    }

    /// Like [`Offer::negotiate`], but keeps `current` when the offer still has
    /// it (a re-INVITE on a bridged call, whose audio is relayed as it is).
    pub fn negotiate_keeping(&self, current: Option<Codec>) -> Result<Negotiated, SdpError> {
        let m = &self.media[select(&self.media)?];
        let address = m.address.ok_or_else(|| SdpError::Malformed("no connection address (c=)".to_string()))?;
        let offered = m.codecs();
        let codec = current.filter(|c| offered.contains(c)).or(offered.first().copied()).ok_or(SdpError::NoCommonCodec)?;
        // Never the codec's own payload type: its packets would be both.
        let dtmf = m
            .payload_types
            .iter()
            .copied()
            .filter(|&pt| pt != codec.payload_type())
            .find(|&pt| m.encoding(pt).is_some_and(|e| e.starts_with("telephone-event/8000")));
        let ptime_ms = m.ptime_ms.filter(|p| (10..=60).contains(p) && p % 10 == 0).unwrap_or(20);
        Ok(Negotiated {
            remote: SocketAddr::new(address, m.port),
            codec,
            dtmf_payload_type: dtmf,
            ptime_ms,
            send: matches!(self.offered_direction(m), Direction::SendRecv | Direction::RecvOnly),
        })
    }

    /// What the offerer does on `m`: its direction attribute, less receiving
    /// when its address is unspecified.
    fn offered_direction(&self, m: &MediaSection) -> Direction {
        match m.address {
            Some(a) if a.is_unspecified() => m.direction.without_receiving(),
            _ => m.direction,
        }
    }

    /// Our answer to this offer, for `n` (negotiated from it) with our media
    /// at `local`: one m= line for each of the offer's, in its order (RFC
    /// 3264 section 6). The audio stream negotiation chose carries `n`'s codec
    /// and events and the direction that answers the offered one; every other
    /// stream is declined with port 0, its formats echoed. An offer that cannot
    /// be negotiated gets every stream declined.
    pub fn answer(&self, n: &Negotiated, local: SocketAddr, session_id: u64, version: u64) -> String {
        let (ip, addr) = (ip_kind(local.ip()), local.ip());
        let mut s = format!("v=0\r\no=ivr {session_id} {version} IN {ip} {addr}\r\ns=ivr\r\nc=IN {ip} {addr}\r\nt=0 0\r\n");
        let chosen = select(&self.media).ok();
        for (i, m) in self.media.iter().enumerate() {
            if Some(i) == chosen {
                let pt = n.codec.payload_type();
                s.push_str(&format!("m=audio {} {} {pt}", local.port(), m.proto));
                audio_attributes(&mut s, n, self.offered_direction(m).answered());
            } else {
                s.push_str(&format!("m={} 0 {} {}\r\n", m.media, m.proto, m.formats.join(" ")));
            }
        }
        s
    }
}

fn ip_kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// The rest of our audio m= line (events) and its attributes.
fn audio_attributes(s: &mut String, n: &Negotiated, direction: Direction) {
    let pt = n.codec.payload_type();
    if let Some(d) = n.dtmf_payload_type {
        s.push_str(&format!(" {d}"));
    }
    s.push_str(&format!("\r\na=rtpmap:{pt} {}/8000\r\n", n.codec.name()));
    if let Some(d) = n.dtmf_payload_type {
        s.push_str(&format!("a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-15\r\n"));
    }
    s.push_str(&format!("a=ptime:{}\r\na={}\r\n", n.ptime_ms, direction.attribute()));
}

/// A session description with one audio stream at `local`, the negotiated
/// codec and events: our offer to an agent, or an answer to a single-stream
/// offer. To answer an offer, [`Offer::answer`] is the one to use: it keeps
/// the offer's m= lines.
pub fn answer(n: &Negotiated, local: std::net::SocketAddr, session_id: u64, version: u64) -> String {
    let (ip, addr) = (ip_kind(local.ip()), local.ip());
    let pt = n.codec.payload_type();
    let mut s = format!(
        "v=0\r\no=ivr {session_id} {version} IN {ip} {addr}\r\ns=ivr\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}",
        local.port()
    );
    audio_attributes(&mut s, n, if n.send { Direction::SendRecv } else { Direction::RecvOnly });
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
        assert_eq!(answer_to(&format!("{HEAD}m=video 7000 RTP/AVP 31\r\n")), Err(SdpError::Malformed("no audio stream (m=audio)".into())));
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

    fn m_lines(sdp: &str) -> Vec<&str> {
        sdp.split("\r\n").filter(|l| l.starts_with("m=")).collect()
    }

    const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";

    fn local() -> SocketAddr {
        "192.0.2.200:20000".parse().unwrap()
    }

    /// The answer to `offer`, or the negotiation error.
    fn answer_to(offer: &str) -> Result<String, SdpError> {
        let o = parse_offer(offer)?;
        let n = o.negotiate()?;
        Ok(o.answer(&n, local(), 7, 1))
    }

    #[test]
    fn a_declined_audio_stream_is_never_negotiated() {
        let declined = format!("{HEAD}m=audio 0 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
        assert_eq!(parse_offer(&declined).unwrap().negotiate(), Err(SdpError::AudioDeclined));
        // A declined first stream and a live second one: the live one, and the
        // answer declines the first in its place.
        let two = format!("{HEAD}m=audio 0 RTP/AVP 8\r\nm=audio 6000 RTP/AVP 0\r\n");
        let o = parse_offer(&two).unwrap();
        let n = o.negotiate().unwrap();
        assert_eq!((n.remote.port(), n.codec), (6000, Codec::Pcmu));
        assert_eq!(o.port, 6000, "the offer's audio fields describe the stream used");
        assert_eq!(m_lines(&o.answer(&n, local(), 7, 1)), ["m=audio 0 RTP/AVP 8", "m=audio 20000 RTP/AVP 0"]);
    }

    #[test]
    fn the_answer_has_an_m_line_for_each_offered_one_in_order() {
        let offer = format!(
            "{HEAD}m=video 7000 RTP/AVP 31 34\r\na=rtpmap:31 H261/90000\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\nm=audio 6002 RTP/AVP 8\r\nm=application 9 UDP/BFCP *\r\n"
        );
        let a = answer_to(&offer).unwrap();
        assert_eq!(m_lines(&a), ["m=video 0 RTP/AVP 31 34", "m=audio 20000 RTP/AVP 0 101", "m=audio 0 RTP/AVP 8", "m=application 0 UDP/BFCP *"]);
        // Our audio attributes follow our audio m= line, not a declined one.
        let ours = a.split("m=").nth(2).unwrap();
        assert!(ours.contains("a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"), "{a}");
        assert!(a.ends_with("m=application 0 UDP/BFCP *\r\n"), "{a}");
        // The answer is itself SDP we can read, with the same streams.
        let back = parse_offer(&a).unwrap();
        assert_eq!(back.media.iter().map(|m| (m.media.as_str(), m.port)).collect::<Vec<_>>(), [("video", 0), ("audio", 20000), ("audio", 0), ("application", 0)]);
        // A single-stream offer is answered with a single stream, as before.
        let one = answer_to(OFFER).unwrap();
        let n = parse_offer(OFFER).unwrap().negotiate().unwrap();
        assert_eq!(one, answer(&n, local(), 7, 1), "the old answer() and Offer::answer agree on one stream");
    }

    #[test]
    fn srtp_only_audio_is_refused_distinctly_and_plain_rtp_is_preferred() {
        for proto in ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF"] {
            let srtp = format!("{HEAD}m=audio 6000 {proto} 0 101\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n");
            assert_eq!(answer_to(&srtp), Err(SdpError::SecureOnly), "{proto}");
        }
        // Best-effort SRTP: the same audio offered twice, secure and plain, in either order.
        let savp_first = format!("{HEAD}m=audio 6000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\nm=audio 6002 RTP/AVP 0\r\n");
        let a = answer_to(&savp_first).unwrap();
        assert_eq!(m_lines(&a), ["m=audio 0 RTP/SAVP 0", "m=audio 20000 RTP/AVP 0"]);
        assert_eq!(parse_offer(&savp_first).unwrap().negotiate().unwrap().remote.port(), 6002);
        let avp_first = format!("{HEAD}m=audio 6002 RTP/AVP 0\r\nm=audio 6000 RTP/SAVP 0\r\n");
        assert_eq!(m_lines(&answer_to(&avp_first).unwrap()), ["m=audio 20000 RTP/AVP 0", "m=audio 0 RTP/SAVP 0"]);
        // A declined plain stream does not make a secure one usable.
        let declined_plain = format!("{HEAD}m=audio 0 RTP/AVP 0\r\nm=audio 6000 RTP/SAVP 0\r\n");
        assert_eq!(answer_to(&declined_plain), Err(SdpError::SecureOnly));
        // Plain RTP with nothing in common is a codec problem, not an SRTP one.
        let g729 = format!("{HEAD}m=audio 6000 RTP/SAVP 0\r\nm=audio 6002 RTP/AVP 18\r\n");
        assert_eq!(answer_to(&g729), Err(SdpError::NoCommonCodec));
        // RTP over TCP we cannot do either.
        let tcp = format!("{HEAD}m=audio 6000 TCP/RTP/AVP 0\r\n");
        assert_eq!(answer_to(&tcp), Err(SdpError::UnsupportedTransport("TCP/RTP/AVP".into())));
        // RTP/AVPF is RTP: answered in kind.
        let avpf = format!("{HEAD}m=audio 6000 RTP/AVPF 8\r\n");
        assert_eq!(m_lines(&answer_to(&avpf).unwrap()), ["m=audio 20000 RTP/AVPF 8"]);
    }

    #[test]
    fn a_stream_with_a_common_codec_is_preferred_to_an_earlier_one_without() {
        let offer = format!("{HEAD}m=audio 6000 RTP/AVP 18\r\nm=audio 6002 RTP/AVP 8\r\n");
        assert_eq!(m_lines(&answer_to(&offer).unwrap()), ["m=audio 0 RTP/AVP 18", "m=audio 20000 RTP/AVP 8"]);
    }

    #[test]
    fn each_stream_has_its_own_connection_address() {
        // The video's c= is the video's: the audio has the session's.
        let offer = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 7000 RTP/AVP 31\r\nc=IN IP4 192.0.2.99\r\nm=audio 6000 RTP/AVP 0\r\n";
        assert_eq!(parse_offer(offer).unwrap().negotiate().unwrap().remote, "192.0.2.1:6000".parse().unwrap());
        let offer = "v=0\r\nm=video 7000 RTP/AVP 31\r\nc=IN IP4 192.0.2.99\r\nm=audio 6000 RTP/AVP 0\r\n";
        assert!(parse_offer(offer).is_err(), "the audio has no address at all");
    }

    #[test]
    fn directions_are_answered_in_kind_and_may_come_from_the_session() {
        for (offered, send, answered) in [("sendrecv", true, "sendrecv"), ("sendonly", false, "recvonly"), ("recvonly", true, "sendonly"), ("inactive", false, "inactive")] {
            let media_level = format!("{HEAD}m=audio 6000 RTP/AVP 0\r\na={offered}\r\n");
            let session_level = format!("{HEAD}a={offered}\r\nm=audio 6000 RTP/AVP 0\r\n");
            for offer in [media_level, session_level] {
                let o = parse_offer(&offer).unwrap();
                let n = o.negotiate().unwrap();
                assert_eq!(n.send, send, "{offer}");
                assert!(o.answer(&n, local(), 1, 1).ends_with(&format!("a={answered}\r\n")), "{offer}");
            }
        }
        // The stream's own attribute wins over the session's.
        let both = format!("{HEAD}a=sendonly\r\nm=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n");
        assert!(parse_offer(&both).unwrap().negotiate().unwrap().send);
        // RFC 2543 hold: an unspecified address receives nothing.
        let old_hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let o = parse_offer(old_hold).unwrap();
        let n = o.negotiate().unwrap();
        assert!(!n.send);
        assert!(o.answer(&n, local(), 1, 1).ends_with("a=recvonly\r\n"));
    }

    #[test]
    fn an_offer_that_cannot_be_negotiated_is_answered_with_every_stream_declined() {
        let o = parse_offer(&format!("{HEAD}m=audio 6000 RTP/SAVP 0\r\nm=video 7000 RTP/AVP 31\r\n")).unwrap();
        let n = Negotiated { remote: "192.0.2.1:6000".parse().unwrap(), codec: Codec::Pcmu, dtmf_payload_type: None, ptime_ms: 20, send: true };
        assert_eq!(m_lines(&o.answer(&n, local(), 1, 1)), ["m=audio 0 RTP/SAVP 0", "m=video 0 RTP/AVP 31"]);
    }

    #[test]
    fn m_lines_we_could_not_echo_are_malformed() {
        for m in ["m=video 0 RTP/AVP", "m=video", "m=video 0", "m=vid\u{e9}o 0 RTP/AVP 31", "m=video 0 RTP/AVP 3\u{1}1"] {
            let offer = format!("{HEAD}m=audio 6000 RTP/AVP 0\r\n{m}\r\n");
            assert!(matches!(parse_offer(&offer), Err(SdpError::Malformed(_))), "{m:?}");
        }
    }

    #[test]
    fn payload_types_that_cannot_be_rtp_are_never_negotiated() {
        for pt in [128, 200, 255, 72, 76] {
            let offer = format!("{HEAD}m=audio 6000 RTP/AVP 0 {pt}\r\na=rtpmap:{pt} telephone-event/8000\r\n");
            let n = parse_offer(&offer).unwrap().negotiate().unwrap();
            assert_eq!(n.dtmf_payload_type, None, "telephone-event at {pt}");
            let a = parse_offer(&offer).unwrap().answer(&n, local(), 1, 1);
            assert!(a.contains("m=audio 20000 RTP/AVP 0\r\n"), "{a}");
        }
        // 77 is unassigned but legal; 256 and more are not numbers we read.
        let offer = format!("{HEAD}m=audio 6000 RTP/AVP 0 77 256\r\na=rtpmap:77 telephone-event/8000\r\n");
        assert_eq!(parse_offer(&offer).unwrap().negotiate().unwrap().dtmf_payload_type, Some(77));
        // PCMA declared at a number above 127 is not PCMA.
        let offer = format!("{HEAD}m=audio 6000 RTP/AVP 200\r\na=rtpmap:200 PCMA/8000\r\n");
        assert_eq!(parse_offer(&offer).unwrap().negotiate(), Err(SdpError::NoCommonCodec));
    }

    #[test]
    fn rtcp_on_the_rtp_port_can_never_be_a_key() {
        // An RTCP sender report (RFC 3550 6.4.1), as a caller multiplexing RTCP
        // (RFC 5761) sends it to our RTP port: it parses as RTP of type 72.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&[0x11; 24]);
        let p = crate::rtp::parse(&sr).unwrap();
        assert!((72..=76).contains(&p.payload_type));
        let offer = format!("{HEAD}m=audio 6000 RTP/AVP 0 {}\r\na=rtpmap:{} telephone-event/8000\r\n", p.payload_type, p.payload_type);
        assert_ne!(parse_offer(&offer).unwrap().negotiate().unwrap().dtmf_payload_type, Some(p.payload_type));
    }

    #[test]
    fn telephone_event_never_shares_the_codecs_payload_type() {
        // PCMU declared at 96, and telephone-event at 0: we send PCMU as 0.
        let offer = format!("{HEAD}m=audio 6000 RTP/AVP 96 0 101\r\na=rtpmap:96 PCMU/8000\r\na=rtpmap:0 telephone-event/8000\r\na=rtpmap:101 telephone-event/8000\r\n");
        let n = parse_offer(&offer).unwrap().negotiate().unwrap();
        assert_eq!((n.codec.payload_type(), n.dtmf_payload_type), (0, Some(101)));
    }

    /// An offer built from parts that matter to negotiation.
    fn arb_offer() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let media = prop_oneof![Just("audio"), Just("video"), Just("application")];
        let port = prop_oneof![Just(0u16), 1u16..];
        let proto = prop_oneof![Just("RTP/AVP"), Just("RTP/AVPF"), Just("RTP/SAVP"), Just("UDP/TLS/RTP/SAVPF"), Just("TCP/RTP/AVP")];
        let fmts = proptest::collection::vec(prop_oneof![Just("0"), Just("8"), Just("18"), Just("101"), Just("96"), Just("74"), Just("228")], 1..4);
        let dir = prop_oneof![Just(""), Just("a=sendonly\r\n"), Just("a=recvonly\r\n"), Just("a=inactive\r\n")];
        let line = (media, port, proto, fmts, dir).prop_map(|(m, p, pr, f, d)| format!("m={m} {p} {pr} {}\r\na=rtpmap:101 telephone-event/8000\r\na=rtpmap:74 telephone-event/8000\r\na=rtpmap:228 telephone-event/8000\r\n{d}", f.join(" ")));
        proptest::collection::vec(line, 0..5).prop_map(|lines| format!("{HEAD}{}", lines.concat()))
    }

    proptest::proptest! {
        #[test]
        fn answers_mirror_the_offers_m_lines(offer in arb_offer()) {
            let Ok(o) = parse_offer(&offer) else {
                proptest::prop_assert!(!offer.contains("m=audio"));
                return Ok(());
            };
            match o.negotiate() {
                Ok(n) => {
                    let a = o.answer(&n, local(), 1, 1);
                    let (offered, answered) = (m_lines(&offer), m_lines(&a));
                    proptest::prop_assert_eq!(offered.len(), answered.len());
                    let mut live = 0;
                    for (off, ans) in offered.iter().zip(&answered) {
                        let (o_parts, a_parts): (Vec<&str>, Vec<&str>) = (off.split(' ').collect(), ans.split(' ').collect());
                        proptest::prop_assert_eq!(o_parts[0], a_parts[0], "same media, same order");
                        proptest::prop_assert_eq!(o_parts[2], a_parts[2], "same transport");
                        if a_parts[1] != "0" {
                            live += 1;
                            proptest::prop_assert_eq!(a_parts[0], "m=audio");
                            proptest::prop_assert_ne!(o_parts[1], "0", "a declined stream is never taken");
                            proptest::prop_assert_eq!(Transport::of(a_parts[2]), Transport::Rtp);
                        }
                    }
                    proptest::prop_assert_eq!(live, 1);
                    if let Some(d) = n.dtmf_payload_type {
                        proptest::prop_assert!(d <= 127 && !(72..=76).contains(&d) && d != n.codec.payload_type());
                    }
                }
                Err(SdpError::AudioDeclined) => proptest::prop_assert!(o.media.iter().all(|m| m.media != "audio" || m.port == 0)),
                Err(SdpError::SecureOnly) => proptest::prop_assert!(o.media.iter().any(|m| m.media == "audio" && m.port != 0 && m.transport() == Transport::Srtp)),
                Err(SdpError::NoCommonCodec | SdpError::UnsupportedTransport(_)) => {}
                Err(e) => proptest::prop_assert!(false, "{e}"),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            if let Ok(o) = parse_offer(&s) { let _ = o.negotiate(); }
        }
    }
}
