// The debug viewer: joins the session's WebSocket at once under a guest name (renaming is an
// inline, optional control), keeps the exchange table, presence and the detail pane up to date,
// sends replays and questions. Contract: docs/debug-sessions.md.
// Every captured value reaches the page through textContent (or an attribute of our own making);
// this file never parses HTML.
'use strict';

(function () {
  const MAX_ROWS = 2000;
  const RECONNECT_MAX_MS = 10000;
  const SUMMARY_CAP = 300;
  const SEARCH_BODY_CAP = 4096;
  const NAME_KEY = 'pconnect-debug-name';
  const INSIGHTS_EVERY_MS = 3000;

  const match = /^\/debug\/([a-z2-7]+)/.exec(location.pathname);
  const token = match ? match[1] : '';
  const base = '/debug/' + token;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'),
    service: $('service'),
    count: $('count'),
    dropped: $('dropped'),
    droppedCounter: $('dropped-counter'),
    viewers: $('viewers'),
    exportHar: $('export-har'),
    exportJsonl: $('export-jsonl'),
    you: $('you'),
    youName: $('you-name'),
    renameForm: $('rename-form'),
    renameName: $('rename-name'),
    renameCancel: $('rename-cancel'),
    banner: $('banner'),
    filter: $('filter-protocol'),
    search: $('search'),
    shown: $('shown'),
    rows: $('exchange-rows'),
    empty: $('empty'),
    detailEmpty: $('detail-empty'),
    detailBody: $('detail-body'),
    detailSummary: $('detail-summary'),
    detailRequest: $('detail-request'),
    detailResponse: $('detail-response'),
    detailProtocol: $('detail-protocol'),
    replayBox: $('replay-box'),
    replayEdit: $('replay-edit'),
    replay: $('replay'),
    replayReset: $('replay-reset'),
    replayResult: $('replay-result'),
    assistant: $('assistant'),
    ask: $('ask'),
    askSend: $('ask-send'),
    answers: $('answers'),
    insights: $('insights'),
    insightsRefresh: $('insights-refresh'),
  };

  const state = {
    name: '', // the name to (re)join with; empty until chosen or given by the hub (guest-<id>)
    ws: null,
    ended: false,
    retryMs: 500,
    session: null,
    you: null,
    exchanges: new Map(), // id -> Captured
    rows: new Map(), // id -> tr
    selected: null,
    replayOriginal: '',
    pendingAsks: [],
    insightsTimer: null,
  };

  // ---------------------------------------------------------------------------------------------
  // Small DOM helpers (text only).

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function setStatus(text) {
    el.status.textContent = text;
    el.status.dataset.state = text;
  }

  function showBanner(text, kind) {
    el.banner.textContent = text;
    el.banner.dataset.kind = kind || 'info';
    el.banner.hidden = !text;
  }

  function oneLine(text, cap) {
    const flat = String(text).replace(/\s+/g, ' ').trim();
    return flat.length > cap ? flat.slice(0, cap - 1) + '\u2026' : flat;
  }

  // ---------------------------------------------------------------------------------------------
  // What an exchange looks like in the table.

  function protocolOf(captured) {
    const p = captured.exchange && captured.exchange.protocol;
    if (p === 'http' || p === 'postgres' || p === 'redis') return p;
    return 'raw';
  }

  function detailOf(captured) {
    return (captured.exchange && captured.exchange.detail) || {};
  }

  function durationMs(captured) {
    const x = captured.exchange || {};
    if (typeof x.finished_at !== 'number' || typeof x.started_at !== 'number') return null;
    return Math.max(0, x.finished_at - x.started_at) / 1000;
  }

  function formatMs(ms) {
    if (ms === null) return '\u2014';
    if (ms >= 100) return ms.toFixed(0);
    if (ms >= 10) return ms.toFixed(1);
    return ms.toFixed(2);
  }

  // The PostgreSQL message flow: `startup`, `query` (simple), `extended`, `copy`, ...
  function pgKind(d) {
    return typeof d.kind === 'string' ? d.kind : '';
  }

  function summaryOf(captured) {
    const d = detailOf(captured);
    switch (protocolOf(captured)) {
      case 'http': {
        let s = (d.method || '?') + ' ' + (d.path || '');
        const ops = Array.isArray(d.graphql) ? d.graphql : [];
        if (ops.length === 1) s += '  \u00b7 ' + ops[0].operation_type + (ops[0].name ? ' ' + ops[0].name : '');
        else if (ops.length > 1) s += '  \u00b7 GraphQL batch of ' + ops.length;
        return s;
      }
      case 'postgres': {
        if (d.sql) return d.sql;
        const kind = pgKind(d);
        if (kind === 'startup' && Array.isArray(d.startup)) {
          return 'startup ' + d.startup.map((kv) => kv[0] + '=' + kv[1]).join(' ');
        }
        return kind || 'postgres';
      }
      case 'redis':
        return [d.command || '?'].concat(Array.isArray(d.args) ? d.args : []).join(' ');
      default: {
        const note = d.note ? ' (' + d.note + ')' : '';
        return 'connection' + note;
      }
    }
  }

  // [text, tone] where tone is ok|redirect|client|server|error|none.
  function resultOf(captured) {
    const d = detailOf(captured);
    switch (protocolOf(captured)) {
      case 'http': {
        if (typeof d.status !== 'number') return ['no response', 'error'];
        const ops = Array.isArray(d.graphql) ? d.graphql : [];
        const gqlErrors = ops.reduce((n, op) => n + (Array.isArray(op.errors) ? op.errors.length : 0), 0);
        let text = String(d.status);
        if (d.upgraded) text += ' ' + d.upgraded;
        if (gqlErrors) text += ' \u00b7 ' + gqlErrors + ' GraphQL error' + (gqlErrors > 1 ? 's' : '');
        let tone = 'ok';
        if (d.status >= 500) tone = 'server';
        else if (d.status >= 400) tone = 'client';
        else if (d.status >= 300) tone = 'redirect';
        else if (d.status < 200) tone = 'info';
        if (gqlErrors && tone === 'ok') tone = 'client';
        return [text, tone];
      }
      case 'postgres': {
        if (d.error) return [(d.error.severity || 'ERROR') + ' ' + (d.error.sqlstate || '') + ' ' + (d.error.message || ''), 'error'];
        if (d.command_tag) return [d.command_tag, 'ok'];
        if (typeof d.rows === 'number' && d.rows > 0) return [d.rows + ' rows', 'ok'];
        return [pgKind(d) === 'startup' ? 'ready' : '\u2014', 'none'];
      }
      case 'redis':
        if (d.error) return [d.error, 'error'];
        return [d.reply === null || d.reply === undefined ? '\u2014' : d.reply, 'ok'];
      default:
        return [(d.to_service || 0) + ' B \u2191  ' + (d.to_client || 0) + ' B \u2193', 'none'];
    }
  }

  function searchTextOf(captured) {
    const d = detailOf(captured);
    const parts = [String(captured.id), protocolOf(captured), summaryOf(captured), resultOf(captured)[0]];
    if (protocolOf(captured) === 'http') {
      for (const b of [d.request_body, d.response_body]) {
        if (b && typeof b.text === 'string') parts.push(b.text.slice(0, SEARCH_BODY_CAP));
      }
    }
    return parts.join('\n').toLowerCase();
  }

  function makeRow(captured) {
    const tr = node('tr', 'exchange');
    const protocol = protocolOf(captured);
    tr.dataset.id = String(captured.id);
    tr.dataset.protocol = protocol;
    if (captured.replay_of !== null && captured.replay_of !== undefined) tr.dataset.replayOf = String(captured.replay_of);
    const [result, tone] = resultOf(captured);
    tr.appendChild(node('td', 'c-id', captured.id));
    tr.appendChild(node('td', 'c-proto proto-' + protocol, protocol));
    const summary = node('td', 'c-summary');
    if (tr.dataset.replayOf) summary.appendChild(node('span', 'tag', 'replay of #' + tr.dataset.replayOf));
    summary.appendChild(node('span', 'text', oneLine(summaryOf(captured), SUMMARY_CAP)));
    summary.title = oneLine(summaryOf(captured), 2000);
    tr.appendChild(summary);
    const status = node('td', 'c-status tone-' + tone, oneLine(result, 120));
    status.title = oneLine(result, 2000);
    tr.appendChild(status);
    tr.appendChild(node('td', 'c-dur', formatMs(durationMs(captured))));
    tr.tabIndex = -1;
    return tr;
  }

  // ---------------------------------------------------------------------------------------------
  // The table.

  function addExchange(captured) {
    if (!captured || typeof captured.id !== 'number') return;
    const existing = state.rows.get(captured.id);
    state.exchanges.set(captured.id, captured);
    const tr = makeRow(captured);
    tr._search = searchTextOf(captured);
    applyFilter(tr);
    if (existing) {
      existing.replaceWith(tr);
      if (state.selected === captured.id) tr.classList.add('selected');
    } else {
      // Newest first; ids increase, so find the first row with a smaller id.
      let before = el.rows.firstElementChild;
      while (before && Number(before.dataset.id) > captured.id) before = before.nextElementSibling;
      el.rows.insertBefore(tr, before);
    }
    state.rows.set(captured.id, tr);
    trimRows();
    updateShown();
  }

  function trimRows() {
    while (state.rows.size > MAX_ROWS) {
      const last = el.rows.lastElementChild;
      if (!last) break;
      const id = Number(last.dataset.id);
      if (id === state.selected) break;
      last.remove();
      state.rows.delete(id);
      state.exchanges.delete(id);
    }
  }

  function applyFilter(tr) {
    const protocol = el.filter.value;
    const query = el.search.value.trim().toLowerCase();
    const protocolOk = protocol === 'all' || tr.dataset.protocol === protocol;
    const queryOk = !query || (tr._search || '').includes(query);
    tr.hidden = !(protocolOk && queryOk);
  }

  function applyFilters() {
    for (const tr of state.rows.values()) applyFilter(tr);
    updateShown();
  }

  function updateShown() {
    let visible = 0;
    for (const tr of state.rows.values()) if (!tr.hidden) visible += 1;
    const total = state.rows.size;
    el.shown.textContent = visible === total ? '' : visible + ' of ' + total + ' shown';
    el.empty.hidden = total > 0;
  }

  // ---------------------------------------------------------------------------------------------
  // The detail pane.

  function select(id) {
    const captured = state.exchanges.get(id);
    if (!captured) {
      fetchExchange(id);
      return;
    }
    if (state.selected !== null) {
      const old = state.rows.get(state.selected);
      if (old) old.classList.remove('selected');
    }
    state.selected = id;
    const tr = state.rows.get(id);
    if (tr) {
      tr.classList.add('selected');
      tr.scrollIntoView({ block: 'nearest' });
    }
    renderDetail(captured);
  }

  function fetchExchange(id) {
    fetch(base + '/api/exchanges?after=' + Math.max(0, id - 1) + '&limit=1', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : []))
      .then((list) => {
        const found = Array.isArray(list) ? list.find((c) => c && c.id === id) : null;
        if (found) {
          addExchange(found);
          select(id);
        } else {
          showBanner('Exchange #' + id + ' is no longer kept by the hub (only the most recent ones are).', 'info');
        }
      })
      .catch(() => showBanner('Could not load exchange #' + id + '.', 'warn'));
  }

  function renderDetail(captured) {
    const d = detailOf(captured);
    const protocol = protocolOf(captured);
    el.detailEmpty.hidden = true;
    el.detailBody.hidden = false;
    el.detailBody.dataset.protocol = protocol;

    const ms = durationMs(captured);
    const bits = ['#' + captured.id, protocol, oneLine(summaryOf(captured), 160), resultOf(captured)[0]];
    if (ms !== null) bits.push(formatMs(ms) + ' ms');
    bits.push('connection ' + captured.conn);
    if (captured.replay_of !== null && captured.replay_of !== undefined) bits.push('replay of #' + captured.replay_of);
    el.detailSummary.textContent = bits.join('  \u00b7  ');

    let request = '';
    let response = '';
    switch (protocol) {
      case 'http':
        request = httpRequestText(d);
        response = httpResponseText(d);
        break;
      case 'postgres':
        request = pgRequestText(d);
        response = pgResponseText(d);
        break;
      case 'redis':
        request = [d.command || ''].concat(d.args || []).map(redisArg).join(' ');
        response = d.error ? '(error) ' + d.error : d.reply === null || d.reply === undefined ? '(no reply)' : String(d.reply);
        break;
      default:
        request = (d.to_service || 0) + ' bytes to the service';
        response = (d.to_client || 0) + ' bytes back' + (d.note ? '\n' + d.note : '');
    }
    el.detailRequest.textContent = request;
    el.detailResponse.textContent = response;
    renderProtocol(protocol, d);
    renderReplay(protocol, captured);
  }

  function headerLines(headers) {
    return (Array.isArray(headers) ? headers : []).map((h) => h.name + ': ' + h.value).join('\n');
  }

  function bodyText(body) {
    if (!body) return '';
    const notes = [];
    let text = '';
    if (body.json !== null && body.json !== undefined) {
      text = JSON.stringify(body.json, null, 2);
    } else if (typeof body.text === 'string') {
      text = body.text;
      const t = text.trim();
      if (!body.truncated && (t.startsWith('{') || t.startsWith('['))) {
        try {
          text = JSON.stringify(JSON.parse(t), null, 2);
        } catch (_) {
          // Not JSON after all: shown as it is.
        }
      }
    } else if (body.binary) {
      notes.push('(binary body, ' + body.len + ' bytes, not shown)');
    }
    if (body.encoding) notes.push('(decoded from ' + body.encoding + ')');
    if (body.truncated) notes.push('(truncated: ' + body.len + ' bytes on the wire, the first part is shown)');
    return (text ? [text] : []).concat(notes).join('\n');
  }

  function httpRequestText(d) {
    let out = (d.method || '') + ' ' + (d.path || '') + ' ' + (d.version || 'HTTP/1.1');
    const headers = headerLines(d.request_headers);
    if (headers) out += '\n' + headers;
    const body = bodyText(d.request_body);
    if (body) out += '\n\n' + body;
    return out;
  }

  function httpResponseText(d) {
    if (typeof d.status !== 'number') return '(no response: the connection closed first)';
    let out = (d.version || 'HTTP/1.1') + ' ' + d.status + (d.reason ? ' ' + d.reason : '');
    const headers = headerLines(d.response_headers);
    if (headers) out += '\n' + headers;
    const body = bodyText(d.response_body);
    if (body) out += '\n\n' + body;
    if (d.upgraded) out += '\n\n(switched to ' + d.upgraded + '; the rest of the connection is not parsed)';
    return out;
  }

  function pgRequestText(d) {
    const lines = [];
    const kind = pgKind(d);
    if (kind) lines.push('-- ' + kind);
    if (Array.isArray(d.startup) && d.startup.length) {
      for (const kv of d.startup) lines.push(kv[0] + ' = ' + kv[1]);
    }
    if (d.sql) lines.push(d.sql);
    if (Array.isArray(d.params) && d.params.length) {
      lines.push('');
      d.params.forEach((p, i) => lines.push('$' + (i + 1) + ' = ' + (p === null ? 'NULL' : p)));
    }
    return lines.join('\n');
  }

  function pgResponseText(d) {
    const lines = [];
    if (d.error) {
      lines.push((d.error.severity || 'ERROR') + ':  ' + (d.error.message || ''));
      lines.push('SQLSTATE ' + (d.error.sqlstate || '?') + (d.error.position ? ', at character ' + d.error.position : ''));
      const caret = errorCaret(d.sql, d.error.position);
      if (caret) lines.push(caret);
    }
    if (d.command_tag) lines.push(d.command_tag);
    if (Array.isArray(d.columns) && d.columns.length) {
      lines.push('');
      lines.push(d.columns.join(' | '));
      for (const row of d.sample_rows || []) lines.push(row.map((v) => (v === null ? 'NULL' : v)).join(' | '));
      if ((d.rows || 0) > (d.sample_rows || []).length) {
        lines.push('(' + d.rows + ' rows, first ' + (d.sample_rows || []).length + ' shown)');
      } else {
        lines.push('(' + (d.rows || 0) + ' row' + (d.rows === 1 ? '' : 's') + ')');
      }
    }
    for (const n of d.notices || []) lines.push('NOTICE:  ' + n);
    return lines.join('\n');
  }

  // psql-style "LINE n: ..." with a caret under the character PostgreSQL pointed at (1-based).
  function errorCaret(sql, position) {
    if (typeof sql !== 'string' || typeof position !== 'number' || position < 1 || position > sql.length + 1) return '';
    const before = sql.slice(0, position - 1);
    const lineNo = before.split('\n').length;
    const lineStart = before.lastIndexOf('\n') + 1;
    const lineEnd = sql.indexOf('\n', lineStart);
    const line = sql.slice(lineStart, lineEnd < 0 ? sql.length : lineEnd);
    const prefix = 'LINE ' + lineNo + ': ';
    return '\n' + prefix + line + '\n' + ' '.repeat(prefix.length + (position - 1 - lineStart)) + '^';
  }

  function redisArg(arg) {
    const s = String(arg);
    return /^[^\s"']+$/.test(s) ? s : JSON.stringify(s);
  }

  // A definition list of label -> value (values as text; `pre` for multi-line values).
  function facts(pairs) {
    const dl = node('dl', 'facts');
    for (const [label, value] of pairs) {
      if (value === null || value === undefined || value === '') continue;
      dl.appendChild(node('dt', null, label));
      const dd = node('dd');
      const text = String(value);
      if (text.includes('\n')) dd.appendChild(node('pre', 'payload small', text));
      else dd.textContent = text;
      dl.appendChild(dd);
    }
    return dl;
  }

  function renderProtocol(protocol, d) {
    const box = el.detailProtocol;
    box.replaceChildren();
    if (protocol === 'http') {
      const ops = Array.isArray(d.graphql) ? d.graphql : [];
      if (!ops.length) {
        box.hidden = true;
        return;
      }
      box.appendChild(node('h3', null, ops.length > 1 ? 'GraphQL batch (' + ops.length + ' operations)' : 'GraphQL'));
      ops.forEach((op, i) => {
        const section = node('div', 'op');
        section.appendChild(
          facts([
            ['operation', (ops.length > 1 ? '[' + i + '] ' : '') + op.operation_type + (op.name ? ' ' + op.name : ' (anonymous)')],
            ['variables', op.variables === null || op.variables === undefined ? '' : JSON.stringify(op.variables, null, 2)],
            ['errors', Array.isArray(op.errors) && op.errors.length ? op.errors.join('\n') + '\n' : 'none'],
          ]),
        );
        box.appendChild(section);
      });
    } else if (protocol === 'postgres') {
      box.appendChild(node('h3', null, 'PostgreSQL'));
      const tx = { I: 'idle', T: 'in transaction', E: 'failed transaction' }[d.tx_status] || d.tx_status;
      box.appendChild(
        facts([
          ['message flow', pgKind(d)],
          ['statement', d.sql],
          [
            'parameters',
            Array.isArray(d.params) && d.params.length
              ? d.params.map((p, i) => '$' + (i + 1) + ' = ' + (p === null ? 'NULL' : p)).join('\n') + '\n'
              : '',
          ],
          ['command tag', d.command_tag],
          ['rows', typeof d.rows === 'number' ? String(d.rows) : ''],
          ['columns', Array.isArray(d.columns) ? d.columns.join(', ') : ''],
          ['error', d.error ? d.error.sqlstate + ' ' + d.error.severity + ': ' + d.error.message : ''],
          ['notices', Array.isArray(d.notices) && d.notices.length ? d.notices.join('\n') + '\n' : ''],
          ['transaction', tx || ''],
          ['startup', Array.isArray(d.startup) && d.startup.length ? d.startup.map((kv) => kv[0] + '=' + kv[1]).join(', ') : ''],
        ]),
      );
      if (Array.isArray(d.columns) && d.columns.length && Array.isArray(d.sample_rows) && d.sample_rows.length) {
        box.appendChild(rowsTable(d.columns, d.sample_rows));
      }
    } else if (protocol === 'redis') {
      box.appendChild(node('h3', null, 'Redis'));
      box.appendChild(
        facts([
          ['command', d.command],
          ['arguments', Array.isArray(d.args) && d.args.length ? d.args.map(redisArg).join(' ') : ''],
          ['reply', d.reply],
          ['error', d.error],
          ['context', d.context],
        ]),
      );
    } else {
      box.appendChild(node('h3', null, 'Unrecognised protocol'));
      box.appendChild(facts([['note', d.note], ['to service', d.to_service + ' bytes'], ['to client', d.to_client + ' bytes']]));
    }
    box.hidden = false;
  }

  function rowsTable(columns, rows) {
    const table = node('table', 'rows');
    const head = node('tr');
    for (const c of columns) head.appendChild(node('th', null, c));
    const thead = node('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = node('tbody');
    for (const row of rows) {
      const tr = node('tr');
      for (const v of row) tr.appendChild(node('td', v === null ? 'null' : null, v === null ? 'NULL' : v));
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    return table;
  }

  // ---------------------------------------------------------------------------------------------
  // Replay.

  const HOP_HEADERS = ['content-length', 'transfer-encoding'];

  function rawRequest(d) {
    let out = (d.method || 'GET') + ' ' + (d.path || '/') + ' HTTP/1.1\n';
    for (const h of d.request_headers || []) {
      if (!HOP_HEADERS.includes(String(h.name).toLowerCase())) out += h.name + ': ' + h.value + '\n';
    }
    out += '\n';
    const b = d.request_body || {};
    if (typeof b.text === 'string') out += b.text;
    return out;
  }

  function renderReplay(protocol, captured) {
    const canReplay = protocol === 'http';
    el.replayBox.hidden = !canReplay;
    el.replay.disabled = !canReplay || state.ended;
    el.replayResult.replaceChildren();
    if (!canReplay) {
      el.replayEdit.value = '';
      state.replayOriginal = '';
      return;
    }
    state.replayOriginal = rawRequest(detailOf(captured));
    el.replayEdit.value = state.replayOriginal;
    const b = detailOf(captured).request_body || {};
    if (b.truncated || b.binary) {
      el.replayResult.textContent = 'The captured body is ' + (b.binary ? 'binary' : 'truncated') + ': replay sends what was captured.';
    }
  }

  // Parses the edited raw request into ReplayRequest edits; null with a message when malformed.
  function parseRaw(text) {
    const normalised = text.replace(/\r\n/g, '\n');
    const split = normalised.indexOf('\n\n');
    const head = split < 0 ? normalised : normalised.slice(0, split);
    const body = split < 0 ? '' : normalised.slice(split + 2);
    const lines = head.split('\n');
    const first = /^([A-Za-z]+)\s+(\S+)(?:\s+HTTP\/\d(?:\.\d)?)?\s*$/.exec(lines[0] || '');
    if (!first) return { error: 'The first line must be "METHOD /path HTTP/1.1".' };
    const headers = [];
    for (const line of lines.slice(1)) {
      if (!line.trim()) continue;
      const colon = line.indexOf(':');
      if (colon <= 0) return { error: 'Not a header line: "' + oneLine(line, 60) + '" (expected "Name: value").' };
      const name = line.slice(0, colon).trim();
      if (!HOP_HEADERS.includes(name.toLowerCase())) headers.push([name, line.slice(colon + 1).trim()]);
    }
    return { method: first[1].toUpperCase(), path: first[2], headers, body };
  }

  function sendReplay() {
    if (state.selected === null || !state.ws || state.ended) return;
    const captured = state.exchanges.get(state.selected);
    if (!captured || protocolOf(captured) !== 'http') return;
    const msg = { type: 'replay', id: captured.id };
    if (el.replayEdit.value !== state.replayOriginal) {
      const edits = parseRaw(el.replayEdit.value);
      if (edits.error) {
        el.replayResult.dataset.tone = 'error';
        el.replayResult.textContent = edits.error;
        return;
      }
      msg.method = edits.method;
      msg.path = edits.path;
      msg.headers = edits.headers;
      msg.body = edits.body;
    }
    el.replayResult.dataset.tone = 'pending';
    el.replayResult.textContent = 'replaying #' + captured.id + '\u2026';
    el.replay.disabled = true;
    send(msg);
  }

  function onReplayed(result) {
    el.replay.disabled = state.ended;
    el.replayResult.replaceChildren();
    if (result && result.ok) {
      el.replayResult.dataset.tone = 'ok';
      el.replayResult.appendChild(document.createTextNode('replayed: '));
      if (typeof result.captured === 'number') el.replayResult.appendChild(citeButton(result.captured));
      else el.replayResult.appendChild(document.createTextNode('the new exchange appears in the list'));
    } else {
      el.replayResult.dataset.tone = 'error';
      el.replayResult.textContent = 'replay failed: ' + ((result && result.error) || 'unknown error');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Presence, stats, session.

  function renderViewers(viewers) {
    el.viewers.replaceChildren();
    for (const v of Array.isArray(viewers) ? viewers : []) {
      const li = node('li', 'viewer', v.name);
      li.dataset.viewerId = String(v.id);
      if (state.you && v.id === state.you.id) {
        li.classList.add('me');
        renderYou(v.name);
      }
      li.title = v.name;
      el.viewers.appendChild(li);
    }
  }

  // The hub's word on our own name (after join, a rename, or its cleaning of either).
  function renderYou(name) {
    state.you.name = name;
    state.name = name;
    el.youName.textContent = name;
    el.you.title = 'Others see you as ' + name + '; click to rename';
    if (el.renameForm.hidden) el.you.hidden = false;
  }

  function renderStats(exchanges, dropped) {
    if (typeof exchanges === 'number') el.count.textContent = String(exchanges);
    if (typeof dropped === 'number') {
      el.dropped.textContent = String(dropped);
      el.droppedCounter.classList.toggle('warn', dropped > 0);
      el.droppedCounter.title = dropped > 0 ? 'Chunks the capture skipped to keep traffic flowing at full speed' : '';
    }
  }

  function renderSession(session) {
    state.session = session;
    const parts = [session.service];
    if (session.kind) parts.push(session.kind);
    if (session.owner) parts.push('shared by ' + session.owner);
    el.service.textContent = parts.join(' \u00b7 ');
    document.title = session.service + ' \u00b7 pconnect debug';
    renderStats(session.exchanges, session.dropped);
    el.assistant.hidden = !session.ai;
    if (session.ai) loadInsights();
  }

  // ---------------------------------------------------------------------------------------------
  // Assistant.

  function citeButton(id) {
    const b = node('button', 'cite', '#' + id);
    b.type = 'button';
    b.dataset.id = String(id);
    b.title = 'Show exchange #' + id;
    return b;
  }

  // Text with every `#N` for a cited N turned into a button.
  function citedText(container, text, cites) {
    const cited = new Set((cites || []).map(Number));
    const re = /#(\d+)/g;
    let last = 0;
    let m;
    const inline = new Set();
    while ((m = re.exec(text)) !== null) {
      const id = Number(m[1]);
      if (!cited.has(id)) continue;
      if (m.index > last) container.appendChild(document.createTextNode(text.slice(last, m.index)));
      container.appendChild(citeButton(id));
      inline.add(id);
      last = m.index + m[0].length;
    }
    if (last < text.length) container.appendChild(document.createTextNode(text.slice(last)));
    return inline;
  }

  function ask() {
    const question = el.ask.value.trim();
    if (!question || !state.ws || state.ended) return;
    const li = node('li', 'answer pending');
    li.appendChild(node('div', 'question', question));
    li.appendChild(node('div', 'text', 'thinking\u2026'));
    el.answers.prepend(li);
    state.pendingAsks.push(li);
    el.ask.value = '';
    send({ type: 'ask', question });
  }

  function onAnswer(answer) {
    const li = state.pendingAsks.shift() || el.answers.insertBefore(node('li', 'answer'), el.answers.firstChild);
    li.classList.remove('pending');
    const text = li.querySelector('.text') || li.appendChild(node('div', 'text'));
    text.replaceChildren();
    const body = String((answer && answer.text) || '');
    const inline = citedText(text, body, answer && answer.cites);
    const rest = ((answer && answer.cites) || []).map(Number).filter((id) => !inline.has(id));
    if (rest.length) {
      const row = node('div', 'cites', 'see ');
      rest.forEach((id) => row.appendChild(citeButton(id)));
      li.appendChild(row);
    }
    li.appendChild(node('div', 'source', answer && answer.source === 'model' ? 'answered by the model' : 'from offline insights'));
  }

  // Insights follow the traffic, recomputed at most every few seconds while exchanges arrive.
  function insightsSoon() {
    if (!state.session || !state.session.ai || state.insightsTimer) return;
    state.insightsTimer = setTimeout(() => {
      state.insightsTimer = null;
      loadInsights();
    }, INSIGHTS_EVERY_MS);
  }

  function loadInsights() {
    fetch(base + '/api/insights', { credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : []))
      .then((list) => {
        el.insights.replaceChildren();
        for (const insight of Array.isArray(list) ? list : []) {
          const li = node('li', 'insight sev-' + (insight.severity || 'info'));
          li.appendChild(node('div', 'title', insight.title));
          if (insight.detail) li.appendChild(node('div', 'text', insight.detail));
          if (Array.isArray(insight.exchanges) && insight.exchanges.length) {
            const row = node('div', 'cites');
            insight.exchanges.slice(0, 20).forEach((id) => row.appendChild(citeButton(id)));
            li.appendChild(row);
          }
          el.insights.appendChild(li);
        }
        if (!el.insights.firstChild) el.insights.appendChild(node('li', 'insight none', 'Nothing stands out yet.'));
      })
      .catch(() => {});
  }

  // ---------------------------------------------------------------------------------------------
  // Your name: a guest name from the hub at first; renaming is optional and never blocks the page.
  // A chosen name is kept for this tab (sessionStorage), so a reload joins under it again.

  function savedName() {
    try {
      return sessionStorage.getItem(NAME_KEY) || '';
    } catch (_) {
      return ''; // Storage can be disabled: join as a guest.
    }
  }

  function rememberName(name) {
    try {
      if (name) sessionStorage.setItem(NAME_KEY, name);
      else sessionStorage.removeItem(NAME_KEY);
    } catch (_) {
      // Not remembered; harmless.
    }
  }

  function openRename() {
    if (state.ended) return;
    el.renameName.value = state.name;
    el.you.hidden = true;
    el.you.setAttribute('aria-expanded', 'true');
    el.renameForm.hidden = false;
    el.renameName.focus();
    el.renameName.select();
  }

  function closeRename() {
    el.renameForm.hidden = true;
    el.you.setAttribute('aria-expanded', 'false');
    el.you.hidden = !state.you;
    if (!el.you.hidden) el.you.focus();
  }

  // An empty name asks the hub for a guest name again.
  function rename(event) {
    event.preventDefault();
    const name = el.renameName.value.trim().slice(0, 40);
    rememberName(name);
    state.name = name;
    send({ type: 'rename', name });
    closeRename();
  }

  // ---------------------------------------------------------------------------------------------
  // The WebSocket.

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    setStatus('connecting');
    const ws = new WebSocket(scheme + location.host + base + '/ws');
    state.ws = ws;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'join', name: state.name }));
    });
    ws.addEventListener('message', (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onMessage(msg);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (state.ended) return;
      setStatus('disconnected');
      showBanner('Connection to the hub lost; reconnecting\u2026', 'warn');
      const retry = () => {
        setTimeout(connect, state.retryMs);
        state.retryMs = Math.min(RECONNECT_MAX_MS, state.retryMs * 2);
      };
      // A session that ended while we were away answers 404: say so instead of retrying forever.
      fetch(base + '/api/session', { cache: 'no-store' })
        .then((r) => (r.status === 404 ? onEnded() : retry()))
        .catch(retry);
    });
  }

  function onMessage(msg) {
    switch (msg && msg.type) {
      case 'hello':
        state.retryMs = 500;
        state.you = msg.you || null;
        if (state.you) renderYou(state.you.name);
        if (msg.session) {
          renderSession(msg.session);
          renderViewers(msg.session.viewers);
        }
        for (const c of Array.isArray(msg.recent) ? msg.recent : []) addExchange(c);
        showBanner('', 'info');
        setStatus('live');
        break;
      case 'exchange':
        if (msg.captured && !state.rows.has(msg.captured.id)) {
          el.count.textContent = String((Number(el.count.textContent) || 0) + 1);
        }
        addExchange(msg.captured);
        insightsSoon();
        break;
      case 'presence':
        renderViewers(msg.viewers);
        break;
      case 'stats':
        renderStats(msg.exchanges, msg.dropped);
        break;
      case 'replayed':
        onReplayed(msg.result);
        break;
      case 'answer':
        onAnswer(msg.answer);
        break;
      case 'ended':
        onEnded();
        break;
      default:
        break;
    }
  }

  function onEnded() {
    state.ended = true;
    setStatus('ended');
    showBanner('This debug session has ended. What was captured stays on this page; exports may no longer be available.', 'info');
    el.replay.disabled = true;
    el.askSend.disabled = true;
    el.ask.disabled = true;
    el.renameForm.hidden = true;
    el.you.disabled = true;
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      ws.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Wiring.

  function rowFromEvent(event) {
    const tr = event.target.closest && event.target.closest('tr.exchange');
    return tr && el.rows.contains(tr) ? tr : null;
  }

  function moveSelection(step) {
    const visible = Array.from(el.rows.children).filter((tr) => !tr.hidden);
    if (!visible.length) return;
    const current = visible.findIndex((tr) => Number(tr.dataset.id) === state.selected);
    const next = current < 0 ? 0 : Math.min(visible.length - 1, Math.max(0, current + step));
    select(Number(visible[next].dataset.id));
  }

  function init() {
    el.exportHar.href = base + '/export.har';
    el.exportHar.setAttribute('download', 'debug-' + token.slice(0, 6) + '.har');
    el.exportJsonl.href = base + '/export.jsonl';
    el.exportJsonl.setAttribute('download', 'debug-' + token.slice(0, 6) + '.jsonl');
    el.you.addEventListener('click', openRename);
    el.renameForm.addEventListener('submit', rename);
    el.renameCancel.addEventListener('click', closeRename);
    el.renameName.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') closeRename();
    });
    el.filter.addEventListener('change', applyFilters);
    el.search.addEventListener('input', applyFilters);
    el.rows.addEventListener('click', (event) => {
      const tr = rowFromEvent(event);
      if (tr) select(Number(tr.dataset.id));
    });
    document.addEventListener('click', (event) => {
      const b = event.target.closest && event.target.closest('button.cite');
      if (b) select(Number(b.dataset.id));
    });
    document.addEventListener('keydown', (event) => {
      const tag = (event.target && event.target.tagName) || '';
      if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
      if (event.key === 'ArrowDown' || event.key === 'j') {
        moveSelection(1);
        event.preventDefault();
      } else if (event.key === 'ArrowUp' || event.key === 'k') {
        moveSelection(-1);
        event.preventDefault();
      } else if (event.key === '/') {
        el.search.focus();
        event.preventDefault();
      }
    });
    el.replay.addEventListener('click', sendReplay);
    el.replayReset.addEventListener('click', () => {
      el.replayEdit.value = state.replayOriginal;
    });
    el.askSend.addEventListener('click', ask);
    el.ask.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') ask();
    });
    el.insightsRefresh.addEventListener('click', loadInsights);
    updateShown();
    state.name = savedName();
    connect();
  }

  if (!token) {
    setStatus('error');
    showBanner('This page must be opened from a debug link (/debug/<token>).', 'warn');
    return;
  }
  init();
})();
