//! The project file `pconnect.yml`: discovery, loading with located errors ([`load`]) and its JSON Schema.
//!
//! The model itself (`ProjectSpec` and its semantic checks) is `pconnect_proto::project`; this module
//! reads it from disk and derives the schema published at [`SCHEMA_ID`] (committed as
//! `schemas/pconnect.schema.json`, kept current by `pconnect/tests/project_files.rs`).

mod find;
mod interpolate;
pub mod load;
mod locate;
mod problem;
mod schema;
mod suggest;
mod yaml;

pub use load::{LoadError, Loaded, Problem, find, load, parse};
pub use pconnect_proto::project::ProjectSpec;
pub use schema::{SCHEMA_ID, schema, schema_json};
