//! What debug sessions print: the share link of `expose --debug`, `connect debug --list`, `stop`
//! and the live one-line-per-exchange `tail`.

use pconnect_proto::debug::{Captured, DebugSummary};
use serde_json::json;

use super::Ui;

impl Ui {
    pub fn debug_enabled(&self, id: &str, url: &str, ai: bool) {
        if self.json {
            return self.emit(&json!({"event": "debug", "id": id, "url": url, "ai": ai}));
        }
        self.line("🔍 Debug mode enabled");
        self.line(&format!("Share this link: {url}"));
        self.line("Anyone with this link can see live traffic");
        if ai {
            self.line("AI Copilot: enabled");
        }
    }

    pub fn debug_failed(&self, reason: &str) {
        self.warn(&format!("Debug mode could not start ({reason}); the service is exposed without capture"));
    }

    pub fn debug_ended_remotely(&self, id: &str) {
        if self.json {
            return self.emit(&json!({"event": "debug_ended", "id": id}));
        }
        self.warn(&format!("Debug session {id} was stopped: traffic is no longer captured (still exposed)"));
    }

    pub fn debug_list(&self, sessions: &[DebugSummary]) {
        if self.json {
            return self.emit(&json!({"sessions": sessions}));
        }
        if sessions.is_empty() {
            self.line("No debug sessions. Start one with: connect expose <port> --debug");
            return;
        }
        self.line("🔍 Debug sessions");
        for s in sessions {
            let ai = if s.ai { ", AI" } else { "" };
            self.line(&format!("  {}  {}  {}", s.id, s.service, s.url));
            self.line(&format!(
                "      {} exchange(s), {} dropped, {} viewer(s){ai} | stop: connect debug stop {}",
                s.exchanges, s.dropped, s.viewers, s.id
            ));
        }
    }

    pub fn debug_stopped(&self, id: &str) {
        if self.json {
            return self.emit(&json!({"stopped": id}));
        }
        self.line(&format!("[ok] Debug session {id} stopped: its viewers were told and its link no longer works."));
    }

    pub fn debug_tail_start(&self, id: &str) {
        if !self.json {
            self.line(&format!("Following debug session {id} (Ctrl+C to stop)"));
        }
    }

    /// `#12 http GET /api/users -> 200 3.1ms`
    pub fn debug_tail_line(&self, captured: &Captured) {
        if self.json {
            return self.emit(captured);
        }
        let replay = captured.replay_of.map(|id| format!(" (replay of #{id})")).unwrap_or_default();
        self.line(&format!("#{} {} {}{replay}", captured.id, captured.exchange.label(), captured.exchange.one_line()));
    }

    pub fn debug_tail_ended(&self, id: &str) {
        if self.json {
            return self.emit(&json!({"event": "debug_ended", "id": id}));
        }
        self.line(&format!("Debug session {id} ended."));
    }
}
