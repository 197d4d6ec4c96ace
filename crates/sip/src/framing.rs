//! Splitting a SIP byte stream (TCP) into messages by Content-Length (RFC 3261
//! §18.3), without ever buffering past the size limit.

/// Why a stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A message (headers + body) larger than the limit: answer 513 (from the
    /// headers, when they were complete), close.
    TooLarge(Option<Vec<u8>>),
    /// A Content-Length that is not a number: the stream cannot be resynchronised.
    BadLength,
}

/// Accumulates stream bytes and yields whole messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
}

impl Framer {
    pub fn new(max_message_bytes: usize) -> Framer {
        Framer { buf: Vec::new(), max: max_message_bytes }
    }

    /// Whether part of a message is waiting for the rest.
    pub fn is_mid_message(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }

    /// Adds bytes; returns every complete message now available.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            // Keep-alive CRLFs between messages.
            let start = self.buf.iter().position(|b| *b != b'\r' && *b != b'\n').unwrap_or(self.buf.len());
            self.buf.drain(..start);
            let Some(head_end) = find(&self.buf, b"\r\n\r\n").map(|i| i + 4) else {
                if self.buf.len() > self.max {
                    return Err(FrameError::TooLarge(None));
                }
                return Ok(out);
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]);
            let mut length = 0usize;
            for line in head.split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    let n = name.trim();
                    if n.eq_ignore_ascii_case("content-length") || n == "l" || n == "L" {
                        length = value.trim().parse().map_err(|_| FrameError::BadLength)?;
                    }
                }
            }
            if head_end + length > self.max {
                return Err(FrameError::TooLarge(Some(self.buf[..head_end].to_vec())));
            }
            if self.buf.len() < head_end + length {
                return Ok(out);
            }
            out.push(self.buf.drain(..head_end + length).collect());
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
            let mut f = Framer::new(256);
            for c in chunks {
                if f.push(&c).is_err() { break; }
            }
        }
    }
}
