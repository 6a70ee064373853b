//! Test plumbing that more than one crate needs: [`Proc`] (a child process with its output
//! captured line by line), free loopback ports, and [`Postgres`] (a throwaway PostgreSQL cluster).
//!
//! The hub's store tests and the end-to-end fixtures (`pconnect-e2e`) both use it, so it depends on
//! no pconnect crate: it sits below both.

mod port;
pub mod postgres;
pub mod proc;

pub use port::{free_port, free_port_on};
pub use postgres::{Postgres, psql};
pub use proc::{Line, Proc, Stream, describe_output, output_with_timeout, which};
