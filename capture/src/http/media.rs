//! What a `Content-Type` says about a body: the facts the body view and the GraphQL finder need.

/// Media type facts from a `Content-Type` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Media {
    Json,
    Form,
    Graphql,
    Other,
}

impl Media {
    pub(super) fn of(content_type: Option<&str>) -> Media {
        let Some(value) = content_type else { return Media::Other };
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "application/graphql" {
            Media::Graphql
        } else if essence.ends_with("/json") || essence.ends_with("+json") {
            Media::Json
        } else if essence == "application/x-www-form-urlencoded" {
            Media::Form
        } else {
            Media::Other
        }
    }
}
