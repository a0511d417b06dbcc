//! The tracing subscriber: an env filter (`RUST_LOG`, default `info`), JSON or plain lines, and an
//! OpenTelemetry layer when an OTLP endpoint is configured through the standard env vars.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::TelemetryError;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable lines.
    #[default]
    Plain,
}

impl LogFormat {
    /// Reads `json` or `plain` from the named env var; anything else (or unset) is plain.
    pub fn from_env(var: &str) -> LogFormat {
        match std::env::var(var).as_deref().map(str::trim) {
            Ok("json") | Ok("JSON") => LogFormat::Json,
            _ => LogFormat::Plain,
        }
    }
}

/// Flushes buffered spans on drop; keep it alive for the life of `main`.
#[derive(Debug)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("OpenTelemetry shutdown: {e}");
        }
    }
}

/// Whether the standard OTLP env vars ask for trace export.
fn otlp_configured() -> bool {
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber. `service_name` is used unless `OTEL_SERVICE_NAME` says otherwise.
pub fn init(service_name: &'static str, format: LogFormat) -> Result<Guard, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().or_else(|e| match std::env::var_os("RUST_LOG") {
        Some(_) => Err(TelemetryError::Filter(e.to_string())),
        None => Ok(EnvFilter::new("info")),
    })?;
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Plain => tracing_subscriber::fmt::layer().boxed(),
    };
    // W3C trace context is the propagation format whether or not spans are exported.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service_name);
        }
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
    } else {
        // Spans still get real trace ids (for traceparent links) but go nowhere.
        Some(SdkTracerProvider::builder().build())
    };
    let tracer = provider.as_ref().expect("provider set above").tracer(service_name);
    opentelemetry::global::set_tracer_provider(provider.clone().expect("provider set above"));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Guard { provider })
}
