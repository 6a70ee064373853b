//! The assistant's model call (`POST /v1/debug/ask` from the hub): an OpenAI-compatible
//! `POST {PCONNECT_AI_URL}/chat/completions` with `Authorization: Bearer {PCONNECT_AI_KEY}` and
//! model `PCONNECT_AI_MODEL`, configured in the exposing agent's environment, so the key never
//! reaches the hub. The question and the hub's redacted summary are capped again here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use pconnect_proto::debug::{AskCall, AskReply, SUMMARY_CAP};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a model may take to answer.
const MODEL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest question sent.
const QUESTION_CAP: usize = 2 * 1024;
/// Largest model reply read.
const REPLY_CAP: usize = 1024 * 1024;
/// Model used when `PCONNECT_AI_MODEL` is not set.
const DEFAULT_MODEL: &str = "gpt-4o-mini";

const SYSTEM_PROMPT: &str = "You help developers debug live traffic captured by pconnect (HTTP, PostgreSQL, \
Redis). Answer briefly, using only the capture summary. Cite every exchange you rely on as #<id>, e.g. #12.";

/// Where the model is.
struct ModelConfig {
    url: Uri,
    key: Option<String>,
    model: String,
}

impl ModelConfig {
    fn from_env() -> Result<Option<Self>, String> {
        let Some(base) = std::env::var("PCONNECT_AI_URL").ok().filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let url = format!("{}/chat/completions", base.trim().trim_end_matches('/'));
        let url: Uri =
            url.parse().map_err(|e| format!("PCONNECT_AI_URL is not a URL ({e}): use http(s)://host[:port]/v1"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err("PCONNECT_AI_URL must start with http:// or https:// and name a host".into());
        }
        let key = std::env::var("PCONNECT_AI_KEY").ok().filter(|v| !v.is_empty());
        let model = std::env::var("PCONNECT_AI_MODEL").ok().filter(|v| !v.is_empty());
        Ok(Some(Self { url, key, model: model.unwrap_or_else(|| DEFAULT_MODEL.to_string()) }))
    }
}

/// Answers a question with the configured model, or says why it cannot.
pub(crate) async fn ask(call: &AskCall) -> AskReply {
    let config = match ModelConfig::from_env() {
        Ok(Some(config)) => config,
        Ok(None) => return AskReply { text: None, error: Some("no model configured (PCONNECT_AI_URL)".into()) },
        Err(e) => return AskReply { text: None, error: Some(e) },
    };
    match tokio::time::timeout(MODEL_TIMEOUT, complete(&config, call)).await {
        Ok(Ok(text)) => AskReply { text: Some(text), error: None },
        Ok(Err(e)) => AskReply { text: None, error: Some(e) },
        Err(_) => AskReply { text: None, error: Some(format!("the model did not answer within {MODEL_TIMEOUT:?}")) },
    }
}

/// The chat-completions request body.
fn request_body(model: &str, call: &AskCall) -> serde_json::Value {
    let question = cap(&call.question, QUESTION_CAP);
    let summary = cap(&call.summary, SUMMARY_CAP);
    json!({
        "model": model,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": format!("Question: {question}\n\nCapture summary:\n{summary}")},
        ],
    })
}

async fn complete(config: &ModelConfig, call: &AskCall) -> Result<String, String> {
    let host = config.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let https = config.url.scheme_str() == Some("https");
    let port = config.url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let body = serde_json::to_vec(&request_body(&config.model, call)).map_err(|e| e.to_string())?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(config.url.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, config.url.authority().map_or(host.clone(), |a| a.to_string()))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json");
    if let Some(key) = &config.key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let tcp = super::proxy::dial(&host, port, https)
        .await
        .map_err(|e| format!("could not reach the model at {}: {e}", config.url))?;
    let reply = if https { send(tls(tcp, &host).await?, request).await? } else { send(tcp, request).await? };
    let value: serde_json::Value =
        serde_json::from_slice(&reply).map_err(|e| format!("the model's answer is not JSON: {e}"))?;
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the model's answer has no choices[0].message.content".to_string())
}

async fn send<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Bytes, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("model connection: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await.map_err(|e| format!("model request failed: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), REPLY_CAP)
        .collect()
        .await
        .map_err(|e| format!("reading the model's answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(format!("the model answered {status}: {detail}"));
    }
    Ok(body)
}

/// TLS to the model with the platform's trust store (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set).
async fn tls(tcp: TcpStream, host: &str) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use rustls::pki_types::ServerName;
    let roots = crate::tls::system_roots()
        .ok_or("this system has no trusted certificates: install them (ca-certificates) or set SSL_CERT_FILE")?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("bad model host {host}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to the model failed: {e}"))
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cap(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_carries_a_capped_summary() {
        let call = AskCall { session: "d1".into(), question: "why slow?".into(), summary: "x".repeat(SUMMARY_CAP * 2) };
        let body = request_body("m", &call);
        let user = body["messages"][1]["content"].as_str().unwrap();
        assert!(user.starts_with("Question: why slow?"));
        assert!(user.len() < SUMMARY_CAP + 100);
        assert_eq!(body["model"], "m");
        assert_eq!(cap("éé", 3), "é");
    }
}
