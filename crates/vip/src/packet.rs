//! VRRP advertisements on the wire: version 3 (RFC 5798) and version 2 (RFC 3768, with the
//! simple-text authentication keepalived implements), IPv4. Encoding computes the checksum;
//! decoding checks everything the RFCs make a receiver check before the state machine sees
//! the packet.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The IPv4 multicast group advertisements go to.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Advertisements are sent, and must arrive, with this TTL (hop limit).
pub const TTL: u8 = 255;

const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_NONE: u8 = 0;
const AUTH_SIMPLE: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// Authentication of a version 2 advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// keepalived's `auth_type PASS`: up to 8 bytes of text, zero padded.
    Simple([u8; 8]),
}

impl Auth {
    /// `auth_pass` as keepalived reads it: the first 8 bytes.
    pub fn simple(password: &str) -> Auth {
        let mut key = [0u8; 8];
        for (k, b) in key.iter_mut().zip(password.bytes()) {
            *k = b;
        }
        Auth::Simple(key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (version 2 carries whole seconds).
    pub interval_cs: u16,
    pub addresses: Vec<Ipv4Addr>,
    /// Version 2 only.
    pub auth: Auth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadTtl(u8),
    BadVersion(u8),
    BadType(u8),
    BadChecksum,
    /// The address count does not match the packet's length.
    BadLength,
    UnknownAuthType(u8),
    /// The sender's IPv4 header is not what a VRRP packet comes in.
    NotVrrp,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "packet too short"),
            DecodeError::BadTtl(t) => write!(f, "TTL {t} is not 255"),
            DecodeError::BadVersion(v) => write!(f, "version {v} is not 2 or 3"),
            DecodeError::BadType(t) => write!(f, "type {t} is not an advertisement"),
            DecodeError::BadChecksum => write!(f, "bad checksum"),
            DecodeError::BadLength => write!(f, "address count does not match the length"),
            DecodeError::UnknownAuthType(t) => write!(f, "unknown authentication type {t}"),
            DecodeError::NotVrrp => write!(f, "not a VRRP packet"),
        }
    }
}

impl Advert {
    /// The VRRP message (what follows the IPv4 header). `src` and `dst` are the addresses of
    /// the IPv4 header, which the version 3 checksum covers (the group, or a unicast peer).
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let count = self.addresses.len().min(255);
        let mut out = Vec::with_capacity(8 + 4 * count + 8);
        match self.version {
            Version::V3 => {
                out.push(0x30 | TYPE_ADVERTISEMENT);
                out.push(self.vrid);
                out.push(self.priority);
                out.push(count as u8);
                out.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
            }
            Version::V2 => {
                out.push(0x20 | TYPE_ADVERTISEMENT);
                out.push(self.vrid);
                out.push(self.priority);
                out.push(count as u8);
                out.push(match self.auth {
                    Auth::None => AUTH_NONE,
                    Auth::Simple(_) => AUTH_SIMPLE,
                });
                out.push((self.interval_cs / 100).clamp(1, 255) as u8);
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in self.addresses.iter().take(count) {
            out.extend_from_slice(&a.octets());
        }
        if self.version == Version::V2 {
            match &self.auth {
                Auth::None => out.extend_from_slice(&[0; 8]),
                Auth::Simple(key) => out.extend_from_slice(key),
            }
        }
        let sum = match self.version {
            Version::V3 => checksum(&[&pseudo_header(src, dst, out.len()), &out]),
            Version::V2 => checksum(&[&out]),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Decodes an advertisement from a whole IPv4 packet (as a raw socket delivers it),
    /// checking TTL, version, type, length and checksum. Returns the sender and the advert.
    pub fn decode_ip(packet: &[u8]) -> Result<(Ipv4Addr, Advert), DecodeError> {
        if packet.len() < 20 {
            return Err(DecodeError::Truncated);
        }
        let ihl = (packet[0] & 0x0f) as usize * 4;
        if packet[0] >> 4 != 4 || ihl < 20 || packet.len() < ihl || packet[9] != PROTOCOL {
            return Err(DecodeError::NotVrrp);
        }
        if packet[8] != TTL {
            return Err(DecodeError::BadTtl(packet[8]));
        }
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let total = u16::from_be_bytes([packet[2], packet[3]]) as usize;
        let end = total.clamp(ihl, packet.len());
        Advert::decode(&packet[ihl..end], src, dst).map(|a| (src, a))
    }

    /// Decodes the VRRP message itself; `src` and `dst` are the IPv4 header's addresses
    /// (version 3's checksum covers them).
    pub fn decode(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, DecodeError> {
        if msg.len() < 8 {
            return Err(DecodeError::Truncated);
        }
        let version = match msg[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            v => return Err(DecodeError::BadVersion(v)),
        };
        if msg[0] & 0x0f != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType(msg[0] & 0x0f));
        }
        let count = msg[3] as usize;
        let expected = 8 + 4 * count + if version == Version::V2 { 8 } else { 0 };
        if msg.len() < expected {
            return Err(DecodeError::BadLength);
        }
        let msg = &msg[..expected];
        let sum = match version {
            Version::V3 => checksum(&[&pseudo_header(src, dst, msg.len()), msg]),
            Version::V2 => checksum(&[msg]),
        };
        if sum != 0 {
            return Err(DecodeError::BadChecksum);
        }
        let addresses = msg[8..8 + 4 * count]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        let (interval_cs, auth) = match version {
            Version::V3 => (u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff, Auth::None),
            Version::V2 => {
                let auth = match msg[4] {
                    AUTH_NONE => Auth::None,
                    AUTH_SIMPLE => {
                        let mut key = [0u8; 8];
                        key.copy_from_slice(&msg[expected - 8..expected]);
                        Auth::Simple(key)
                    }
                    other => return Err(DecodeError::UnknownAuthType(other)),
                };
                (msg[5] as u16 * 100, auth)
            }
        };
        Ok(Advert {
            version,
            vrid: msg[1],
            priority: msg[2],
            interval_cs,
            addresses,
            auth,
        })
    }
}

/// The IPv4 pseudo-header VRRPv3's checksum covers (RFC 5798 §5.2.8).
fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTOCOL;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`; over data that
/// includes a correct checksum it is 0.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A whole IPv4 packet around `msg`, as sent on a raw socket with IP_HDRINCL; used by tests
/// and for the version 3 checksum's view of the header.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
    let total = 20 + msg.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = ttl;
    p[9] = PROTOCOL;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&p]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(msg);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

    fn v3() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 200, 0, 100)],
            auth: Auth::None,
        }
    }

    #[test]
    fn version_3_round_trips_with_a_pseudo_header_checksum() {
        let a = v3();
        let msg = a.encode(SRC, GROUP);
        assert_eq!(msg.len(), 12);
        assert_eq!(&msg[..6], &[0x31, 51, 100, 1, 0, 100]);
        assert_eq!(Advert::decode(&msg, SRC, GROUP), Ok(a.clone()));
        // The checksum covers the addresses of the IP header: another sender fails it.
        assert_eq!(
            Advert::decode(&msg, Ipv4Addr::new(10, 200, 0, 2), GROUP),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn a_unicast_advert_is_summed_over_its_peers_address() {
        let peer = Ipv4Addr::new(10, 200, 0, 2);
        let msg = v3().encode(SRC, peer);
        assert_eq!(Advert::decode(&msg, SRC, peer), Ok(v3()));
        assert_eq!(
            Advert::decode(&msg, SRC, GROUP),
            Err(DecodeError::BadChecksum)
        );
    }

    #[test]
    fn sub_second_intervals_are_centiseconds() {
        let mut a = v3();
        a.interval_cs = 10; // 100 ms
        let msg = a.encode(SRC, GROUP);
        assert_eq!(Advert::decode(&msg, SRC, GROUP).unwrap().interval_cs, 10);
    }

    #[test]
    fn version_2_carries_seconds_and_simple_authentication() {
        let a = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 90,
            interval_cs: 100,
            addresses: vec![
                Ipv4Addr::new(10, 200, 0, 100),
                Ipv4Addr::new(10, 200, 0, 101),
            ],
            auth: Auth::simple("amqpvip1-and-more"),
        };
        let msg = a.encode(SRC, GROUP);
        assert_eq!(msg.len(), 8 + 8 + 8);
        assert_eq!(&msg[..6], &[0x21, 51, 90, 2, 1, 1]);
        assert_eq!(
            &msg[16..],
            b"amqpvip1",
            "keepalived keeps the first 8 bytes"
        );
        let back = Advert::decode(&msg, SRC, GROUP).unwrap();
        assert_eq!(back.auth, Auth::simple("amqpvip1"));
        assert_eq!(back.interval_cs, 100);
        assert_eq!(back.addresses, a.addresses);
        // Version 2's checksum does not cover the IP header.
        assert!(Advert::decode(&msg, Ipv4Addr::new(1, 2, 3, 4), GROUP).is_ok());
    }

    #[test]
    fn whole_packets_are_checked_for_ttl_and_protocol() {
        let msg = v3().encode(SRC, GROUP);
        let ok = ipv4_packet(SRC, GROUP, 255, &msg);
        assert_eq!(Advert::decode_ip(&ok).unwrap(), (SRC, v3()));
        let routed = ipv4_packet(SRC, GROUP, 254, &msg);
        assert_eq!(Advert::decode_ip(&routed), Err(DecodeError::BadTtl(254)));
        let mut other = ok.clone();
        other[9] = 6;
        assert_eq!(Advert::decode_ip(&other), Err(DecodeError::NotVrrp));
    }

    #[test]
    fn damaged_messages_are_refused() {
        let msg = v3().encode(SRC, GROUP);
        let mut flipped = msg.clone();
        flipped[2] ^= 1;
        assert_eq!(
            Advert::decode(&flipped, SRC, GROUP),
            Err(DecodeError::BadChecksum)
        );
        assert_eq!(
            Advert::decode(&msg[..10], SRC, GROUP),
            Err(DecodeError::BadLength)
        );
        assert_eq!(
            Advert::decode(&msg[..4], SRC, GROUP),
            Err(DecodeError::Truncated)
        );
        let mut v4 = msg.clone();
        v4[0] = 0x41;
        assert_eq!(
            Advert::decode(&v4, SRC, GROUP),
            Err(DecodeError::BadVersion(4))
        );
        let mut t2 = msg;
        t2[0] = 0x32;
        assert_eq!(
            Advert::decode(&t2, SRC, GROUP),
            Err(DecodeError::BadType(2))
        );
    }

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        assert_eq!(
            checksum(&[&data[..3], &data[3..]]),
            !0xddf2,
            "split mid-word"
        );
    }
}
