//! Trace export over OTLP. No collector image can be pulled on this machine and none ships
//! in Debian, so the collector here is a stand-in: a real OTLP/gRPC `TraceService` server
//! (generated from the OpenTelemetry protos) that records what it receives.

use icn_testkit::{Ports, TestNode};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (service.name, span name, trace id) of a span received.
type SpanSeen = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Collector {
    /// Every span received.
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    self.spans.lock().unwrap().push((service.clone(), span.name, span.trace_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Starts the stand-in collector on a free loopback port.
async fn start_collector(
) -> (Collector, std::net::SocketAddr, tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (collector, address, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_are_exported_over_otlp_and_join_the_callers_trace() {
    let (collector, address, server) = start_collector().await;

    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::prepare("traced", dir.path(), Ports::free().unwrap(), true).unwrap();
    node.env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), format!("http://{address}")));
    node.start("netd").await.unwrap();
    node.wait_healthy("netd", Duration::from_secs(20)).await.unwrap();

    // A caller's trace context in the gRPC metadata (W3C traceparent).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(icn_proto::net::v1::StatusRequest {});
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    node.netd().await.unwrap().status(request).await.unwrap();
    // Shutdown flushes buffered spans.
    let status = node.stop("netd", Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}; log tail:\n{}", node.log_tail("netd", 15));

    let spans = collector.spans.lock().unwrap().clone();
    let ours: Vec<_> = spans.iter().filter(|(_, name, id)| name == "grpc" && hex::encode(id) == trace_id).collect();
    assert!(!ours.is_empty(), "a span of the Status call in the caller's trace; got {spans:?}");
    assert!(ours.iter().all(|(service, _, _)| service.contains("icn-netd")), "{ours:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_on_another_node_joins_the_senders_trace() {
    let (collector, address, server) = start_collector().await;
    let mut net = icn_testkit::Network::builder(2)
        .services(&["netd"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{address}"))
        .start()
        .await
        .unwrap();
    net.wait_full_mesh(Duration::from_secs(20)).await.unwrap();
    let mut inbox = net.nodes[1]
        .netd()
        .await
        .unwrap()
        .subscribe(icn_proto::net::v1::SubscribeRequest { protocols: vec!["traced".into()], after_position: None })
        .await
        .unwrap()
        .into_inner();

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = tonic::Request::new(icn_proto::net::v1::SendRequest {
        to: net.nodes[1].did().to_string(),
        protocol: "traced".into(),
        payload: b"follow me".to_vec(),
        sealed: false,
        ..Default::default()
    });
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01").parse().unwrap());
    net.nodes[0].netd().await.unwrap().send(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), inbox.message()).await.unwrap().unwrap().unwrap();
    for (_, _, code) in net.stop().await.unwrap() {
        assert_eq!(code, Some(0));
    }

    let spans = collector.spans.lock().unwrap().clone();
    let delivered: Vec<_> =
        spans.iter().filter(|(_, name, id)| name == "netd.deliver" && hex::encode(id) == trace_id).collect();
    assert_eq!(delivered.len(), 1, "the receiving node's delivery span is in the caller's trace; got {spans:?}");
    server.abort();
}
