//! Many datagrams per system call: `recvmmsg(2)` and `sendmmsg(2)` on the
//! RTP port many calls share (`rtp_shared_port`). With a port per call each
//! packet costs a wake-up and a system call or two; on the shared port the
//! receive task reads up to 64 datagrams at a time and the media clock sends
//! a tick's packets 64 at a time.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
const N: usize = 64;
/// The largest datagram taken (RTP of any ptime we negotiate fits; a longer
/// one is dropped as truncated).
const MAX: usize = 2048;

/// Buffers for one `recvmmsg`, allocated once.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX]>,
    names: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Datagrams the last read returned.
    n: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into the
// batch's own heap buffers (never reallocated), which move with it.
unsafe impl Send for RecvBatch {}
// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl Default for RecvBatch {
    fn default() -> RecvBatch {
        let mut bufs = vec![[0u8; MAX]; N];
        // SAFETY: sockaddr_storage is plain data; all zero is valid.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; N];
        let mut iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: MAX }).collect();
        let headers = iovecs.iter_mut().zip(names.iter_mut()).map(|(iov, name)| header(iov, name)).collect();
        RecvBatch { bufs, names, iovecs, headers, n: 0 }
    }
}

impl RecvBatch {
    /// Reads what is waiting, up to 64 datagrams, without blocking
    /// (`WouldBlock` when nothing is).
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.n = 0;
        // The pointers are taken afresh for each call (the buffers were
        // written through since).
        for (((h, iov), buf), name) in self.headers.iter_mut().zip(self.iovecs.iter_mut()).zip(self.bufs.iter_mut()).zip(self.names.iter_mut()) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = MAX;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: the headers point at names, iovecs and buffers owned by self
        // and alive for the call; the kernel writes at most N entries.
        let n = unsafe { libc::recvmmsg(fd, self.headers.as_mut_ptr(), N as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.n = (n as usize).min(N);
        Ok(self.n)
    }

    /// The `i`th datagram of the last read and where it came from (`None`:
    /// truncated, or from an address family we do not speak).
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        if i >= self.n {
            return None;
        }
        let h = self.headers.get(i)?;
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = from_storage(&self.names[i])?;
        Some((from, &self.bufs[i][..(h.msg_len as usize).min(MAX)]))
    }
}

/// Datagrams gathered for one `sendmmsg`, to one socket.
pub struct SendBatch {
    fd: RawFd,
    n: usize,
    bufs: Vec<[u8; MAX]>,
    names: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Datagrams the kernel would not take (a full socket buffer, an
    /// unreachable address): dropped, as a lost packet is.
    pub dropped: u64,
}

impl Default for SendBatch {
    fn default() -> SendBatch {
        let mut bufs = vec![[0u8; MAX]; N];
        // SAFETY: sockaddr_storage is plain data; all zero is valid.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; N];
        let mut iovecs: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 0 }).collect();
        let headers = iovecs.iter_mut().zip(names.iter_mut()).map(|(iov, name)| header(iov, name)).collect();
        SendBatch { fd: -1, n: 0, bufs, names, iovecs, headers, dropped: 0 }
    }
}

impl SendBatch {
    /// Adds a datagram for `to` on socket `fd`, sending what was gathered
    /// first when the batch is full or was for another socket. False when
    /// it is too large to batch (send it alone).
    pub fn push(&mut self, fd: RawFd, data: &[u8], to: SocketAddr) -> bool {
        if data.len() > MAX {
            return false;
        }
        if self.n == N || (self.n > 0 && self.fd != fd) {
            self.flush();
        }
        self.fd = fd;
        let i = self.n;
        self.bufs[i][..data.len()].copy_from_slice(data);
        self.iovecs[i].iov_len = data.len();
        self.headers[i].msg_hdr.msg_namelen = to_storage(to, &mut self.names[i]);
        self.n += 1;
        true
    }

    /// Sends what was gathered.
    pub fn flush(&mut self) {
        // The pointers are taken afresh (the buffers were written through since).
        for (((h, iov), buf), name) in self.headers.iter_mut().zip(self.iovecs.iter_mut()).zip(self.bufs.iter_mut()).zip(self.names.iter_mut()).take(self.n) {
            iov.iov_base = buf.as_mut_ptr().cast();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        }
        let mut off = 0;
        while off < self.n {
            // SAFETY: headers[off..n] point at names, iovecs and buffers owned
            // by self (never reallocated), alive for the call.
            let r = unsafe { libc::sendmmsg(self.fd, self.headers.as_mut_ptr().add(off), (self.n - off) as u32, libc::MSG_DONTWAIT) };
            if r > 0 {
                off += r as usize;
                continue;
            }
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted if r < 0 => {}
                // The socket's buffer is full: the rest would fail too.
                std::io::ErrorKind::WouldBlock => {
                    self.dropped += (self.n - off) as u64;
                    off = self.n;
                }
                // This datagram's address is refused: it is dropped, the rest go on.
                _ => {
                    self.dropped += 1;
                    off += 1;
                }
            }
        }
        self.n = 0;
    }
}

impl Drop for SendBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

fn header(iov: &mut libc::iovec, name: &mut libc::sockaddr_storage) -> libc::mmsghdr {
    // SAFETY: an all-zero mmsghdr is valid (no name, no data, no control).
    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
    h.msg_hdr.msg_iov = iov;
    h.msg_hdr.msg_iovlen = 1;
    h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    h
}

/// Writes `a` as a socket address; returns its length.
fn to_storage(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is plain data; all zero is valid.
    *out = unsafe { std::mem::zeroed() };
    let p: *mut libc::sockaddr_storage = out;
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let s = unsafe { &mut *p.cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let s = unsafe { &mut *p.cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let p: *const libc::sockaddr_storage = s;
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*p.cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*p.cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a.sin6_addr.s6_addr), u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
        }
        _ => None,
    }
}

/// Asks the kernel for socket buffers of `bytes` each way: past the
/// system's cap when the process may (root: `SO_RCVBUFFORCE`), else up to
/// `net.core.rmem_max` / `wmem_max`. Returns the receive buffer granted.
pub fn deep_buffers(fd: RawFd, bytes: usize) -> usize {
    let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    for (force, plain) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)] {
        if setsockopt(fd, force, v) != 0 {
            setsockopt(fd, plain, v);
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: got and len are valid for writes of their sizes.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&mut got as *mut libc::c_int).cast(), &mut len) };
    // The kernel reports twice what it counts as payload room.
    (got.max(0) as usize) / 2
}

fn setsockopt(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> libc::c_int {
    // SAFETY: v lives for the call and its size is passed.
    unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_each_datagrams_source() {
        for ip in ["127.0.0.1", "::1"] {
            let Ok(rx) = std::net::UdpSocket::bind((ip, 0)) else { continue };
            let a = std::net::UdpSocket::bind((ip, 0)).unwrap();
            let b = std::net::UdpSocket::bind((ip, 0)).unwrap();
            let to = rx.local_addr().unwrap();
            let mut out = SendBatch::default();
            // 70 datagrams: more than one system call's worth, from two sockets.
            for i in 0..70u8 {
                let s = if i % 10 == 9 { &b } else { &a };
                assert!(out.push(s.as_raw_fd(), &[i; 20], to));
            }
            out.flush();
            assert_eq!(out.dropped, 0);
            assert!(!out.push(a.as_raw_fd(), &[0; MAX + 1], to), "too large to batch");
            rx.set_nonblocking(true).unwrap();
            let mut batch = RecvBatch::default();
            // Loopback delivers as it sends: everything is waiting already.
            let mut got = Vec::new();
            loop {
                let n = match batch.recv(rx.as_raw_fd()) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                };
                for i in 0..n {
                    let (from, data) = batch.get(i).unwrap();
                    got.push((from, data.to_vec()));
                }
            }
            let (from_a, from_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            for (i, (from, data)) in got.iter().enumerate() {
                assert_eq!(data, &vec![data[0]; 20]);
                assert_eq!(*from, if data[0] % 10 == 9 { from_b } else { from_a }, "datagram {i}");
            }
            let mut firsts: Vec<u8> = got.iter().map(|(_, d)| d[0]).collect();
            firsts.sort_unstable();
            assert_eq!(firsts, (0..70).collect::<Vec<u8>>());
        }
    }

    #[test]
    fn a_datagram_to_an_address_the_socket_cannot_reach_is_dropped_and_the_rest_go() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = SendBatch::default();
        out.push(tx.as_raw_fd(), b"one", rx.local_addr().unwrap());
        // An IPv6 destination from an IPv4 socket: refused by the kernel.
        out.push(tx.as_raw_fd(), b"lost", "[::1]:9".parse().unwrap());
        out.push(tx.as_raw_fd(), b"two", rx.local_addr().unwrap());
        out.flush();
        assert_eq!(out.dropped, 1);
        let mut buf = [0u8; 16];
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
