//! The `pconnect.yml` model (`ProjectSpec`) and its semantic checks. Parsing (YAML with positions)
//! lives in the agent; this is the contract, with a JSON Schema derived from it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse as parse_duration;
use crate::link::{self, MAX_LINK_SECS};
use crate::share::MAX_SHARE_SECS;
use crate::target::Target;
use crate::{envvar, names};

/// The only format version so far.
pub const VERSION: u32 = 1;

/// A project's declaration of what it exposes, shares, publishes and reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pconnect.yml")]
pub struct ProjectSpec {
    /// Format version: 1.
    pub version: u32,
    /// Project name, used in generated files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Team hub (`https://host:port`); without it the saved login or the embedded local hub is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// Local services to expose, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDecl>,
    /// Environment shares to keep, by name.
    #[serde(default)]
    pub shares: BTreeMap<String, ShareDecl>,
    /// Workspace services (or a whole teammate) to bring to local ports.
    #[serde(default)]
    pub reach: Vec<ReachDecl>,
    /// Where and how `.env.pconnect` is written.
    #[serde(default)]
    pub env: EnvDecl,
    /// Whether teammates' agents may connect to this agent directly (mutual TLS, tickets from the
    /// hub) instead of through the hub; `false` sends every tunnel through the hub.
    #[serde(default = "direct_default", skip_serializing_if = "is_true")]
    pub direct: bool,
}

fn direct_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// One exposed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    /// What to expose: `3000`, `:3000` or `host:port`.
    pub target: PortOrAddress,
    /// Protocol; detected by probing when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceKind>,
    /// A temporary public URL with its policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkDecl>,
    /// A persistent public URL (`true`, or its policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<PublicDecl>,
    /// Capture traffic in a debug session.
    #[serde(default)]
    pub debug: bool,
    /// Variables for `.env.pconnect`; `{{ host }}`, `{{ port }}` and `{{ name }}` are replaced.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A port number or an address string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PortOrAddress {
    Port(u32),
    Address(String),
}

impl PortOrAddress {
    /// The target this names.
    pub fn target(&self) -> Result<Target, String> {
        match self {
            PortOrAddress::Port(port) => {
                port.to_string().parse().map_err(|e: crate::target::TargetError| e.to_string())
            }
            PortOrAddress::Address(text) => text.parse().map_err(|e: crate::target::TargetError| e.to_string()),
        }
    }
}

/// Protocols a service may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Http,
    Postgres,
    Mysql,
    Redis,
    Mongo,
    Tcp,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Http => "http",
            ServiceKind::Postgres => "postgres",
            ServiceKind::Mysql => "mysql",
            ServiceKind::Redis => "redis",
            ServiceKind::Mongo => "mongo",
            ServiceKind::Tcp => "tcp",
        }
    }

    /// The kind a name from [`Self::as_str`] stands for.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Http, Self::Postgres, Self::Mysql, Self::Redis, Self::Mongo, Self::Tcp]
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The kind a service most likely is when nobody declared or detected one: by its well-known
    /// port, else by its name (`mongo`, `redis-cache`, `orders-db`...).
    pub fn guess(name: &str, port: u16) -> Option<Self> {
        let by_port = match port {
            5432 => Some(Self::Postgres),
            3306 => Some(Self::Mysql),
            6379 | 6380 => Some(Self::Redis),
            27017 => Some(Self::Mongo),
            80 | 3000 | 4200 | 5000 | 5173 | 8000 | 8080 | 8888 => Some(Self::Http),
            _ => None,
        };
        let name = name.to_ascii_lowercase();
        by_port.or_else(|| {
            [("postgres", Self::Postgres), ("pg", Self::Postgres), ("mysql", Self::Mysql), ("redis", Self::Redis)]
                .into_iter()
                .chain([("mongo", Self::Mongo), ("web", Self::Http), ("api", Self::Http), ("http", Self::Http)])
                .find(|(word, _)| name.split('-').any(|part| part == *word))
                .map(|(_, kind)| kind)
        })
    }

    pub fn is_database(self) -> bool {
        matches!(self, ServiceKind::Postgres | ServiceKind::Mysql | ServiceKind::Redis | ServiceKind::Mongo)
    }
}

/// A public link's declaration: the `link:`/`public:` keys of `pconnect.yml`, and what the flags
/// of `connect expose --link/--public` become. Both go through [`LinkDecl::resolve`], the one place
/// a link's lifetime and policy are decided and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkDecl {
    /// Lifetime of a temporary link: `1h`, `24h` (default), `7d`, up to `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// HTTP basic auth, `user:password` (use `${VAR}` to keep it out of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Client address ranges allowed (CIDR).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub allow_ips: Vec<link::Cidr>,
    /// Methods allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path patterns allowed (`/webhooks/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Rate limit, `60/min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub rate_limit: Option<link::RateLimit>,
    /// `rewrite` sends the target's host as Host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<link::HostHeader>,
}

/// A link declaration resolved: what to ask the hub for. The password is still in clear here; the
/// agent hashes it (salted) into `policy.basic_auth` before anything leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLink {
    pub persistent: bool,
    pub expires_in_secs: Option<u64>,
    pub policy: link::LinkPolicy,
    pub credentials: Option<String>,
}

/// Which part of a link declaration is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkDeclError {
    /// The key (`expires`, `auth`, `methods`, `paths/1`...).
    pub field: String,
    pub message: String,
}

impl LinkDecl {
    /// Decides a link's lifetime and policy: temporary (`persistent = false`, default 24 h, at most
    /// 30 days) or persistent (no expiry), every policy part checked. `target` is the service's
    /// address, the Host a `rewrite` sends.
    pub fn resolve(&self, persistent: bool, target: &Target) -> Result<ResolvedLink, LinkDeclError> {
        let fail = |field: &str, message: String| LinkDeclError { field: field.to_string(), message };
        let expires_in_secs = match (&self.expires, persistent) {
            (_, true) if self.expires.is_some() => {
                return Err(fail("expires", "a public link does not expire; use link: (or --link) for that".into()));
            }
            (_, true) => None,
            (Some(text), false) => {
                Some(parse_duration(text, MAX_LINK_SECS).map_err(|e| fail("expires", e.to_string()))?)
            }
            (None, false) => Some(link::DEFAULT_LINK_SECS),
        };
        if let Some(auth) = &self.auth {
            link::check_credentials(auth).map_err(|e| fail("auth", e.to_string()))?;
        }
        let methods = match self.methods.is_empty() {
            true => Vec::new(),
            false => link::parse_methods(&self.methods.join(",")).map_err(|e| fail("methods", e))?,
        };
        let mut paths = Vec::with_capacity(self.paths.len());
        for (i, path) in self.paths.iter().enumerate() {
            paths.push(link::parse_path_pattern(path).map_err(|e| fail(&format!("paths/{i}"), e))?);
        }
        let policy = link::LinkPolicy {
            basic_auth: None,
            basic_auth_sha256: None,
            allow_ips: self.allow_ips.clone(),
            methods,
            paths,
            rate_per_min: self.rate_limit.map(|r| r.0),
            rewrite_host: (self.host_header == Some(link::HostHeader::Rewrite)).then(|| target.to_string()),
        };
        Ok(ResolvedLink { persistent, expires_in_secs, policy, credentials: self.auth.clone() })
    }
}

/// `public: true`, or the policies of the persistent link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PublicDecl {
    Enabled(bool),
    Policies(LinkDecl),
}

/// An environment share of some of the project's services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareDecl {
    /// Names from `services`.
    pub services: Vec<String>,
    /// Lifetime: up to `7d` (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// Something to reach: one workspace service, or every service of a teammate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReachDecl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teammate: Option<String>,
    /// Local port (a service only; default its own port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// The generated environment file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvDecl {
    /// Output path, default `.env.pconnect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A minijinja template replacing the built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// A semantic problem, located by a JSON-pointer-like path (`/services/web/link/expires`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl ProjectSpec {
    /// Every semantic problem (types and unknown keys are the parser's job).
    pub fn check(&self) -> Vec<SpecError> {
        let mut errors = Vec::new();
        let mut fail = |path: String, message: String| errors.push(SpecError { path, message });
        if self.version != VERSION {
            fail("/version".into(), format!("version must be {VERSION}, not {}", self.version));
        }
        for (name, service) in &self.services {
            let at = format!("/services/{name}");
            if let Err(e) = names::validate(name) {
                fail(at.clone(), e.to_string());
            }
            if let Err(e) = service.target.target() {
                fail(format!("{at}/target"), e);
            }
            let target = service.target.target().unwrap_or(Target { host: "localhost".into(), port: 1 });
            if let Some(decl) = &service.link
                && let Err(e) = decl.resolve(false, &target)
            {
                fail(format!("{at}/link/{}", e.field), e.message);
            }
            if let Some(PublicDecl::Policies(decl)) = &service.public
                && let Err(e) = decl.resolve(true, &target)
            {
                fail(format!("{at}/public/{}", e.field), e.message);
            }
            let publishes = service.link.is_some()
                || matches!(service.public, Some(PublicDecl::Enabled(true)) | Some(PublicDecl::Policies(_)));
            if publishes && service.kind.is_some_and(ServiceKind::is_database) {
                fail(at.clone(), "a database service cannot have a public link: teammates use reach or a share".into());
            }
            if service.env.len() > envvar::MAX_VARS {
                fail(format!("{at}/env"), envvar::EnvVarError::TooMany.to_string());
            }
            for (var, value) in &service.env {
                if let Err(e) = envvar::check_key(var).and_then(|()| envvar::check_value(var, value)) {
                    fail(format!("{at}/env/{var}"), e.to_string());
                }
            }
        }
        for (name, share) in &self.shares {
            let at = format!("/shares/{name}");
            if share.services.is_empty() {
                fail(format!("{at}/services"), "a share needs at least one service".into());
            }
            for (i, service) in share.services.iter().enumerate() {
                if !self.services.contains_key(service) {
                    fail(format!("{at}/services/{i}"), format!("'{service}' is not declared under services"));
                }
            }
            if let Some(expires) = &share.expires
                && let Err(e) = parse_duration(expires, MAX_SHARE_SECS)
            {
                fail(format!("{at}/expires"), e.to_string());
            }
        }
        for (i, reach) in self.reach.iter().enumerate() {
            let at = format!("/reach/{i}");
            match (&reach.service, &reach.teammate) {
                (Some(_), Some(_)) | (None, None) => fail(at.clone(), "give either service or teammate".into()),
                (None, Some(_)) if reach.port.is_some() => {
                    fail(format!("{at}/port"), "port goes with a service, not a teammate".into())
                }
                _ => {}
            }
            if let Some(port) = reach.port
                && !(1..=65535).contains(&port)
            {
                fail(format!("{at}/port"), format!("port {port} is out of range (1-65535)"));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ProjectSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_full_project_checks_clean() {
        let s = spec(serde_json::json!({
            "version": 1, "project": "shop",
            "services": {
                "web": {"target": 3000, "kind": "http", "link": {"expires": "2h", "methods": ["GET", "POST"], "paths": ["/webhooks/*"]}},
                "db": {"target": "localhost:5432", "kind": "postgres", "env": {"DATABASE_URL": "postgresql://postgres@{{ host }}:{{ port }}/shop"}},
            },
            "shares": {"team": {"services": ["web", "db"], "expires": "4h"}},
            "reach": [{"service": "payments", "port": 9000}, {"teammate": "alice"}],
        }));
        assert_eq!(s.check(), vec![]);
    }

    #[test]
    fn every_semantic_problem_is_located() {
        let s = spec(serde_json::json!({
            "version": 2,
            "services": {
                "Bad_Name": {"target": "localhost:99999"},
                "db": {"target": 5432, "kind": "postgres", "link": {"expires": "40d"}},
            },
            "shares": {"team": {"services": ["ghost"], "expires": "banana"}},
            "reach": [{"service": "a", "teammate": "b"}, {"service": "x", "port": 70000}],
        }));
        let paths: Vec<String> = s.check().into_iter().map(|e| e.path).collect();
        for expected in [
            "/version",
            "/services/Bad_Name",
            "/services/Bad_Name/target",
            "/services/db/link/expires",
            "/services/db",
            "/shares/team/services/0",
            "/shares/team/expires",
            "/reach/0",
            "/reach/1/port",
        ] {
            assert!(paths.contains(&expected.to_string()), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_the_model() {
        let result: Result<ProjectSpec, _> = serde_json::from_value(serde_json::json!({"version": 1, "servces": {}}));
        assert!(result.unwrap_err().to_string().contains("unknown field `servces`"));
    }
}
