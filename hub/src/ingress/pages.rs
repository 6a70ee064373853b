//! The small pages the ingress answers itself: unknown host, ended link, offline agent, refusals.
//! HTML for browsers, JSON when the client asks for it.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A page with a status, a title and one sentence.
pub(crate) fn page(status: StatusCode, title: &str, detail: &str, wants_json: bool) -> Response<Full<Bytes>> {
    let (content_type, body) = if wants_json {
        let body = serde_json::json!({"error": title, "detail": detail, "status": status.as_u16()});
        ("application/json", body.to_string())
    } else {
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\
             <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{detail}</p>\
             <p><small>pconnect</small></p></body></html>\n",
            status = status.as_u16(),
            title = escape(title),
            detail = escape(detail)
        );
        ("text/html; charset=utf-8", body)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
