//! What `connect up --detach`, `connect status`, `connect down` and `up`'s reach listeners print.

use std::net::SocketAddr;

use pconnect_proto::control::ServiceInfo;
use pconnect_proto::plan::{Change, ReachVia};
use serde_json::json;

use super::Ui;
use crate::dev::control::{TunnelsUp, UpStatus};
use crate::timefmt;

impl Ui {
    pub fn up_reaching(&self, service: &ServiceInfo, addr: SocketAddr, wanted: Option<u16>) {
        if self.json {
            return self.emit(&json!({
                "event": "reaching", "service": service.name, "owner": service.owner,
                "listen": addr.to_string(), "port": addr.port(), "wanted": wanted,
            }));
        }
        match wanted {
            Some(was) => self.line(&format!(
                "  [ok] reach {} ({}) → localhost:{} (port {was} is in use here)",
                service.name,
                service.owner,
                addr.port()
            )),
            None => {
                self.line(&format!("  [ok] reach {} ({}) → localhost:{}", service.name, service.owner, addr.port()))
            }
        }
    }

    /// `connect up --detach` once everything is applied.
    pub fn up_detached(&self, status: &UpStatus) {
        if self.json {
            return self.emit(status);
        }
        self.line(&format!(
            "[ok] {} is up in the background (pid {})",
            status.project.as_deref().unwrap_or("project"),
            status.pid
        ));
        self.up_summary(status);
        self.line("Stop it with: connect down");
    }

    /// `connect status`.
    pub fn up_status(&self, file: &std::path::Path, status: Option<&UpStatus>) {
        if self.json {
            return self.emit(&json!({"file": file, "running": status.is_some(), "status": status}));
        }
        let Some(status) = status else {
            self.line(&format!(
                "Nothing is up for {}. Start it with: connect up (or connect up --detach)",
                file.display()
            ));
            return;
        };
        let mark = if status.error.is_some() { "[!]" } else { "[ok]" };
        self.line(&format!(
            "{mark} {} is up (pid {}, {})",
            status.project.as_deref().unwrap_or("project"),
            status.pid,
            status.file.display()
        ));
        self.up_summary(status);
        if let Some(error) = &status.error {
            self.line(&format!("[!] The last apply failed: {error}"));
        }
    }

    fn up_summary(&self, status: &UpStatus) {
        for service in &status.services {
            self.line(&format!("  • {} → {}", service.name, service.target));
        }
        for link in &status.links {
            let lifetime = match link.expires_at {
                Some(at) => format!("expires {}", timefmt::utc(at)),
                None => "persistent".to_string(),
            };
            self.line(&format!("  🔗 {} → {} ({lifetime})", link.service, link.url));
        }
        for share in &status.shares {
            let code = share.code.as_deref().unwrap_or("(code shown where it was created)");
            self.line(&format!(
                "  🤝 share {}: code {code} ({}; expires {})",
                share.name,
                share.services.join(", "),
                timefmt::utc(share.expires_at)
            ));
        }
        for debug in &status.debug {
            self.line(&format!("  🔍 {} debug session {}: {}", debug.service, debug.id, debug.url));
        }
        for reach in &status.reach {
            let TunnelsUp { direct, relay } = reach.tunnels;
            let open = match direct + relay {
                0 => String::new(),
                _ => format!(": {direct} direct, {relay} through the hub"),
            };
            self.line(&format!("  ← {} ({}) on {}{open}", reach.service, reach.owner, reach.address));
        }
        if let Some(env) = &status.env_file {
            self.line(&format!("  Env: {} (load it with: source {})", env.display(), env.display()));
        }
    }

    /// `connect down`.
    pub fn down(&self, file: &std::path::Path, was_running: bool) {
        if self.json {
            return self.emit(&json!({"event": "down", "file": file, "stopped": was_running}));
        }
        if was_running {
            self.line("[ok] Down: services unregistered, temporary links and shares removed.");
        } else {
            self.line(&format!("Nothing was up for {}.", file.display()));
        }
    }
}

impl Ui {
    pub fn plan(&self, path: &std::path::Path, plan: &pconnect_proto::plan::Plan) {
        if self.json {
            return self.emit(plan);
        }
        for waiting in &plan.waiting {
            self.line(&format!("  (reach: {waiting} is not in the workspace yet; `up` keeps trying)"));
        }
        if plan.is_empty() {
            self.line(&format!("No changes: the hub matches {}.", path.display()));
            return;
        }
        self.line(&format!("Plan for {}:", path.display()));
        for change in &plan.changes {
            self.line(&format!("  {}", describe(change)));
        }
        self.line(&format!("{} change(s). Run `connect up` to apply them.", plan.changes.len()));
    }

    pub fn up_starting(&self, path: &std::path::Path, project: Option<&str>) {
        if !self.json {
            self.line(&format!("🚀 connect up: {} ({})", project.unwrap_or("project"), path.display()));
        }
    }

    pub fn up_applied(&self, applied: &[crate::dev::apply::Applied]) {
        use crate::dev::apply::Outcome;
        for a in applied {
            let text = describe(&a.change);
            let text = text.trim_start_matches(['+', '-', '~', ' ']);
            if self.json {
                let detail = match &a.result {
                    Ok(Outcome::Link(link)) => {
                        json!({"url": link.url, "subdomain": link.subdomain, "expires_at": link.expires_at})
                    }
                    Ok(Outcome::Share(share)) => json!({"code": share.code, "id": share.share.id}),
                    Ok(Outcome::ShareUpdated(share)) => json!({"id": share.id, "expires_at": share.expires_at}),
                    Ok(Outcome::Done) => json!({}),
                    Err(e) => json!({"error": e}),
                };
                self.emit(&json!({"event": "applied", "change": a.change, "result": detail}));
                continue;
            }
            match &a.result {
                Ok(Outcome::Link(link)) => self.line(&format!("  [ok] {text} → {}", link.url)),
                Ok(Outcome::Share(share)) => self.line(&format!("  [ok] {text} → code {}", share.code)),
                Ok(Outcome::ShareUpdated(_)) => self.line(&format!("  [ok] {text}")),
                Ok(Outcome::Done) => self.line(&format!("  [ok] {text}")),
                Err(e) => self.line(&format!("  [!] {text} → failed: {e}")),
            }
        }
    }

    pub fn up_env_written(&self, file: &str) {
        if self.json {
            return self.emit(&json!({"event": "env_written", "file": file}));
        }
        self.line(&format!("[ok] Wrote {file} (load it with: source {file})"));
    }

    /// The env file was removed or restored because what it described went away.
    pub fn env_file_released(&self, released: &crate::dev::envfile::Released) {
        use crate::dev::envfile::Released;
        let (what, path, detail) = match released {
            Released::Untouched => return,
            Released::Removed(path) => ("removed", path, String::new()),
            Released::Restored(path) => ("restored", path, String::new()),
            Released::Failed(path, why) => ("failed", path, why.clone()),
        };
        if self.json {
            return self.emit(&json!({"event": "env_released", "file": path, "result": what, "error": detail}));
        }
        match released {
            Released::Removed(_) => self.line(&format!("[ok] Removed {} (its ports are closed)", path.display())),
            Released::Restored(_) => {
                self.line(&format!("[ok] Restored {} as it was before (its ports are closed)", path.display()))
            }
            _ => self.line(&format!("[!] Could not remove {}: {detail}", path.display())),
        }
    }

    pub fn up_watching(&self, path: &std::path::Path) {
        if self.json {
            return self.emit(&json!({"event": "up", "file": path}));
        }
        self.line(&format!(
            "Watching {} for changes. Press Ctrl+C to stop and remove what up created.",
            path.display()
        ));
    }

    pub fn up_reloading(&self, path: &std::path::Path) {
        if !self.json {
            self.line(&format!("↻ {} changed; applying", path.display()));
        }
    }

    pub fn up_stopped(&self) {
        if self.json {
            return self.emit(&json!({"event": "down"}));
        }
        self.line("[ok] Stopped: services unregistered, temporary links and shares removed.");
    }
}

impl Ui {
    /// `connect init`.
    pub fn init_written(&self, file: &std::path::Path, services: &[(&str, u16, &str)]) {
        if self.json {
            let list: Vec<_> = services.iter().map(|(n, p, k)| json!({"name": n, "port": p, "kind": k})).collect();
            return self.emit(&json!({"event": "init", "file": file, "services": list}));
        }
        if services.is_empty() {
            self.line("Nothing answered on the usual development ports (3000, 5173, 8080, 5432, 6379, …).");
        } else {
            self.line("🔎 Found:");
            for (name, port, kind) in services {
                self.line(&format!("  • {name} → localhost:{port} ({kind})"));
            }
        }
        self.line(&format!("[ok] Wrote {} ({} service(s))", file.display(), services.len()));
        self.line("Next: review it, then `connect plan` and `connect up`");
    }
}

/// One line per change: `+` adds, `~` changes in place, `-` removes.
pub(crate) fn describe(change: &Change) -> String {
    match change {
        Change::Expose { service, port } => format!("+ expose {service} (port {port})"),
        Change::Unexpose { service } => format!("- unexpose {service}"),
        Change::CreateLink { service, link } if link.persistent => format!("+ public link for {service}"),
        Change::CreateLink { service, .. } => format!("+ link for {service}"),
        Change::UpdateLink { subdomain, service, link } => {
            format!("~ link {subdomain} ({service}): policy{} (same URL)", lifetime(link.expires_in_secs))
        }
        Change::RevokeLink { subdomain, service } => format!("- revoke link {subdomain} ({service})"),
        Change::CreateShare { name, share } => {
            let services: Vec<&str> = share.services.iter().map(String::as_str).collect();
            format!("+ share {name} ({})", services.join(", "))
        }
        Change::UpdateShare { name, share, .. } => {
            format!("~ share {name}{} (same code)", lifetime(Some(share.expires_in_secs)))
        }
        Change::RevokeShare { name, .. } => format!("- revoke share {name}"),
        Change::OpenReach { service, via: ReachVia::Owner(owner), .. } => format!("+ reach {service} ({owner})"),
        Change::OpenReach { service, port: Some(port), .. } => format!("+ reach {service} on port {port}"),
        Change::OpenReach { service, .. } => format!("+ reach {service}"),
        Change::CloseReach { service } => format!("- stop reaching {service}"),
        Change::StartDebug { service } => format!("+ debug session for {service}"),
        Change::StopDebug { service, .. } => format!("- end the debug session of {service}"),
    }
}

fn lifetime(secs: Option<u64>) -> String {
    secs.map(|s| format!(", expires {} after creation", pconnect_proto::duration::describe(s))).unwrap_or_default()
}
