//! Traces and job origins.
//!
//! - Every span with a `request_id` field (the request's span, a job's span) keeps the id
//!   in its extensions ([`RequestIdLayer`]); the process's job-origin source reads it from
//!   the current span, so a job enqueued while serving a request, or while running a job
//!   that came from one, keeps that request's id.
//! - With `telemetry.otlp_endpoint` set, `serve` and `worker` export spans by OTLP/HTTP
//!   (tracing-opentelemetry over the OpenTelemetry SDK, a batch exporter on its own
//!   thread). The W3C trace context goes into each job's origin and the worker makes the
//!   job's span a child of it: enqueue → run is one trace, across processes. A request
//!   that arrives with a `traceparent` continues the caller's trace.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use zeroscale_core::config::TelemetryConfig;
use zeroscale_core::queue::JobOrigin;

/// Whether spans are exported (a trace context is worth carrying).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The exporting provider, flushed and shut down when the command ends.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// A span's request id, kept in its extensions.
struct RequestId(String);

/// Keeps each span's `request_id` field where [`current_origin`] finds it.
pub(crate) struct RequestIdLayer;

impl RequestIdLayer {
    /// The layer, looking only at spans that have a `request_id` field.
    pub(crate) fn filtered<S>() -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RequestIdLayer.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.fields().field("request_id").is_some()
        }))
    }
}

impl<S> Layer<S> for RequestIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        struct Find(Option<String>);
        impl Visit for Find {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "request_id" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "request_id" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut find = Find(None);
        attrs.record(&mut find);
        if let (Some(request_id), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(request_id));
        }
    }
}

/// The origin of a job enqueued now: the request id of the nearest span that has one,
/// and, when spans are exported, the current span's trace context.
fn current_origin() -> JobOrigin {
    let mut origin = JobOrigin::new();
    let span = tracing::Span::current();
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(data) = registry.span(id) else {
            return;
        };
        for ancestor in data.scope() {
            if let Some(RequestId(request_id)) = ancestor.extensions().get::<RequestId>() {
                // An id that does not fit (a hand-made span) is left out.
                let _ = origin.insert(JobOrigin::REQUEST_ID, request_id);
                break;
            }
        }
    });
    if EXPORTING.load(Ordering::Relaxed) {
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut OriginCarrier(&mut origin));
        }
    }
    origin
}

/// Makes a job's span a child of the span that enqueued it, when spans are exported and
/// the job carries a trace context.
fn continue_trace(origin: &JobOrigin, span: &tracing::Span) {
    if !EXPORTING.load(Ordering::Relaxed) || origin.get(JobOrigin::TRACEPARENT).is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&OriginReader(origin));
    if cx.span().span_context().is_valid() {
        // Fails only for a span already started, which a new job span is not.
        let _ = span.set_parent(cx);
    }
}

/// A request's span joins the caller's trace when it sent a valid `traceparent`.
pub(crate) fn continue_request_trace(headers: &axum::http::HeaderMap, span: &tracing::Span) {
    if !EXPORTING.load(Ordering::Relaxed) || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderReader(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

struct OriginCarrier<'a>(&'a mut JobOrigin);

impl Injector for OriginCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        // A value past the origin's limits (a huge tracestate) is dropped, not the job.
        let _ = self.0.insert(key, &value);
    }
}

struct OriginReader<'a>(&'a JobOrigin);

impl Extractor for OriginReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}

struct HeaderReader<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Installs the job-origin source and the workers' origin hook (both once per process).
pub(crate) fn install_origins() {
    if let Err(e) = JobOrigin::set_source(current_origin) {
        tracing::warn!(error = %e, "jobs will not carry request ids");
    }
    if let Err(e) = zeroscale_queue::worker::set_origin_hook(continue_trace) {
        tracing::warn!(error = %e, "jobs will not continue their request's trace");
    }
}

/// The span-exporting layer when `telemetry.otlp_endpoint` is set, reporting as
/// `service`; `None` when traces are off.
pub(crate) fn exporter_layer<S>(
    config: &TelemetryConfig,
    service: &str,
) -> anyhow::Result<Option<impl Layer<S> + use<S>>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
    let Some(url) = config.traces_url() else {
        return Ok(None);
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone());
    if let Ok(headers) = std::env::var("OTEL_EXPORTER_OTLP_HEADERS") {
        builder = builder.with_headers(parse_headers(&headers));
    }
    let exporter = builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot export traces to {url}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(NoLoneStatements(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(config.sample_ratio),
        ))))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("zeroscale");
    if PROVIDER.set(provider).is_err() {
        anyhow::bail!("traces were already set up in this process");
    }
    EXPORTING.store(true, Ordering::Relaxed);
    // Spans at INFO and above: zeroscale's, sea-orm's statements, the router's calls.
    // The exporter's own HTTP client only has lower-level spans, so it never traces
    // itself.
    Ok(Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    ))
}

/// The configured sampler, except that a database statement outside any span (a worker's
/// poll for jobs, a background sweep) starts no trace: those would be a trace per poll.
#[derive(Debug, Clone)]
struct NoLoneStatements(Sampler);

impl opentelemetry_sdk::trace::ShouldSample for NoLoneStatements {
    fn should_sample(
        &self,
        parent: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        kind: &opentelemetry::trace::SpanKind,
        attributes: &[opentelemetry::KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        let root = parent.is_none_or(|cx| !cx.span().span_context().is_valid());
        if root && name.starts_with("sea_orm.") {
            return opentelemetry_sdk::trace::SamplingResult {
                decision: opentelemetry_sdk::trace::SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: Default::default(),
            };
        }
        self.0
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// `key=value,key2=value2` as OTLP headers (the `OTEL_EXPORTER_OTLP_HEADERS` format).
fn parse_headers(text: &str) -> std::collections::HashMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Sends the spans still buffered and stops the exporter (when the command ends).
pub(crate) fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("zeroscale: sending the last traces failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_the_otel_variable() {
        let h = parse_headers("api-key=abc, x-tenant = t1,broken,=v");
        assert_eq!(h.len(), 2);
        assert_eq!(h["api-key"], "abc");
        assert_eq!(h["x-tenant"], "t1");
    }
}
