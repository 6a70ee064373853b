//! The JSON Schema of `pconnect.yml`, derived from `ProjectSpec`: published, committed, and the
//! source of the loader's key suggestions.

use pconnect_proto::project::ProjectSpec;

/// Where the schema is published; examples point at it with a `yaml-language-server` comment.
pub const SCHEMA_ID: &str = "https://pconnect.dev/schemas/pconnect.schema.json";

/// The JSON Schema of `pconnect.yml`, generated from `ProjectSpec` with its `$id` set.
pub fn schema() -> schemars::Schema {
    let mut schema = schemars::schema_for!(ProjectSpec);
    schema.insert("$id".into(), serde_json::Value::String(SCHEMA_ID.into()));
    schema
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema always serializes");
    text.push('\n');
    text
}
