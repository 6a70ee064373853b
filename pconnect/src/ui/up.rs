//! What `connect up --detach`, `connect status`, `connect down` and `up`'s reach listeners print.

use std::net::SocketAddr;

use pconnect_proto::control::ServiceInfo;
use serde_json::json;

use super::Ui;
use crate::dev::control::UpStatus;
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
        self.line(&format!(
            "[ok] {} is up (pid {}, {})",
            status.project.as_deref().unwrap_or("project"),
            status.pid,
            status.file.display()
        ));
        self.up_summary(status);
        if let Some(error) = &status.error {
            self.warn(&format!("last apply failed: {error}"));
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
            self.line(&format!("  ← {} ({}) on {}", reach.service, reach.owner, reach.address));
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
