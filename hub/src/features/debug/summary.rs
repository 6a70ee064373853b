//! The capture summary an assistant model reads: the session, the offline insights and the most
//! recent exchanges as one line each (`#id protocol request -> outcome duration`), newest kept
//! first when the [`SUMMARY_CAP`] cuts. Built from the already-redacted ring, so no secret can be
//! in it; bodies are never included.

use std::sync::Arc;

use pconnect_proto::debug::{Captured, Insight, SUMMARY_CAP};

use super::session::Session;

/// The summary for a question about `session`.
pub(crate) fn build(session: &Session, exchanges: &[Arc<Captured>], insights: &[Insight]) -> String {
    let meta = &session.meta;
    let (dropped, total) = session.stats();
    let mut head = format!(
        "Debug session {} of service \"{}\"{} owned by {}: {total} exchanges captured, {dropped} dropped.\n",
        meta.id,
        meta.service,
        meta.kind.map(|k| format!(" ({})", k.as_str())).unwrap_or_default(),
        meta.owner_name,
    );
    if !insights.is_empty() {
        head.push_str("Insights from offline rules:\n");
        for insight in insights {
            let severity = serde_json::to_value(insight.severity).ok().and_then(|v| v.as_str().map(str::to_string));
            push_capped(
                &mut head,
                &format!("- [{}] {}: {}\n", severity.unwrap_or_default(), insight.title, insight.detail),
                SUMMARY_CAP / 2,
            );
        }
    }
    head.push_str("Recent exchanges (oldest first):\n");
    let mut lines = Vec::new();
    let mut used = head.len();
    for c in exchanges.iter().rev() {
        let replay = c.replay_of.map(|id| format!(" (replay of #{id})")).unwrap_or_default();
        let line = format!("#{} {} conn {}{replay}: {}\n", c.id, c.exchange.label(), c.conn, c.exchange.one_line());
        if used + line.len() > SUMMARY_CAP {
            break;
        }
        used += line.len();
        lines.push(line);
    }
    lines.reverse();
    head.extend(lines);
    head
}

/// Appends `text` unless that would pass `cap` bytes.
fn push_capped(out: &mut String, text: &str, cap: usize) {
    if out.len() + text.len() <= cap {
        out.push_str(text);
    }
}
