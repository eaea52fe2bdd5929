//! What the daemon needs to know about a network interface: its index, its primary IPv4
//! address, its hardware address, and whether its link is up.

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// The first IPv4 address that is not one of `exclude` (the virtual addresses).
    pub primary: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    /// Administratively up with a carrier.
    pub running: bool,
}

pub fn lookup(name: &str, exclude: &[Ipv4Addr]) -> std::io::Result<Interface> {
    let index = nix::net::if_::if_nametoindex(name)
        .map_err(|e| std::io::Error::other(format!("interface {name}: {e}")))?;
    let mut iface = Interface {
        name: name.to_string(),
        index,
        primary: None,
        mac: None,
        running: false,
    };
    for a in getifaddrs().map_err(std::io::Error::other)? {
        if a.interface_name != name {
            continue;
        }
        iface.running |= a
            .flags
            .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
        let Some(addr) = a.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            let ip = v4.ip();
            if iface.primary.is_none() && !exclude.contains(&ip) {
                iface.primary = Some(ip);
            }
        } else if let Some(link) = addr.as_link_addr() {
            if let Some(mac) = link.addr() {
                iface.mac = Some(mac);
            }
        }
    }
    Ok(iface)
}
