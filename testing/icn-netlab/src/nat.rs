//! Routers of the lab's switch: a host can sit behind a NAT of a known kind, the way most
//! cooperatives' machines sit behind home and office routers. The NAT is done in the
//! switch (userspace, like the rest of the wire), not with the kernel's netfilter: Linux
//! masquerade keeps source ports where it can and cannot filter as a full cone does, so
//! the kinds would not be the ones named. Here each kind is exactly its RFC 4787
//! behaviour, and [`crate::probe`] checks it from outside before a test relies on it.
//!
//! Addresses, in the lab's `10.<net>.0.0/16`:
//!
//! - `10.<net>.0.<h>`: host `h`'s own address. Behind a router it is private: packets
//!   from other hosts to it are dropped, as the Internet drops them.
//! - `10.<net>.1.<h>`: the outside address of host `h`'s router, where its mappings live.
//! - `10.<net>.2.<h>`: a second address of a public host (RFC 5780's "alternate address",
//!   which a NAT probe needs).
//!
//! Only UDP crosses a router (QUIC, ICE, STUN and TURN are UDP); anything else a host
//! behind one sends or is sent is dropped.

use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The third octet of a router's outside address.
pub(crate) const OUTSIDE: u8 = 1;
/// The third octet of a public host's second address.
pub(crate) const ALTERNATE: u8 = 2;
/// How long a mapping lives without outbound traffic: RFC 4787 asks for at least two
/// minutes; tests of expiry set less ([`crate::Lab::nat_mapping_lifetime`]).
pub const DEFAULT_MAPPING_LIFETIME: Duration = Duration::from_secs(120);
/// The ports a router maps to when it does not keep the inside port.
const PORTS: std::ops::RangeInclusive<u16> = 1024..=65_535;

/// The kinds of NAT in RFC 4787's terms (mapping, filtering), with their common names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering ("full cone").
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering ("restricted cone").
    Restricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering ("port
    /// restricted cone").
    PortRestricted,
    /// Address-and-port-dependent mapping, a random port per destination, and
    /// address-and-port-dependent filtering ("symmetric").
    Symmetric,
}

impl NatKind {
    pub const ALL: [NatKind; 4] = [NatKind::FullCone, NatKind::Restricted, NatKind::PortRestricted, NatKind::Symmetric];

    pub fn mapping(self) -> Behaviour {
        match self {
            NatKind::Symmetric => Behaviour::AddressAndPortDependent,
            _ => Behaviour::EndpointIndependent,
        }
    }

    pub fn filtering(self) -> Behaviour {
        match self {
            NatKind::FullCone => Behaviour::EndpointIndependent,
            NatKind::Restricted => Behaviour::AddressDependent,
            NatKind::PortRestricted | NatKind::Symmetric => Behaviour::AddressAndPortDependent,
        }
    }
}

/// How a mapping is chosen or an inbound packet let in (RFC 4787 sections 4.1, 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

/// One mapping: an inside port seen from outside at one outside port.
struct Binding {
    inside_port: u16,
    /// Where the inside endpoint sent through this mapping: what filtering admits.
    sent_to: HashSet<SocketAddrV4>,
    last_out: Instant,
}

/// One host's router.
pub(crate) struct Router {
    kind: NatKind,
    inside: Ipv4Addr,
    outside: Ipv4Addr,
    lifetime: Duration,
    /// (inside port, the destination when mapping depends on it) → outside port.
    outbound: HashMap<(u16, Option<SocketAddrV4>), u16>,
    /// Outside port → its mapping.
    bindings: HashMap<u16, Binding>,
    /// Restarted at least once: it no longer keeps inside ports, so every mapping after
    /// a reboot is at a new outside port.
    rebooted: bool,
}

impl Router {
    pub(crate) fn new(kind: NatKind, inside: Ipv4Addr, outside: Ipv4Addr, lifetime: Duration) -> Router {
        Router { kind, inside, outside, lifetime, outbound: HashMap::new(), bindings: HashMap::new(), rebooted: false }
    }

    /// Forgets every mapping, as a router that restarts does: each inside endpoint gets a
    /// new outside port at its next packet (a random one, so it differs from the last).
    pub(crate) fn reboot(&mut self) {
        self.outbound.clear();
        self.bindings.clear();
        self.rebooted = true;
    }

    fn expired(&self, b: &Binding, now: Instant) -> bool {
        now.duration_since(b.last_out) > self.lifetime
    }

    /// Rewrites a packet leaving the host to come from its outside mapping.
    fn out(&mut self, packet: &mut [u8]) -> Option<()> {
        let udp = Udp::parse(packet)?;
        if udp.src.ip() != &self.inside {
            return None;
        }
        let now = Instant::now();
        let key = (udp.src.port(), (self.kind.mapping() != Behaviour::EndpointIndependent).then_some(udp.dst));
        let live =
            self.outbound.get(&key).copied().filter(|p| self.bindings.get(p).is_some_and(|b| !self.expired(b, now)));
        let port = match live {
            Some(port) => port,
            None => {
                if let Some(old) = self.outbound.remove(&key) {
                    self.bindings.remove(&old);
                }
                // Endpoint-independent routers keep the inside port when they can (as
                // home routers do); symmetric ones, and any router after a reboot, pick
                // at random.
                let keep = self.kind.mapping() == Behaviour::EndpointIndependent && !self.rebooted;
                let port = self.free_port(keep.then_some(udp.src.port()))?;
                self.outbound.insert(key, port);
                let binding = Binding { inside_port: udp.src.port(), sent_to: HashSet::new(), last_out: now };
                self.bindings.insert(port, binding);
                port
            }
        };
        let binding = self.bindings.get_mut(&port).expect("mapped above");
        binding.sent_to.insert(udp.dst);
        binding.last_out = now;
        udp.rewrite(packet, Some(SocketAddrV4::new(self.outside, port)), None);
        Some(())
    }

    /// Rewrites a packet sent to the outside address to its inside endpoint, when a live
    /// mapping and the router's filtering admit it.
    fn into(&mut self, packet: &mut [u8]) -> Option<()> {
        let udp = Udp::parse(packet)?;
        let now = Instant::now();
        let binding = self.bindings.get(&udp.dst.port()).filter(|b| !self.expired(b, now))?;
        let admitted = match self.kind.filtering() {
            Behaviour::EndpointIndependent => true,
            Behaviour::AddressDependent => binding.sent_to.iter().any(|s| s.ip() == udp.src.ip()),
            Behaviour::AddressAndPortDependent => binding.sent_to.contains(&udp.src),
        };
        if !admitted {
            return None;
        }
        udp.rewrite(packet, None, Some(SocketAddrV4::new(self.inside, binding.inside_port)));
        Some(())
    }

    fn free_port(&self, wanted: Option<u16>) -> Option<u16> {
        if let Some(p) = wanted.filter(|p| !self.bindings.contains_key(p)) {
            return Some(p);
        }
        let mut rng = rand::thread_rng();
        (0..1_000).map(|_| rng.gen_range(PORTS)).find(|p| !self.bindings.contains_key(p))
    }
}

/// Why the switch did not deliver a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No host has that address, or it is a private one seen from outside.
    Unroutable,
    /// A router had no live mapping for it, or its filtering kept it out.
    Filtered,
}

/// Every router of the lab, and where packets go.
#[derive(Default)]
pub(crate) struct Routers {
    routers: HashMap<usize, Router>,
}

impl Routers {
    pub(crate) fn put(&mut self, host: usize, router: Router) {
        self.routers.insert(host, router);
    }

    pub(crate) fn reboot(&mut self, host: usize) -> bool {
        let Some(r) = self.routers.get_mut(&host) else { return false };
        r.reboot();
        true
    }

    pub(crate) fn is_behind(&self, host: usize) -> bool {
        self.routers.contains_key(&host)
    }

    /// The host a packet from host `from` goes to, rewritten by the routers on its way.
    pub(crate) fn route(&mut self, from: usize, packet: &mut [u8], net: u8, hosts: usize) -> Result<usize, Refused> {
        if packet.len() < 20 || packet[0] >> 4 != 4 || packet[16] != 10 || packet[17] != net {
            return Err(Refused::Unroutable);
        }
        let (octet, to) = (packet[18], packet[19] as usize);
        if to == 0 || to > hosts || to == from {
            return Err(Refused::Unroutable);
        }
        if let Some(router) = self.routers.get_mut(&from) {
            router.out(packet).ok_or(Refused::Unroutable)?;
        }
        match octet {
            0 | ALTERNATE if !self.routers.contains_key(&to) => Ok(to),
            OUTSIDE => {
                let router = self.routers.get_mut(&to).ok_or(Refused::Unroutable)?;
                router.into(packet).ok_or(Refused::Filtered)?;
                Ok(to)
            }
            _ => Err(Refused::Unroutable),
        }
    }
}

/// The addresses of a UDP datagram in an IPv4 packet, and where its header is.
struct Udp {
    header: usize,
    src: SocketAddrV4,
    dst: SocketAddrV4,
}

impl Udp {
    /// An unfragmented UDP datagram; nothing else crosses a router.
    fn parse(packet: &[u8]) -> Option<Udp> {
        let header = usize::from(packet[0] & 0x0f) * 4;
        let fragmented = (u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff) != 0;
        if packet[9] != 17 || fragmented || packet.len() < header + 8 || header < 20 {
            return None;
        }
        let ip = |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
        let port = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
        Some(Udp {
            header,
            src: SocketAddrV4::new(ip(12), port(header)),
            dst: SocketAddrV4::new(ip(16), port(header + 2)),
        })
    }

    /// Sets the source and/or destination, and both checksums again.
    fn rewrite(&self, packet: &mut [u8], src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) {
        let h = self.header;
        if let Some(s) = src {
            packet[12..16].copy_from_slice(&s.ip().octets());
            packet[h..h + 2].copy_from_slice(&s.port().to_be_bytes());
        }
        if let Some(d) = dst {
            packet[16..20].copy_from_slice(&d.ip().octets());
            packet[h + 2..h + 4].copy_from_slice(&d.port().to_be_bytes());
        }
        packet[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = checksum(&[&packet[..h]]);
        packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        // A zero UDP checksum means "none" in IPv4 and stays so.
        if packet[h + 6..h + 8] != [0, 0] {
            let udp_len = u16::try_from(packet.len() - h).unwrap_or(u16::MAX);
            packet[h + 6..h + 8].copy_from_slice(&[0, 0]);
            let mut pseudo = [0u8; 12];
            pseudo[..8].copy_from_slice(&packet[12..20]);
            pseudo[9] = 17;
            pseudo[10..].copy_from_slice(&udp_len.to_be_bytes());
            let sum = match checksum(&[&pseudo, &packet[h..]]) {
                0 => 0xffff,
                s => s,
            };
            packet[h + 6..h + 8].copy_from_slice(&sum.to_be_bytes());
        }
    }
}

/// The Internet checksum (RFC 1071) of the parts, each of even length but the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/UDP packet with correct checksums, built by hand.
    fn packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        // Not zero, so that a checksum is computed ("none" stays none).
        p[26..28].copy_from_slice(&[0xde, 0xad]);
        p[28..].copy_from_slice(payload);
        Udp { header: 20, src, dst }.rewrite(&mut p, Some(src), Some(dst));
        p
    }

    fn valid(p: &[u8]) -> bool {
        let mut pseudo = [0u8; 12];
        pseudo[..8].copy_from_slice(&p[12..20]);
        pseudo[9] = 17;
        pseudo[10..].copy_from_slice(&((p.len() - 20) as u16).to_be_bytes());
        checksum(&[&p[..20]]) == 0 && checksum(&[&pseudo, &p[20..]]) == 0
    }

    const NET: u8 = 222;

    fn addr(octet: u8, host: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, NET, octet, host), port)
    }

    fn routers(kind: NatKind) -> Routers {
        let mut r = Routers::default();
        let (inside, outside) = (Ipv4Addr::new(10, NET, 0, 1), Ipv4Addr::new(10, NET, OUTSIDE, 1));
        r.put(1, Router::new(kind, inside, outside, DEFAULT_MAPPING_LIFETIME));
        r
    }

    fn source(p: &[u8]) -> SocketAddrV4 {
        Udp::parse(p).unwrap().src
    }

    #[test]
    fn translation_keeps_both_checksums_right() {
        let mut r = routers(NatKind::PortRestricted);
        let mut p = packet(addr(0, 1, 5000), addr(0, 2, 3478), b"odd length!");
        assert!(valid(&p));
        assert_eq!(r.route(1, &mut p, NET, 3), Ok(2));
        assert_eq!(source(&p), addr(OUTSIDE, 1, 5000), "an endpoint-independent router keeps the port it can");
        assert!(valid(&p), "checksums after the outbound rewrite");
        let mut reply = packet(addr(0, 2, 3478), addr(OUTSIDE, 1, 5000), b"reply");
        assert_eq!(r.route(2, &mut reply, NET, 3), Ok(1));
        assert_eq!(Udp::parse(&reply).unwrap().dst, addr(0, 1, 5000));
        assert!(valid(&reply), "checksums after the inbound rewrite");
    }

    #[test]
    fn each_kind_filters_and_maps_as_named() {
        for kind in NatKind::ALL {
            let mut r = routers(kind);
            let mut out = packet(addr(0, 1, 5000), addr(0, 2, 3478), b"x");
            r.route(1, &mut out, NET, 3).unwrap();
            let mapped = source(&out);
            let from = |src: SocketAddrV4, r: &mut Routers| {
                let mut p = packet(src, mapped, b"y");
                r.route(usize::from(src.ip().octets()[3]), &mut p, NET, 3)
            };
            let same_ip_other_port = from(addr(0, 2, 9999), &mut r).is_ok();
            let other_host = from(addr(0, 3, 3478), &mut r).is_ok();
            let answer = from(addr(0, 2, 3478), &mut r).is_ok();
            assert!(answer, "{kind:?}: the endpoint it sent to answers");
            let expected = match kind.filtering() {
                Behaviour::EndpointIndependent => (true, true),
                Behaviour::AddressDependent => (true, false),
                Behaviour::AddressAndPortDependent => (false, false),
            };
            assert_eq!((same_ip_other_port, other_host), expected, "{kind:?}");
            let mut second = packet(addr(0, 1, 5000), addr(0, 3, 3478), b"x");
            r.route(1, &mut second, NET, 3).unwrap();
            let same_mapping = source(&second) == mapped;
            assert_eq!(same_mapping, kind.mapping() == Behaviour::EndpointIndependent, "{kind:?}");
        }
    }

    #[test]
    fn a_private_address_is_unreachable_and_a_rebooted_router_forgets() {
        let mut r = routers(NatKind::FullCone);
        let mut p = packet(addr(0, 2, 1), addr(0, 1, 5000), b"x");
        assert_eq!(r.route(2, &mut p, NET, 3), Err(Refused::Unroutable));
        let mut out = packet(addr(0, 1, 5000), addr(0, 2, 3478), b"x");
        r.route(1, &mut out, NET, 3).unwrap();
        assert!(r.reboot(1));
        let mut late = packet(addr(0, 2, 3478), source(&out), b"y");
        assert_eq!(r.route(2, &mut late, NET, 3), Err(Refused::Filtered), "the old mapping is gone");
        let mut again = packet(addr(0, 1, 5000), addr(0, 2, 3478), b"x");
        r.route(1, &mut again, NET, 3).unwrap();
        assert_ne!(source(&again), source(&out), "a new outside port after the reboot");
    }
}
