//! Splitting a SIP byte stream (TCP) into messages by Content-Length (RFC 3261
//! §18.3), without ever buffering past the size limit.
//!
//! A peer that opens a connection and sends a message one byte every few
//! seconds holds a connection and a buffer for ever if the host only times
//! out silence. So the framer also remembers when the message it is waiting
//! on began: feed it with [`Framer::push_at`] and close the connection once
//! `now` passes [`Framer::deadline`] — an absolute time, fixed by the
//! message's first byte, that later bytes never move:
//!
//! ```
//! use ivr_sip::framing::Framer;
//! const PARTIAL_MS: u64 = 10_000;
//! let mut framer = Framer::new(16 * 1024);
//! framer.push_at(1_000, b"OPTIONS sip:ivr@example.com SIP/2.0\r\n").unwrap();
//! framer.push_at(9_000, b"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK-1\r\n").unwrap();
//! // Read with a timeout of `deadline - now` (the idle timeout when `None`).
//! assert_eq!(framer.deadline(PARTIAL_MS), Some(11_000));
//! ```
//!
//! The head is read with the parser's own rules ([`content_length`], the
//! parser's end of head), so the framer and [`crate::message::Message::parse`]
//! cannot disagree on where a message ends: such a disagreement would let a
//! peer hide a second request inside the first one's body.

use crate::endpoint::Millis;
use crate::message::{canonical, content_length, find_head_end};

/// Why a stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A message (headers + body) larger than the limit, or a Content-Length
    /// larger than any message could be: answer 513 (from the headers, when
    /// they were complete), close.
    TooLarge(Option<Vec<u8>>),
    /// A Content-Length that is not a number (negative, signed, not digits),
    /// or two that disagree: the stream cannot be resynchronised.
    BadLength,
}

/// Accumulates stream bytes and yields whole messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
    /// How far the search for the end of the head has looked (it resumes
    /// there: bytes dripped one at a time cost no rescans).
    scanned: usize,
    /// Once the head is complete: the size of the whole message.
    want: Option<usize>,
    /// When the first byte of the message being waited on arrived (known
    /// when it came through [`Framer::push_at`]).
    since: Option<Millis>,
}

impl Framer {
    pub fn new(max_message_bytes: usize) -> Framer {
        Framer { buf: Vec::new(), max: max_message_bytes, scanned: 0, want: None, since: None }
    }

    /// As [`Framer::push`], for bytes that arrived at `now`: also notes when
    /// the incomplete message that remains (if any) began, for
    /// [`Framer::deadline`]. Use one or the other for a stream, not both.
    pub fn push_at(&mut self, now: Millis, data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let since = if self.is_mid_message() { self.since } else { None };
        let out = self.push(data)?;
        // What remains after a complete message began in these bytes.
        self.since = match (self.is_mid_message(), out.is_empty()) {
            (false, _) => None,
            (true, false) => Some(now),
            (true, true) => Some(since.unwrap_or(now)),
        };
        Ok(out)
    }

    /// When the first byte of the message still incomplete arrived; `None`
    /// between messages (keep-alive whitespace does not start one) or when
    /// its bytes came through [`Framer::push`], which knows no time.
    pub fn mid_message_since(&self) -> Option<Millis> {
        self.since.filter(|_| self.is_mid_message())
    }

    /// When the message still incomplete must be complete, at most `limit_ms`
    /// after its first byte: each further byte leaves it where it is, so a
    /// slow drip cannot hold the connection open past it.
    pub fn deadline(&self, limit_ms: Millis) -> Option<Millis> {
        self.mid_message_since().map(|t| t.saturating_add(limit_ms))
    }

    /// Whether part of a message is waiting for the rest. Whitespace between
    /// messages (keep-alives) is not part of one.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Adds bytes; returns every complete message now available.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        // Without a time, when the message that remains began is unknown.
        self.since = None;
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Keep-alive CRLFs (and stray whitespace) between messages.
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(self.buf.len());
            if start > 0 {
                self.buf.drain(..start);
                self.scanned = 0;
            }
            let want = match self.want {
                Some(w) => w,
                None => {
                    // The end of the head may straddle what was scanned before.
                    let from = self.scanned.saturating_sub(3);
                    let Some((_, body)) = find_head_end(&self.buf[from..]) else {
                        self.scanned = self.buf.len();
                        if self.buf.len() > self.max {
                            return Err(FrameError::TooLarge(None));
                        }
                        return Ok(out);
                    };
                    let head_end = from + body;
                    let length = head_length(&self.buf[..head_end])?;
                    // Checked: a Content-Length near usize::MAX must not wrap
                    // into a small message.
                    let want = head_end.checked_add(length).filter(|w| *w <= self.max);
                    let Some(want) = want else {
                        return Err(FrameError::TooLarge(Some(self.buf[..head_end].to_vec())));
                    };
                    self.want = Some(want);
                    want
                }
            };
            if self.buf.len() < want {
                return Ok(out);
            }
            out.push(self.buf.drain(..want).collect());
            self.want = None;
            self.scanned = 0;
        }
    }
}

/// The Content-Length of a head (0 when it has none: over a stream, no body).
/// Folded lines are unfolded and compact `l` counts, as in the parser.
fn head_length(head: &[u8]) -> Result<usize, FrameError> {
    let head = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n').skip(1) {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => lines.push(line.to_string()),
        }
    }
    let mut length = None;
    for line in &lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if canonical(name.trim()) != "Content-Length" {
            continue;
        }
        let n = content_length(value).ok_or(FrameError::BadLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(FrameError::BadLength);
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";

    #[test]
    fn splits_messages_arriving_in_pieces() {
        let mut f = Framer::new(1000);
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            got.extend(f.push(chunk).unwrap());
        }
        assert_eq!(got, vec![MSG.to_vec(), MSG.to_vec()]);
        assert!(!f.is_mid_message());
        f.push(b"OPTIONS sip").unwrap();
        assert!(f.is_mid_message());
    }

    #[test]
    fn refuses_to_buffer_past_the_limit() {
        let mut f = Framer::new(100);
        assert_eq!(f.push(&[b'a'; 101]), Err(FrameError::TooLarge(None)), "headers that never end");
        let mut f = Framer::new(100);
        let head = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 500\r\n\r\n";
        assert_eq!(f.push(head), Err(FrameError::TooLarge(Some(head.to_vec()))));
        let mut f = Framer::new(100);
        assert_eq!(f.push(b"OPTIONS sip:x SIP/2.0\r\nl: x\r\n\r\n"), Err(FrameError::BadLength));
    }

    fn with_length(cl: &str) -> Vec<u8> {
        format!("OPTIONS sip:x SIP/2.0\r\nContent-Length: {cl}\r\n\r\n").into_bytes()
    }

    #[test]
    fn content_length_at_the_edges() {
        let head = with_length("0");
        let limit = 200;
        // Exactly the limit: one message; one byte over: refused before any body is read.
        let fits = limit - with_length(&(limit).to_string()).len();
        let at = with_length(&fits.to_string());
        let mut f = Framer::new(limit);
        let mut stream = at.clone();
        stream.extend(std::iter::repeat_n(b'x', fits));
        assert_eq!(stream.len(), limit);
        assert_eq!(f.push(&stream), Ok(vec![stream.clone()]));
        let over = with_length(&(fits + 1).to_string());
        assert_eq!(Framer::new(limit).push(&over), Err(FrameError::TooLarge(Some(over.clone()))));
        // Lengths that would wrap a usize, or overflow u64: too large, never a
        // wrapped small message, never an allocation of that size.
        for huge in [usize::MAX.to_string(), (usize::MAX - head.len() + 1).to_string(), "18446744073709551616".into(), "99999999999999999999".into()] {
            let h = with_length(&huge);
            let r = Framer::new(limit).push(&[h.clone(), b"OPTIONS sip:y SIP/2.0\r\n\r\n".to_vec()].concat());
            assert!(matches!(r, Err(FrameError::TooLarge(_)) | Err(FrameError::BadLength)), "{huge}: {r:?}");
        }
        assert_eq!(Framer::new(limit).push(&with_length(&usize::MAX.to_string())), Err(FrameError::TooLarge(Some(with_length(&usize::MAX.to_string())))));
        // Not numbers.
        for bad in ["-1", "+4", "4 4", "0x10", "", "٤", "1e3"] {
            assert_eq!(Framer::new(limit).push(&with_length(bad)), Err(FrameError::BadLength), "{bad:?}");
        }
        // Leading zeros are digits.
        assert_eq!(Framer::new(limit).push(&[with_length("0000000000000000000000004"), b"body".to_vec()].concat()).map(|m| m.len()), Ok(1));
    }

    #[test]
    fn two_content_lengths_must_agree() {
        let two = |a: &str, b: &str| format!("OPTIONS sip:x SIP/2.0\r\nContent-Length: {a}\r\nl: {b}\r\n\r\nbodyOPTIONS").into_bytes();
        assert_eq!(Framer::new(1000).push(&two("4", "11")), Err(FrameError::BadLength), "which one ends the message is ambiguous");
        // The same twice frames (and the parser answers 400).
        assert_eq!(Framer::new(1000).push(&two("4", "04")).map(|m| m.len()), Ok(1));
        // A folded Content-Length is still read.
        let folded = b"OPTIONS sip:x SIP/2.0\r\nContent-Length:\r\n 4\r\n\r\nbody";
        assert_eq!(Framer::new(1000).push(folded), Ok(vec![folded.to_vec()]));
    }

    #[test]
    fn the_end_of_the_head_is_where_the_parser_sees_it() {
        // LF-only heads (RFC 4475 allows them): framed as the parser reads them,
        // so the "body" here cannot carry a hidden second request.
        let lf = b"OPTIONS sip:x SIP/2.0\nContent-Length: 4\n\nbodyOPTIONS sip:y SIP/2.0\nContent-Length: 0\n\n";
        let got = Framer::new(1000).push(lf).unwrap();
        assert_eq!(got, vec![b"OPTIONS sip:x SIP/2.0\nContent-Length: 4\n\nbody".to_vec(), b"OPTIONS sip:y SIP/2.0\nContent-Length: 0\n\n".to_vec()]);
        for m in &got {
            let parsed = crate::message::Message::parse(m, false).unwrap_err().partial.unwrap();
            assert_eq!(parsed.body.len(), crate::message::content_length(parsed.header("Content-Length").unwrap()).unwrap());
        }
    }

    #[test]
    fn a_message_dripped_a_byte_at_a_time_keeps_its_first_deadline() {
        let mut f = Framer::new(1000);
        assert_eq!(f.deadline(10_000), None);
        f.push_at(500, b"\r\n\r\n").unwrap();
        assert_eq!(f.mid_message_since(), None, "keep-alives start no message");
        let mut t = 1_000;
        for (i, b) in MSG.iter().enumerate() {
            let got = f.push_at(t, &[*b]).unwrap();
            if i + 1 < MSG.len() {
                assert!(got.is_empty());
                assert_eq!(f.mid_message_since(), Some(1_000), "byte {i} at {t}");
                assert_eq!(f.deadline(10_000), Some(11_000), "never moved by later bytes");
            } else {
                assert_eq!(got, vec![MSG.to_vec()]);
            }
            t += 900;
        }
        assert_eq!(f.deadline(10_000), None, "complete: no deadline");
        // A push that completes one message and starts the next: the next's
        // deadline counts from this push.
        f.push_at(50_000, &MSG[..10]).unwrap();
        let mut rest = MSG[10..].to_vec();
        rest.extend_from_slice(&MSG[..3]);
        assert_eq!(f.push_at(60_000, &rest).unwrap().len(), 1);
        assert_eq!(f.mid_message_since(), Some(60_000));
        assert_eq!(f.push_at(61_000, &MSG[3..]).unwrap().len(), 1);
        assert_eq!(f.mid_message_since(), None);
        // push() still frames, and knows no time.
        f.push(&MSG[..5]).unwrap();
        assert!(f.is_mid_message());
        assert_eq!(f.deadline(10_000), None);
        assert_eq!(f.push(&MSG[5..]).unwrap(), vec![MSG.to_vec()]);
        assert_eq!(f.deadline(u64::MAX), None);
        f.push_at(u64::MAX - 1, b"O").unwrap();
        assert_eq!(f.deadline(10_000), Some(u64::MAX), "saturates");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
            let mut f = Framer::new(256);
            for c in chunks {
                if f.push(&c).is_err() { break; }
            }
        }

        #[test]
        fn any_split_frames_the_same(cut in 0usize..200, lens in proptest::collection::vec(0usize..30, 1..4)) {
            let stream: Vec<u8> = lens.iter().flat_map(|n| [with_length(&n.to_string()), vec![b'b'; *n], b"\r\n".to_vec()].concat()).collect();
            let whole = Framer::new(1000).push(&stream).unwrap();
            let mut f = Framer::new(1000);
            let cut = cut.min(stream.len());
            let mut parts = f.push(&stream[..cut]).unwrap();
            parts.extend(f.push(&stream[cut..]).unwrap());
            proptest::prop_assert_eq!(whole.len(), lens.len());
            proptest::prop_assert_eq!(parts, whole);
        }
    }
}
