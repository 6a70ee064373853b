//! What a stopping command prints while its open tunnels finish.

use std::time::Duration;

use serde_json::json;

use super::Ui;

impl Ui {
    pub fn draining(&self, open: usize, grace: Duration) {
        if self.json {
            return self.emit(&json!({"event": "draining", "open": open, "grace_secs": grace.as_secs()}));
        }
        self.line(&format!(
            "Stopping: letting {open} open connection(s) finish (up to {}s; press Ctrl+C again to stop now)",
            grace.as_secs()
        ));
    }
}
