//! Everything `connect` prints. Human output follows the product docs (`[ok]`, `[!]`, bullets);
//! `--json` prints one JSON object per event on stdout instead. No other module prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod debug;
mod drain;
pub(crate) mod progress;
mod up;

use std::io::Write;
use std::net::SocketAddr;

use pconnect_proto::control::ServiceInfo;
use serde::Serialize;
use serde_json::json;

use pconnect_proto::link::{LinkInfo, LinkListing};
use pconnect_proto::share::{self, ShareCreated, ShareListing};

use crate::state::{Login, ShareCodes};
use crate::target::Target;
use crate::timefmt;

pub(crate) use pconnect_proto::text::terminal_safe;

/// Output mode chosen by `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub json: bool,
}

impl Ui {
    fn emit<T: Serialize>(&self, value: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, value);
        let _ = writeln!(out);
        let _ = out.flush();
    }

    /// One or more lines of human output. Everything printed passes through here or
    /// [`Self::error`], so names, values and captured traffic from others can never drive the
    /// terminal: control characters (escape sequences, carriage returns) are shown as `?`.
    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", terminal_safe(text));
        let _ = out.flush();
    }

    /// A warning that does not stop the command.
    pub fn warn(&self, text: &str) {
        if self.json {
            self.emit(&json!({"event": "warning", "message": text}));
        } else {
            self.line(&format!("[!] {text}"));
        }
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

    /// Where `--metrics` serves.
    pub fn metrics_serving(&self, addr: SocketAddr) {
        let url = format!("http://{addr}/metrics");
        if self.json {
            self.emit(&json!({"event": "metrics", "url": url}));
        } else {
            self.line(&format!("Metrics: {url}"));
        }
    }

    pub fn logged_in(&self, login: &Login) {
        if self.json {
            return self.emit(&json!({
                "hub": login.hub, "member": login.member, "workspace": login.workspace,
                "fingerprint": login.fingerprint,
            }));
        }
        self.line(&format!("[ok] Logged in to {} as {} (workspace {})", login.hub, login.member, login.workspace));
        match (&login.fingerprint, &login.ca) {
            (_, Some(ca)) => self.line(&format!("  Hub certificate verified with CA {}", ca.display())),
            (Some(pin), None) => self.line(&format!("  Hub key pinned: {pin}")),
            (None, None) => self.line("  Hub certificate verified with this system's trust store"),
        }
    }

    /// Shows a hub's key on first login and asks (on the terminal) whether to trust it.
    pub fn ask_trust_hub(&self, url: &str, key: &str) -> bool {
        eprintln!("The hub at {url} presents a certificate this system does not vouch for.");
        eprintln!("  Its key fingerprint is {key}");
        eprintln!("  Compare it with the `Fingerprint:` line the hub printed when it started.");
        eprint!("Trust this hub and log in? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
    }

    pub fn whoami(&self, login: &Login, online: bool) {
        if self.json {
            return self.emit(&json!({
                "member": login.member, "workspace": login.workspace, "hub": login.hub,
                "embedded": login.embedded, "online": online,
            }));
        }
        let kind = if login.embedded { " (embedded local hub)" } else { "" };
        self.line(&format!("{} in workspace {}", login.member, login.workspace));
        self.line(&format!("  Hub: {}{kind} {}", login.hub, if online { "● online" } else { "○ unreachable" }));
    }

    pub fn logged_out(&self, had_login: bool) {
        if self.json {
            return self.emit(&json!({"logged_out": had_login}));
        }
        if had_login {
            self.line("[ok] Logged out. The next command uses the embedded local hub unless you log in again.");
        } else {
            self.line("Not logged in to a team hub.");
        }
    }

    pub fn target_silent(&self, target: &Target) {
        self.warn(&format!(
            "Nothing answers on {target} yet: teammates' connections will fail until the service is running"
        ));
    }

    pub fn exposing(&self, name: &str, target: &Target, login: &Login, link: Option<&LinkInfo>) {
        if self.json {
            return self.emit(&json!({
                "event": "exposed", "service": name, "target": target.to_string(), "hub": login.hub,
                "url": link.map(|l| &l.url), "expires_at": link.and_then(|l| l.expires_at),
            }));
        }
        match link {
            Some(link) if link.persistent => {
                self.line(&format!("🌐 Public URL: {}", link.url));
                self.line("External services (Stripe, GitHub, etc.) can send webhooks to this URL");
                self.line(&format!("📡 Service \"{name}\" is now accessible through the hub"));
                self.line(&format!("Public URL: {}", link.url));
                self.line("Anyone can reach this service at the URL above");
            }
            Some(link) => {
                self.line(&format!("📡 Service \"{name}\" is now accessible through the hub"));
                self.line(&format!("🔗 Public URL: {}", link.url));
                if let Some(at) = link.expires_at {
                    self.line(&format!("Expires: {}", timefmt::utc(at)));
                }
            }
            None => {
                self.line(&format!("📡 Service \"{name}\" is now accessible through the hub"));
                self.line(&format!("  Target: {target}"));
                self.line(&format!("  Teammates reach it with: connect reach {name}"));
            }
        }
        self.line("Press Ctrl+C to stop sharing.");
    }

    pub fn links(&self, listing: &LinkListing) {
        if self.json {
            return self.emit(listing);
        }
        if listing.links.is_empty() {
            self.line("No public links. Create one with: connect expose <port> --link");
            return;
        }
        self.line("🔗 Public links");
        for link in &listing.links {
            let expiry = match link.expires_at {
                Some(at) => format!("expires {}", timefmt::utc(at)),
                None => "persistent".to_string(),
            };
            self.line(&format!("  {} → {}", link.url, link.service));
            self.line(&format!(
                "    {expiry} | {} request(s) served | revoke: connect links revoke {}",
                link.requests, link.subdomain
            ));
        }
    }

    pub fn link_revoked(&self, subdomain: &str) {
        if self.json {
            return self.emit(&json!({"revoked": subdomain}));
        }
        self.line(&format!("[ok] Link {subdomain} revoked: its URL now answers 410."));
    }

    pub fn link_lost(&self) {
        self.warn("Lost the connection to the hub; reconnecting...");
    }

    pub fn link_restored(&self) {
        if self.json {
            return self.emit(&json!({"event": "reconnected"}));
        }
        self.line("[ok] Reconnected to the hub");
    }

    pub fn unexposed(&self, name: &str, unregistered: bool) {
        if self.json {
            return self.emit(&json!({"event": "stopped", "service": name, "unregistered": unregistered}));
        }
        if unregistered {
            self.line(&format!("[ok] Stopped sharing \"{name}\""));
        } else {
            self.warn(&format!("Stopped sharing \"{name}\", but the hub could not be told: it shows as offline"));
        }
    }

    pub fn reaching(&self, service: &ServiceInfo, addr: SocketAddr, wanted: Option<u16>) {
        if self.json {
            return self.emit(&json!({
                "event": "listening", "service": service.name, "owner": service.owner,
                "listen": addr.to_string(), "port": addr.port(), "online": service.online,
            }));
        }
        if let Some(wanted) = wanted {
            self.warn(&format!("Port {wanted} is in use; using {} instead", addr.port()));
        }
        let host = if addr.ip().is_loopback() && addr.ip().to_string() == "127.0.0.1" {
            "localhost".to_string()
        } else {
            addr.ip().to_string()
        };
        self.line(&format!("[ok] Listening on {host}:{} → {} ({})", addr.port(), service.name, service.owner));
        if !service.online {
            self.warn(&format!(
                "{} is offline right now ({}'s agent is not connected); connections work once it is back",
                service.name, service.owner
            ));
        }
    }

    /// A tunnel took another way than the one before it (direct, or through the hub).
    pub fn tunnel_path(&self, service: &str, path: crate::link::forward::Path) {
        if self.json {
            return self.emit(&json!({"event": "tunnel_path", "service": service, "path": path.as_str()}));
        }
        match path {
            crate::link::forward::Path::Direct => {
                self.line(&format!("  ⚡ {service}: direct to the teammate's agent (the hub relays nothing)"))
            }
            crate::link::forward::Path::Relay => self.line(&format!("  ↔ {service}: through the hub")),
        }
    }

    pub fn tunnel_failed(&self, service: &str, reason: &str) {
        self.warn(&format!("{service}: connection refused: {reason}"));
    }

    pub fn services(&self, services: &[ServiceInfo]) {
        if self.json {
            return self.emit(&json!({"services": services}));
        }
        if services.is_empty() {
            self.line("No services in this workspace yet. Share one with: connect expose <port>");
            return;
        }
        let width = services.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
        let owner_width = services.iter().map(|s| s.owner.len()).max().unwrap_or(5).max(5);
        self.line(&format!("{:width$}  {:owner_width$}  {:>5}  STATUS", "NAME", "OWNER", "PORT"));
        for s in services {
            let status = if s.online { "● online" } else { "○ offline" };
            self.line(&format!("{:width$}  {:owner_width$}  {:>5}  {status}", s.name, s.owner, s.port));
        }
    }

    pub fn share_creating(&self) {
        if !self.json {
            self.line("🤝 Creating environment share...");
        }
    }

    pub fn share_created(&self, created: &ShareCreated, expires_in_secs: u64) {
        let share = &created.share;
        if self.json {
            return self.emit(&json!({
                "code": created.code, "id": share.id, "name": share.name,
                "expires_at": share.expires_at, "routes": share.routes,
            }));
        }
        self.line("[ok] Environment share created!");
        let label = format!(" Share Code: {}", created.code);
        let width = label.chars().count() + 8;
        self.line(&format!("┌{}┐", "─".repeat(width)));
        self.line(&format!("│{label:<width$}│"));
        self.line(&format!("└{}┘", "─".repeat(width)));
        if let Some(name) = &share.name {
            self.line(&format!("Name: {name}"));
        }
        self.line("Your teammate can join with:");
        self.line(&format!("  connect join {}", created.code));
        self.line("Routes being shared:");
        for route in &share.routes {
            self.line(&format!("  • {} → localhost:{}", route.service, route.port));
        }
        self.line(&format!(
            "Expires in {} ({})",
            pconnect_proto::duration::describe(expires_in_secs),
            timefmt::utc(share.expires_at)
        ));
    }

    pub fn share_list(&self, listing: &ShareListing, codes: &ShareCodes, hub: &str) {
        let code_of = |id: i64| codes.get(hub, id).map(str::to_string);
        if self.json {
            let shares: Vec<_> = listing
                .shares
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id, "code": code_of(s.id), "name": s.name, "routes": s.routes,
                        "joined": s.joined, "expires_at": s.expires_at,
                    })
                })
                .collect();
            return self.emit(&json!({"shares": shares}));
        }
        if listing.shares.is_empty() {
            self.line("No active environment shares. Create one with: connect share");
            return;
        }
        self.line("📋 Active Environment Shares");
        let now = pconnect_proto::clock::now();
        for s in &listing.shares {
            let code = code_of(s.id).unwrap_or_else(|| format!("#{} (code shown only where it was created)", s.id));
            match &s.name {
                Some(name) => self.line(&format!("  {code} ({name})")),
                None => self.line(&format!("  {code}")),
            }
            self.line(&format!(
                "    Routes: {} | Joined: {} | Expires: {}",
                s.routes.len(),
                s.joined,
                share::short_remaining(s.expires_at - now)
            ));
        }
    }

    pub fn share_revoked(&self, code: &str) {
        if self.json {
            return self.emit(&json!({"revoked": code}));
        }
        self.line(&format!("[ok] Share {code} revoked."));
    }

    pub fn joining(&self, code: &str) {
        if !self.json {
            self.line(&format!("🔗 Joining environment share: {code}"));
        }
    }

    pub fn join_route(&self, service: &str, addr: SocketAddr, wanted: Option<u16>) {
        if self.json {
            return self.emit(&json!({
                "event": "route", "service": service, "listen": addr.to_string(), "port": addr.port(), "wanted": wanted,
            }));
        }
        let host = if addr.ip().to_string() == "127.0.0.1" { "localhost".to_string() } else { addr.ip().to_string() };
        match wanted {
            Some(wanted) => self.line(&format!("  [!] {service} → {host}:{} (was {wanted}: in use)", addr.port())),
            None => self.line(&format!("  [ok] {service} → {host}:{}", addr.port())),
        }
    }

    pub fn join_route_failed(&self, service: &str, reason: &str) {
        if self.json {
            return self.emit(&json!({"event": "route_failed", "service": service, "error": reason}));
        }
        self.line(&format!("  [!] {service} → failed: {reason}"));
    }

    pub fn joined(&self, tunnels: usize, creator: &str) {
        if self.json {
            return self.emit(&json!({"event": "joined", "tunnels": tunnels, "creator": creator}));
        }
        self.line("[ok] Connected to shared environment!");
        self.line(&format!("[ok] {tunnels} tunnel(s) active (shared by {creator}). Press Ctrl+C to leave."));
    }

    pub fn teammates(&self, teammates: &[(String, usize)]) {
        if self.json {
            let list: Vec<_> = teammates.iter().map(|(n, c)| json!({"name": n, "services": c})).collect();
            return self.emit(&json!({"teammates": list}));
        }
        if teammates.is_empty() {
            self.line("No teammate has services online right now.");
            return;
        }
        self.line("Available teammates:");
        for (name, count) in teammates {
            self.line(&format!("  • {name} ({count} service{})", if *count == 1 { "" } else { "s" }));
        }
    }

    pub fn cloned(&self, teammate: &str, services: &[(String, SocketAddr, Option<u16>)], env_file: Option<&str>) {
        if self.json {
            let list: Vec<_> = services
                .iter()
                .map(|(n, a, was)| json!({"service": n, "listen": a.to_string(), "port": a.port(), "wanted": was}))
                .collect();
            return self.emit(&json!({"event": "cloned", "teammate": teammate, "services": list, "env": env_file}));
        }
        self.line(&format!("✓ Cloned {} service(s) from {teammate}", services.len()));
        if let Some(file) = env_file {
            self.line(&format!("→ Generated: {file}"));
        }
        self.line("Services cloned:");
        for (name, addr, was) in services {
            let host =
                if addr.ip().to_string() == "127.0.0.1" { "localhost".to_string() } else { addr.ip().to_string() };
            match was {
                Some(was) => self.line(&format!("  • {name} → {host}:{} (was {was})", addr.port())),
                None => self.line(&format!("  • {name} → {host}:{}", addr.port())),
            }
        }
        if let Some(file) = env_file {
            self.line(&format!("Connection strings saved to {file}"));
            self.line(&format!("Run: source {file}"));
        }
    }

    pub fn hub_status(&self, dir: &std::path::Path, running: Option<&crate::embedded::RunningHub>) {
        if self.json {
            return self.emit(&json!({"data_dir": dir, "running": running}));
        }
        match running {
            Some(hub) => {
                self.line("[ok] Local hub is running");
                self.line(&format!("  Agents: https://{}", hub.agents));
                self.line(&format!("  HTTP:   http://{}", hub.http));
                self.line(&format!("  Data:   {}", dir.display()));
            }
            None => self.line(&format!("Local hub is not running (data: {}). Any command starts it.", dir.display())),
        }
    }

    pub fn hub_stopped(&self, was_running: bool) {
        if self.json {
            return self.emit(&json!({"stopped": was_running}));
        }
        self.line(if was_running { "[ok] Local hub stopped" } else { "Local hub was not running" });
    }

    /// The error that ends a command: one line of cause and next step, on stderr.
    pub fn error(&self, error: &anyhow::Error) {
        if self.json {
            return self.emit(&json!({"error": format!("{error:#}")}));
        }
        eprintln!("[!] {}", terminal_safe(&format!("{error:#}")));
    }
}
