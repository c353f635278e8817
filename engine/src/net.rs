//! The network: TCP listeners and streams over io_uring (`ACCEPT`, `RECV`, `SENDMSG`), and the
//! [`Transport`] trait the protocol code is written against so a simulation can swap the socket.

use io_uring::{opcode, types};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use crate::buffer::SharedBuf;
use crate::iobuf::IoBufMut;
use crate::op::Op;

/// A byte stream the protocol code talks over.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Receives exactly `len` bytes into `buf[offset..offset+len]`.
    async fn recv_exact<B: IoBufMut>(
        &self,
        buf: B,
        offset: usize,
        len: usize,
    ) -> (io::Result<()>, B);
    /// Sends every byte of `gather`.
    async fn send_all(&self, gather: Gather) -> (io::Result<()>, Gather);
}

/// One piece of an outgoing message.
#[derive(Default)]
pub enum Segment {
    /// Nothing.
    #[default]
    Empty,
    /// Owned bytes (headers, small payloads).
    Bytes(Vec<u8>),
    /// A range of a pool buffer shared with other users (disk reads sent as several PDUs).
    Shared(SharedBuf, Range<usize>),
    /// Up to 8 inline bytes (padding and digests).
    Small([u8; 8], usize),
    /// Up to 52 inline bytes (a protocol header and its digest), so headers need no allocation.
    Head([u8; HEAD_BYTES], usize),
}

/// Room of [`Segment::Head`].
pub const HEAD_BYTES: usize = 52;

impl Segment {
    fn as_slice(&self) -> &[u8] {
        match self {
            Segment::Empty => &[],
            Segment::Bytes(v) => v,
            Segment::Shared(buf, range) => buf.as_slice().get(range.clone()).unwrap_or(&[]),
            Segment::Small(bytes, len) => &bytes[..(*len).min(8)],
            Segment::Head(bytes, len) => &bytes[..(*len).min(HEAD_BYTES)],
        }
    }
}

/// Up to four segments sent as one message (`sendmsg` with an iovec each).
#[derive(Default)]
pub struct Gather {
    /// The segments, in order; `Empty` ones are skipped.
    pub parts: [Segment; 4],
}

impl Gather {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.as_slice().len()).sum()
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct SendState {
    gather: Gather,
    iov: [libc::iovec; 4],
    msg: libc::msghdr,
}

/// A listening TCP socket.
pub struct TcpListener {
    fd: OwnedFd,
    local: SocketAddr,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn sockaddr_from(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn socket_name(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; the kernel fills at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = &mut storage as *mut _ as *mut libc::sockaddr;
    // SAFETY: ptr/len describe a valid, writable sockaddr_storage.
    cvt(unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        }
    })?;
    sockaddr_to(&storage).ok_or_else(|| io::Error::other("unknown address family"))
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passing a pointer to a live i32 and its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn new_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds the socket `fd` to `addr`.
fn bind_to(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = sockaddr_from(addr);
    // SAFETY: storage/len describe a valid socket address; fd is a socket we own.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    })?;
    Ok(())
}

impl TcpListener {
    /// Binds and listens on `addr`; with `reuse_port` several reactors can each own a listener on
    /// the same portal and the kernel spreads connections across them.
    pub fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        let fd = new_socket(&addr)?;
        set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if reuse_port {
            set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        bind_to(&fd, &addr)?;
        // SAFETY: listen(2) on a bound socket we own.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 1024) })?;
        let local = socket_name(fd.as_raw_fd(), false)?;
        Ok(TcpListener { fd, local })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts one connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        // SAFETY: zeroed sockaddr_storage is valid.
        let mut state: Box<(libc::sockaddr_storage, libc::socklen_t)> = Box::new((
            unsafe { zeroed() },
            size_of::<libc::sockaddr_storage>() as _,
        ));
        let entry = opcode::Accept::new(
            types::Fd(self.fd.as_raw_fd()),
            &mut state.0 as *mut _ as *mut libc::sockaddr,
            &mut state.1,
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        let done = Op::submit(entry, state).await;
        let fd = done.io_result()? as RawFd;
        // SAFETY: the kernel returned a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let peer = sockaddr_to(&done.resources.0)
            .ok_or_else(|| io::Error::other("accepted a socket of an unknown family"))?;
        let stream = TcpStream::from_fd(fd);
        stream.set_nodelay()?;
        Ok((stream, peer))
    }
}

/// A connected TCP socket.
pub struct TcpStream {
    fd: OwnedFd,
    killer: Arc<Mutex<Option<RawFd>>>,
}

/// A `Send + Sync` handle that shuts a [`TcpStream`] down from any thread (session
/// reinstatement, daemon shutdown) while guaranteeing the descriptor is still the stream's.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    fd: Arc<Mutex<Option<RawFd>>>,
}

impl ShutdownHandle {
    /// Shuts the stream down (both directions); a no-op once the stream is gone.
    pub fn shutdown(&self) {
        if let Ok(fd) = self.fd.lock() {
            if let Some(fd) = *fd {
                // SAFETY: the stream clears this under the same lock before it closes the
                // descriptor, so fd is still the stream's socket here.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if let Ok(mut fd) = self.killer.lock() {
            *fd = None;
        }
    }
}

impl TcpStream {
    fn from_fd(fd: OwnedFd) -> TcpStream {
        let killer = Arc::new(Mutex::new(Some(fd.as_raw_fd())));
        TcpStream { fd, killer }
    }

    /// A handle that can shut this stream down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            fd: self.killer.clone(),
        }
    }

    /// Connects to `addr` (used by our own initiator side and tests).
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_from(addr, None).await
    }

    /// Connects to `addr` from the local address `from` when given (any port), so the peer
    /// sees the connection come from that address (the mirror link: the peer accepts only its
    /// configured partner's address).
    pub async fn connect_from(
        addr: SocketAddr,
        from: Option<std::net::IpAddr>,
    ) -> io::Result<TcpStream> {
        let fd = new_socket(&addr)?;
        if let Some(ip) = from {
            bind_to(&fd, &SocketAddr::new(ip, 0))?;
        }
        let state = Box::new(sockaddr_from(&addr));
        let entry = opcode::Connect::new(
            types::Fd(fd.as_raw_fd()),
            &state.0 as *const _ as *const libc::sockaddr,
            state.1,
        )
        .build();
        let done = Op::submit(entry, state).await;
        done.io_result()?;
        let stream = TcpStream::from_fd(fd);
        stream.set_nodelay()?;
        Ok(stream)
    }

    /// Disables Nagle: iSCSI responses are small and latency-bound.
    pub fn set_nodelay(&self) -> io::Result<()> {
        set_int_opt(self.fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
    }

    /// The address of our end (the portal the initiator actually connected to).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket_name(self.fd.as_raw_fd(), false)
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket_name(self.fd.as_raw_fd(), true)
    }

    /// Shuts both directions down, which fails every pending receive and send at once.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a socket we own; errors (already closed) do not matter.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Copies what has arrived (at most `buf`'s length) without taking it off the socket
    /// (`MSG_PEEK`): a later receive gets the same bytes. Waits until something arrives.
    pub async fn peek(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len().min(u32::MAX as usize) as u32;
        let entry = opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), buf.as_mut_ptr(), len)
            .flags(libc::MSG_PEEK)
            .build();
        let done = Op::submit(entry, buf).await;
        (done.io_result(), done.resources)
    }

    /// Receives at most `len` bytes into `buf[offset..]`; `Ok(0)` is end of stream.
    pub async fn recv<B: IoBufMut>(
        &self,
        mut buf: B,
        offset: usize,
        len: usize,
    ) -> (io::Result<usize>, B) {
        let room = buf.bytes_total().saturating_sub(offset);
        let len = len.min(room).min(u32::MAX as usize);
        if len == 0 {
            return (Ok(0), buf);
        }
        // SAFETY: offset + len <= bytes_total, so the pointer stays inside the buffer.
        let ptr = unsafe { buf.stable_mut_ptr().add(offset) };
        let entry = opcode::Recv::new(types::Fd(self.fd.as_raw_fd()), ptr, len as u32).build();
        let done = Op::submit(entry, buf).await;
        (done.io_result(), done.resources)
    }
}

impl Transport for TcpStream {
    async fn recv_exact<B: IoBufMut>(
        &self,
        mut buf: B,
        offset: usize,
        len: usize,
    ) -> (io::Result<()>, B) {
        if offset.saturating_add(len) > buf.bytes_total() {
            return (
                Err(io::Error::other("receive past the end of the buffer")),
                buf,
            );
        }
        let mut got = 0;
        while got < len {
            let (result, returned) = self.recv(buf, offset + got, len - got).await;
            buf = returned;
            match result {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn send_all(&self, gather: Gather) -> (io::Result<()>, Gather) {
        self.send_with(&mut SendBuffer::default(), gather).await
    }
}

/// The memory a send's `msghdr` and iovecs live in, kept by a connection's writer and reused
/// for every message so that sending allocates nothing.
#[derive(Default)]
pub struct SendBuffer {
    state: Option<Box<SendState>>,
}

impl TcpStream {
    /// Sends every byte of `gather` using `buffer`'s memory for the message header.
    pub async fn send_with(
        &self,
        buffer: &mut SendBuffer,
        gather: Gather,
    ) -> (io::Result<()>, Gather) {
        let mut state = match buffer.state.take() {
            Some(mut s) => {
                s.gather = gather;
                s
            }
            // SAFETY: msghdr and iovec are plain old data; zero is a valid initial state.
            None => Box::new(SendState {
                gather,
                iov: unsafe { zeroed() },
                msg: unsafe { zeroed() },
            }),
        };
        let mut sent_total = 0usize;
        let total = state.gather.len();
        let mut result = Ok(());
        while sent_total < total {
            fill_iovecs(&mut state, sent_total);
            let entry = opcode::SendMsg::new(types::Fd(self.fd.as_raw_fd()), &state.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            let done = Op::submit(entry, state).await;
            let sent = done.io_result();
            state = done.resources;
            match sent {
                Ok(0) => {
                    result = Err(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => sent_total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let gather = std::mem::take(&mut state.gather);
        buffer.state = Some(state);
        (result, gather)
    }
}

/// Points the iovecs at what is left to send after `skip` bytes.
fn fill_iovecs(state: &mut SendState, mut skip: usize) {
    let mut count = 0;
    for part in state.gather.parts.iter() {
        let bytes = part.as_slice();
        if skip >= bytes.len() {
            skip -= bytes.len();
            continue;
        }
        let rest = &bytes[skip..];
        skip = 0;
        state.iov[count] = libc::iovec {
            iov_base: rest.as_ptr() as *mut libc::c_void,
            iov_len: rest.len(),
        };
        count += 1;
    }
    state.msg.msg_iov = state.iov.as_mut_ptr();
    state.msg.msg_iovlen = count as _;
}
