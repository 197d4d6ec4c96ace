//! The RTP port range: even ports, handed out in turn. A port the host could
//! not open (another process holds it) goes to the back of the line.

use std::collections::VecDeque;

pub(crate) struct Ports {
    free: VecDeque<u16>,
}

impl Ports {
    pub(crate) fn new((low, high): (u16, u16)) -> Ports {
        Ports { free: (low..=high).filter(|p| p % 2 == 0).collect() }
    }

    pub(crate) fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub(crate) fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }
}
