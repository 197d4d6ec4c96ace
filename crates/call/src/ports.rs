//! The RTP ports calls use. Each call takes an even port of the range, in
//! turn (a port the host could not open, held by another process, goes to
//! the back of the line) — or, when the host shares one port among many
//! calls (`rtp_shared_port`), the shared port: the host then tells the
//! calls' packets apart by their source, so no two calls on it may have the
//! same negotiated media address. This is where that is kept true.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use ivr_media::source::source_key;
use ivr_sip::endpoint::CallKey;

/// Where a call's RTP is received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rtp {
    /// A port of its own, from the range.
    Own(u16),
    /// The shared port; the host delivers it what comes from `remote`.
    Shared { port: u16, remote: SocketAddr },
}

impl Rtp {
    pub(crate) fn port(self) -> u16 {
        match self {
            Rtp::Own(p) | Rtp::Shared { port: p, .. } => p,
        }
    }

    pub(crate) fn shared(self) -> bool {
        matches!(self, Rtp::Shared { .. })
    }
}

pub(crate) struct Ports {
    free: VecDeque<u16>,
    shared: Option<u16>,
    /// Calls on the shared port, by their negotiated media address.
    on_shared: HashMap<SocketAddr, CallKey>,
}

impl Ports {
    /// `range`: even ports to hand out (the shared port and the one above
    /// it, RTCP's by convention, are left out of it).
    pub(crate) fn new((low, high): (u16, u16), shared: Option<u16>) -> Ports {
        let taken = |p: u16| shared.is_some_and(|s| p == s || Some(p) == s.checked_add(1));
        Ports { free: (low..=high).filter(|p| p % 2 == 0 && !taken(*p)).collect(), shared, on_shared: HashMap::new() }
    }

    /// A port of its own (agent legs, and calls that cannot share).
    pub(crate) fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub(crate) fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }

    /// Where `call`'s RTP, coming from `remote`, is received: the shared
    /// port when there is one and no other call on it has that address
    /// (`may_share`: false for calls that latch, whose packets may come from
    /// elsewhere), else a port of its own (`None`: none left).
    pub(crate) fn take_for(&mut self, call: CallKey, remote: SocketAddr, may_share: bool) -> Option<Rtp> {
        let remote = source_key(remote);
        // An address nothing can send from (0.0.0.0, port 0) cannot tell the call's packets apart.
        if let Some(port) = self.shared.filter(|_| may_share && !remote.ip().is_unspecified() && remote.port() != 0) {
            if let std::collections::hash_map::Entry::Vacant(v) = self.on_shared.entry(remote) {
                v.insert(call);
                return Some(Rtp::Shared { port, remote });
            }
        }
        self.take().map(Rtp::Own)
    }

    /// The call is over (or moves to another port): its port is free again.
    pub(crate) fn give_back(&mut self, call: CallKey, rtp: Rtp) {
        match rtp {
            Rtp::Own(p) => self.release(p),
            Rtp::Shared { remote, .. } => {
                if self.on_shared.get(&remote) == Some(&call) {
                    self.on_shared.remove(&remote);
                }
            }
        }
    }

    /// The call's media address changes to `to` (a re-INVITE): false when
    /// it is on the shared port and another call there has that address
    /// (their packets could not be told apart; the change is refused). An
    /// old-style hold (`c=0.0.0.0`) is no move: the caller's packets, if it
    /// sends any, still come from where they came from, and the call keeps
    /// its place.
    pub(crate) fn moved(&mut self, call: CallKey, rtp: &mut Rtp, to: SocketAddr) -> bool {
        let Rtp::Shared { remote, .. } = rtp else { return true };
        let to = source_key(to);
        if *remote == to || to.ip().is_unspecified() {
            return true;
        }
        if self.on_shared.get(&to).is_some_and(|c| *c != call) {
            return false;
        }
        if self.on_shared.get(remote) == Some(&call) {
            self.on_shared.remove(remote);
        }
        self.on_shared.insert(to, call);
        *remote = to;
        true
    }

    /// Calls on the shared port.
    #[cfg(test)]
    pub(crate) fn sharing(&self) -> usize {
        self.on_shared.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_shared_port_is_never_handed_out_alone() {
        let mut p = Ports::new((20000, 20007), Some(20002));
        let own: Vec<u16> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(own, [20000, 20004, 20006]);
    }

    #[test]
    fn calls_share_the_port_unless_their_addresses_clash_or_they_latch() {
        let mut p = Ports::new((20000, 20009), Some(30000));
        let one = p.take_for(CallKey(1), a("192.0.2.1:4000"), true).unwrap();
        assert_eq!(one, Rtp::Shared { port: 30000, remote: a("192.0.2.1:4000") });
        // Another call from the same address and port cannot be told apart.
        assert_eq!(p.take_for(CallKey(2), a("192.0.2.1:4000"), true), Some(Rtp::Own(20000)));
        // Another port of the same host can.
        assert!(p.take_for(CallKey(3), a("192.0.2.1:4002"), true).unwrap().shared());
        // A call that latches never shares.
        assert_eq!(p.take_for(CallKey(4), a("192.0.2.9:4000"), false), Some(Rtp::Own(20002)));
        assert_eq!(p.sharing(), 2);
        // The first call ends: its address is free for the next.
        p.give_back(CallKey(1), one);
        assert!(p.take_for(CallKey(5), a("192.0.2.1:4000"), true).unwrap().shared());
    }

    #[test]
    fn without_a_shared_port_every_call_has_its_own_until_they_run_out() {
        let mut p = Ports::new((20000, 20003), None);
        assert_eq!(p.take_for(CallKey(1), a("192.0.2.1:4000"), true), Some(Rtp::Own(20000)));
        assert_eq!(p.take_for(CallKey(2), a("192.0.2.1:4002"), true), Some(Rtp::Own(20002)));
        assert_eq!(p.take_for(CallKey(3), a("192.0.2.1:4004"), true), None);
    }

    #[test]
    fn a_hold_to_no_address_keeps_the_calls_place_and_addresses_are_compared_canonically() {
        let mut p = Ports::new((20000, 20009), Some(30000));
        let mut one = p.take_for(CallKey(1), a("192.0.2.1:4000"), true).unwrap();
        let mut two = p.take_for(CallKey(2), a("192.0.2.2:4000"), true).unwrap();
        // Both hold with c=0.0.0.0 and the same port: neither is refused, both keep their place.
        assert!(p.moved(CallKey(1), &mut one, a("0.0.0.0:4000")));
        assert!(p.moved(CallKey(2), &mut two, a("0.0.0.0:4000")));
        assert_eq!(one, Rtp::Shared { port: 30000, remote: a("192.0.2.1:4000") });
        assert_eq!(p.take_for(CallKey(3), a("192.0.2.1:4000"), true), Some(Rtp::Own(20000)), "still taken");
        // An offer with no address to send from never shares.
        assert_eq!(p.take_for(CallKey(4), a("0.0.0.0:4000"), true), Some(Rtp::Own(20002)));
        // An IPv4 address spelled as IPv6 is the same address.
        assert_eq!(p.take_for(CallKey(5), a("[::ffff:192.0.2.2]:4000"), true), Some(Rtp::Own(20004)));
    }

    #[test]
    fn a_move_onto_another_calls_address_is_refused() {
        let mut p = Ports::new((20000, 20009), Some(30000));
        let mut one = p.take_for(CallKey(1), a("192.0.2.1:4000"), true).unwrap();
        let two = p.take_for(CallKey(2), a("192.0.2.1:4002"), true).unwrap();
        assert!(!p.moved(CallKey(1), &mut one, a("192.0.2.1:4002")));
        assert_eq!(one, Rtp::Shared { port: 30000, remote: a("192.0.2.1:4000") });
        assert!(p.moved(CallKey(1), &mut one, a("192.0.2.1:4004")));
        // The old address is free, the new one taken.
        assert!(p.take_for(CallKey(3), a("192.0.2.1:4000"), true).unwrap().shared());
        assert_eq!(p.take_for(CallKey(4), a("192.0.2.1:4004"), true), Some(Rtp::Own(20000)));
        p.give_back(CallKey(2), two);
        assert_eq!(p.sharing(), 2);
    }
}
