//! The VRRP socket: raw IP protocol 112 on one interface, joined to 224.0.0.18 (or talking
//! to unicast peers), sending with TTL 255 and receiving whole IPv4 packets so that the TTL
//! can be checked.

use crate::packet::{Advert, GROUP, PROTOCOL, TTL};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use tokio::io::unix::AsyncFd;

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    /// Where advertisements go: the group, or each unicast peer.
    destinations: Vec<Ipv4Addr>,
}

impl VrrpSocket {
    pub fn open(
        interface: &str,
        local: Ipv4Addr,
        unicast_peers: &[Ipv4Addr],
    ) -> std::io::Result<VrrpSocket> {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(PROTOCOL as i32)),
        )?;
        s.bind_device(Some(interface.as_bytes()))?;
        s.set_ttl_v4(TTL as u32)?;
        if unicast_peers.is_empty() {
            s.set_multicast_ttl_v4(TTL as u32)?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_if_v4(&local)?;
            s.join_multicast_v4(&GROUP, &local)?;
        }
        if !unicast_peers.is_empty() {
            // Unicast: the source of what we send, and the destination of what we accept.
            // (Bound to an address, a raw socket would not see the multicast group's packets,
            // so in multicast mode the interface's primary address is the source.)
            s.bind(&SockAddr::from(SocketAddrV4::new(local, 0)))?;
        }
        s.set_nonblocking(true)?;
        let destinations = if unicast_peers.is_empty() {
            vec![GROUP]
        } else {
            unicast_peers.to_vec()
        };
        // SAFETY: the socket owns its descriptor, which stays open and the same for as long
        // as the AsyncFd holds it.
        let fd =
            unsafe { AsyncFd::register(s) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(VrrpSocket { fd, destinations })
    }

    /// Sends the advertisement to each destination, each with its own checksum.
    pub fn send(&self, advert: &Advert, src: Ipv4Addr) -> std::io::Result<()> {
        for d in &self.destinations {
            self.fd.get_ref().send_to(
                &advert.encode(src, *d),
                &SockAddr::from(SocketAddrV4::new(*d, 0)),
            )?;
        }
        Ok(())
    }

    /// The next whole IPv4 packet.
    pub async fn recv(&self) -> std::io::Result<Vec<u8>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = vec![0u8; 2048];
            match guard.try_io(|s| {
                use std::io::Read;
                s.get_ref().read(&mut buf)
            }) {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    pub fn destinations(&self) -> &[Ipv4Addr] {
        &self.destinations
    }
}
