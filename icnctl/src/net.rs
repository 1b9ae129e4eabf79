//! Connections to a node's services.

use anyhow::Context as _;
use icn_proto::net::v1::netd_client::NetdClient;
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// How long to wait for the service to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn channel(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("`{endpoint}` is not a valid endpoint URL (expected http://host:port)"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("cannot reach {endpoint}: is the service running? (--endpoint or ICN_ENDPOINT)"))
}

pub async fn client(endpoint: &str) -> anyhow::Result<NetdClient<Channel>> {
    Ok(NetdClient::new(channel(endpoint).await?))
}

pub async fn health(endpoint: &str, service: &str, out: &crate::output::Output) -> anyhow::Result<ExitCode> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let mut client = HealthClient::new(channel(endpoint).await?);
    let response = client
        .check(HealthCheckRequest { service: service.to_string() })
        .await
        .with_context(|| format!("health check of `{service}` at {endpoint}"))?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    out.health(endpoint, status.as_str_name());
    Ok(if status == ServingStatus::Serving { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
