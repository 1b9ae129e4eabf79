//! Tells a router's kind from outside, the way RFC 5780 does, so that a test of NAT
//! traversal cannot pass on a mislabelled router: a probe server on a public host
//! answers from two addresses and two ports, and a client behind the router compares
//! the mapped addresses it is told and which answers get through.
//!
//! The probe's protocol is the lab's own (STUN's CHANGE-REQUEST, cut to what is asked):
//! a request is `P`, where to answer from ([`AnswerFrom`]) and a number the answer
//! repeats (so a late answer to an earlier request is not taken for this one); the
//! answer is `R`, that number and the address the request came from (4 bytes of IPv4,
//! 2 of port).

use crate::nat::Behaviour;
use crate::Lab;
use anyhow::{bail, Context};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The probe server's two ports (beside STUN's 3478, which a lab host may also run).
const PORTS: [u16; 2] = [3490, 3491];
/// How long a client waits for one answer before asking again, and how often.
const WAIT: Duration = Duration::from_millis(300);
const ATTEMPTS: usize = 3;

/// Where the server answers from, relative to where the request arrived.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum AnswerFrom {
    Same = 0,
    OtherPort = 1,
    OtherAddressAndPort = 2,
}

/// A router's behaviour as probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub mapping: Behaviour,
    pub filtering: Behaviour,
}

/// The probe server: four sockets (two addresses × two ports) on a public host.
pub struct ProbeServer {
    /// [address][port]
    addresses: [[SocketAddrV4; 2]; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ProbeServer {
    /// Starts on public host `index`, giving it its second address.
    pub fn start(lab: &Lab, index: usize) -> anyhow::Result<ProbeServer> {
        let primary: Ipv4Addr = lab.host(index).data_ip.parse()?;
        let alternate: Ipv4Addr = lab.add_alternate_address(index)?.parse()?;
        let addresses = [primary, alternate].map(|ip| PORTS.map(|port| SocketAddrV4::new(ip, port)));
        let sockets = crate::within(&lab.host(index).namespace, || {
            let mut all = Vec::new();
            for a in addresses.iter().flatten() {
                let s = UdpSocket::bind(a).with_context(|| format!("binding the probe server at {a}"))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                all.push(Arc::new(s));
            }
            Ok(all)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for at in 0..4 {
            let (sockets, stop) = (sockets.clone(), stop.clone());
            threads.push(std::thread::spawn(move || serve(&sockets, at, &stop)));
        }
        Ok(ProbeServer { addresses, stop, threads })
    }

    /// Classifies the router of host `index` from a client there.
    pub fn classify(&self, lab: &Lab, index: usize) -> anyhow::Result<Classified> {
        let [[a1p1, _], [a2p1, a2p2]] = self.addresses;
        crate::within(&lab.host(index).namespace, || {
            // Mapping (RFC 5780 4.3): one local socket asks three servers what it looks like.
            let socket = new_client()?;
            let m1 =
                ask(&socket, a1p1, AnswerFrom::Same)?.context("no answer from the probe server's first address")?;
            let m2 =
                ask(&socket, a2p1, AnswerFrom::Same)?.context("no answer from the probe server's second address")?;
            let mapping = if m1 == m2 {
                Behaviour::EndpointIndependent
            } else {
                let m3 =
                    ask(&socket, a2p2, AnswerFrom::Same)?.context("no answer from the second address's other port")?;
                if m3 == m2 {
                    Behaviour::AddressDependent
                } else {
                    Behaviour::AddressAndPortDependent
                }
            };
            // Filtering (RFC 5780 4.4): a fresh socket, one server; which answers come back.
            let socket = new_client()?;
            ask(&socket, a1p1, AnswerFrom::Same)?.context("no answer to the filtering probe")?;
            let filtering = if ask(&socket, a1p1, AnswerFrom::OtherAddressAndPort)?.is_some() {
                Behaviour::EndpointIndependent
            } else if ask(&socket, a1p1, AnswerFrom::OtherPort)?.is_some() {
                Behaviour::AddressDependent
            } else {
                Behaviour::AddressAndPortDependent
            };
            Ok(Classified { mapping, filtering })
        })
    }
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Answers the requests that arrive at socket `at` (index = address * 2 + port).
fn serve(sockets: &[Arc<UdpSocket>], at: usize, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, std::net::SocketAddr::V4(from))) = sockets[at].recv_from(&mut buf) else { continue };
        if n != 3 || buf[0] != b'P' {
            continue;
        }
        let (address, port) = (at / 2, at % 2);
        let reply_from = match buf[1] {
            0 => at,
            1 => address * 2 + (1 - port),
            2 => (1 - address) * 2 + (1 - port),
            _ => continue,
        };
        let mut answer = [0u8; 8];
        answer[..2].copy_from_slice(&[b'R', buf[2]]);
        answer[2..6].copy_from_slice(&from.ip().octets());
        answer[6..].copy_from_slice(&from.port().to_be_bytes());
        let _ = sockets[reply_from].send_to(&answer, from);
    }
}

fn new_client() -> anyhow::Result<UdpSocket> {
    UdpSocket::bind("0.0.0.0:0").context("binding a probe client")
}

/// Asks `server` to answer from `from`; the mapped address it saw, or none if no
/// answer came through.
fn ask(client: &UdpSocket, server: SocketAddrV4, from: AnswerFrom) -> anyhow::Result<Option<SocketAddrV4>> {
    static ASKED: AtomicU8 = AtomicU8::new(0);
    let number = ASKED.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 64];
    for _ in 0..ATTEMPTS {
        client.send_to(&[b'P', from as u8, number], server)?;
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            client.set_read_timeout(Some(left))?;
            match client.recv_from(&mut buf) {
                Ok((8, _)) if buf[0] == b'R' && buf[1] == number => {
                    let ip = Ipv4Addr::new(buf[2], buf[3], buf[4], buf[5]);
                    return Ok(Some(SocketAddrV4::new(ip, u16::from_be_bytes([buf[6], buf[7]]))));
                }
                // An answer to an earlier request.
                Ok((8, _)) if buf[0] == b'R' => {}
                Ok(_) => bail!("a malformed answer from the probe server"),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}
