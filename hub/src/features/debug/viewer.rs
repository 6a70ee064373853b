//! One viewer's WebSocket: `join` first, then `hello` with the last exchanges, then live
//! `exchange`, `presence` and `stats` messages; `rename` changes the viewer's name in everyone's
//! presence; `replay` and `ask` answered to the asker only; `ended` when the session ends (a session that
//! moved to another hub process just closes the socket, and the page reconnects). The loop pulls
//! what changed from the session's ring, so a slow viewer only delays itself and never loses more
//! than the ring evicted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use pconnect_proto::debug::{HELLO_RECENT, ReplayRequest, Viewer};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::mpsc;

use super::DebugSessions;
use super::session::Session;
use super::ws::{self, Incoming};
use super::{assistant, replay};

/// How long a viewer has to send `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Server pings (browsers cannot send them).
const PING_EVERY: Duration = Duration::from_secs(15);
/// A viewer silent for this long (no pong, no message) is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Replays and questions one viewer may have running at once.
const MAX_IN_FLIGHT: usize = 4;
/// Most JSON bytes of exchanges in a `hello` (older ones are on the API).
const HELLO_BYTES: usize = 8 * 1024 * 1024;
/// Longest display name kept.
const NAME_CAP: usize = 40;

/// A message from the viewer page.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromViewer {
    Join {
        #[serde(default)]
        name: String,
    },
    Rename {
        #[serde(default)]
        name: String,
    },
    Replay(ReplayRequest),
    Ask {
        question: String,
    },
}

/// A replay or a question: run off the loop and answered to the asker only.
enum Call {
    Replay(ReplayRequest),
    Ask(String),
}

type Writer = WriteHalf<TokioIo<Upgraded>>;

/// Serves one viewer until it leaves, goes silent, or the session ends.
pub(crate) async fn serve(debug: Arc<DebugSessions>, session: Arc<Session>, upgraded: Upgraded) {
    let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    let (incoming_tx, mut incoming) = mpsc::channel::<Incoming>(16);
    let reader_task = tokio::spawn(async move {
        let mut partial = None;
        while let Ok(message) = ws::read_message(&mut reader, &mut partial).await {
            let close = message == Incoming::Close;
            if incoming_tx.send(message).await.is_err() || close {
                break;
            }
        }
    });
    let joined = tokio::time::timeout(JOIN_TIMEOUT, wait_join(&mut incoming, &mut writer)).await;
    if let Ok(Some(name)) = joined {
        let you = session.join(&display_name(&name));
        tracing::debug!(session = %session.meta.id, viewer = you.id, "viewer joined");
        let _ = live(&debug, &session, &you, &mut incoming, &mut writer).await;
        session.leave(you.id);
    }
    let _ = ws::send_close(&mut writer).await;
    reader_task.abort();
}

/// Waits for the `join` message (answering pings); `None` when the viewer left first.
async fn wait_join(incoming: &mut mpsc::Receiver<Incoming>, writer: &mut Writer) -> Option<String> {
    while let Some(message) = incoming.recv().await {
        match message {
            Incoming::Text(text) => {
                if let Ok(FromViewer::Join { name }) = serde_json::from_str(&text) {
                    return Some(name);
                }
            }
            Incoming::Ping(payload) => {
                let _ = write(writer, &ws::frame(ws::OP_PONG, &payload)).await;
            }
            Incoming::Close => return None,
            Incoming::Binary | Incoming::Pong => {}
        }
    }
    None
}

/// A name safe to show: trimmed, no control characters, capped (empty stays empty: the session
/// names the viewer `guest-<id>`).
fn display_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(NAME_CAP).collect();
    clean.trim().to_string()
}

async fn live(
    debug: &Arc<DebugSessions>,
    session: &Arc<Session>,
    you: &Viewer,
    incoming: &mut mpsc::Receiver<Incoming>,
    writer: &mut Writer,
) -> std::io::Result<()> {
    let mut changes = session.watch();
    let mut presence_seen = session.presence_version();
    let recent = session.recent_within(HELLO_RECENT, HELLO_BYTES);
    let mut last_id = recent.last().map_or(0, |c| c.id);
    let info = session.info();
    let mut last_stats = (info.dropped, info.exchanges);
    send(writer, &json!({"type": "hello", "session": info, "you": you, "recent": recent.iter().map(|c| &**c).collect::<Vec<_>>()})).await?;
    let (results_tx, mut results) = mpsc::channel::<serde_json::Value>(MAX_IN_FLIGHT);
    let mut in_flight = 0usize;
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut ping_tick = tokio::time::interval(PING_EVERY);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            _ = session.ended.cancelled() => {
                // A session that goes on elsewhere just closes: the page reconnects and finds it.
                if !session.was_released() {
                    send(writer, &json!({"type": "ended"})).await?;
                }
                return Ok(());
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let snapshot = session.since(last_id, &mut presence_seen);
                for captured in &snapshot.exchanges {
                    send(writer, &json!({"type": "exchange", "captured": &**captured})).await?;
                    last_id = captured.id;
                }
                if let Some(viewers) = snapshot.presence {
                    send(writer, &json!({"type": "presence", "viewers": viewers})).await?;
                }
            }
            _ = stats_tick.tick() => {
                let (dropped, exchanges) = session.stats();
                if (dropped, exchanges) != last_stats {
                    last_stats = (dropped, exchanges);
                    send(writer, &json!({"type": "stats", "dropped": dropped, "exchanges": exchanges})).await?;
                }
            }
            _ = ping_tick.tick() => {
                if heard.elapsed() > IDLE_TIMEOUT {
                    return Ok(());
                }
                write(writer, &ws::frame(ws::OP_PING, b"")).await?;
            }
            Some(result) = results.recv() => {
                in_flight -= 1;
                send(writer, &result).await?;
            }
            message = incoming.recv() => {
                heard = Instant::now();
                match message {
                    None | Some(Incoming::Close) => return Ok(()),
                    Some(Incoming::Ping(payload)) => write(writer, &ws::frame(ws::OP_PONG, &payload)).await?,
                    Some(Incoming::Pong | Incoming::Binary) => {}
                    Some(Incoming::Text(text)) => {
                        let Ok(request) = serde_json::from_str::<FromViewer>(&text) else { continue };
                        let call = match request {
                            FromViewer::Join { .. } => continue,
                            FromViewer::Rename { name } => {
                                session.rename(you.id, &display_name(&name));
                                continue;
                            }
                            FromViewer::Replay(replay) => Call::Replay(replay),
                            FromViewer::Ask { question } => Call::Ask(question),
                        };
                        if in_flight >= MAX_IN_FLIGHT {
                            send(writer, &busy(&call)).await?;
                            continue;
                        }
                        in_flight += 1;
                        let (debug, session, results_tx) = (debug.clone(), session.clone(), results_tx.clone());
                        tokio::spawn(async move {
                            let result = answer(&debug, &session, call).await;
                            let _ = results_tx.send(result).await;
                        });
                    }
                }
            }
        }
    }
}

/// Runs a replay or a question and builds the message for the asker.
async fn answer(debug: &DebugSessions, session: &Session, call: Call) -> serde_json::Value {
    match call {
        Call::Replay(replay) => match replay::replay(debug, session, &replay).await {
            Ok(result) => json!({"type": "replayed", "result": result}),
            Err(busy) => json!({"type": "replayed", "result": {"ok": false, "captured": null, "error": busy.message}}),
        },
        Call::Ask(question) if session.meta.ai => match assistant::ask(debug, session, &question).await {
            Ok(answer) => json!({"type": "answer", "answer": answer}),
            Err(busy) => json!({"type": "answer", "answer": {"text": busy.message, "cites": [], "source": "insights"}}),
        },
        Call::Ask(_) => json!({"type": "answer", "answer": {
            "text": "The assistant is off for this session (expose with --ai to turn it on).",
            "cites": [], "source": "insights"}}),
    }
}

fn busy(call: &Call) -> serde_json::Value {
    let error = "too many replays and questions running at once; wait for one to finish";
    match call {
        Call::Replay(_) => json!({"type": "replayed", "result": {"ok": false, "captured": null, "error": error}}),
        Call::Ask(_) => json!({"type": "answer", "answer": {"text": error, "cites": [], "source": "insights"}}),
    }
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, value: &serde_json::Value) -> std::io::Result<()> {
    ws::send_text(writer, &value.to_string()).await
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    writer.write_all(frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_capped_and_free_of_control_characters() {
        assert_eq!(display_name("  ann\u{1b}[31m \n"), "ann[31m");
        assert_eq!(display_name(&"x".repeat(100)).len(), NAME_CAP);
        assert_eq!(display_name(" \t\r\n"), "", "empty: the session names the viewer guest-<id>");
    }

    #[test]
    fn rename_and_join_messages_parse_with_or_without_a_name() {
        let rename: FromViewer = serde_json::from_str(r#"{"type":"rename","name":"ben"}"#).unwrap();
        assert!(matches!(rename, FromViewer::Rename { name } if name == "ben"));
        let join: FromViewer = serde_json::from_str(r#"{"type":"join"}"#).unwrap();
        assert!(matches!(join, FromViewer::Join { name } if name.is_empty()));
    }
}
