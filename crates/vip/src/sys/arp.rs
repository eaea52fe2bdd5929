//! Gratuitous ARP: a new master announces that the virtual addresses are now at its hardware
//! address, so that hosts and switches update their caches at once instead of waiting for
//! their entries to expire.

use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, sendto, socket,
};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

const ETH_P_ARP: u16 = 0x0806;

/// The Ethernet frame of a gratuitous ARP request for `ip` from `mac`.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // broadcast
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// Sends one gratuitous ARP for each address out of interface `index`.
pub fn announce(index: u32, mac: [u8; 6], addrs: &[Ipv4Addr]) -> std::io::Result<()> {
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: sockaddr_ll is plain data, for which all zeroes is a valid value.
    let mut ll: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = nix::libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = index as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `ll` is a fully initialised sockaddr_ll and the length given is its size.
    let dest = unsafe {
        LinkAddr::from_raw(
            (&ll as *const nix::libc::sockaddr_ll).cast(),
            Some(std::mem::size_of::<nix::libc::sockaddr_ll>() as nix::libc::socklen_t),
        )
    }
    .ok_or_else(|| std::io::Error::other("cannot build a link-layer address"))?;
    for ip in addrs {
        sendto(fd.as_raw_fd(), &frame(mac, *ip), &dest, MsgFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_request_names_the_address_as_sender_and_target() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = frame(mac, Ipv4Addr::new(10, 200, 0, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 200, 0, 100]);
        assert_eq!(&f[38..42], &[10, 200, 0, 100]);
    }
}
