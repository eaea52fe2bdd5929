//! Adds and removes IPv4 addresses with rtnetlink (RTM_NEWADDR, RTM_DELADDR), the way `ip
//! addr` does, including a valid lifetime: the master keeps renewing its virtual addresses
//! with a short one, so that if it dies without a word (kill -9) the kernel removes them
//! soon after and two hosts do not keep answering for the same address.

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    socket,
};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_CACHEINFO: u16 = 6;
const AF_INET: u8 = 2;
const EADDRNOTAVAIL: i32 = 99;

/// An address on an interface, as `ip addr` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub label: Option<String>,
}

pub struct Netlink {
    fd: OwnedFd,
    seq: AtomicU32,
}

impl Netlink {
    pub fn open() -> std::io::Result<Netlink> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink {
            fd,
            seq: AtomicU32::new(1),
        })
    }

    /// Adds the address, or refreshes it (and its lifetime) if it is there; `lifetime_s` of
    /// None means forever.
    pub fn add(&self, a: &Address, lifetime_s: Option<u32>) -> std::io::Result<()> {
        let msg = self.message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, a, lifetime_s);
        self.request(&msg)
    }

    /// Removes the address; one that is not there is not an error.
    pub fn remove(&self, a: &Address) -> std::io::Result<()> {
        let msg = self.message(RTM_DELADDR, 0, a, None);
        match self.request(&msg) {
            Err(e) if e.raw_os_error() == Some(EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    fn message(&self, kind: u16, flags: u16, a: &Address, lifetime_s: Option<u32>) -> Vec<u8> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut m = vec![0u8; 16];
        // ifaddrmsg: family, prefix length, flags, scope (universe), interface index.
        m.extend_from_slice(&[AF_INET, a.prefix, 0, 0]);
        m.extend_from_slice(&a.index.to_ne_bytes());
        attr(&mut m, IFA_LOCAL, &a.addr.octets());
        attr(&mut m, IFA_ADDRESS, &a.addr.octets());
        if kind == RTM_NEWADDR {
            if a.prefix < 31 {
                let mask = u32::MAX.checked_shl(32 - a.prefix as u32).unwrap_or(0);
                let bcast = u32::from(a.addr) | !mask;
                attr(&mut m, IFA_BROADCAST, &bcast.to_be_bytes());
            }
            if let Some(label) = &a.label {
                let mut l = label.as_bytes().to_vec();
                l.push(0);
                attr(&mut m, IFA_LABEL, &l);
            }
            let life = lifetime_s.unwrap_or(u32::MAX);
            let mut info = Vec::with_capacity(16);
            info.extend_from_slice(&life.to_ne_bytes()); // preferred
            info.extend_from_slice(&life.to_ne_bytes()); // valid
            info.extend_from_slice(&[0u8; 8]);
            attr(&mut m, IFA_CACHEINFO, &info);
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    fn request(&self, msg: &[u8]) -> std::io::Result<()> {
        sendto(
            self.fd.as_raw_fd(),
            msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = [0u8; 4096];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let reply = &buf[..n];
        if reply.len() >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            if code != 0 {
                return Err(std::io::Error::from_raw_os_error(-code));
            }
        }
        Ok(())
    }
}

fn attr(m: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = (4 + data.len()) as u16;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(data);
    while m.len() % 4 != 0 {
        m.push(0);
    }
}
