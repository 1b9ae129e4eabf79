//! The lab's wire: one TUN device per host, and threads that move IPv4 packets between
//! them, dropping or holding them back as the faults say.

use crate::nat::{Refused, Routers};
use anyhow::{bail, Context};
use rand::Rng;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked threads look at the stop flag.
const POLL_INTERVAL_MS: i32 = 100;
/// Largest packet read from a TUN device (its MTU is 1500; this leaves room).
const MAX_PACKET: usize = 65_536;

#[derive(Default, Clone, Debug)]
pub struct Faults {
    /// (from, to) host pairs whose packets are dropped.
    pub cuts: HashSet<(usize, usize)>,
    /// Percent of packets a host sends that are dropped.
    pub loss: HashMap<usize, u32>,
    /// Delay added to every packet a host sends.
    pub delay: HashMap<usize, Duration>,
}

/// A packet waiting for its delay to pass.
struct Pending {
    due: Instant,
    to: usize,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so the max-heap yields the earliest due packet first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

pub struct Switch {
    faults: Arc<Mutex<Faults>>,
    routers: Arc<Mutex<Routers>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    filtered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Switch {
    /// Creates `tun0` in each namespace and starts forwarding. Host `i` (1-based) owns the
    /// data address `10.<net>.0.<i>`; the routers (`crate::nat`) decide the rest.
    pub fn start(namespaces: &[String], net: u8) -> anyhow::Result<Switch> {
        let mut tuns = Vec::new();
        for ns in namespaces {
            tuns.push(Arc::new(open_tun_in(ns).with_context(|| format!("creating tun0 in {ns}"))?));
        }
        let faults = Arc::new(Mutex::new(Faults::default()));
        let routers = Arc::new(Mutex::new(Routers::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let filtered = Arc::new(AtomicU64::new(0));
        let (delayed_tx, delayed_rx) = mpsc::channel::<Pending>();
        let mut threads = Vec::new();
        for (i, tun) in tuns.iter().enumerate() {
            let from = i + 1;
            let (tun, tuns, faults, stop, dropped, delayed) =
                (tun.clone(), tuns.clone(), faults.clone(), stop.clone(), dropped.clone(), delayed_tx.clone());
            let (routers, filtered) = (routers.clone(), filtered.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; MAX_PACKET];
                while !stop.load(Ordering::Relaxed) {
                    if !readable(&tun) {
                        continue;
                    }
                    let n = match (&*tun).read(&mut buf) {
                        Ok(n) => n,
                        Err(_) => return,
                    };
                    let packet = &mut buf[..n];
                    // Where it goes, rewritten by the routers on its way (`crate::nat`).
                    let to = match routers.lock().expect("routers lock").route(from, packet, net, tuns.len()) {
                        Ok(to) => to,
                        Err(Refused::Filtered) => {
                            filtered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(Refused::Unroutable) => continue,
                    };
                    let packet = &*packet;
                    let (cut, loss, delay) = {
                        let f = faults.lock().expect("faults lock");
                        (
                            f.cuts.contains(&(from, to)),
                            f.loss.get(&from).copied().unwrap_or(0),
                            f.delay.get(&from).copied().unwrap_or_default(),
                        )
                    };
                    if cut || (loss > 0 && rand::thread_rng().gen_range(0..100) < loss) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if delay.is_zero() {
                        let _ = (&*tuns[to - 1]).write(packet);
                    } else {
                        let _ = delayed.send(Pending { due: Instant::now() + delay, to, packet: packet.to_vec() });
                    }
                }
            }));
        }
        drop(delayed_tx);
        let (tuns_for_delay, stop_for_delay) = (tuns.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut heap = BinaryHeap::new();
            while !stop_for_delay.load(Ordering::Relaxed) {
                let timeout = heap
                    .peek()
                    .map(|p: &Pending| p.due.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(POLL_INTERVAL_MS as u64))
                    .min(Duration::from_millis(POLL_INTERVAL_MS as u64));
                match delayed_rx.recv_timeout(timeout) {
                    Ok(p) => heap.push(p),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) if heap.is_empty() => return,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {}
                }
                while heap.peek().is_some_and(|p| p.due <= Instant::now()) {
                    let p = heap.pop().expect("peeked");
                    let _ = (&*tuns_for_delay[p.to - 1]).write(&p.packet);
                }
            }
        }));
        Ok(Switch { faults, routers, stop, dropped, filtered, threads })
    }

    pub fn change(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().expect("faults lock"));
    }

    pub(crate) fn routers<R>(&self, change: impl FnOnce(&mut Routers) -> R) -> R {
        change(&mut self.routers.lock().expect("routers lock"))
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Packets a router kept out (no live mapping, or its filtering).
    pub fn filtered(&self) -> u64 {
        self.filtered.load(Ordering::Relaxed)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Waits up to the poll interval for a packet.
fn readable(tun: &File) -> bool {
    let mut fd = libc::pollfd { fd: tun.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, POLL_INTERVAL_MS) > 0 }
}

/// Opens a new TUN device `tun0` inside network namespace `ns`.
fn open_tun_in(ns: &str) -> anyhow::Result<File> {
    crate::within(ns, || open_tun("tun0"))
}

fn open_tun(name: &str) -> anyhow::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    // SAFETY: plain open of a character device.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        bail!("opening /dev/net/tun: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by the File from here on.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut req =
        IfReq { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq that lives for the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        bail!("TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    }
    Ok(file)
}
