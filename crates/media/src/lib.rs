//! Telephone audio for the runtime: G.711 codecs, prompt decoding and
//! resampling (symphonia), RTP packetisation and parsing, RFC 4733 DTMF, the
//! guard that decides which received RTP is the caller's, and SDP offer/answer
//! for one audio stream.
//!
//! Pure functions and small state machines: no sockets, no clocks. The server
//! owns the sockets and the 20 ms media tick and calls in here.

pub mod audio;
pub mod dtmf;
pub mod g711;
pub mod inband;
pub mod rtp;
pub mod receive;
pub mod record;
pub mod relay;
pub mod sdp;
pub mod source;
pub mod stream;
