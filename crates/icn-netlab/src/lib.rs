//! A network lab of Linux network namespaces, for tests of what crosses a network:
//! hosts with their own addresses, partitions, cut links, packet loss, and heals.
//!
//! Topology (all made by the lab, all removed when it is dropped):
//!
//! ```text
//!   test process (root namespace)
//!     │ control links: one point-to-point veth per host (gRPC, metrics)
//!     ▼
//!   host h1 … hN  ──data link──▶  router namespace (IP forwarding, nftables)
//! ```
//!
//! Each host has a *data* address (`10.X.h.2`, routed through the router; this is where
//! QUIC runs) and a *control* address (`10.X.(100+h).2`, reachable only from the root
//! namespace). Faults are nftables rules in the router, so they cut the data plane and
//! never the test's view of the hosts.
//!
//! Needs root, iproute2 and nftables (installed by `scripts/install-deps.sh`). Loss uses
//! nftables `numgen`; delay uses `tc netem`, which some kernels (this project's CI
//! machine's among them) are built without: [`Lab::delay`] says so rather than pretend.

use anyhow::{bail, Context};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

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
    router: String,
    hosts: Vec<Host>,
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

impl Lab {
    /// Builds a lab of `hosts` hosts behind one router.
    pub fn new(hosts: usize) -> anyhow::Result<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            bail!("the network lab needs root (network namespaces); run the lab suite as root");
        }
        if hosts == 0 || hosts > 50 {
            bail!("a lab has 1 to 50 hosts");
        }
        static LABS: AtomicU32 = AtomicU32::new(0);
        let serial = LABS.fetch_add(1, Ordering::SeqCst);
        let unique = (std::process::id() + serial * 7) % 50;
        let prefix = format!("icnl{}{}", std::process::id() % 10_000, serial);
        let net = 200 + unique;
        let mut lab = Lab { router: format!("{prefix}r"), prefix: prefix.clone(), hosts: Vec::new() };
        let router = lab.router.clone();
        run(&["ip", "netns", "add", &router])?;
        in_ns(&router, &["ip", "link", "set", "lo", "up"])?;
        in_ns(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        in_ns(&router, &["nft", "add", "table", "inet", "lab"])?;
        in_ns(&router, &["nft", "add", "chain", "inet", "lab", "faults", "{ type filter hook forward priority 0; }"])?;
        for h in 1..=hosts {
            let ns = format!("{prefix}h{h}");
            let (data_ip, control_ip) = (format!("10.{net}.{h}.2"), format!("10.{net}.{}.2", 100 + h));
            run(&["ip", "netns", "add", &ns])?;
            lab.hosts.push(Host {
                index: h,
                namespace: ns.clone(),
                data_ip: data_ip.clone(),
                control_ip: control_ip.clone(),
            });
            in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
            // Data link: host eth0 <-> router rN.
            let r_if = format!("r{h}");
            run(&["ip", "link", "add", &r_if, "netns", &router, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            in_ns(&router, &["ip", "addr", "add", &format!("10.{net}.{h}.1/24"), "dev", &r_if])?;
            in_ns(&router, &["ip", "link", "set", &r_if, "up"])?;
            in_ns(&ns, &["ip", "addr", "add", &format!("{data_ip}/24"), "dev", "eth0"])?;
            in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
            in_ns(&ns, &["ip", "route", "add", &format!("10.{net}.0.0/16"), "via", &format!("10.{net}.{h}.1")])?;
            // Control link: root namespace <-> host ctl.
            let c_if = format!("{prefix}c{h}");
            run(&["ip", "link", "add", &c_if, "type", "veth", "peer", "name", "ctl", "netns", &ns])?;
            run(&["ip", "addr", "add", &format!("10.{net}.{}.1/24", 100 + h), "dev", &c_if])?;
            run(&["ip", "link", "set", &c_if, "up"])?;
            in_ns(&ns, &["ip", "addr", "add", &format!("{control_ip}/24"), "dev", "ctl"])?;
            in_ns(&ns, &["ip", "link", "set", "ctl", "up"])?;
        }
        Ok(lab)
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index - 1]
    }

    fn subnet(&self, index: usize) -> String {
        let ip = &self.host(index).data_ip;
        format!("{}.0/24", ip.rsplit_once('.').expect("dotted address").0)
    }

    fn rule(&self, rule: &str) -> anyhow::Result<()> {
        let mut args = vec!["nft", "add", "rule", "inet", "lab", "faults"];
        args.extend(rule.split_whitespace());
        in_ns(&self.router, &args).map(|_| ())
    }

    /// Cuts every data path between the two groups of hosts (by 1-based index), both ways.
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
        let (sa, sb) = (self.subnet(a), self.subnet(b));
        self.rule(&format!("ip saddr {sa} ip daddr {sb} drop"))?;
        self.rule(&format!("ip saddr {sb} ip daddr {sa} drop"))
    }

    /// Drops `percent` of the packets leaving host `index` through the router.
    pub fn loss(&self, index: usize, percent: u32) -> anyhow::Result<()> {
        self.rule(&format!("ip saddr {} numgen random mod 100 < {percent} drop", self.subnet(index)))
    }

    /// Adds `delay` to every packet host `index` sends (tc netem on its data link).
    /// Fails, saying so, on kernels built without netem (this project's CI machine is one).
    pub fn delay(&self, index: usize, delay: std::time::Duration) -> anyhow::Result<()> {
        let ms = format!("{}ms", delay.as_millis());
        match in_ns(
            &self.host(index).namespace,
            &["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &ms],
        ) {
            Err(e) if e.to_string().contains("Specified qdisc kind is unknown") => {
                bail!("this kernel has no netem (sch_netem), so the lab cannot add delay here")
            }
            other => other.map(|_| ()),
        }
    }

    /// Removes every fault.
    pub fn heal(&self) -> anyhow::Result<()> {
        in_ns(&self.router, &["nft", "flush", "chain", "inet", "lab", "faults"]).map(|_| ())
    }

    /// Command prefix to run a program on host `index`.
    pub fn exec_prefix(&self, index: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.host(index).namespace.clone()]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = run(&["ip", "link", "del", &format!("{}c{}", self.prefix, host.index)]);
            let _ = run(&["ip", "netns", "del", &host.namespace]);
        }
        let _ = run(&["ip", "netns", "del", &self.router]);
    }
}

extern "C" {
    fn geteuid() -> u32;
}
