//! [`Chromium`]: headless Debian `chromium` driven over the Chrome DevTools Protocol (a blocking
//! JSON-over-WebSocket client on the tests' own [`WsClient`]), and [`Page`]: one tab to
//! navigate, evaluate JavaScript in, and poll for conditions, with its console messages,
//! uncaught exceptions and JavaScript dialogs recorded.
//!
//! ```no_run
//! use std::time::Duration;
//! use pconnect_e2e::Chromium;
//!
//! let Some(mut browser) = Chromium::launch_or_skip("my_test")? else { return Ok(()) };
//! let mut page = browser.new_page()?;
//! page.navigate("http://127.0.0.1:8080/")?;
//! page.wait_for("document.querySelector('h1') !== null", Duration::from_secs(10))?;
//! assert_eq!(page.eval_string("document.title")?, "hello");
//! # anyhow::Ok(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::http::WsClient;
use crate::proc::Proc;

/// Where Debian's `chromium` package installs the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a single DevTools command may take before the fixture gives up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the browser may take to start and write `DevToolsActivePort`.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] re-evaluates its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A headless Chromium process with its own throwaway profile directory. The whole process
/// group is killed, and the profile removed, on drop.
pub struct Chromium {
    // Field order: the browser connection closes, then the process dies, then the dir goes.
    browser: Cdp,
    proc: Proc,
    port: u16,
    /// `profile/` (the user data dir) and `tmp/` (its TMPDIR).
    _dir: TempDir,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium").field("pid", &self.proc.pid()).field("devtools_port", &self.port).finish()
    }
}

impl Chromium {
    /// Whether Debian's `chromium` is installed at [`CHROMIUM`].
    pub fn available() -> bool {
        Path::new(CHROMIUM).is_file()
    }

    /// Launches the browser, or returns `None` after printing why the test `name` is skipped
    /// when [`CHROMIUM`] is not installed. Any other failure is an error.
    pub fn launch_or_skip(name: &str) -> Result<Option<Chromium>> {
        if !Chromium::available() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "SKIPPED {name}: {CHROMIUM} is not installed (apt-get install chromium fonts-dejavu-core to run it)"
                );
            }
            return Ok(None);
        }
        Chromium::launch().map(Some)
    }

    /// Starts `chromium --headless=new` on a DevTools port chosen by the OS, in its own process
    /// group, and connects to its browser endpoint.
    pub fn launch() -> Result<Chromium> {
        let dir = tempfile::Builder::new()
            .prefix("pconnect-e2e-chromium-")
            .tempdir()
            .context("creating a Chromium profile dir")?;
        let profile = dir.path().join("profile");
        let tmp = dir.path().join("tmp");
        for sub in [&profile, &tmp] {
            std::fs::create_dir(sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        let mut cmd = Command::new(CHROMIUM);
        // Its singleton socket dir goes to TMPDIR: keep it inside `dir`, removed with it.
        cmd.env("TMPDIR", &tmp);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-port=0",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--mute-audio",
            "--password-store=basic",
            "--use-mock-keychain",
            // *.localhost is loopback by RFC 6761; say so in case the resolver does not.
            "--host-resolver-rules=MAP *.localhost 127.0.0.1",
        ]);
        cmd.arg(format!("--user-data-dir={}", profile.display()));
        cmd.arg("about:blank");
        // Its own process group, so renderers and helpers die with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut proc = Proc::spawn(cmd)?;
        let (port, path) = match wait_for_active_port(&profile, &mut proc) {
            Ok(found) => found,
            Err(e) => {
                kill_group(&mut proc);
                return Err(e);
            }
        };
        let browser = match Cdp::connect(port, &path) {
            Ok(cdp) => cdp,
            Err(e) => {
                kill_group(&mut proc);
                return Err(e).context("connecting to Chromium's browser endpoint");
            }
        };
        Ok(Chromium { browser, proc, port, _dir: dir })
    }

    /// The DevTools HTTP/WebSocket port.
    pub fn devtools_port(&self) -> u16 {
        self.port
    }

    /// Everything the browser process printed so far (for failure messages).
    pub fn output_so_far(&self) -> String {
        self.proc.output_so_far()
    }

    /// Opens a new tab on `about:blank` and connects to it, with the Page, Runtime and Log
    /// domains enabled (so console output, exceptions and dialogs are recorded from now on).
    pub fn new_page(&mut self) -> Result<Page> {
        let created = self.browser.call("Target.createTarget", json!({"url": "about:blank"}), COMMAND_TIMEOUT)?;
        let target = created["targetId"].as_str().context("Target.createTarget answered without a targetId")?;
        let mut cdp = Cdp::connect(self.port, &format!("/devtools/page/{target}"))
            .with_context(|| format!("connecting to page target {target}"))?;
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            cdp.call(domain, json!({}), COMMAND_TIMEOUT)?;
        }
        Ok(Page { cdp, target: target.to_owned() })
    }

    /// Closes a tab as a person would (the page unloads, its WebSockets close).
    pub fn close_page(&mut self, page: Page) -> Result<()> {
        let target = page.target.clone();
        drop(page);
        self.browser.call("Target.closeTarget", json!({"targetId": target}), COMMAND_TIMEOUT)?;
        Ok(())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        kill_group(&mut self.proc);
    }
}

/// SIGKILLs the process group the browser leads (renderers, GPU and zygote helpers included),
/// then reaps the browser itself.
fn kill_group(proc: &mut Proc) {
    if proc.is_running() {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", proc.pid())]).output();
    }
    proc.kill();
}

/// Polls `<profile>/DevToolsActivePort` (first line the port, second the browser path).
fn wait_for_active_port(profile: &Path, proc: &mut Proc) -> Result<(u16, String)> {
    let file: PathBuf = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next())
                && let Ok(port) = port.trim().parse::<u16>()
                && path.starts_with("/devtools/browser/")
            {
                return Ok((port, path.trim().to_owned()));
            }
        }
        if let Some(status) = proc.try_status() {
            bail!(
                "{CHROMIUM} exited ({status}) before opening its DevTools port\n--- output ---\n{}",
                proc.output_so_far()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{CHROMIUM} did not write {} within {LAUNCH_TIMEOUT:?}\n--- output so far ---\n{}",
                file.display(),
                proc.output_so_far()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ---------------------------------------------------------------------------------------------
// Page

/// One browser tab. Console messages, uncaught exceptions and dialogs are recorded as they
/// arrive (while the fixture waits for an answer to one of its commands); dialogs are dismissed
/// at once so a page can never block the test.
pub struct Page {
    cdp: Cdp,
    target: String,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page").field("target", &self.target).finish()
    }
}

impl Page {
    /// Navigates to `url` and waits (up to 30 s) for its `load` event. Fails when the browser
    /// reports a navigation error (unreachable host, refused connection, ...).
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        let loads = self.cdp.events.loads;
        let answer = self.cdp.call("Page.navigate", json!({"url": url}), COMMAND_TIMEOUT)?;
        if let Some(error) = answer.get("errorText").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            bail!("navigating to {url} failed: {error}");
        }
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        while self.cdp.events.loads == loads {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{url} did not finish loading within {COMMAND_TIMEOUT:?}{}", self.cdp.events.describe());
            }
            self.cdp.pump_one(left).with_context(|| format!("waiting for {url} to load"))?;
        }
        Ok(())
    }

    /// Evaluates `expression` in the page (awaiting it when it is a promise) and returns its
    /// value as JSON (`null` for `undefined`). A thrown exception is an error with its message.
    pub fn eval(&mut self, expression: &str) -> Result<Value> {
        let params =
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true, "userGesture": true});
        let answer = self.cdp.call("Runtime.evaluate", params, COMMAND_TIMEOUT)?;
        if let Some(details) = answer.get("exceptionDetails") {
            bail!("evaluating `{expression}` threw: {}", exception_text(details));
        }
        Ok(answer["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// [`Page::eval`] for an expression that yields a string.
    pub fn eval_string(&mut self, expression: &str) -> Result<String> {
        match self.eval(expression)? {
            Value::String(s) => Ok(s),
            other => bail!("`{expression}` gave {other} instead of a string"),
        }
    }

    /// [`Page::eval`] for an expression that yields a number.
    pub fn eval_u64(&mut self, expression: &str) -> Result<u64> {
        let value = self.eval(expression)?;
        value.as_u64().with_context(|| format!("`{expression}` gave {value} instead of a whole number"))
    }

    /// Re-evaluates the JavaScript condition `condition` every 50 ms until it is truthy; fails
    /// after `timeout` with the last value or exception, plus what the page logged.
    pub fn wait_for(&mut self, condition: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let expression = format!("(() => {{ return !!({condition}); }})()");
        loop {
            let last = match self.eval(&expression) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(other) => format!("it was {other}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("waited {timeout:?} for `{condition}`; {last}{}", self.cdp.events.describe());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Clicks the element matching the CSS `selector` (a DOM `click()`, after scrolling it into
    /// view); fails when nothing matches.
    pub fn click(&mut self, selector: &str) -> Result<()> {
        let sel = serde_json::to_string(selector)?;
        let found = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
             e.scrollIntoView({{block: 'nearest'}}); e.click(); return true; }})()"
        ))?;
        if found != Value::Bool(true) {
            bail!("no element matches {selector:?} to click{}", self.cdp.events.describe());
        }
        Ok(())
    }

    /// Sends any DevTools command to this tab (e.g. `Page.captureScreenshot`) and returns its
    /// result.
    pub fn command(&mut self, method: &str, params: Value) -> Result<Value> {
        self.cdp.call(method, params, COMMAND_TIMEOUT)
    }

    /// Console messages (`console.*` and browser log entries such as CSP reports), as
    /// `level: text`, oldest first.
    pub fn console(&self) -> &[String] {
        &self.cdp.events.console
    }

    /// Uncaught exceptions (`Runtime.exceptionThrown`), oldest first.
    pub fn exceptions(&self) -> &[String] {
        &self.cdp.events.exceptions
    }

    /// JavaScript dialogs the page opened (`alert`, `confirm`, `prompt`, `beforeunload`), as
    /// `type: message`; each was dismissed.
    pub fn dialogs(&self) -> &[String] {
        &self.cdp.events.dialogs
    }
}

fn exception_text(details: &Value) -> String {
    let exception = &details["exception"];
    exception["description"]
        .as_str()
        .or_else(|| exception["value"].as_str())
        .or_else(|| details["text"].as_str())
        .unwrap_or("unknown exception")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The DevTools connection

/// What a connection has seen besides answers.
#[derive(Debug, Default)]
struct Events {
    console: Vec<String>,
    exceptions: Vec<String>,
    dialogs: Vec<String>,
    loads: u64,
}

impl Events {
    /// The recorded events, for failure messages (empty when there are none).
    fn describe(&self) -> String {
        let mut out = String::new();
        for (title, list) in [("console", &self.console), ("exceptions", &self.exceptions), ("dialogs", &self.dialogs)]
        {
            if !list.is_empty() {
                out.push_str(&format!("\n--- page {title} ---\n{}", list.join("\n")));
            }
        }
        out
    }
}

/// One DevTools WebSocket (browser or page endpoint): numbered commands, answers matched by id,
/// events recorded in [`Events`] while waiting.
struct Cdp {
    ws: WsClient,
    next_id: u64,
    events: Events,
}

impl Cdp {
    fn connect(port: u16, path: &str) -> Result<Cdp> {
        let addr = format!("127.0.0.1:{port}");
        let (_, ws) = WsClient::connect(&addr, &addr, path)?;
        Ok(Cdp { ws, next_id: 1, events: Events::default() })
    }

    fn send(&mut self, method: &str, params: Value) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params});
        self.ws.send_text(&message.to_string()).with_context(|| format!("sending {method} to Chromium"))?;
        Ok(id)
    }

    /// Sends `method` and waits for its answer, recording events meanwhile.
    fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Value> {
        let id = self.send(method, params)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("Chromium did not answer {method} within {timeout:?}{}", self.events.describe());
            }
            let message = self.pump_one(left).with_context(|| format!("waiting for the answer to {method}"))?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                bail!("Chromium refused {method}: {error}");
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Reads one message (waiting at most `timeout`), records it when it is an event, and
    /// returns it.
    fn pump_one(&mut self, timeout: Duration) -> Result<Value> {
        self.ws.set_read_timeout(timeout.max(Duration::from_millis(1)));
        let (opcode, payload) = self.ws.recv().context("reading from Chromium's DevTools socket")?;
        if opcode == 0x8 {
            bail!("Chromium closed the DevTools connection");
        }
        let message: Value = serde_json::from_slice(&payload).context("Chromium sent a message that is not JSON")?;
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            self.on_event(method, &message["params"])?;
        }
        Ok(message)
    }

    fn on_event(&mut self, method: &str, params: &Value) -> Result<()> {
        match method {
            "Runtime.consoleAPICalled" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .map(|args| args.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                let level = params["type"].as_str().unwrap_or("log");
                self.events.console.push(format!("{level}: {}", args.join(" ")));
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                let level = entry["level"].as_str().unwrap_or("info");
                self.events.console.push(format!("{level}: {}", entry["text"].as_str().unwrap_or("")));
            }
            "Runtime.exceptionThrown" => {
                self.events.exceptions.push(exception_text(&params["exceptionDetails"]));
            }
            "Page.javascriptDialogOpening" => {
                let kind = params["type"].as_str().unwrap_or("dialog");
                self.events.dialogs.push(format!("{kind}: {}", params["message"].as_str().unwrap_or("")));
                // Dismiss without waiting for the answer (it is skipped like any other).
                self.send("Page.handleJavaScriptDialog", json!({"accept": false}))?;
            }
            "Page.loadEventFired" => self.events.loads += 1,
            _ => {}
        }
        Ok(())
    }
}

fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => object["description"].as_str().or_else(|| object["type"].as_str()).unwrap_or("?").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpServer;

    #[test]
    fn drives_a_page_served_by_a_local_http_server() {
        let Some(mut browser) = Chromium::launch_or_skip("drives_a_page_served_by_a_local_http_server").unwrap() else {
            return;
        };
        let server = HttpServer::start();
        let mut page = browser.new_page().unwrap();
        page.navigate(&format!("http://127.0.0.1:{}/static/page", server.port())).unwrap();
        assert_eq!(page.eval_string("document.body.textContent").unwrap(), "hello from /static/page");
        assert_eq!(page.eval("1 + 2").unwrap(), json!(3));
        assert_eq!(page.eval("undefined").unwrap(), Value::Null);
        assert_eq!(page.eval("new Promise(r => setTimeout(() => r('later'), 30))").unwrap(), json!("later"));

        // *.localhost reaches loopback.
        page.navigate(&format!("http://app.localhost:{}/other", server.port())).unwrap();
        assert_eq!(page.eval_string("document.body.textContent").unwrap(), "hello from /other");

        // Polling sees a change made later, and a condition that never holds fails with a reason.
        page.eval("setTimeout(() => { window.__ready = 'yes'; }, 200); 0").unwrap();
        page.wait_for("window.__ready === 'yes'", Duration::from_secs(5)).unwrap();
        let err = page.wait_for("window.__never", Duration::from_millis(200)).unwrap_err();
        assert!(format!("{err:#}").contains("window.__never"), "{err:#}");

        // Console output, exceptions and dialogs are recorded; a dialog never blocks.
        page.eval("console.log('from the page', 42); 0").unwrap();
        page.eval("setTimeout(() => { throw new Error('boom in a timer'); }, 0); 0").unwrap();
        page.eval("alert('hi there'); 'after the alert'").unwrap();
        page.wait_for("true", Duration::from_secs(1)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while page.exceptions().is_empty() && Instant::now() < deadline {
            page.wait_for("true", Duration::from_secs(1)).unwrap();
        }
        assert!(page.console().iter().any(|l| l == "log: from the page 42"), "{:?}", page.console());
        assert!(page.exceptions().iter().any(|e| e.contains("boom in a timer")), "{:?}", page.exceptions());
        assert_eq!(page.dialogs(), ["alert: hi there"]);
        let err = page.eval("throw new Error('thrown here')").unwrap_err();
        assert!(format!("{err:#}").contains("thrown here"), "{err:#}");

        // A second tab is independent, and can be closed.
        let mut other = browser.new_page().unwrap();
        assert_eq!(other.eval_string("location.href").unwrap(), "about:blank");
        page.click("body").unwrap();
        assert!(page.click("#missing").is_err());
        other.eval("window.__mark = 1").unwrap();
        browser.close_page(other).unwrap();
        let mut third = browser.new_page().unwrap();
        assert_eq!(third.eval("window.__mark").unwrap(), Value::Null);
        let mut other = third;

        // A refused connection is a navigation error.
        let closed = crate::net::free_port();
        assert!(other.navigate(&format!("http://127.0.0.1:{closed}/")).is_err());
    }
}
