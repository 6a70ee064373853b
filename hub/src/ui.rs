//! Everything `pconnect-hub` prints: the only module allowed to write to stdout/stderr. Text for
//! people, or with `--json` one JSON object per command (snake_case keys, like `connect --json`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use pconnect_proto::text::terminal_safe;
use pconnect_proto::timefmt;
use serde_json::{Value, json};

use crate::HubInfo;
use crate::members::HubNotice;
use crate::migrate::Migrated;
use crate::store::{AuditEntry, Member};

/// How the command's output is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub json: bool,
}

impl Ui {
    fn emit(&self, value: &Value) {
        println!("{value}");
    }

    fn line(&self, text: &str) {
        println!("{}", terminal_safe(text));
    }

    /// The start banner; tests and scripts read the addresses from it, `[ok] Hub ready` comes last
    /// (with `--json`: one object with the addresses, then `{"event":"ready"}`).
    pub fn serving(&self, info: &HubInfo) {
        if self.json {
            self.emit(&json!({
                "event": "serving",
                "version": env!("CARGO_PKG_VERSION"),
                "agents": format!("https://{}", info.agents),
                "http": format!("http://{}", info.http),
                "https": info.https.map(|a| format!("https://{a}")),
                "metrics": info.metrics.map(|a| format!("http://{a}/metrics")),
                "fingerprint": info.fingerprint,
                "store": info.store,
                "peer": info.peer.as_ref().map(|(addr, _)| addr.to_string()),
                "replica": info.peer.as_ref().map(|(_, replica)| replica),
            }));
            return self.emit(&json!({"event": "ready"}));
        }
        self.line(&format!("pconnect-hub {}", env!("CARGO_PKG_VERSION")));
        self.line(&format!("  Agents:      https://{}", info.agents));
        self.line(&format!("  HTTP:        http://{}", info.http));
        if let Some(https) = info.https {
            self.line(&format!("  HTTPS:       https://{https}"));
        }
        if let Some(metrics) = info.metrics {
            self.line(&format!("  Metrics:     http://{metrics}/metrics"));
        }
        if let Some((addr, replica)) = &info.peer {
            self.line(&format!("  Peers:       {addr} (replica {replica})"));
        }
        self.line(&format!("  Fingerprint: {}", info.fingerprint));
        self.line(&format!("  Store:       {}", info.store));
        self.line("[ok] Hub ready");
    }

    pub fn member_added(&self, member: &Member, token: &str) {
        if self.json {
            return self.emit(&json!({
                "member": member.name,
                "workspace": member.workspace,
                "admin": member.is_admin,
                "token": token,
            }));
        }
        self.line(&format!("[ok] Member {} added to workspace {}.", member.name, member.workspace));
        self.line("Their token (shown once; they run `connect login --hub <url> --token <token>`):");
        self.line(token);
    }

    pub fn members(&self, workspace: &str, members: &[Member]) {
        if self.json {
            let members: Vec<Value> = members.iter().map(|m| json!({"name": m.name, "admin": m.is_admin})).collect();
            return self.emit(&json!({"workspace": workspace, "members": members}));
        }
        if members.is_empty() {
            self.line("No members yet. Add one with: pconnect-hub member add <name> --data <dir>");
            return;
        }
        self.line(&format!("Members of workspace {workspace}:"));
        for m in members {
            let role = if m.is_admin { " (admin)" } else { "" };
            self.line(&format!("  • {}{role}", m.name));
        }
    }

    /// `notice`: whether a running hub on the data dir cut the member's connections at once.
    pub fn member_removed(&self, name: &str, workspace: &str, notice: HubNotice) {
        if self.json {
            let notified = notice == HubNotice::Confirmed;
            return self.emit(&json!({"removed": name, "workspace": workspace, "running_hub_notified": notified}));
        }
        self.line(&format!("[ok] Member {name} removed; their token no longer works."));
        match notice {
            HubNotice::Confirmed => {}
            HubNotice::NoAnswer => {
                self.line("(No running hub answered on this data dir; agents are refused when they next connect.)");
            }
            HubNotice::NotAsked => self.line(
                "(Running hubs on this store cut their connections within 5 s; pass --data <dir> of a hub to have it do so at once.)",
            ),
        }
    }

    /// What `migrate` copied.
    pub fn migrated(&self, done: &Migrated) {
        let c = &done.counts;
        if self.json {
            return self.emit(&json!({
                "from": done.from.display().to_string(),
                "to": done.to,
                "force": done.force,
                "copied": {
                    "workspaces": c.workspaces,
                    "members": c.members,
                    "services": c.services,
                    "shares": c.shares,
                    "share_joins": c.share_joins,
                    "links": c.links,
                    "released_subdomains": c.tombstones,
                    "audit_entries": c.audit,
                    "hub_key": c.secret_key,
                },
            }));
        }
        self.line(&format!("[ok] Moved the hub store {} into PostgreSQL {}:", done.from.display(), done.to));
        self.line(&format!(
            "  {} workspaces, {} members (token hashes), {} services, {} shares ({} joins), {} links, \
             {} released subdomains, {} audit entries{}",
            c.workspaces,
            c.members,
            c.services,
            c.shares,
            c.share_joins,
            c.links,
            c.tombstones,
            c.audit,
            if c.secret_key { ", the hub key" } else { "" },
        ));
        self.line("Start the hub with --store <the same URL> (and the same --data, for its certificate).");
    }

    /// Files a command wrote (man pages); nothing when it wrote to stdout instead.
    pub fn files_written(&self, files: &[std::path::PathBuf]) {
        if files.is_empty() {
            return;
        }
        if self.json {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            return self.emit(&json!({"files": files}));
        }
        for file in files {
            self.line(&format!("[ok] wrote {}", file.display()));
        }
    }

    /// Audit entries, oldest first.
    pub fn audit(&self, entries: &[AuditEntry]) {
        if self.json {
            let entries: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "at": e.at,
                        "time": timefmt::rfc3339_ms(e.at.saturating_mul(1000)),
                        "workspace_id": e.workspace_id,
                        "member": e.member,
                        "action": e.action,
                        "detail": e.detail,
                    })
                })
                .collect();
            return self.emit(&json!({"entries": entries}));
        }
        if entries.is_empty() {
            self.line("No audit entries in that period.");
            return;
        }
        for e in entries {
            let who = e.member.as_deref().unwrap_or("-");
            self.line(&format!("{}  {who:<16} {:<20} {}", timefmt::utc(e.at), e.action, e.detail));
        }
    }

    /// The error that ends a command: one line of cause and next step, on stderr (with `--json`,
    /// `{"error": "..."}` on stdout, like `connect --json`).
    pub fn error(&self, e: &anyhow::Error) {
        if self.json {
            return self.emit(&json!({"error": format!("{e:#}")}));
        }
        eprintln!("[!] {}", terminal_safe(&format!("{e:#}")));
    }
}
