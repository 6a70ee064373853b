//! `.env.pconnect`: rendered from `templates/env.pconnect.j2` (embedded; a project may override it).
//! Per service `<NAME>_HOST/_PORT/_URL`, its declared `env`, and the conventional variable of its
//! kind (`DATABASE_URL`, `REDIS_URL`, ...) when only one service has that kind.
//!
//! Declared variables may come from a teammate's agent, so they are data: each key and value is
//! checked again here ([`envvar`]), placeholders are replaced as text (never evaluated as a template),
//! and every value is single-quoted so `source`, `set -a; .`, dotenv loaders and docker `--env-file`
//! all read it without running anything. The file is written 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior, context};
use pconnect_proto::envvar::{self, Placeholders};
use pconnect_proto::project::ServiceKind;
use serde::Serialize;

const TEMPLATE: &str = include_str!("../../../templates/env.pconnect.j2");

/// A service as the env file sees it.
#[derive(Debug, Clone)]
pub struct EnvService {
    pub name: String,
    pub kind: Option<ServiceKind>,
    pub host: String,
    pub port: u16,
    /// Declared variables: name -> value with placeholders.
    pub env: BTreeMap<String, String>,
}

/// The file's text, and the declared variables left out because they were unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub text: String,
    /// One sentence per variable left out (service, name, why).
    pub refused: Vec<String>,
}

#[derive(Serialize)]
struct Rendered {
    var: String,
    host: String,
    port: u16,
    url: String,
    env: BTreeMap<String, String>,
}

/// Renders the env file. `template` is the project's own override (the user's file, not a
/// teammate's); teammates' values only ever reach it as quoted data.
pub fn render(project: Option<&str>, file: &str, services: &[EnvService], template: Option<&str>) -> Result<EnvFile> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(100_000));
    env.add_filter("dotenv", |value: String| {
        quote(&value).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
    });
    env.add_filter("comment", |value: String| comment(&value));
    env.add_template("env", template.unwrap_or(TEMPLATE)).context("the env template does not parse")?;
    let mut rendered = Vec::new();
    let mut declared = BTreeSet::new();
    let mut refused = Vec::new();
    for s in services {
        let mut vars = BTreeMap::new();
        let at = Placeholders { host: &s.host, port: s.port, name: &s.name };
        for (name, value) in &s.env {
            match envvar::check_key(name).and_then(|()| envvar::expand(name, value, at)) {
                Ok(value) => {
                    declared.insert(name.clone());
                    vars.insert(name.clone(), value);
                }
                Err(e) => refused.push(format!("left out a variable of service {}: {e}", s.name)),
            }
        }
        rendered.push(Rendered { var: var_name(&s.name), host: s.host.clone(), port: s.port, url: url(s), env: vars });
    }
    let conventional = conventional(services, &declared);
    let tmpl = env.get_template("env")?;
    let text = tmpl.render(context! {
        project => project,
        file => file,
        services => minijinja::Value::from(minijinja::value::Serde(&rendered)),
        conventional => conventional,
    })?;
    Ok(EnvFile { text, refused })
}

/// Writes the file atomically, readable by its owner only (it may hold credentials).
pub fn write(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("the env file needs a file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// An env file this command writes and answers for: when what it describes goes away, the file
/// goes too, or the file that was there before the first write comes back.
#[derive(Debug)]
pub struct EnvFileOwner {
    path: PathBuf,
    /// The file's text before this command first wrote it (`None`: there was none).
    before: Option<Option<String>>,
}

/// What happened to an env file when its owner let go of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// Never written by this command.
    Untouched,
    Removed(PathBuf),
    /// The file that was there before was put back.
    Restored(PathBuf),
    /// Removing or restoring failed; the message says why.
    Failed(PathBuf, String),
}

impl EnvFileOwner {
    pub fn new(path: PathBuf) -> Self {
        Self { path, before: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `text` (0600, atomic) if it differs from what is there; true when it wrote. The
    /// first write remembers what the file held before.
    pub fn write(&mut self, text: &str) -> Result<bool> {
        let current = std::fs::read_to_string(&self.path).ok();
        if self.before.is_none() {
            self.before = Some(current.clone());
        }
        if current.as_deref() == Some(text) {
            return Ok(false);
        }
        write(&self.path, text)?;
        Ok(true)
    }

    /// Removes the file, or restores the one that was there before the first write.
    pub fn release(self) -> Released {
        let result = match &self.before {
            None => return Released::Untouched,
            Some(None) => std::fs::remove_file(&self.path).map(|()| Released::Removed(self.path.clone())),
            Some(Some(previous)) => write(&self.path, previous)
                .map(|()| Released::Restored(self.path.clone()))
                .map_err(std::io::Error::other),
        };
        match result {
            Ok(released) => released,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Released::Removed(self.path.clone()),
            Err(e) => Released::Failed(self.path.clone(), e.to_string()),
        }
    }
}

fn conventional(services: &[EnvService], declared: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut by_var: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in services {
        let var = match s.kind {
            Some(ServiceKind::Postgres) => "DATABASE_URL",
            Some(ServiceKind::Redis) => "REDIS_URL",
            Some(ServiceKind::Mongo) => "MONGO_URL",
            Some(ServiceKind::Mysql) => "MYSQL_URL",
            Some(ServiceKind::Http) => "API_URL",
            _ => continue,
        };
        by_var.entry(var).or_default().push(url(s));
    }
    by_var
        .into_iter()
        .filter(|(var, urls)| urls.len() == 1 && !declared.contains(*var))
        .map(|(var, mut urls)| (var.to_string(), urls.remove(0)))
        .collect()
}

/// The connection URL of a service by kind.
pub fn url(s: &EnvService) -> String {
    let (host, port) = (&s.host, s.port);
    match s.kind {
        Some(ServiceKind::Postgres) => format!("postgresql://postgres@{host}:{port}/postgres"),
        Some(ServiceKind::Redis) => format!("redis://{host}:{port}"),
        Some(ServiceKind::Mongo) => format!("mongodb://{host}:{port}"),
        Some(ServiceKind::Mysql) => format!("mysql://root@{host}:{port}"),
        Some(ServiceKind::Http) => format!("http://{host}:{port}"),
        Some(ServiceKind::Tcp) | None => format!("{host}:{port}"),
    }
}

/// `prod-db` -> `PROD_DB`.
pub fn var_name(service: &str) -> String {
    service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// Quotes a value as data for every reader of env files: single quotes, inside which nothing is
/// special to `sh`, `bash` or dotenv (`$`, backticks stay text); a `'` is written as `'"'"'` and a
/// backslash as `'"\\"'` (the shell and dotenv loaders both join adjacent quoted pieces, and
/// dotenv's line scanner would read a backslash inside single quotes as an escape). Control
/// characters are refused: a newline would end the line for docker's `--env-file`.
pub fn quote(value: &str) -> Result<String, String> {
    if value.chars().any(char::is_control) {
        return Err(format!("the value {value:?} holds a control character and cannot be written safely"));
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("'\"'\"'"),
            '\\' => out.push_str("'\"\\\\\"'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// A value shown in a comment line: control characters (a newline would end the comment) replaced.
fn comment(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, kind: ServiceKind, port: u16) -> EnvService {
        EnvService { name: name.into(), kind: Some(kind), host: "localhost".into(), port, env: BTreeMap::new() }
    }

    #[test]
    fn renders_prefixed_and_conventional_names_that_dotenv_reads_back() {
        let mut db = svc("prod-db", ServiceKind::Postgres, 5432);
        db.env.insert("SHOP_DSN".into(), "postgresql://app@{{ host }}:{{ port }}/shop".into());
        let text =
            render(Some("shop"), ".env.pconnect", &[db, svc("cache", ServiceKind::Redis, 6379)], None).unwrap().text;
        assert!(text.starts_with("# Generated by pconnect for shop."), "{text}");
        let vars: BTreeMap<String, String> =
            dotenvy::from_read_iter(text.as_bytes()).map(|item| item.unwrap()).collect();
        assert_eq!(vars["PROD_DB_PORT"], "5432");
        assert_eq!(vars["DATABASE_URL"], "postgresql://postgres@localhost:5432/postgres");
        assert_eq!(vars["REDIS_URL"], "redis://localhost:6379");
        assert_eq!(vars["SHOP_DSN"], "postgresql://app@localhost:5432/shop");
        assert_eq!(vars["CACHE_URL"], "redis://localhost:6379");
    }

    #[test]
    fn every_kind_has_its_conventional_url_with_a_scheme() {
        let at = |kind| url(&svc("s", kind, 1234));
        assert_eq!(at(ServiceKind::Postgres), "postgresql://postgres@localhost:1234/postgres");
        assert_eq!(at(ServiceKind::Mysql), "mysql://root@localhost:1234");
        assert_eq!(at(ServiceKind::Redis), "redis://localhost:1234");
        assert_eq!(at(ServiceKind::Mongo), "mongodb://localhost:1234");
        assert_eq!(at(ServiceKind::Http), "http://localhost:1234");
        // Undeclared kinds are guessed from the well-known port or the name, so MONGO_URL is a URL.
        for (name, port, scheme) in [
            ("mongo", 27017, "mongodb://"),
            ("db", 5432, "postgresql://"),
            ("cache", 6379, "redis://"),
            ("sql", 3306, "mysql://"),
            ("app", 3000, "http://"),
            ("orders-mongo", 4000, "mongodb://"),
        ] {
            let kind = ServiceKind::guess(name, port);
            let service = EnvService { kind, ..svc(name, ServiceKind::Tcp, port) };
            let text = render(None, ".env", &[service], None).unwrap().text;
            let var = format!("{}_URL='{scheme}", var_name(name));
            assert!(text.contains(&var), "{name}:{port} -> {text}");
        }
    }

    #[test]
    fn ambiguous_kinds_get_no_conventional_name() {
        let text = render(None, ".env", &[svc("a", ServiceKind::Redis, 1), svc("b", ServiceKind::Redis, 2)], None)
            .unwrap()
            .text;
        assert!(!text.contains("REDIS_URL="), "{text}");
    }

    /// What `sh` reads back from `X=<quoted>` with `set -a; .`, and whether it ran anything.
    fn sourced_by_sh(quoted: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("env");
        std::fs::write(&file, format!("X={quoted}\n")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("set -a; . \"$1\"; printf '%s' \"$X\"")
            .arg("sh")
            .arg(&file)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let ran: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(ran.len(), 1, "sourcing {quoted} created files");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn awkward_values_are_read_back_as_data_by_sh_and_dotenv() {
        for value in [
            "plain",
            "it's",
            "a \"q\" $HOME \\",
            "run `touch pwned`",
            "$(touch pwned)",
            "x'; touch pwned; echo '",
            "'",
            "''",
            "\\'",
            "${X:-$(touch pwned)}",
            "# not a comment",
            "a b\tc",
        ] {
            let value = value.replace('\t', " ");
            let quoted = quote(&value).unwrap();
            let text = format!("X={quoted}\n");
            let vars: Vec<(String, String)> = dotenvy::from_read_iter(text.as_bytes()).map(|i| i.unwrap()).collect();
            assert_eq!(vars[0].1, value, "dotenv: {text}");
            assert_eq!(sourced_by_sh(&quoted), value, "sh: {text}");
        }
        for bad in ["two\nlines", "cr\rhere", "\u{1b}[31m"] {
            assert!(quote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_hostile_teammate_declaration_is_left_out_not_written() {
        let mut db = svc("db", ServiceKind::Postgres, 5432);
        db.env.insert("DATABASE_URL=x; touch /tmp/p; echo Z".into(), "v".into());
        db.env.insert("OK_KEY".into(), "{{ range(100000000) }}".into());
        db.env.insert("NEWLINE".into(), "a\ntouch /tmp/p".into());
        db.env.insert("GOOD".into(), "postgres://{{ host }}:{{ port }}/$(id)".into());
        let file = render(None, ".env.pconnect", &[db], None).unwrap();
        assert_eq!(file.refused.len(), 3, "{:?}", file.refused);
        assert!(!file.text.contains("touch"), "{}", file.text);
        assert!(file.text.contains("GOOD='postgres://localhost:5432/$(id)'"), "{}", file.text);
    }

    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env.pconnect");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, "X='1'\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "X='1'\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
