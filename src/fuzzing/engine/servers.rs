//! The host's servers for the `engine_packets` harness, on the loopback of its
//! namespace: what the engine reaches through the gateway address.

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};

/// The host's servers on `lo`: UDP echo on ports 53 and 7, TCP echo on port 80.
pub(super) struct Servers {
    udp: Vec<UdpSocket>,
    listeners: Vec<TcpListener>,
    /// Connections accepted during one input (closed at its end).
    pub(super) accepted: Vec<TcpStream>,
    buf: Vec<u8>,
}

impl Servers {
    pub(super) fn new() -> io::Result<Self> {
        let (mut udp, mut listeners) = (Vec::new(), Vec::new());
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            // IPv6 may be off in the kernel: then only IPv4.
            for p in [53, 7] {
                if let Ok(s) = UdpSocket::bind((ip, p)) {
                    s.set_nonblocking(true)?;
                    udp.push(s);
                }
            }
            if let Ok(l) = TcpListener::bind((ip, 80)) {
                l.set_nonblocking(true)?;
                listeners.push(l);
            }
        }
        if udp.is_empty() || listeners.is_empty() {
            return Err(io::Error::other("no loopback servers"));
        }
        Ok(Self {
            udp,
            listeners,
            accepted: Vec::new(),
            buf: vec![0; 65536],
        })
    }

    /// Answers what waits, without blocking.
    pub(super) fn serve(&mut self) {
        let buf = &mut self.buf;
        for s in &self.udp {
            for _ in 0..64 {
                let Ok((n, from)) = s.recv_from(buf) else {
                    break;
                };
                let _ = s.send_to(&buf[..n], from);
            }
        }
        for l in &self.listeners {
            while let Ok((c, _)) = l.accept() {
                if c.set_nonblocking(true).is_ok() {
                    self.accepted.push(c);
                }
            }
        }
        self.accepted.retain_mut(|c| {
            for _ in 0..16 {
                match c.read(buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        let _ = c.write(&buf[..n]);
                    }
                    Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
                }
            }
            true
        });
    }
}
