//! Passing file descriptors between processes over a unix socket (`SCM_RIGHTS`),
//! together with a short message. Used by the namespace helper to hand a TAP fd,
//! opened inside a container's namespace, back to the daemon.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// A connected pair of `SOCK_SEQPACKET` unix sockets (message boundaries kept),
/// close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Makes `recv_with_fd` on `sock` give up with `WouldBlock`/`TimedOut` after `timeout`.
pub(crate) fn set_recv_timeout(sock: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_timeout(
        sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(timeout),
    )?)
}

/// Sends `msg` as one message, with `fd` attached if given.
pub(crate) fn send_with_fd(
    sock: BorrowedFd<'_>,
    msg: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small for SCM_RIGHTS"));
    }
    let sent = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(msg)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != msg.len() {
        return Err(io::Error::other("short send on seqpacket socket"));
    }
    Ok(())
}

/// Receives one message into `buf` and the fd attached to it, if any (received
/// close-on-exec). Returns 0 bytes and no fd when the peer closed its end.
pub(crate) fn recv_with_fd(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut received = None;
    for cmsg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = cmsg {
            for fd in fds {
                // Keep the first; any extra fd is dropped (closed) here.
                received.get_or_insert(fd);
            }
        }
    }
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message from the helper was truncated",
        ));
    }
    Ok((msg.bytes, received))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn passes_a_file_with_a_message() {
        let (a, b) = seqpacket_pair().unwrap();
        let mut file = std::fs::File::from(
            rustix::fs::memfd_create("fdpass-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap(),
        );
        file.write_all(b"hello").unwrap();
        send_with_fd(a.as_fd(), b"ok\teth0", Some(file.as_fd())).unwrap();
        send_with_fd(a.as_fd(), b"no fd", None).unwrap();
        drop(a);

        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok\teth0");
        let mut got = std::fs::File::from(fd.expect("an fd"));
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");

        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (&b"no fd"[..], true));
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true), "EOF after the peer closed");
    }
}
