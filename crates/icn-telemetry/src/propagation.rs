//! W3C trace context in and out of gRPC metadata and ICN message maps, in the style of
//! small `Injector`/`Extractor` adapters: the propagator does the format, these only
//! say where the fields live.

use opentelemetry::propagation::{Extractor, Injector};
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's context into outgoing gRPC metadata.
pub fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut MetadataInjector(metadata)));
}

/// A tonic client interceptor that propagates the caller's trace into every call.
pub fn grpc_interceptor(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject_grpc(request.metadata_mut());
    Ok(request)
}

/// Makes `span` a child of the trace named in incoming HTTP/2 headers, if any.
pub fn adopt_http_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    adopt(span, parent);
}

/// The current span's context as plain fields, to carry inside a message.
pub fn current_fields() -> HashMap<String, String> {
    let context = tracing::Span::current().context();
    let mut fields = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut fields));
    fields
}

/// Makes `span` a child of the trace carried in a message's fields.
pub fn adopt_fields_parent(span: &tracing::Span, fields: &HashMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(fields));
    adopt(span, parent);
}

/// Sets `span`'s parent. Without trace export there is no OpenTelemetry layer and so no
/// parent to set, which is normal; any other refusal (a span already entered) is a bug in
/// the caller, worth a line at debug.
fn adopt(span: &tracing::Span, parent: opentelemetry::Context) {
    match span.set_parent(parent) {
        Ok(()) | Err(tracing_opentelemetry::SetParentError::LayerNotFound) => {}
        Err(e) => tracing::debug!(error = ?e, "trace parent not adopted"),
    }
}

/// A channel to another service of this node whose calls carry the caller's trace.
pub type TracedChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Interceptor>;
pub type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// Connects lazily to `endpoint` (such as `http://127.0.0.1:7200`): the first call dials,
/// and a lost connection is redialled by the next call.
pub fn traced_channel(endpoint: &str) -> Result<TracedChannel, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?.connect_lazy();
    Ok(tonic::service::interceptor::InterceptedService::new(channel, grpc_interceptor as Interceptor))
}
