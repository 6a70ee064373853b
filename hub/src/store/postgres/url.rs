//! [`PostgresUrl`]: the `postgres://` URL of a store, which shows itself only with its password
//! masked (in `Display`, `Debug`, logs and errors alike), so a password in `--store` never
//! reaches a terminal or a log.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::store::StoreError;

/// What a password is shown as.
const MASK: &str = "***";

/// A `postgres://` or `postgresql://` URL (libpq's form: user, password, host, port, database,
/// `?sslmode=` and friends). Without a password in it, `PGPASSWORD` or `~/.pgpass` supply one.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
}

impl PostgresUrl {
    /// Checks that `text` is a PostgreSQL URL sqlx can connect with. The error never repeats the
    /// password.
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        let text = text.trim();
        let scheme = text.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            return Err(format!(
                "the store '{}' is not a postgres:// URL: give --store postgres://user@host:5432/database, \
                 or leave --store out to keep the SQLite store in the --data directory",
                redact(text)
            ));
        }
        let url = PostgresUrl { url: text.to_owned() };
        PgConnectOptions::from_str(text).map_err(|e| format!("the store URL {url} is not valid: {e}"))?;
        Ok(url)
    }

    /// The options to connect with (the only place the password is read).
    pub(super) fn connect_options(&self) -> Result<PgConnectOptions, StoreError> {
        PgConnectOptions::from_str(&self.url)
            .map_err(|e| StoreError::Database(format!("the store URL {self} is not valid: {e}")))
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// `url` with the password of its user part and any `password=` parameter replaced by [`MASK`].
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it could be anything, a password included.
        return "<not a URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{MASK}@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            ("postgres://hub:s3cret@db:5432/pconnect", "postgres://hub:***@db:5432/pconnect"),
            ("postgresql://hub:p%40ss@db/pconnect?sslmode=disable", "postgresql://hub:***@db/pconnect?sslmode=disable"),
            ("postgres://hub@db/pconnect", "postgres://hub@db/pconnect"),
            ("postgres://db", "postgres://db"),
            ("postgres://hub:a:b@c@db/x", "postgres://hub:***@db/x"),
            ("postgres://db/x?user=hub&password=s3cret&x=1", "postgres://db/x?user=hub&password=***&x=1"),
        ];
        for (url, shown) in cases {
            let parsed = PostgresUrl::parse(url).unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert_eq!(format!("{parsed:?}"), format!("PostgresUrl({shown})"));
        }
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused_without_the_password() {
        for bad in
            ["mysql://root:s3cret@db/x", "s3cret", "sqlite:///var/lib/hub.db", "postgres://u:s3cret@db:99999999/x"]
        {
            let error = PostgresUrl::parse(bad).unwrap_err();
            assert!(!error.contains("s3cret"), "{error}");
        }
        let error = PostgresUrl::parse("mysql://db/x").unwrap_err();
        assert!(error.contains("not a postgres:// URL") && error.contains("--store"), "{error}");
    }
}
