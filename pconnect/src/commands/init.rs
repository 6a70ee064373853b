//! `connect init`: a starter `pconnect.yml` from the services answering on common local ports, each
//! probed to tell HTTP, PostgreSQL, MySQL, Redis and MongoDB apart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pconnect_proto::names;
use tokio::task::JoinSet;

use crate::cli::InitArgs;
use crate::probe::{self, Kind};
use crate::ui::Ui;

/// Ports where development services usually listen.
const COMMON_PORTS: &[u16] =
    &[3000, 3001, 4000, 4200, 5000, 5173, 8000, 8080, 8081, 8888, 9000, 5432, 3306, 6379, 27017];
/// How long one port may take to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A service found answering locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub name: String,
    pub port: u16,
    pub kind: Kind,
}

pub(crate) async fn init(ui: Ui, args: InitArgs) -> Result<()> {
    let path = args.file.clone().unwrap_or_else(|| PathBuf::from("pconnect.yml"));
    if path.exists() && !args.force {
        anyhow::bail!("{} already exists: edit it, or pass --force to overwrite it", path.display());
    }
    let mut ports: Vec<u16> = COMMON_PORTS.to_vec();
    ports.extend(args.ports.iter().copied().filter(|p| !COMMON_PORTS.contains(p)));
    let found = name_services(probe_ports(&ports).await);
    let project = match args.project.clone() {
        Some(project) => project,
        None => project_name(&path),
    };
    let text = render(&project, &found);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    ui.init_written(&path, &found.iter().map(|f| (f.name.as_str(), f.port, f.kind.as_str())).collect::<Vec<_>>());
    Ok(())
}

/// Probes every port at once; returns the ones that answered, in port order.
async fn probe_ports(ports: &[u16]) -> Vec<(u16, Kind)> {
    let mut probes = JoinSet::new();
    for &port in ports {
        probes.spawn(async move { probe::detect("127.0.0.1", port, PROBE_TIMEOUT).await.map(|kind| (port, kind)) });
    }
    let mut found: Vec<(u16, Kind)> = probes.join_all().await.into_iter().flatten().collect();
    found.sort_by_key(|(port, _)| *port);
    found
}

/// Names each service after its well-known port or its kind; a clash gets the port appended.
fn name_services(found: Vec<(u16, Kind)>) -> Vec<Found> {
    let mut named: Vec<Found> = Vec::new();
    for (port, kind) in found {
        let well_known = names::default_name(port);
        let base = if !well_known.starts_with("service-") {
            well_known
        } else {
            match kind {
                Kind::Http => "web".to_string(),
                Kind::Tcp => well_known,
                other => other.as_str().to_string(),
            }
        };
        let name = if named.iter().any(|f| f.name == base) { format!("{base}-{port}") } else { base };
        named.push(Found { name, port, kind });
    }
    named
}

/// The directory's name, made a valid project name.
fn project_name(path: &Path) -> String {
    let dir = std::path::absolute(path).ok().and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_owned()));
    let raw = dir.map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let clean: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let clean = clean.trim_matches('-').to_string();
    if clean.is_empty() { "my-project".into() } else { clean }
}

/// The starter file: found services, and commented examples of the other sections.
pub(crate) fn render(project: &str, found: &[Found]) -> String {
    let mut out = String::new();
    out.push_str(
        "# yaml-language-server: $schema=https://pconnect.dev/schemas/pconnect.schema.json\n\
         #\n\
         # Written by `connect init` from the services answering on this machine. `connect up` exposes\n\
         # them to your team and keeps the hub in step with this file; `connect plan` shows what it\n\
         # would change. Keep secrets out of it: write ${VAR} and put VAR in the environment or .env.\n",
    );
    let _ = writeln!(out, "version: 1\nproject: {project}\n");
    if found.is_empty() {
        out.push_str(
            "# Nothing answered on the usual ports; declare your services here, for example:\n\
             #   web:\n\
             #     target: 3000\n\
             #     kind: http\n\
             services: {}\n",
        );
    } else {
        out.push_str("services:\n");
        for service in found {
            let _ =
                writeln!(out, "  {}:\n    target: {}\n    kind: {}", service.name, service.port, service.kind.as_str());
            if service.kind == Kind::Http {
                out.push_str(
                    "    # link:            # a temporary public URL (webhooks, demos)\n    #   expires: 24h\n",
                );
            }
        }
    }
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    let example = if names.is_empty() { "web".to_string() } else { names.join(", ") };
    let _ = write!(
        out,
        "\n# shares:             # a code a teammate joins with `connect join <code>`\n\
         #   team:\n\
         #     services: [{example}]\n\
         #     expires: 8h\n\
         \n\
         # reach:              # teammates' services on local ports while `connect up` runs\n\
         #   - teammate: alice\n\
         #   - service: payments\n\
         #     port: 9000\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::load;

    fn parses(text: &str) {
        if let Err(e) = load::parse(text, "pconnect.yml", &|_| None) {
            panic!("starter file does not load: {e}\n{text}");
        }
    }

    #[test]
    fn found_services_get_names_by_port_or_kind_and_the_file_loads() {
        let found = name_services(vec![
            (3000, Kind::Http),
            (5173, Kind::Http),
            (5432, Kind::Postgres),
            (6379, Kind::Redis),
            (8000, Kind::Http),
            (9000, Kind::Tcp),
        ]);
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["app", "web", "postgres", "redis", "web-8000", "service-9000"]);
        let text = render("shop", &found);
        parses(&text);
        let spec = load::parse(&text, "pconnect.yml", &|_| None).unwrap();
        assert_eq!(spec.services.len(), 6);
        assert_eq!(spec.services["postgres"].target.target().unwrap().port, 5432);
    }

    #[test]
    fn with_nothing_found_the_file_still_loads() {
        parses(&render("empty", &[]));
    }

    #[test]
    fn project_names_come_from_the_directory() {
        assert_eq!(project_name(Path::new("/tmp/My App/pconnect.yml")), "my-app");
        assert_eq!(project_name(Path::new("/pconnect.yml")), "my-project");
    }
}
