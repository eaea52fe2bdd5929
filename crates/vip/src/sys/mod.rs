//! The daemon's contact with the kernel: the VRRP raw socket, addresses by rtnetlink,
//! gratuitous ARP on a packet socket, and interface facts.

pub mod arp;
pub mod iface;
pub mod netlink;
pub mod socket;
