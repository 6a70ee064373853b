//! Service names: what is valid, and the default name for a port.

/// Longest service name; names appear in URLs and DNS labels later, so they follow label rules.
pub const MAX_NAME_LEN: usize = 63;

/// Well-known ports and the service name a port gets when the user gives none.
const WELL_KNOWN: &[(u16, &str)] =
    &[(3000, "app"), (3306, "mysql"), (5432, "postgres"), (6379, "redis"), (8080, "api"), (27017, "mongo")];

/// The default service name for a port: a well-known name, else `service-<port>`.
pub fn default_name(port: u16) -> String {
    WELL_KNOWN
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| format!("service-{port}"))
}

/// Why a service name is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("service name is empty")]
    Empty,
    #[error("service name '{0}' is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error(
        "service name '{0}' may only hold lowercase letters, digits and '-', and must start and end with a letter or digit"
    )]
    Invalid(String),
}

/// Checks a service name: 1-63 of `[a-z0-9-]`, no leading or trailing hyphen.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.to_string()));
    }
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Invalid(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_ports_get_their_names() {
        assert_eq!(default_name(5432), "postgres");
        assert_eq!(default_name(6379), "redis");
        assert_eq!(default_name(3306), "mysql");
        assert_eq!(default_name(27017), "mongo");
        assert_eq!(default_name(3000), "app");
        assert_eq!(default_name(8080), "api");
        assert_eq!(default_name(9999), "service-9999");
    }

    #[test]
    fn names_are_checked() {
        assert!(validate("prod-db").is_ok());
        assert!(validate("service-9999").is_ok());
        assert_eq!(validate(""), Err(NameError::Empty));
        assert!(validate("Prod").is_err());
        assert!(validate("-db").is_err());
        assert!(validate("db-").is_err());
        assert!(validate("a/b").is_err());
        assert!(validate(&"a".repeat(64)).is_err());
        for port in [1u16, 80, 5432, 65535] {
            assert!(validate(&default_name(port)).is_ok());
        }
    }
}
