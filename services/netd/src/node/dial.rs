//! Reaching peers: the QUIC endpoint, dialling an address (one attempt shared by every
//! caller), and accepting inbound connections. Both directions end in
//! `connection::establish`.

use super::*;

pub(super) fn endpoint(
    identity: &NodeIdentity,
    config: &NetworkConfig,
) -> anyhow::Result<(quinn::Endpoint, quinn::ClientConfig)> {
    use anyhow::Context as _;
    let tls = tls::TlsIdentity::new(identity)?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(config.keep_alive_interval));
    transport.max_concurrent_uni_streams(crate::connection::MESSAGE_STREAMS.into());
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(config.idle_timeout).context("network.idle_timeout is too large")?,
    ));
    let transport = Arc::new(transport);
    let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_crypto()?)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_crypto()?)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    let listen: SocketAddr = config.listen.parse().context("network.listen")?;
    let socket =
        std::net::UdpSocket::bind(listen).with_context(|| format!("binding the QUIC endpoint on udp {listen}"))?;
    size_buffers(&socket, config.udp_buffer_bytes)?;
    let endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, Arc::new(quinn::TokioRuntime))
            .with_context(|| format!("starting the QUIC endpoint on udp {listen}"))?;
    Ok((endpoint, client))
}

/// Asks for `network.udp_buffer_bytes` of receive and send buffer, and logs what the
/// kernel granted (it caps the request; on Linux it reports double, its bookkeeping
/// included). Less than asked is a warning, not an error: netd works, it drops more
/// datagrams under load.
fn size_buffers(socket: &std::net::UdpSocket, bytes: usize) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state = quinn::udp::UdpSocketState::new(socket.into()).context("the UDP socket's state")?;
    // A refusal to resize is what a cap looks like on some systems: judged by what is read back.
    let _ = state.set_recv_buffer_size(socket.into(), bytes);
    let _ = state.set_send_buffer_size(socket.into(), bytes);
    let got = (state.recv_buffer_size(socket.into())?, state.send_buffer_size(socket.into())?);
    if got.0 < bytes || got.1 < bytes {
        tracing::warn!(
            asked = bytes,
            receive = got.0,
            send = got.1,
            "the kernel granted less UDP buffer than network.udp_buffer_bytes (raise net.core.rmem_max and \
             wmem_max): expect dropped datagrams under load"
        );
    } else {
        tracing::info!(receive = got.0, send = got.1, "UDP socket buffers");
    }
    Ok(())
}

impl Inner {
    fn endpoint(&self) -> Result<(&quinn::Endpoint, &quinn::ClientConfig), NetError> {
        match (&self.endpoint, &self.client_config) {
            (Some(e), Some(c)) => Ok((e, c)),
            _ => Err(NetError::NoIdentity(Box::new(
                self.ctx.require_identity().expect_err("no endpoint means no identity"),
            ))),
        }
    }

    /// Dials `address`; concurrent dials to the same address share one attempt.
    pub fn dial(self: &Arc<Self>, address: &str, expected: Option<Did>) -> DialFuture {
        let mut dials = self.dials.lock().expect("lock");
        if let Some(pending) = dials.get(address) {
            return pending.clone();
        }
        let inner = self.clone();
        let key = address.to_string();
        // The attempt runs as its own (tracked) task so it completes even if every caller
        // goes away, and shutdown waits for it.
        let task = self.ctx.tasks.spawn(async move {
            let result = inner.dial_once(&key, expected.as_ref()).await;
            inner.dials.lock().expect("lock").remove(&key);
            result
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| {
                Err(NetError::Dial {
                    address: String::new(),
                    kind: DialFailure::Unreachable,
                    reason: format!("the dial task failed: {e}"),
                })
            })
        }
        .boxed()
        .shared();
        dials.insert(address.to_string(), shared.clone());
        shared
    }

    async fn dial_once(self: &Arc<Self>, address: &str, expected: Option<&Did>) -> Result<Did, NetError> {
        let (endpoint, client) = self.endpoint()?;
        if self.ctx.shutdown.is_cancelled() {
            return Err(NetError::ShuttingDown);
        }
        if let Some(did) = expected {
            if self.peers.link(did).is_some() {
                return Ok(did.clone());
            }
        }
        // An address some connected peer is already reached at (or listens on): that peer.
        let connected_at = self.peers.with(|t| {
            t.values()
                .find(|r| {
                    r.state.link().is_some_and(|l| {
                        l.connection.remote_address().to_string() == address
                            || l.hello.listen_addresses.iter().any(|a| a == address)
                    }) && expected.is_none_or(|e| e == &r.did)
                })
                .map(|r| r.did.clone())
        });
        if let Some(did) = connected_at {
            return Ok(did);
        }
        if self.peers.connected_count() >= self.config.max_peers {
            return Err(NetError::TooManyPeers(self.config.max_peers));
        }
        let marked = expected.is_some_and(|did| self.mark_connecting(did));
        let result = async {
            let dial_error =
                |kind: DialFailure, reason: String| NetError::Dial { address: address.to_string(), kind, reason };
            let socket = tokio::net::lookup_host(address)
                .await
                .map_err(|e| dial_error(DialFailure::Unresolvable, format!("cannot resolve: {e}")))?
                .next()
                .ok_or_else(|| dial_error(DialFailure::Unresolvable, "the name resolves to no address".into()))?;
            let connecting = endpoint
                .connect_with(client.clone(), socket, tls::SERVER_NAME)
                .map_err(|e| dial_error(DialFailure::Unreachable, e.to_string()))?;
            let handshake = async {
                let conn = connecting.await.map_err(|e| dial_error(DialFailure::Unreachable, e.to_string()))?;
                connection::establish(self, conn, true, address, expected).await
            };
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => Err(NetError::ShuttingDown),
                result = tokio::time::timeout(self.config.handshake_timeout, handshake) => result
                    .map_err(|_| dial_error(
                        DialFailure::Timeout,
                        format!("no handshake within {:?}", self.config.handshake_timeout),
                    ))?,
            }
        }
        .await;
        if let (Some(did), true, Err(_)) = (expected, marked, &result) {
            self.peers.with(|t| {
                if let Some(r) = t.get_mut(did) {
                    if matches!(r.state, PeerState::Connecting) {
                        r.set_state(PeerState::Known, &self.peers.state_changes);
                    }
                }
            });
        }
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.dials.with_label_values(&[label]).inc();
        if let Err(e) = &result {
            tracing::debug!(address, error = %e, "dial failed");
        }
        result
    }

    /// Shows a first dial to a peer as `Connecting`; redials keep their own state.
    fn mark_connecting(&self, did: &Did) -> bool {
        self.peers.with(|t| {
            let record = crate::peers::record_of(t, did);
            let first = matches!(record.state, PeerState::Known);
            if first {
                record.set_state(PeerState::Connecting, &self.peers.state_changes);
            }
            first
        })
    }
}

pub(super) async fn accept_loop(inner: Arc<Inner>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            _ = inner.ctx.shutdown.cancelled() => return,
            incoming = endpoint.accept() => match incoming {
                Some(i) => i,
                None => return,
            },
        };
        let inner = inner.clone();
        let handshake_timeout = inner.config.handshake_timeout;
        inner.ctx.tasks.clone().spawn(async move {
            let address = incoming.remote_address().to_string();
            let handshake = tokio::time::timeout(handshake_timeout, async {
                let conn = incoming.accept().map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
                connection::establish(&inner, conn, false, &address, None).await.map_err(|e| e.to_string())
            });
            let result = tokio::select! {
                _ = inner.ctx.shutdown.cancelled() => return,
                result = handshake => result,
            };
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::info!(address, error = %e, "inbound connection refused"),
                Err(_) => tracing::info!(address, "inbound connection timed out in the handshake"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    /// The kernel's cap on one buffer (`net.core.rmem_max` / `wmem_max`), in bytes.
    fn cap(name: &str) -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().parse().unwrap()
    }

    #[test]
    fn the_udp_socket_gets_the_buffers_asked_for_up_to_the_kernels_cap() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
        let before = state.recv_buffer_size((&socket).into()).unwrap();
        // As much as the kernel allows, so the request is one it must grant in full.
        let asked = cap("rmem_max").min(cap("wmem_max"));
        super::size_buffers(&socket, asked).unwrap();
        assert!(state.recv_buffer_size((&socket).into()).unwrap() >= asked, "receive buffer below {asked}");
        assert!(state.send_buffer_size((&socket).into()).unwrap() >= asked, "send buffer below {asked}");
        assert!(asked <= before || state.recv_buffer_size((&socket).into()).unwrap() > before);
    }
}
