//! Debug viewer stories in a real browser: alice runs `connect expose <app> --debug --link`, opens
//! the `Share this link:` URL in headless Chromium, and watches requests to her public link appear
//! live; a freshly opened page shows the traffic at once under a guest name, without a click, and
//! renaming (by mouse or keyboard) is an inline control whose result every other viewer sees; a
//! teammate's tab shows up in her presence list and leaves it; a clicked row replays
//! (as is, and edited) through her agent; captured `<script>` payloads are shown as text and never
//! run under the page's CSP; the page says `ended` when she stops the session. With `--ai` the
//! assistant answers from the offline insights and its citations open the exchanges; bob's real
//! `psql` and `redis-cli` traffic shows its statements, commands and replies.
//!
//! Skipped (with a message) only when `/usr/bin/chromium` is not installed.

mod support;

use std::time::Duration;

use pconnect_e2e::{
    Agent, Chromium, HttpClient, HttpResponse, HttpServer, Hub, Page, Postgres, Proc, Redis, psql, redis_cli,
};
use serde_json::{Value, json};
use support::READY;

/// How long the page may take to show something the test just caused.
const SHOWN: Duration = Duration::from_secs(15);

/// Markup that would run if the viewer ever parsed captured text as HTML.
const PAYLOAD: &str = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>";

/// A display name that would run if presence were rendered as HTML (short enough to keep whole).
const NAME_PAYLOAD: &str = "<img src=x onerror=window.__pwned=3>";

/// The CSP the contract (docs/debug-sessions.md) requires on the viewer page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// alice exposes a local HTTP app with `--debug --link`.
struct Debugged {
    // Processes first: killed before the agent's home and the hub go.
    expose: Proc,
    app: HttpServer,
    alice: Agent,
    hub: Hub,
    /// `http://app.localhost:<port>/debug/<token>`.
    viewer_url: String,
    /// `<sub>.localhost:<port>`: the Host of alice's public link.
    link_host: String,
}

impl Debugged {
    fn start(name: &str, extra: &[&str]) -> Debugged {
        let hub = Hub::start().unwrap();
        let alice = Agent::login(&hub, "alice").unwrap();
        let app = HttpServer::start();
        let target = format!("127.0.0.1:{}", app.port());
        let mut args = vec!["expose", target.as_str(), "--name", name, "--debug", "--link"];
        args.extend_from_slice(extra);
        let mut expose = alice.spawn(args).unwrap();
        let share = expose.wait_for_line("Share this link:", READY).unwrap();
        let public = expose.wait_for_line("Public URL:", READY).unwrap();
        let viewer_url = share.split("Share this link:").nth(1).unwrap().trim().to_string();
        let public_url = public.split("Public URL:").nth(1).unwrap().trim().to_string();
        let port = hub.http_url().rsplit(':').next().unwrap().to_string();
        let token = viewer_url
            .strip_prefix(&format!("http://app.localhost:{port}/debug/"))
            .unwrap_or_else(|| panic!("unexpected viewer URL {viewer_url:?} (hub HTTP port {port})"));
        assert!(token.len() >= 26 && token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{token:?}");
        let link_host = public_url.strip_prefix("http://").unwrap().to_string();
        Debugged { expose, app, alice, hub, viewer_url, link_host }
    }

    /// The hub's HTTP ingress address (what every `*.localhost` name resolves to).
    fn ingress(&self) -> String {
        self.hub.http_url().strip_prefix("http://").unwrap().to_string()
    }

    /// One request to alice's public link, on a new connection.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut client = HttpClient::connect(&self.ingress()).unwrap();
        let response = client.send(method, &self.link_host, path, headers, body).unwrap();
        assert_eq!(response.status, 200, "{method} {path} through the link: {response:?}");
        response
    }

    /// `GET <viewer URL><suffix>` with the Host a browser would send.
    fn get_viewer(&self, suffix: &str) -> HttpResponse {
        let rest = self.viewer_url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        HttpClient::connect(&self.ingress()).unwrap().get(host, &format!("{path}{suffix}")).unwrap()
    }
}

/// A JavaScript string literal for `text`.
fn js(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Opens the viewer in a new tab as anyone with the link would (no click, no name typed) and
/// waits for `#status` to say `live`.
fn open_viewer(browser: &mut Chromium, url: &str) -> Page {
    let mut page = browser.new_page().unwrap();
    page.navigate(url).unwrap();
    wait_live(&mut page);
    page
}

fn wait_live(page: &mut Page) {
    page.wait_for("document.querySelector('#status').textContent === 'live'", SHOWN).unwrap();
}

/// The name the page says others see it as (`You: <name> (rename)`).
fn own_name(page: &mut Page) -> String {
    text_of(page, "#you-name")
}

/// Renames through the header control with the mouse: opens it, types `name`, clicks Save, and
/// waits until the hub's presence gives the page its new name.
fn rename(page: &mut Page, name: &str) {
    page.click("#you").unwrap();
    assert_eq!(page.eval("document.querySelector('#rename-form').hidden").unwrap(), Value::Bool(false));
    set_value(page, "#rename-name", name, "input");
    page.click("#rename-save").unwrap();
    wait_own_name(page, name);
}

fn wait_own_name(page: &mut Page, name: &str) {
    page.wait_for(&format!("document.querySelector('#you-name').textContent === {}", js(name)), SHOWN).unwrap();
}

/// Presses `key` (`Enter` or `Escape`) on the focused element as a keyboard would.
fn press(page: &mut Page, key: &str) {
    let code = match key {
        "Enter" => 13,
        "Escape" => 27,
        other => panic!("no key code for {other:?}"),
    };
    let mut down = json!({"type": "rawKeyDown", "key": key, "code": key, "windowsVirtualKeyCode": code});
    if key == "Enter" {
        // Enter types a character: that is what activates a button and submits a form.
        down["type"] = Value::from("keyDown");
        down["text"] = Value::from("\r");
    }
    page.command("Input.dispatchKeyEvent", down).unwrap();
    page.command(
        "Input.dispatchKeyEvent",
        json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code}),
    )
    .unwrap();
}

/// Types `text` into the focused element as a keyboard would.
fn type_text(page: &mut Page, text: &str) {
    page.command("Input.insertText", json!({"text": text})).unwrap();
}

fn focused_id(page: &mut Page) -> String {
    page.eval_string("document.activeElement.id").unwrap()
}

/// One `tr.exchange` as the page shows it.
#[derive(Debug)]
struct Row {
    id: u64,
    protocol: String,
    replay_of: Option<u64>,
    /// The cells' text: id, protocol, summary, status, duration.
    cells: Vec<String>,
    hidden: bool,
}

fn rows(page: &mut Page) -> Vec<Row> {
    let value = page
        .eval(
            "[...document.querySelectorAll('#exchanges tr.exchange')].map(tr => ({ id: Number(tr.dataset.id), \
             protocol: tr.dataset.protocol, replayOf: tr.dataset.replayOf ? Number(tr.dataset.replayOf) : null, \
             cells: [...tr.cells].map(td => td.textContent), hidden: tr.hidden }))",
        )
        .unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            id: r["id"].as_u64().unwrap(),
            protocol: r["protocol"].as_str().unwrap().to_string(),
            replay_of: r["replayOf"].as_u64(),
            cells: r["cells"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect(),
            hidden: r["hidden"].as_bool().unwrap(),
        })
        .collect()
}

/// The row whose summary cell contains `summary` (the only one).
fn row_with(page: &mut Page, summary: &str) -> Row {
    let mut found: Vec<Row> = rows(page).into_iter().filter(|r| r.cells[2].contains(summary)).collect();
    assert_eq!(found.len(), 1, "rows with {summary:?}: {found:?}");
    found.remove(0)
}

/// Waits until a row's summary cell contains `summary`.
fn wait_for_row(page: &mut Page, summary: &str) -> Row {
    page.wait_for(
        &format!(
            "[...document.querySelectorAll('#exchanges tr.exchange td:nth-child(3)')] \
             .some(td => td.textContent.includes({}))",
            js(summary)
        ),
        SHOWN,
    )
    .unwrap();
    row_with(page, summary)
}

/// Sets a form control's value as a person would, firing `event` (`input` or `change`).
fn set_value(page: &mut Page, selector: &str, value: &str, event: &str) {
    page.eval(&format!(
        "(() => {{ const e = document.querySelector({}); e.value = {}; e.dispatchEvent(new Event({})); }})()",
        js(selector),
        js(value),
        js(event)
    ))
    .unwrap();
}

fn text_of(page: &mut Page, selector: &str) -> String {
    page.eval_string(&format!("document.querySelector({}).textContent", js(selector))).unwrap()
}

/// Clicks row `id` and waits for the detail pane to show it.
fn select_row(page: &mut Page, id: u64) {
    page.click(&format!("#exchanges tr.exchange[data-id='{id}']")).unwrap();
    page.wait_for(&format!("document.querySelector('#detail-summary').textContent.startsWith('#{id} ')"), SHOWN)
        .unwrap();
}

fn viewer_names(page: &mut Page) -> Vec<String> {
    let value = page
        .eval("[...document.querySelectorAll('#viewers li[data-viewer-id]')].map(li => li.textContent).sort()")
        .unwrap();
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn no_markup_ran(page: &mut Page) {
    assert_eq!(page.eval("typeof window.__pwned").unwrap(), Value::from("undefined"), "captured markup ran");
    assert!(page.dialogs().is_empty(), "the page opened dialogs: {:?}", page.dialogs());
    assert!(page.exceptions().is_empty(), "the page threw: {:?}", page.exceptions());
    let refused: Vec<&String> = page.console().iter().filter(|l| l.contains("Content Security Policy")).collect();
    assert!(refused.is_empty(), "the page itself broke its CSP: {refused:?}");
}

#[test]
fn requests_through_the_link_appear_live_and_a_teammate_shows_up_in_presence() {
    let Some(mut browser) = Chromium::launch_or_skip("requests_through_the_link_appear_live").unwrap() else {
        return;
    };
    let scene = Debugged::start("shop", &[]);
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    rename(&mut ann, "ann");
    assert_eq!(viewer_names(&mut ann), ["ann"]);
    assert!(rows(&mut ann).is_empty(), "nothing was sent yet");
    assert_eq!(ann.eval("document.querySelector('#assistant').hidden").unwrap(), Value::Bool(true));

    // Each request through the public link appears while the page stays open.
    scene.request("GET", "/products/42?color=red", &[], b"");
    let first = wait_for_row(&mut ann, "GET /products/42?color=red");
    assert_eq!((first.protocol.as_str(), first.cells[1].as_str(), first.cells[3].as_str()), ("http", "http", "200"));
    assert_eq!(first.cells[0], first.id.to_string());
    assert!(first.cells[4].parse::<f64>().is_ok(), "duration in ms: {:?}", first.cells[4]);
    scene.request("GET", "/headers", &[("X-Trace", "abc-123")], b"");
    let headers = wait_for_row(&mut ann, "GET /headers");
    assert!(headers.id > first.id);
    assert_eq!(rows(&mut ann)[0].id, headers.id, "newest first");

    // The detail pane: request line and headers, response with its JSON body pretty-printed.
    select_row(&mut ann, headers.id);
    let request = text_of(&mut ann, "#detail-request");
    assert!(request.starts_with("GET /headers HTTP/1.1\n"), "{request}");
    assert!(request.contains("x-trace: abc-123"), "{request}");
    let response = text_of(&mut ann, "#detail-response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("content-type: application/json"), "{response}");
    assert!(response.contains("\n  \"x-trace\": \"abc-123\""), "JSON pretty-printed: {response}");
    select_row(&mut ann, first.id);
    assert!(text_of(&mut ann, "#detail-response").ends_with("hello from /products/42"));

    // Filters: by protocol and by text.
    set_value(&mut ann, "#filter-protocol", "redis", "change");
    assert!(rows(&mut ann).iter().all(|r| r.hidden), "{:?}", rows(&mut ann));
    set_value(&mut ann, "#filter-protocol", "http", "change");
    set_value(&mut ann, "#search", "PRODUCTS/42", "input");
    let visible: Vec<u64> = rows(&mut ann).iter().filter(|r| !r.hidden).map(|r| r.id).collect();
    assert_eq!(visible, [first.id]);
    set_value(&mut ann, "#search", "", "input");

    // A teammate opens the same link in another tab: both see each other, live.
    let mut ben = open_viewer(&mut browser, &scene.viewer_url);
    ann.wait_for("document.querySelectorAll('#viewers li[data-viewer-id]').length === 2", SHOWN).unwrap();
    rename(&mut ben, "ben");
    ann.wait_for("[...document.querySelectorAll('#viewers li')].some(li => li.textContent === 'ben')", SHOWN).unwrap();
    assert_eq!(viewer_names(&mut ann), ["ann", "ben"]);
    assert_eq!(viewer_names(&mut ben), ["ann", "ben"]);
    let ids = ann.eval("[...document.querySelectorAll('#viewers li')].map(li => li.dataset.viewerId)").unwrap();
    assert!(ids[0] != ids[1], "viewer ids differ: {ids}");
    // The late joiner got the recent exchanges in its hello.
    let ben_rows: Vec<u64> = rows(&mut ben).iter().map(|r| r.id).collect();
    assert_eq!(ben_rows, [headers.id, first.id]);

    // Exports are links to the session's HAR and JSON-lines files.
    let har = ann.eval_string("document.querySelector('#export-har').href").unwrap();
    assert_eq!(har, format!("{}/export.har", scene.viewer_url));
    let jsonl = ann.eval_string("document.querySelector('#export-jsonl').href").unwrap();
    assert_eq!(jsonl, format!("{}/export.jsonl", scene.viewer_url));
    let entries = ann
        .eval(
            "fetch(document.querySelector('#export-har').href).then(r => r.json()) \
             .then(h => h.log.entries.map(e => e.request.url))",
        )
        .unwrap();
    let entries = entries.to_string();
    assert!(entries.contains("/products/42?color=red") && entries.contains("/headers"), "HAR entries: {entries}");

    // ben closes his tab: ann sees him leave.
    browser.close_page(ben).unwrap();
    ann.wait_for("document.querySelectorAll('#viewers li[data-viewer-id]').length === 1", SHOWN).unwrap();
    assert_eq!(viewer_names(&mut ann), ["ann"]);
    no_markup_ran(&mut ann);
}

#[test]
fn a_fresh_page_shows_traffic_at_once_under_a_guest_name_and_renaming_is_optional() {
    let Some(mut browser) = Chromium::launch_or_skip("a_fresh_page_shows_traffic_at_once").unwrap() else {
        return;
    };
    let scene = Debugged::start("shop", &[]);
    scene.request("GET", "/before-anyone-looked", &[], b"");
    scene.request("GET", "/also-before", &[], b"");

    // Nothing clicked, nothing typed: the page is live and the rows are there.
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    let first = wait_for_row(&mut ann, "GET /before-anyone-looked");
    wait_for_row(&mut ann, "GET /also-before");
    // No dialog or overlay: what is drawn at the first row is that row, and there is no join form.
    let center = format!(
        "(() => {{ const r = document.querySelector(\"tr.exchange[data-id='{}']\").getBoundingClientRect(); \
         const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2); \
         return hit !== null && hit.closest('tr.exchange') !== null && hit.closest('tr.exchange').dataset.id; }})()",
        first.id
    );
    assert_eq!(ann.eval(&center).unwrap(), Value::from(first.id.to_string()), "something covers the table");
    assert_eq!(ann.eval("document.querySelector('dialog, #join, #join-name')").unwrap(), Value::Null);

    // The hub named it a guest; presence says so, and the page knows which one is its own.
    let guest = own_name(&mut ann);
    assert!(guest.strip_prefix("guest-").is_some_and(|n| n.parse::<u64>().is_ok()), "{guest:?}");
    assert_eq!(viewer_names(&mut ann), [guest.as_str()]);
    assert_eq!(text_of(&mut ann, "#viewers li.me"), guest);
    assert_eq!(text_of(&mut ann, "#you"), format!("You: {guest} (rename)"));
    assert_eq!(ann.eval("document.querySelector('#rename-form').hidden").unwrap(), Value::Bool(true));

    // A second visitor gets another guest name; both lists agree.
    let mut ben = open_viewer(&mut browser, &scene.viewer_url);
    let other = own_name(&mut ben);
    assert!(other.starts_with("guest-") && other != guest, "{other:?} next to {guest:?}");
    ann.wait_for("document.querySelectorAll('#viewers li[data-viewer-id]').length === 2", SHOWN).unwrap();
    let mut both = vec![guest.clone(), other.clone()];
    both.sort();
    assert_eq!(viewer_names(&mut ann), both);
    assert_eq!(viewer_names(&mut ben), both);
    assert_eq!(rows(&mut ben).len(), 2, "the second page shows the traffic at once too");

    // Renaming by mouse: every other viewer sees the new name.
    rename(&mut ann, "ann");
    ben.wait_for("[...document.querySelectorAll('#viewers li')].some(li => li.textContent === 'ann')", SHOWN).unwrap();
    assert_eq!(viewer_names(&mut ben), ["ann", other.as_str()]);
    assert_eq!(focused_id(&mut ann), "you", "focus returns to the control after saving");

    // Renaming by keyboard: Enter opens the control, Escape cancels, Enter saves.
    ben.eval("document.querySelector('#you').focus()").unwrap();
    press(&mut ben, "Enter");
    assert_eq!(focused_id(&mut ben), "rename-name");
    press(&mut ben, "Escape");
    assert_eq!(focused_id(&mut ben), "you");
    assert_eq!(ben.eval("document.querySelector('#rename-form').hidden").unwrap(), Value::Bool(true));
    assert_eq!(own_name(&mut ben), other, "cancelled: no rename");
    press(&mut ben, "Enter");
    ben.eval("document.querySelector('#rename-name').select()").unwrap();
    type_text(&mut ben, "ben");
    press(&mut ben, "Enter");
    wait_own_name(&mut ben, "ben");
    ann.wait_for("[...document.querySelectorAll('#viewers li')].some(li => li.textContent === 'ben')", SHOWN).unwrap();
    assert_eq!(viewer_names(&mut ann), ["ann", "ben"]);

    // A reload keeps the name chosen in this tab; an empty name goes back to the guest name.
    ann.navigate(&scene.viewer_url).unwrap();
    wait_live(&mut ann);
    wait_own_name(&mut ann, "ann");
    ben.wait_for("document.querySelectorAll('#viewers li[data-viewer-id]').length === 2", SHOWN).unwrap();
    assert_eq!(viewer_names(&mut ben), ["ann", "ben"]);
    ben.click("#you").unwrap();
    set_value(&mut ben, "#rename-name", "", "input");
    ben.click("#rename-save").unwrap();
    wait_own_name(&mut ben, &other);
    ann.wait_for(
        &format!("[...document.querySelectorAll('#viewers li')].some(li => li.textContent === {})", js(&other)),
        SHOWN,
    )
    .unwrap();
    no_markup_ran(&mut ann);
    no_markup_ran(&mut ben);
}

#[test]
fn replaying_a_clicked_row_sends_it_again_through_the_agent() {
    let Some(mut browser) = Chromium::launch_or_skip("replaying_a_clicked_row").unwrap() else {
        return;
    };
    let scene = Debugged::start("orders", &[]);
    scene.request("POST", "/upload", &[("Content-Type", "text/plain")], b"first order");
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    let original = wait_for_row(&mut ann, "POST /upload");
    let served = scene.app.requests();

    // As is: the agent sends the same request to the app; a new row says what it replays.
    select_row(&mut ann, original.id);
    let raw = ann.eval_string("document.querySelector('#replay-edit').value").unwrap();
    assert!(raw.starts_with("POST /upload HTTP/1.1\n") && raw.ends_with("\n\nfirst order"), "{raw:?}");
    ann.click("#replay").unwrap();
    ann.wait_for(&format!("document.querySelector('tr.exchange[data-replay-of=\"{}\"]') !== null", original.id), SHOWN)
        .unwrap();
    let replayed: Vec<Row> = rows(&mut ann).into_iter().filter(|r| r.replay_of == Some(original.id)).collect();
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    let replayed = &replayed[0];
    assert!(replayed.id > original.id);
    assert_eq!(replayed.cells[3], "200");
    assert!(replayed.cells[2].contains("POST /upload"), "{:?}", replayed.cells);
    assert_eq!(scene.app.requests(), served + 1, "the app saw the replay");
    ann.wait_for("document.querySelector('#replay-result').textContent.startsWith('replayed')", SHOWN).unwrap();
    assert_eq!(text_of(&mut ann, "#replay-result"), format!("replayed: #{}", replayed.id));
    select_row(&mut ann, replayed.id);
    let response = text_of(&mut ann, "#detail-response");
    assert!(response.contains("\"len\": 11"), "the app hashed the same 11-byte body: {response}");

    // Edited: another path and body.
    select_row(&mut ann, original.id);
    ann.eval(
        "(() => { const t = document.querySelector('#replay-edit'); \
         t.value = t.value.replace('POST /upload ', 'POST /upload?edited=1 ') \
         .replace(/first order$/, 'second order, edited'); })()",
    )
    .unwrap();
    ann.click("#replay").unwrap();
    let edited = wait_for_row(&mut ann, "POST /upload?edited=1");
    assert_eq!(edited.replay_of, Some(original.id));
    select_row(&mut ann, edited.id);
    let request = text_of(&mut ann, "#detail-request");
    assert!(request.ends_with("second order, edited"), "{request}");
    let response = text_of(&mut ann, "#detail-response");
    assert!(response.contains("\"len\": 20"), "{response}");
    assert_eq!(scene.app.requests(), served + 2);
    no_markup_ran(&mut ann);
}

#[test]
fn captured_markup_is_shown_as_text_and_never_runs() {
    let Some(mut browser) = Chromium::launch_or_skip("captured_markup_is_shown_as_text").unwrap() else {
        return;
    };
    let scene = Debugged::start("cms", &[]);

    // The page and its assets carry the contract's headers; an unknown token is a plain 404.
    let page = scene.get_viewer("");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"), "{page:?}");
    let script = scene.get_viewer("/viewer.js");
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").unwrap_or_default().contains("javascript"), "{script:?}");
    let style = scene.get_viewer("/viewer.css");
    assert!(style.header("content-type").unwrap_or_default().starts_with("text/css"), "{style:?}");
    let wrong = scene.viewer_url.rsplit_once('/').unwrap().0.to_string() + "/aaaaaaaaaaaaaaaaaaaaaaaaaa";
    let rest = wrong.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let missing = HttpClient::connect(&scene.ingress()).unwrap().get(host, path).unwrap();
    assert_eq!(missing.status, 404);

    // Captured before the page opens (arrives in the hello): in a request body, echoed back in the
    // response body, and in a header the app returns inside its JSON.
    scene.request("POST", "/echo", &[("Content-Type", "text/html")], PAYLOAD.as_bytes());
    scene.request("GET", "/headers", &[("X-Note", PAYLOAD)], b"");
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    // Even the display name is text, in presence and in the page's own name.
    rename(&mut ann, NAME_PAYLOAD);
    assert_eq!(viewer_names(&mut ann), [NAME_PAYLOAD]);
    let echo = wait_for_row(&mut ann, "POST /echo");
    let headers = wait_for_row(&mut ann, "GET /headers");

    // And one more while the page is open.
    scene.request("POST", "/echo?live=1", &[("Content-Type", "text/html")], PAYLOAD.as_bytes());
    let live = wait_for_row(&mut ann, "POST /echo?live=1");

    for id in [echo.id, live.id] {
        select_row(&mut ann, id);
        let request = text_of(&mut ann, "#detail-request");
        assert!(request.ends_with(PAYLOAD), "request body shown as text: {request}");
        let response = text_of(&mut ann, "#detail-response");
        assert!(response.ends_with(PAYLOAD), "response body shown as text: {response}");
        let edit = ann.eval_string("document.querySelector('#replay-edit').value").unwrap();
        assert!(edit.ends_with(PAYLOAD), "{edit}");
    }
    select_row(&mut ann, headers.id);
    assert!(text_of(&mut ann, "#detail-request").contains(&format!("x-note: {PAYLOAD}")));
    let response = text_of(&mut ann, "#detail-response");
    assert!(response.contains(&format!("\"x-note\": {}", js(PAYLOAD))), "{response}");

    // Nothing became an element, nothing ran, no dialog opened.
    let elements = ann.eval("document.querySelectorAll('body script, body img, #detail *[onerror]').length").unwrap();
    assert_eq!(elements, Value::from(0));
    no_markup_ran(&mut ann);

    // The browser enforces the CSP: a script injected into the page's DOM does not run either.
    ann.eval(
        "(() => { \
         document.addEventListener('securitypolicyviolation', e => { window.__refused = e.violatedDirective; }); \
         const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; \
         document.body.append(s); })()",
    )
    .unwrap();
    ann.wait_for("typeof window.__refused === 'string'", SHOWN).unwrap();
    assert!(ann.eval_string("window.__refused").unwrap().starts_with("script-src"));
    assert_eq!(ann.eval("typeof window.__inline").unwrap(), Value::from("undefined"));
}

#[test]
fn the_page_says_ended_when_alice_stops_the_debug_session() {
    let Some(mut browser) = Chromium::launch_or_skip("the_page_says_ended").unwrap() else {
        return;
    };
    let scene = Debugged::start("api", &[]);
    scene.request("GET", "/before-the-end", &[], b"");
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    wait_for_row(&mut ann, "GET /before-the-end");

    let list: Value = serde_json::from_str(&scene.alice.run_ok(["debug", "--list", "--json"]).unwrap()).unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    assert_eq!(sessions[0]["url"], scene.viewer_url.as_str());
    assert_eq!(sessions[0]["viewers"], 1, "{list}");
    let id = sessions[0]["id"].as_str().unwrap();
    scene.alice.run_ok(["debug", "stop", id]).unwrap();

    ann.wait_for("document.querySelector('#status').textContent === 'ended'", SHOWN).unwrap();
    assert_eq!(ann.eval("document.querySelector('#replay').disabled").unwrap(), Value::Bool(true));
    assert_eq!(ann.eval("document.querySelector('#ask').disabled").unwrap(), Value::Bool(true));
    assert_eq!(ann.eval("document.querySelector('#you').disabled").unwrap(), Value::Bool(true));
    // What was captured stays on the page; the link no longer opens the session.
    assert_eq!(rows(&mut ann).len(), 1);
    assert_eq!(scene.get_viewer("").status, 404);
    // The service itself is still exposed, only no longer captured.
    scene.request("GET", "/after-the-end", &[], b"");
    no_markup_ran(&mut ann);
}

#[test]
fn the_assistant_answers_from_the_insights_and_its_citations_open_the_exchanges() {
    let Some(mut browser) = Chromium::launch_or_skip("the_assistant_answers").unwrap() else {
        return;
    };
    let mut scene = Debugged::start("shop", &["--ai"]);
    scene.expose.wait_for_line("AI Copilot: enabled", READY).unwrap();
    scene.request("GET", "/catalog", &[], b"");
    scene.request("GET", "/checkout", &[], b"");
    let mut ann = open_viewer(&mut browser, &scene.viewer_url);
    let catalog = wait_for_row(&mut ann, "GET /catalog");
    wait_for_row(&mut ann, "GET /checkout");
    assert_eq!(ann.eval("document.querySelector('#assistant').hidden").unwrap(), Value::Bool(false));

    // The offline insights are listed with buttons to the exchanges they are about.
    ann.wait_for("document.querySelectorAll('#insights li.insight').length > 0", SHOWN).unwrap();
    let insights = text_of(&mut ann, "#insights");
    assert!(insights.contains("Slowest requests"), "{insights}");

    set_value(&mut ann, "#ask", "which requests were slow?", "input");
    ann.click("#ask-send").unwrap();
    ann.wait_for("document.querySelector('#answers li .source') !== null", SHOWN).unwrap();
    let answer = text_of(&mut ann, "#answers li");
    assert!(answer.starts_with("which requests were slow?"), "the question heads its answer: {answer}");
    assert!(answer.contains("Slowest requests") && answer.contains("GET /catalog"), "{answer}");
    assert!(answer.ends_with("from offline insights"), "{answer}");
    let cite = format!("#answers li button.cite[data-id='{}']", catalog.id);
    let label = ann.eval(&format!("document.querySelector({}).textContent", js(&cite))).unwrap();
    assert_eq!(label, format!("#{}", catalog.id).as_str());

    // A citation selects the exchange it names.
    ann.click(&cite).unwrap();
    ann.wait_for(
        &format!("document.querySelector('#detail-summary').textContent.startsWith('#{} ')", catalog.id),
        SHOWN,
    )
    .unwrap();
    assert!(text_of(&mut ann, "#detail-response").ends_with("hello from /catalog"));
    no_markup_ran(&mut ann);
}

#[test]
fn postgres_and_redis_traffic_shows_statements_commands_and_replies() {
    let Some(mut browser) = Chromium::launch_or_skip("postgres_and_redis_traffic").unwrap() else {
        return;
    };
    let hub = Hub::start().unwrap();
    let alice = Agent::login(&hub, "alice").unwrap();
    let bob = Agent::login(&hub, "bob").unwrap();
    let pg = Postgres::start().unwrap();
    let redis = Redis::start().unwrap();
    let mut viewers = Vec::new();
    let mut exposes = Vec::new();
    for (name, port) in [("app-db", pg.port()), ("cache", redis.port())] {
        let mut expose = alice.spawn(["expose", &format!("127.0.0.1:{port}"), "--name", name, "--debug"]).unwrap();
        let share = expose.wait_for_line("Share this link:", READY).unwrap();
        viewers.push(share.split("Share this link:").nth(1).unwrap().trim().to_string());
        expose.wait_for_line("is now accessible through the hub", READY).unwrap();
        exposes.push(expose);
    }
    let (_reach_pg, pg_port) = support::reach(&bob, "app-db").unwrap();
    let (_reach_redis, redis_port) = support::reach(&bob, "cache").unwrap();

    // bob's psql and redis-cli go through alice's tunnels.
    let out = psql("127.0.0.1", pg_port, "SELECT 41 + 1 AS answer, 'forty-two' AS spelled").unwrap();
    assert_eq!(out, "42|forty-two");
    assert!(psql("127.0.0.1", pg_port, "SELECT * FROM no_such_table").is_err());
    assert_eq!(redis_cli("127.0.0.1", redis_port, &["SET", "greeting", "hello world"]).unwrap(), "OK");
    assert_eq!(redis_cli("127.0.0.1", redis_port, &["GET", "greeting"]).unwrap(), "hello world");

    let mut db = open_viewer(&mut browser, &viewers[0]);
    let query = wait_for_row(&mut db, "SELECT 41 + 1 AS answer");
    assert_eq!((query.protocol.as_str(), query.cells[3].as_str()), ("postgres", "SELECT 1"));
    let error = wait_for_row(&mut db, "SELECT * FROM no_such_table");
    assert!(error.cells[3].contains("42P01"), "{:?}", error.cells);
    select_row(&mut db, query.id);
    let protocol = text_of(&mut db, "#detail-protocol");
    for expected in ["PostgreSQL", "SELECT 41 + 1 AS answer, 'forty-two' AS spelled", "answer, spelled", "forty-two"] {
        assert!(protocol.contains(expected), "{expected:?} in {protocol}");
    }
    assert!(text_of(&mut db, "#detail-response").contains("42 | forty-two"));
    assert_eq!(db.eval("document.querySelector('#replay-box').hidden").unwrap(), Value::Bool(true), "HTTP only");
    select_row(&mut db, error.id);
    let response = text_of(&mut db, "#detail-response");
    assert!(
        response.contains("relation \"no_such_table\" does not exist") && response.contains("SQLSTATE 42P01"),
        "{response}"
    );

    let mut cache = open_viewer(&mut browser, &viewers[1]);
    let set = wait_for_row(&mut cache, "SET greeting");
    assert_eq!(set.protocol, "redis");
    assert!(set.cells[2].contains("hello world") && set.cells[3].contains("OK"), "{:?}", set.cells);
    let get = wait_for_row(&mut cache, "GET greeting");
    select_row(&mut cache, get.id);
    let protocol = text_of(&mut cache, "#detail-protocol");
    assert!(protocol.contains("Redis") && protocol.contains("GET") && protocol.contains("hello world"), "{protocol}");

    // The protocol filter keeps only what it names.
    set_value(&mut cache, "#filter-protocol", "postgres", "change");
    assert!(rows(&mut cache).iter().all(|r| r.hidden));
    set_value(&mut cache, "#filter-protocol", "redis", "change");
    assert!(rows(&mut cache).iter().all(|r| !r.hidden));
    no_markup_ran(&mut db);
    no_markup_ran(&mut cache);
}
