//! A network lab of Linux network namespaces, for tests of what crosses a network:
//! hosts with their own addresses and kernel network stacks, and a wire between them
//! that can cut links, partition groups, drop a share of packets, add delay, and heal.
//!
//! ```text
//!   test process (root namespace) ──control links (veth)──▶ host h1 … hN (gRPC, metrics)
//!
//!   host h1 tun0 ─┐
//!   host h2 tun0 ─┼─ the lab's switch (threads of the test process): forwards IPv4
//!   host hN tun0 ─┘  packets between hosts, applying the faults
//! ```
//!
//! Each host has a *data* address `10.X.0.h` on a TUN device (QUIC runs there) and a
//! *control* address `10.X.(100+h).2` on a veth to the root namespace. Faults act on the
//! data plane only, so the test always sees its hosts. The switch is in userspace because
//! the kernels this runs on may lack netem and NFQUEUE (this project's CI kernel lacks
//! both); the hosts' stacks are the real kernel's.
//!
//! A host can also sit behind a router of a known NAT kind ([`Lab::behind_nat`], made in
//! the switch: `nat`), and [`probe`] tells from outside which kind a router is. A public
//! host can run a real TURN and STUN server ([`turn::Coturn`]).
//!
//! Needs root and iproute2. Everything is removed when the [`Lab`] is dropped.

pub mod nat;
pub mod probe;
mod switch;
pub mod turn;

use anyhow::{bail, Context};
pub use nat::NatKind;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use switch::{Faults, Switch};

/// One host of the lab.
#[derive(Clone, Debug)]
pub struct Host {
    pub index: usize,
    /// Network namespace; run a program there with `ip netns exec <ns> …`.
    pub namespace: String,
    /// Address peers reach this host at.
    pub data_ip: String,
    /// Address the test (root namespace) reaches this host at.
    pub control_ip: String,
}

pub struct Lab {
    prefix: String,
    /// The second octet of every lab address.
    net: u8,
    hosts: Vec<Host>,
    switch: Option<Switch>,
}

pub(crate) fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a thread that joins network namespace `ns` for the purpose (a thread's
/// namespace is its own, so the rest of the process is unaffected): what `f` opens
/// (a TUN device, sockets) belongs to that namespace and may be used from any thread.
pub(crate) fn within<T: Send>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<T> {
                let ns_file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                // SAFETY: setns on this thread only, with a namespace file we hold open.
                if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns_file), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns into {ns}: {}", std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    })
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

impl Lab {
    /// Builds a lab of `hosts` hosts joined by the switch.
    pub fn new(hosts: usize) -> anyhow::Result<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the network lab needs root (network namespaces); run the lab suite as root");
        }
        if hosts == 0 || hosts > 50 {
            bail!("a lab has 1 to 50 hosts");
        }
        static LABS: AtomicU32 = AtomicU32::new(0);
        let serial = LABS.fetch_add(1, Ordering::SeqCst);
        let net = (200 + (std::process::id() + serial * 7) % 50) as u8;
        let prefix = format!("icnl{}{}", std::process::id() % 10_000, serial);
        let mut lab = Lab { prefix: prefix.clone(), net, hosts: Vec::new(), switch: None };
        for h in 1..=hosts {
            let ns = format!("{prefix}h{h}");
            let (data_ip, control_ip) = (format!("10.{net}.0.{h}"), format!("10.{net}.{}.2", 100 + h));
            run(&["ip", "netns", "add", &ns])?;
            lab.hosts.push(Host { index: h, namespace: ns.clone(), data_ip, control_ip: control_ip.clone() });
            in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
            // Control link: root namespace <-> host `ctl`.
            let c_if = format!("{prefix}c{h}");
            run(&["ip", "link", "add", &c_if, "type", "veth", "peer", "name", "ctl", "netns", &ns])?;
            run(&["ip", "addr", "add", &format!("10.{net}.{}.1/24", 100 + h), "dev", &c_if])?;
            run(&["ip", "link", "set", &c_if, "up"])?;
            in_ns(&ns, &["ip", "addr", "add", &format!("{control_ip}/24"), "dev", "ctl"])?;
            in_ns(&ns, &["ip", "link", "set", "ctl", "up"])?;
        }
        // The switch creates each host's tun0 (inside its namespace) and then it is configured.
        let namespaces: Vec<String> = lab.hosts.iter().map(|h| h.namespace.clone()).collect();
        lab.switch = Some(Switch::start(&namespaces, net)?);
        for host in &lab.hosts {
            in_ns(&host.namespace, &["ip", "addr", "add", &format!("{}/16", host.data_ip), "dev", "tun0"])?;
            in_ns(&host.namespace, &["ip", "link", "set", "tun0", "up"])?;
        }
        Ok(lab)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index - 1]
    }

    fn faults(&self, change: impl FnOnce(&mut Faults)) {
        self.switch().change(change);
    }

    /// Cuts every data path between the two groups of hosts (1-based indexes), both ways.
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) -> anyhow::Result<()> {
        for a in side_a {
            for b in side_b {
                self.cut(*a, *b)?;
            }
        }
        Ok(())
    }

    /// Cuts the data path between two hosts, both ways.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.check(a)?;
        self.check(b)?;
        self.faults(|f| {
            f.cuts.insert((a, b));
            f.cuts.insert((b, a));
        });
        Ok(())
    }

    /// Drops `percent` of the packets host `index` sends.
    pub fn loss(&self, index: usize, percent: u32) -> anyhow::Result<()> {
        self.check(index)?;
        if percent > 100 {
            bail!("loss is a percentage, got {percent}");
        }
        self.faults(|f| {
            f.loss.insert(index, percent);
        });
        Ok(())
    }

    /// Delays every packet host `index` sends by `delay` (so the RTT between two hosts
    /// grows by the sum of their delays).
    pub fn delay(&self, index: usize, delay: Duration) -> anyhow::Result<()> {
        self.check(index)?;
        self.faults(|f| {
            f.delay.insert(index, delay);
        });
        Ok(())
    }

    /// Removes every fault.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.faults(|f| *f = Faults::default());
        Ok(())
    }

    /// Packets the switch has dropped because of faults.
    pub fn dropped(&self) -> u64 {
        self.switch.as_ref().map(|s| s.dropped()).unwrap_or_default()
    }

    /// Puts host `index` behind a router of `kind`, whose mappings live `lifetime` without
    /// outbound traffic ([`nat::DEFAULT_MAPPING_LIFETIME`] is RFC 4787's two minutes). From
    /// then on its own address is private and others reach it only at
    /// [`Lab::outside_ip`], as the router allows.
    pub fn behind_nat(&self, index: usize, kind: NatKind, lifetime: std::time::Duration) -> anyhow::Result<()> {
        self.check(index)?;
        let inside = Ipv4Addr::new(10, self.net, 0, index as u8);
        let outside = Ipv4Addr::new(10, self.net, nat::OUTSIDE, index as u8);
        self.switch().routers(|r| r.put(index, nat::Router::new(kind, inside, outside, lifetime)));
        Ok(())
    }

    /// Where others see host `index`: its router's outside address, or its own.
    pub fn outside_ip(&self, index: usize) -> String {
        match self.switch().routers(|r| r.is_behind(index)) {
            true => format!("10.{}.{}.{index}", self.net, nat::OUTSIDE),
            false => self.host(index).data_ip.clone(),
        }
    }

    /// Gives public host `index` a second address (what a NAT probe answers from, RFC
    /// 5780's alternate address) and returns it.
    pub fn add_alternate_address(&self, index: usize) -> anyhow::Result<String> {
        self.check(index)?;
        if self.switch().routers(|r| r.is_behind(index)) {
            bail!("host {index} is behind a router: its addresses are private");
        }
        let ip = format!("10.{}.{}.{index}", self.net, nat::ALTERNATE);
        in_ns(&self.host(index).namespace, &["ip", "addr", "add", &format!("{ip}/16"), "dev", "tun0"])?;
        Ok(ip)
    }

    /// Restarts host `index`'s router: every mapping is forgotten, and the next ones get
    /// new outside ports.
    pub fn reboot_router(&self, index: usize) -> anyhow::Result<()> {
        if !self.switch().routers(|r| r.reboot(index)) {
            bail!("host {index} is behind no router");
        }
        Ok(())
    }

    /// Packets a router kept out: no live mapping, or its filtering.
    pub fn nat_filtered(&self) -> u64 {
        self.switch.as_ref().map(|s| s.filtered()).unwrap_or_default()
    }

    /// Runs `f` inside host `index`'s network namespace: sockets it opens are that host's.
    pub fn on_host<T: Send>(&self, index: usize, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
        self.check(index)?;
        within(&self.host(index).namespace, f)
    }

    fn switch(&self) -> &Switch {
        self.switch.as_ref().expect("running while the lab exists")
    }

    /// Where the test harness should run node `i` on host `i + 1`: one placement per host.
    /// A network of `nodes` on this lab's hosts that notices a cut link within seconds
    /// and keeps redialling (keep-alive 500 ms, idle timeout 3 s, backoff capped at 1 s,
    /// never marked failed): what a partition-and-heal test needs.
    pub fn network(&self, nodes: usize) -> icn_testkit::NetworkBuilder {
        icn_testkit::Network::builder(nodes)
            .placements(self.placements())
            .env("ICN__NETWORK__KEEP_ALIVE_INTERVAL", "500ms")
            .env("ICN__NETWORK__IDLE_TIMEOUT", "3s")
            .env("ICN__NETWORK__RECONNECT__CAP", "1s")
            .env("ICN__NETWORK__RECONNECT__PERMANENT_AFTER", "0")
    }

    pub fn placements(&self) -> Vec<icn_testkit::Placement> {
        self.hosts
            .iter()
            .map(|h| icn_testkit::Placement {
                exec_prefix: self.exec_prefix(h.index),
                data_ip: h.data_ip.clone(),
                control_ip: h.control_ip.clone(),
            })
            .collect()
    }

    /// Command prefix to run a program on host `index`.
    pub fn exec_prefix(&self, index: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.host(index).namespace.clone()]
    }

    fn check(&self, index: usize) -> anyhow::Result<()> {
        if index == 0 || index > self.hosts.len() {
            bail!("no host {index}: hosts are 1..={}", self.hosts.len());
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.switch.take();
        for host in &self.hosts {
            let _ = run(&["ip", "link", "del", &format!("{}c{}", self.prefix, host.index)]);
            let _ = run(&["ip", "netns", "del", &host.namespace]);
        }
    }
}
