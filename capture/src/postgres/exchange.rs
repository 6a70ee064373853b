//! An exchange being assembled ([`Open`]) from the messages the parser pairs, and its conversion
//! into the [`Exchange`] a tap emits (SQL and parameters from the bound portal, COPY byte counts in
//! the command tag).

use std::sync::Arc;

use super::Portal;
use crate::{Detail, Exchange, Micros, PgError, PgExchange, Protocol, ROW_SAMPLE};

/// Notices and command tags kept per exchange.
const NOTICES_KEPT: usize = 32;
const TAGS_KEPT: usize = 64;

/// An exchange being assembled.
#[derive(Debug)]
pub(super) struct Open {
    pub(super) kind: &'static str,
    pub(super) started_at: Micros,
    pub(super) finished_at: Option<Micros>,
    pub(super) sql: Option<Arc<str>>,
    pub(super) params: Vec<Option<String>>,
    /// Execute: the portal it runs (SQL, params, result formats) and its name (for Describe columns).
    pub(super) bound: Option<Arc<Portal>>,
    pub(super) portal_name: String,
    pub(super) columns_resolved: bool,
    pub(super) columns: Vec<String>,
    pub(super) formats: Vec<i16>,
    /// RowDescriptions seen (only the first result set is sampled).
    pub(super) descriptions: u32,
    pub(super) tags: Vec<String>,
    pub(super) rows: u64,
    pub(super) sample_rows: Vec<Vec<Option<String>>>,
    pub(super) error: Option<PgError>,
    pub(super) notices: Vec<String>,
    pub(super) tx_status: Option<char>,
    pub(super) startup: Vec<(String, String)>,
    /// COPY bytes (to the server, to the client).
    pub(super) copy: Option<(u64, u64)>,
}

impl Open {
    pub(super) fn new(kind: &'static str, started_at: Micros) -> Self {
        Self {
            kind,
            started_at,
            finished_at: None,
            sql: None,
            params: Vec::new(),
            bound: None,
            portal_name: String::new(),
            columns_resolved: true,
            columns: Vec::new(),
            formats: Vec::new(),
            descriptions: 0,
            tags: Vec::new(),
            rows: 0,
            sample_rows: Vec::new(),
            error: None,
            notices: Vec::new(),
            tx_status: None,
            startup: Vec::new(),
            copy: None,
        }
    }

    /// Whether the next DataRow should be decoded for the sample.
    pub(super) fn wants_sample(&self) -> bool {
        let first_result = match self.bound {
            Some(_) => true,
            None => self.descriptions <= 1,
        };
        first_result && self.sample_rows.len() < ROW_SAMPLE
    }

    pub(super) fn notice(&mut self, message: String) {
        if self.notices.len() < NOTICES_KEPT {
            self.notices.push(message);
        }
    }

    pub(super) fn into_exchange(self, seq: u64) -> Exchange {
        let (sql, params) = match self.bound {
            Some(portal) => (portal.sql.clone().or(self.sql), portal.params.clone()),
            None => (self.sql, self.params),
        };
        let mut rows = self.rows;
        let mut command_tag = (!self.tags.is_empty()).then(|| self.tags.join("; "));
        if let Some((to_server, to_client)) = self.copy {
            if rows == 0 {
                let last = self.tags.last().map(String::as_str).unwrap_or_default();
                rows = last.strip_prefix("COPY ").and_then(|n| n.parse().ok()).unwrap_or(0);
            }
            let bytes = match (to_server, to_client) {
                (n, 0) if n > 0 => format!("{n} bytes in"),
                (0, n) => format!("{n} bytes out"),
                (i, o) => format!("{i} bytes in, {o} bytes out"),
            };
            command_tag = Some(format!("{} ({bytes})", command_tag.as_deref().unwrap_or("COPY")));
        }
        Exchange {
            seq,
            protocol: Protocol::Postgres,
            started_at: self.started_at,
            finished_at: self.finished_at,
            detail: Detail::Postgres(PgExchange {
                kind: self.kind.to_string(),
                sql: sql.map(|s| s.to_string()),
                params,
                command_tag,
                rows,
                columns: self.columns,
                sample_rows: self.sample_rows,
                error: self.error,
                notices: self.notices,
                tx_status: self.tx_status,
                startup: self.startup,
            }),
        }
    }

    /// Keeps a command tag (`INSERT 0 1`), up to a cap.
    pub(super) fn command_tag_from(&mut self, tag: String) {
        if self.tags.len() < TAGS_KEPT {
            self.tags.push(tag);
        }
    }
}
