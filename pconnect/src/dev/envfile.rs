//! `.env.pconnect`: rendered from `templates/env.pconnect.j2` (embedded; a project may override it).
//! Per service `<NAME>_HOST/_PORT/_URL`, its declared `env` (templates with `host` and `port`), and
//! the conventional variable of its kind (`DATABASE_URL`, `REDIS_URL`, ...) when only one service
//! has that kind. Values are quoted so `source` and dotenv loaders read the same thing.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use minijinja::{Environment, UndefinedBehavior, context};
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
    /// Declared variables: name -> template.
    pub env: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Rendered {
    var: String,
    host: String,
    port: u16,
    url: String,
    env: BTreeMap<String, String>,
}

/// Renders the env file.
pub fn render(project: Option<&str>, file: &str, services: &[EnvService], template: Option<&str>) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("dotenv", |value: String| {
        quote(&value).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
    });
    env.add_template("env", template.unwrap_or(TEMPLATE)).context("the env template does not parse")?;
    let mut rendered = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    for s in services {
        let mut vars = BTreeMap::new();
        for (name, value) in &s.env {
            let value = env
                .render_str(value, context! { host => &s.host, port => s.port, name => &s.name })
                .with_context(|| format!("env {name} of service {} does not render", s.name))?;
            declared.insert(name.clone());
            vars.insert(name.clone(), value);
        }
        rendered.push(Rendered { var: var_name(&s.name), host: s.host.clone(), port: s.port, url: url(s), env: vars });
    }
    let conventional = conventional(services, &declared);
    let tmpl = env.get_template("env")?;
    Ok(tmpl.render(context! { project => project, file => file, services => minijinja::Value::from(minijinja::value::Serde(&rendered)), conventional => conventional })?)
}

fn conventional(services: &[EnvService], declared: &std::collections::BTreeSet<String>) -> BTreeMap<String, String> {
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

/// Quotes a value so a POSIX shell's `source` and dotenv parsers read it back unchanged. A value
/// needing double quotes cannot hold a backtick (the shell would run it; dotenv has no escape).
pub fn quote(value: &str) -> Result<String, String> {
    if !value.contains(['\'', '\\', '\n']) {
        return Ok(format!("'{value}'"));
    }
    if value.contains('`') {
        return Err(format!(
            "the value {value:?} mixes quotes or backslashes with a backtick and cannot be written safely"
        ));
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
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
        let text = render(Some("shop"), ".env.pconnect", &[db, svc("cache", ServiceKind::Redis, 6379)], None).unwrap();
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
    fn ambiguous_kinds_get_no_conventional_name() {
        let text =
            render(None, ".env", &[svc("a", ServiceKind::Redis, 1), svc("b", ServiceKind::Redis, 2)], None).unwrap();
        assert!(!text.contains("REDIS_URL="), "{text}");
    }

    #[test]
    fn awkward_values_round_trip() {
        for value in ["plain", "it's", "a \"q\" $HOME \\", "two\nlines", "run `this`"] {
            let text = format!("X={}\n", quote(value).unwrap());
            let vars: Vec<(String, String)> = dotenvy::from_read_iter(text.as_bytes()).map(|i| i.unwrap()).collect();
            assert_eq!(vars[0].1, value, "{text}");
        }
        assert!(quote("it's `x`").is_err());
    }
}
