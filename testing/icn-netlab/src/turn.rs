//! A real TURN server for the lab: Debian's coturn (`turnserver`), run on a public host
//! with long-term credentials. It answers STUN on the same port, so it is the lab's STUN
//! server too. Stopped when dropped.

use crate::Lab;
use anyhow::{bail, Context};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The port coturn listens on (STUN's and TURN's registered port).
pub const PORT: u16 = 3478;
/// The realm of the lab's long-term credentials.
pub const REALM: &str = "icn.lab";

pub struct Coturn {
    child: Child,
    /// `ip:port` to give nodes as their STUN and TURN server.
    pub address: String,
}

impl Coturn {
    /// Starts coturn on public host `index` with these `(user, password)` pairs; each
    /// allocation lives at most `max_lifetime` (refreshes included are capped at it).
    pub fn start(lab: &Lab, index: usize, users: &[(&str, &str)], max_lifetime: Duration) -> anyhow::Result<Coturn> {
        let host = lab.host(index);
        let ip = host.data_ip.clone();
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &host.namespace, "turnserver", "-n"]);
        command.args(["--listening-ip", &ip, "--relay-ip", &ip, "--listening-port", &PORT.to_string()]);
        command.args(["--lt-cred-mech", "--realm", REALM, "--fingerprint"]);
        command.args(["--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay", "--simple-log", "--log-file", "stdout"]);
        command.args(["--max-allocate-lifetime", &max_lifetime.as_secs().max(1).to_string()]);
        command.args(["--min-port", "49152", "--max-port", "65535"]);
        for (user, password) in users {
            command.args(["--user", &format!("{user}:{password}")]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting turnserver (Debian's coturn; scripts/install-deps.sh installs it)")?;
        let mut coturn = Coturn { child, address: format!("{ip}:{PORT}") };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sockets = crate::in_ns(&host.namespace, &["ss", "-uln"])?;
            if sockets.contains(&format!("{ip}:{PORT}")) {
                return Ok(coturn);
            }
            if let Some(status) = coturn.child.try_wait()? {
                bail!("turnserver exited at start-up: {status}");
            }
            if Instant::now() > deadline {
                bail!("turnserver did not listen on {ip}:{PORT} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
