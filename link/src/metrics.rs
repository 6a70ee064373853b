//! Operator endpoints both binaries serve on `--metrics`: Prometheus text exposition (`/metrics`),
//! liveness (`/healthz`) and readiness (`/readyz`), on a plain-HTTP listener of their own.
//!
//! The text format is written by hand (it is a few lines of `name{labels} value`): no metrics
//! registry, no global state. Each binary renders its own figures into an [`Exposition`] when
//! scraped, from counters it keeps where the events happen.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus text exposition being written: `# HELP`/`# TYPE` once per family, then samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// One unlabelled counter (`name` should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, Kind::Counter).sample(&[], value as f64);
    }

    /// One unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help, Kind::Gauge).sample(&[], value);
    }

    /// Starts a family (its `# HELP` and `# TYPE` lines); add its samples to what this returns.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> Family<'_> {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        Family { out: &mut self.out, name: name.to_owned() }
    }

    /// The standard `process_*` gauges of this process (resident memory, open fds, CPU time,
    /// start time), from `/proc/self` where it exists.
    pub fn process(&mut self) {
        let stats = ProcessStats::read();
        if let Some(rss) = stats.resident_bytes {
            self.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss as f64);
        }
        if let Some(fds) = stats.open_fds {
            self.gauge("process_open_fds", "Number of open file descriptors.", fds as f64);
        }
        if let Some(limit) = stats.max_fds {
            self.gauge("process_max_fds", "Maximum number of open file descriptors.", limit as f64);
        }
        if let Some(cpu) = stats.cpu_seconds {
            self.family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", Kind::Counter)
                .sample(&[], cpu);
        }
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The samples of one family.
pub struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl Family<'_> {
    /// One sample; label values are escaped here.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(&self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What `/proc/self` says about this process (fields are `None` where it cannot be read).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStats {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the figures now.
    pub fn read() -> Self {
        // Linux reports RSS in pages and CPU time in clock ticks; both are 4 KiB and 100 Hz on
        // every platform this runs on (x86_64, aarch64), which `getconf` would confirm.
        const PAGE: u64 = 4096;
        const TICKS: f64 = 100.0;
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        let resident_bytes = statm
            .as_deref()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u64>().ok())
            .map(|p| p * PAGE);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat").ok().and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split_whitespace().skip(11);
            let user: f64 = fields.next()?.parse().ok()?;
            let system: f64 = fields.next()?.parse().ok()?;
            Some((user + system) / TICKS)
        });
        Self { resident_bytes, open_fds, max_fds, cpu_seconds }
    }
}

/// Which endpoint a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Metrics,
    Health,
    Ready,
}

/// A readiness verdict: `Err` names what is not ready.
pub type Readiness = Result<(), String>;

/// What the binary answers on its metrics listener.
pub trait Observe: Send + Sync + 'static {
    /// The exposition text for `/metrics`.
    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>>;
    /// Whether this process should get traffic (`/readyz`).
    fn ready(&self) -> Pin<Box<dyn Future<Output = Readiness> + Send + '_>>;
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` (HTTP/1.1) until `shutdown`.
pub async fn serve(listener: TcpListener, observe: Arc<dyn Observe>, shutdown: CancellationToken) {
    loop {
        let (socket, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (observe, shutdown) = (observe.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let observe = observe.clone();
                async move { Ok::<_, Infallible>(answer(&*observe, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(socket), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Which endpoint `path` names, if any.
pub fn endpoint(path: &str) -> Option<Endpoint> {
    match path {
        "/metrics" => Some(Endpoint::Metrics),
        "/healthz" => Some(Endpoint::Health),
        "/readyz" => Some(Endpoint::Ready),
        _ => None,
    }
}

async fn answer(observe: &dyn Observe, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match endpoint(req.uri().path()) {
        _ if req.method() != http::Method::GET && req.method() != http::Method::HEAD => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "only GET is served here\n".to_owned())
        }
        Some(Endpoint::Metrics) => (StatusCode::OK, PROMETHEUS_TEXT, observe.metrics().await),
        Some(Endpoint::Health) => (StatusCode::OK, "application/json", "{\"status\":\"ok\"}\n".to_owned()),
        Some(Endpoint::Ready) => match observe.ready().await {
            Ok(()) => (StatusCode::OK, "application/json", "{\"status\":\"ready\"}\n".to_owned()),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                format!("{}\n", serde_json::json!({"status": "not_ready", "reason": why})),
            ),
        },
        None => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: this port serves /metrics, /healthz and /readyz\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut e = Exposition::new();
        e.counter("x_total", "Things.", 3);
        e.family("y", "Ys by kind.", Kind::Gauge).sample(&[("kind", "a\"b\\c\nd")], 1.5).sample(&[("kind", "z")], 2.0);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y Ys by kind.\n# TYPE y gauge\ny{kind=\"a\\\"b\\\\c\\nd\"} 1.5\ny{kind=\"z\"} 2\n"
        );
    }

    #[test]
    fn this_process_has_memory_fds_and_cpu() {
        let stats = ProcessStats::read();
        assert!(stats.resident_bytes.is_some_and(|b| b > 1024 * 1024), "{stats:?}");
        assert!(stats.open_fds.is_some_and(|n| n >= 3), "{stats:?}");
        assert!(stats.cpu_seconds.is_some(), "{stats:?}");
    }
}
