//! The assistant: a question goes to the exposing agent's model (when the agent has one
//! configured) with the capture summary; otherwise, or when that fails, the answer is composed
//! from the offline insights. Either way the answer cites exchange ids.

use std::sync::Arc;

use pconnect_proto::debug::{Answer, AnswerSource, AskCall, AskReply, Insight, cited_ids};
use pconnect_proto::wire;

use super::DebugSessions;
use super::limits::Busy;
use super::session::Session;
use super::{insights, summary};
use crate::conn::reverse;

/// Longest question accepted.
const QUESTION_CAP: usize = 2 * 1024;

/// Answers a viewer's question about `session`, within the session's question limits (`Err` when
/// over them: each question may spend the owner's model key).
pub(crate) async fn ask(debug: &DebugSessions, session: &Session, question: &str) -> Result<Answer, Busy> {
    let _running = session.calls.start_ask()?;
    Ok(answer(debug, session, question).await)
}

async fn answer(debug: &DebugSessions, session: &Session, question: &str) -> Answer {
    let question: String = question.trim().chars().take(QUESTION_CAP).collect();
    let exchanges = session.all();
    let found = insights::compute(&exchanges);
    let call = AskCall {
        session: session.meta.id.clone(),
        question: question.clone(),
        summary: summary::build(session, &exchanges, &found),
    };
    let model = match super::replay::agent_conn(debug, session).await {
        Ok(conn) => match serde_json::to_vec(&call) {
            Ok(body) => reverse::call(&conn, &session.meta.service, wire::DEBUG_ASK_PATH, body.into()).await.ok(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let reply: Option<AskReply> = model.and_then(|bytes| serde_json::from_slice(&bytes).ok());
    match reply.and_then(|r| r.text) {
        Some(text) => {
            let ids = session.ids();
            let cites = cited_ids(&text).into_iter().filter(|id| ids.contains(id)).collect();
            Answer { text, cites, source: AnswerSource::Model }
        }
        None => offline(&question, &found, &exchanges),
    }
}

/// An answer from the insights alone, the ones matching the question's words first.
fn offline(question: &str, found: &[Insight], exchanges: &[Arc<pconnect_proto::debug::Captured>]) -> Answer {
    if exchanges.is_empty() {
        return Answer {
            text: "Nothing has been captured yet: send some traffic through the tunnel and ask again.".into(),
            cites: Vec::new(),
            source: AnswerSource::Insights,
        };
    }
    let q = question.to_ascii_lowercase();
    let topic = |i: &Insight| {
        let t = i.title.to_ascii_lowercase();
        (q.contains("slow") && t.contains("slow"))
            || ((q.contains("fail") || q.contains("error") || q.contains("wrong")) && t.contains("failed"))
            || (q.contains("n+1") && t.contains("n+1"))
            || (q.contains("redis") && t.contains("redis"))
    };
    let mut ordered: Vec<&Insight> = found.iter().filter(|i| topic(i)).collect();
    ordered.extend(found.iter().filter(|i| !topic(i)));
    if ordered.is_empty() {
        return Answer {
            text: format!("No problems found in the {} captured exchanges by the offline rules.", exchanges.len()),
            cites: Vec::new(),
            source: AnswerSource::Insights,
        };
    }
    let mut text = String::from("From the offline insights (no model configured or reachable):\n");
    let mut cites = Vec::new();
    for insight in ordered.iter().take(6) {
        text.push_str(&format!("- {}: {}\n", insight.title, insight.detail));
        for id in &insight.exchanges {
            if !cites.contains(id) {
                cites.push(*id);
            }
        }
    }
    Answer { text, cites, source: AnswerSource::Insights }
}
