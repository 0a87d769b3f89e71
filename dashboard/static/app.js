// Flow Lock command center: renders /api/v1/stream snapshots, keeps the
// stream alive across restarts, and carries out admin actions with the
// token kept in session storage.

import { $, el, svg, setText, setAttr, setVar, toggle } from './dom.js';
import { band, gauge, setGauge, rhythm, setRhythm, setArea } from './charts.js';
import { fmtInt, fmtCompact, fmtRate, fmtLatency, fmtLeft, fmtAgo, fmtClock, fmtInterval, fmtValue } from './format.js';

const TOKEN_KEY = 'flowlock.admin-token';
const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

const state = {
  snap: null,
  offset: 0,               // server time minus local time, ms
  admin: null,             // the server has an admin token configured (null: not known yet)
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  released: new Map(),     // identity -> server time (ms) of a release from this page
  riskRows: new Map(),     // identity -> row element
  qRows: new Map(),        // identity -> row element
  blips: new Map(),        // identity -> radar pin
  qSeen: false,            // the quarantine was rendered once: new rows enter the zone from now on
  drawerId: null,          // identity shown in the explain drawer
  drawerAt: 0,             // when the drawer was last refreshed
};

// present drops the nulls of a list of optional nodes (replaceChildren
// would write them as the text "null").
const present = (...nodes) => nodes.filter((n) => n !== null && n !== undefined && n !== false);

const serverNow = () => Date.now() + state.offset;
const canAct = () => state.admin === true && state.token !== '';

// ---------------------------------------------------------------- stream

const conn = $('conn');
let source = null;
let lastEvent = 0;
let retryDelay = 1000;
let retryTimer = 0;

function setConn(s, label) {
  setAttr(conn, 'data-state', s);
  setText(conn.querySelector('.conn-label'), label);
  toggle(document.body, 'stale', s !== 'live');
}

function onSnapshot(data) {
  lastEvent = Date.now();
  retryDelay = 1000;
  let snap;
  try {
    snap = JSON.parse(data);
  } catch (err) {
    console.warn('flowlock: bad snapshot', err);
    return;
  }
  setConn('live', 'Live');
  render(snap);
}

function retryLater() {
  setConn('disconnected', 'Disconnected');
  retryTimer = setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
}

// With the admin token the stream is read with fetch, which can send it
// (EventSource cannot): the service keeps places for token holders, so a
// crowd of anonymous viewers never locks an operator out.
async function readTokenStream(ctrl) {
  const res = await fetch('/api/v1/stream', { headers: { Authorization: `Bearer ${state.token}` }, signal: ctrl.signal });
  if (res.status === 401) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    updateAdminUI();
  }
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended');
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (event === 'snapshot') onSnapshot(data);
    }
  }
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  setConn(state.snap ? 'reconnecting' : 'connecting', state.snap ? 'Reconnecting…' : 'Connecting…');
  if (state.token) {
    const ctrl = new AbortController();
    source = { close: () => ctrl.abort() };
    readTokenStream(ctrl).catch(() => {
      if (!ctrl.signal.aborted) retryLater();
    });
    return;
  }
  source = new EventSource('/api/v1/stream');
  source.addEventListener('snapshot', (ev) => onSnapshot(ev.data));
  source.addEventListener('error', () => {
    if (!source || source.readyState === EventSource.CLOSED) {
      // The browser gave up (the server answered with an error status):
      // try again ourselves, backing off to 10 s.
      retryLater();
    } else {
      setConn('disconnected', 'Disconnected · retrying');
    }
  });
}

// A stream that goes quiet (a proxy holding it open, a frozen server) is
// as good as gone: after 5 s without an event, reconnect.
setInterval(() => {
  if (lastEvent && Date.now() - lastEvent > 5000 && conn.dataset.state === 'live') {
    setConn('disconnected', 'Disconnected');
    connect();
  }
}, 1000);

// ---------------------------------------------------------------- render

function render(snap) {
  state.snap = snap;
  state.offset = Date.parse(snap.time) - Date.now();
  const wasAdmin = state.admin;
  state.admin = Boolean(snap.admin);
  if (wasAdmin !== state.admin) updateAdminUI();

  const mode = $('mode');
  setText(mode, snap.mode);
  setAttr(mode, 'data-mode', snap.mode);

  renderSharing(snap.sharing);
  renderWarnings(snap.warnings || []);
  renderStats(snap);
  renderRisk(snap.identities || []);
  renderQuarantine(snap);
  renderLists(snap.lists || { allow: [], deny: [] });
  renderFingerprints(snap.fingerprints);
  renderEvents(snap.events || []);
  setText($('clients'), `${snap.clients} ${snap.clients === 1 ? 'dashboard' : 'dashboards'} connected`);

  if (state.drawerId && Date.now() - state.drawerAt > 3000) refreshDrawer();
}

// renderWarnings shows the misconfigurations the service found: requests
// it could not read the configured way (a proxy that sends no
// X-Forwarded-For, a wrong hop count, an identity header nobody sends),
// with the count, the proxy and the fix. All of it goes in as text.
function renderWarnings(warnings) {
  const box = $('warnings');
  box.hidden = warnings.length === 0;
  const key = warnings.map((w) => [w.cause, w.peer, w.count, w.problem, w.fix].join('|')).join('\n');
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...warnings.map((w) => el('article', { class: 'warning', data: { testid: 'warning', cause: w.cause } },
    el('h3', {},
      el('span', { class: 'w-count', data: { testid: 'warning-count' } }, `${fmtInt(w.count)} requests ${w.unscored ? 'not scored' : 'scored by address only'}`),
      el('span', { class: 'w-cause mono' }, w.cause),
      el('span', { class: 'w-peer' }, `from ${w.peer}`)),
    el('p', { class: 'w-problem', data: { testid: 'warning-problem' } }, w.problem),
    el('p', { class: 'w-fix', data: { testid: 'warning-fix' } }, el('strong', {}, 'Fix: '), w.fix))));
}

// renderSharing shows whether this replica shares detection and quarantine
// with the others through Redis, or decides alone while Redis is away.
function renderSharing(sharing) {
  const pill = $('sharing');
  pill.hidden = !sharing;
  if (!sharing) return;
  const fallback = sharing.state !== 'shared';
  setText(pill, fallback ? 'Redis: local fallback' : 'Redis: shared');
  setAttr(pill, 'data-state', fallback ? 'fallback' : 'shared');
  setAttr(pill, 'title', fallback
    ? `Deciding on this replica's own state until Redis answers${sharing.detail ? ': ' + sharing.detail : ''}`
    : 'Detection and quarantine shared with the other replicas through Redis');
}

function renderStats(snap) {
  const st = snap.stats;
  setText($('stat-checks'), fmtRate(st.checks_per_sec));
  setText($('stat-denies'), fmtRate(st.denies_per_sec));
  setText($('stat-allowed'), fmtCompact(st.allowed_total));
  setText($('stat-denied'), fmtCompact(st.denied_total));
  setText($('stat-denied-foot'), snap.mode === 'shadow' ? 'would have been denied (shadow)' : 'total since start');
  setText($('stat-tracked'), fmtCompact(st.tracked));
  setText($('stat-quarantined'), fmtInt(st.quarantined));
  setText($('stat-p50'), fmtLatency(st.latency_p50_ms));
  setText($('stat-p99'), fmtLatency(st.latency_p99_ms));
  setArea($('spark-checks'), st.checks_series || []);
  setArea($('spark-denies'), st.denies_series || []);
}

// Threat radar rows: keyed by identity and updated in place, so the table
// never rebuilds and nothing jumps.
function renderRisk(ids) {
  const box = $('risk-rows');
  const now = serverNow();
  const seen = new Set();
  ids.forEach((id, i) => {
    seen.add(id.identity);
    let row = state.riskRows.get(id.identity);
    if (!row) {
      row = riskRow(id.identity);
      state.riskRows.set(id.identity, row);
    }
    updateRiskRow(row, id, now);
    if (box.children[i] !== row) box.insertBefore(row, box.children[i] || null);
  });
  for (const [key, row] of state.riskRows) {
    if (!seen.has(key)) {
      row.remove();
      state.riskRows.delete(key);
    }
  }
  $('risk-empty').hidden = ids.length > 0;
  renderRadar(ids);
}

function riskRow(identity) {
  const g = gauge();
  const ident = el('span', { class: 'ident', text: identity, title: identity });
  const tags = el('span', { class: 'tags' });
  const requests = el('span', { class: 'cell-num' });
  const bars = rhythm();
  const seen = el('span', { class: 'cell-num' });
  const row = el('div', {
    class: 'row risk-row risk-grid calm', role: 'listitem', tabindex: '0',
    data: { testid: 'risk-row', identity },
    on: {
      click: () => openDrawer(identity),
      keydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); openDrawer(identity); } },
    },
  }, g, el('span', { class: 'who-cell' }, ident, tags), requests, bars, seen);
  row.parts = { g, tags, requests, bars, seen };
  return row;
}

function updateRiskRow(row, id, now) {
  const p = row.parts;
  const b = band(id.score, id.reason, id.quarantined);
  for (const c of ['calm', 'watch', 'hot']) toggle(row, c, c === b);
  setGauge(p.g, id.score);
  const tagKey = [id.reason, id.quarantined, id.shared].join('|');
  if (p.tags.dataset.key !== tagKey) {
    p.tags.dataset.key = tagKey;
    p.tags.replaceChildren(...present(
      id.reason && id.reason !== 'none' ? el('span', { class: 'tag reason', text: id.reason.replace(/_/g, ' ') }) : null,
      id.quarantined ? el('span', { class: 'tag hot', text: 'quarantined' }) : null,
      id.shared ? el('span', { class: 'tag shared', text: 'shared address' }) : null,
      !id.quarantined && (!id.reason || id.reason === 'none') ? el('span', { class: 'tag', text: 'calm' }) : null,
    ));
  }
  setText(p.requests, fmtInt(id.requests));
  setRhythm(p.bars, id.recent_ms);
  setText(p.seen, fmtAgo(Date.parse(id.last_seen), now));
}

// The radar places each identity by its score (the rim is 0, the centre
// 100) at an angle fixed by its name, on a disc tilted back in 3D: each
// identity is a pin standing on the disc, taller the riskier, so the
// quarantine zone at the centre is a cluster of tall red beacons. The pins
// are placed through custom properties and moved by CSS transitions on
// transform (the compositor's work, not a script loop); under
// prefers-reduced-motion the CSS lays the disc flat and drops the stalks.
function renderRadar(ids) {
  const group = $('blips');
  const unit = $('disc').clientWidth / 220; // px per radar unit (the SVG's viewBox is 220 wide)
  const seen = new Set();
  for (const id of ids) {
    seen.add(id.identity);
    let blip = state.blips.get(id.identity);
    if (!blip) {
      blip = el('button', {
        type: 'button', class: 'blip', title: `${id.identity}: why?`, 'aria-label': `${id.identity}: why?`,
        data: { testid: 'radar-blip', identity: id.identity }, on: { click: () => openDrawer(id.identity) },
      }, el('span', { class: 'stalk' }), el('span', { class: 'head' }));
      state.blips.set(id.identity, blip);
      group.append(blip);
    }
    const score = Math.max(0, Math.min(100, id.score));
    // A quarantined identity sits inside the zone ring (r < 20) whatever
    // its score (a ban needs none): its pin glides in as it is caught.
    const r = 4 + (100 - score) * (id.quarantined ? 0.14 : 0.94);
    const a = angleOf(id.identity);
    const b = band(id.score, id.reason, id.quarantined);
    setAttr(blip, 'class', `blip ${b}`);
    setVar(blip, '--bx', (r * Math.cos(a) * unit).toFixed(1));
    setVar(blip, '--by', (r * Math.sin(a) * unit).toFixed(1));
    setVar(blip, '--h', (6 + score * 0.34).toFixed(1));
  }
  for (const [key, blip] of state.blips) {
    if (!seen.has(key)) {
      blip.remove();
      state.blips.delete(key);
    }
  }
}

function angleOf(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return ((h >>> 0) / 4294967296) * 2 * Math.PI;
}

// Quarantine zone rows, with a countdown that ticks between snapshots.
function renderQuarantine(snap) {
  const box = $('q-rows');
  const snapTime = Date.parse(snap.time);
  const list = (snap.quarantine || []).filter((q) => {
    const at = state.released.get(q.identity);
    return !(at && snapTime <= at + 1500); // released here; this snapshot may predate it
  });
  const seen = new Set();
  list.forEach((q, i) => {
    seen.add(q.identity);
    let row = state.qRows.get(q.identity);
    let entering = false;
    if (!row) {
      row = quarantineRow(q.identity);
      state.qRows.set(q.identity, row);
      entering = state.qSeen; // not the rows already there when the page opened
    }
    row.q = q;
    updateQuarantineRow(row);
    if (box.children[i] !== row) box.insertBefore(row, box.children[i] || null);
    if (entering) enterZone(row, q.identity);
  });
  state.qSeen = true;
  for (const [key, row] of state.qRows) {
    if (!seen.has(key)) {
      row.remove();
      state.qRows.delete(key);
    }
  }
  for (const [key, at] of state.released) if (snapTime > at + 10000) state.released.delete(key);
  $('q-empty').hidden = list.length > 0;
  const more = snap.quarantine_total - (snap.quarantine || []).length;
  setText($('q-sub'), more > 0 ? `${fmtInt(snap.quarantine_total)} in all · soonest release first` : 'heals by itself · soonest release first');
  tickCountdowns();
}

// enterZone shows a newly quarantined identity moving into the zone: a
// ghost of its risk row (or of its radar pin) flies to the new quarantine
// row, which rises out of depth into place. Web Animations on transform
// and opacity only, so the compositor runs them; nothing under
// prefers-reduced-motion.
function enterZone(row, identity) {
  if (reducedMotion.matches) return;
  row.animate([
    { transform: 'perspective(800px) translate3d(-36px, 0, 160px) rotateY(18deg)', opacity: 0 },
    { transform: 'perspective(800px) translate3d(0, 0, 0)', opacity: 1 },
  ], { id: 'enter-zone', duration: 900, easing: 'cubic-bezier(0.2, 0.7, 0.2, 1)', delay: 250, fill: 'backwards' });
  const from = state.riskRows.get(identity) || state.blips.get(identity);
  if (!from || !from.isConnected) return;
  const a = from.getBoundingClientRect(), b = row.getBoundingClientRect();
  if (a.width === 0 || b.width === 0) return;
  const ghost = el('div', { class: 'zone-ghost', 'aria-hidden': 'true' }, identity);
  document.body.append(ghost);
  setVar(ghost, '--gw', b.width.toFixed(0));
  setVar(ghost, '--gh', b.height.toFixed(0));
  ghost.animate([
    { transform: `translate3d(${a.left.toFixed(0)}px, ${a.top.toFixed(0)}px, 0) scale(${(a.width / b.width).toFixed(3)}, 1)`, opacity: 1 },
    { transform: `translate3d(${((a.left + b.left) / 2).toFixed(0)}px, ${(Math.min(a.top, b.top) - 40).toFixed(0)}px, 0) scale(0.85)`, opacity: 1, offset: 0.5 },
    { transform: `translate3d(${b.left.toFixed(0)}px, ${b.top.toFixed(0)}px, 0)`, opacity: 0 },
  ], { id: 'enter-zone-ghost', duration: 1200, easing: 'cubic-bezier(0.4, 0, 0.2, 1)' }).finished.then(() => ghost.remove(), () => ghost.remove());
}

function quarantineRow(identity) {
  const ident = el('span', { class: 'ident', text: identity, title: `${identity}: why?`, on: { click: () => openDrawer(identity) } });
  const tags = el('span', { class: 'tags' });
  const left = el('span', { class: 'left' });
  const fill = el('span');
  const extend = el('button', {
    type: 'button', class: 'btn small', text: '+10 min', data: { testid: 'extend-button' },
    title: 'Extend the quarantine by 10 minutes', on: { click: () => extend10(identity) },
  });
  const release = el('button', {
    type: 'button', class: 'btn small ok', text: 'Release', data: { testid: 'release-button' },
    title: 'End the quarantine now', on: { click: () => releaseIdentity(identity) },
  });
  const row = el('div', { class: 'row q-row', role: 'listitem', data: { testid: 'quarantine-row', identity } },
    el('span', { class: 'who-cell' }, ident, tags),
    el('span', { class: 'countdown' }, left, el('span', { class: 'meter' }, fill)),
    el('span', { class: 'q-actions' }, extend, release));
  row.parts = { tags, left, fill, extend, release };
  setActionState(row);
  return row;
}

function updateQuarantineRow(row) {
  const q = row.q;
  const p = row.parts;
  const key = [q.reason, q.strikes, q.manual, q.score, q.hits].join('|');
  if (p.tags.dataset.key !== key) {
    p.tags.dataset.key = key;
    p.tags.replaceChildren(...present(
      el('span', { class: 'tag reason', text: (q.reason || 'manual').replace(/_/g, ' ') }),
      q.strikes > 0 ? el('span', { class: 'tag hot', text: `strike ${q.strikes}` }) : null,
      q.manual ? el('span', { class: 'tag manual', text: 'manual' }) : null,
      // Still knocking? Requests this quarantine has refused so far.
      q.hits > 0 ? el('span', {
        class: 'tag', text: `${fmtInt(q.hits)} refused`, data: { testid: 'refused-count' },
        title: 'requests refused during this quarantine (since the last restart)',
      }) : null,
    ));
  }
  setActionState(row);
}

function setActionState(row) {
  const p = row.parts;
  const busy = row.classList.contains('leaving');
  p.release.disabled = !canAct() || busy;
  p.extend.disabled = !canAct() || busy;
}

function tickCountdowns() {
  const now = serverNow();
  for (const row of state.qRows.values()) {
    const q = row.q;
    if (!q) continue;
    const until = Date.parse(q.until), since = Date.parse(q.since);
    const left = until - now;
    setText(row.parts.left, fmtLeft(left));
    const frac = until > since ? Math.max(0, Math.min(1, left / (until - since))) : 0;
    setVar(row.parts.fill, '--left', frac.toFixed(4));
  }
}
setInterval(tickCountdowns, 250);

function renderLists(lists) {
  for (const [id, items] of [['allow-list', lists.allow], ['deny-list', lists.deny]]) {
    const ul = $(id);
    const key = items.join(',');
    if (ul.dataset.key === key && ul.children.length) continue;
    ul.dataset.key = key;
    ul.replaceChildren(...(items.length ? items.map((p) => el('li', { text: p })) : [el('li', { class: 'none', text: 'empty' })]));
  }
}

// renderFingerprints lists the flagged TLS fingerprints (by their hash),
// or hides the block when the service keeps no fingerprint evidence.
function renderFingerprints(fps) {
  const block = $('fp-block');
  block.hidden = !fps;
  if (!fps) return;
  const ul = $('fp-list');
  const key = fps.map((f) => `${f.key}:${f.quarantined}:${f.calm}`).join(',');
  if (ul.dataset.key === key && ul.children.length) return;
  ul.dataset.key = key;
  ul.replaceChildren(...(fps.length
    ? fps.map((f) => el('li', { class: 'mono', title: `flagged since ${fmtClock(Date.parse(f.since))}; ${f.calm} calm clients seen with it`, text: `${f.key} · ${f.quarantined} caught` }))
    : [el('li', { class: 'none', text: 'none' })]));
}

const actionWords = {
  admitted: 'caught', banned: 'banned', extended: 'extended', released: 'released', expired: 'healed',
  evicted: 'evicted (quarantine full)',
};

// The activity feed reuses the items it already shows, so only new events
// slide in.
const eventItems = new Map(); // key -> li

function renderEvents(events) {
  const ol = $('events');
  const keep = new Set();
  events.forEach((e, i) => {
    const key = `${e.time}|${e.identity}|${e.action}`;
    keep.add(key);
    let li = eventItems.get(key);
    if (!li) {
      li = eventItem(e);
      eventItems.set(key, li);
    }
    if (ol.children[i] !== li) ol.insertBefore(li, ol.children[i] || null);
  });
  for (const [key, li] of eventItems) {
    if (!keep.has(key)) {
      li.remove();
      eventItems.delete(key);
    }
  }
  $('events-empty').hidden = events.length > 0;
}

function eventItem(e) {
  const bits = [];
  if (e.reason && e.action !== 'released') bits.push(e.reason.replace(/_/g, ' '));
  if (e.strikes > 1 && e.action === 'admitted') bits.push(`strike ${e.strikes}`);
  return el('li', { class: 'event', data: { action: e.action } },
    el('time', { datetime: e.time, text: fmtClock(Date.parse(e.time)) }),
    el('span', { class: 'what', title: `${e.identity} ${actionWords[e.action] || e.action}` },
      el('span', { class: 'who', text: e.identity }), ` ${actionWords[e.action] || e.action}`,
      bits.length ? ` · ${bits.join(' · ')}` : ''));
}

// ---------------------------------------------------------------- admin

const notice = $('notice');
const adminButton = $('admin-button');
const dialog = $('token-dialog');

function updateAdminUI() {
  if (state.admin === false) {
    setAttr(notice, 'data-state', 'disabled');
    setText(notice, 'Read-only view: the admin API is off. Start flowlock-authz with --admin-token to release, extend and ban from here.');
    adminButton.disabled = true;
    setText(adminButton, 'Admin API off');
  } else if (state.token) {
    setAttr(notice, 'data-state', 'admin');
    setText(notice, 'Controls unlocked for this tab. Actions are logged with your address.');
    adminButton.disabled = false;
    setText(adminButton, 'Lock controls');
  } else {
    setAttr(notice, 'data-state', 'readonly');
    setText(notice, 'Read-only view. Unlock the controls with the admin token to release, extend or ban.');
    adminButton.disabled = false;
    setText(adminButton, 'Unlock controls');
  }
  toggle(adminButton, 'unlocked', canAct());
  $('ban-submit').disabled = !canAct();
  for (const row of state.qRows.values()) setActionState(row);
  if (state.drawerId) refreshDrawer();
}

adminButton.addEventListener('click', () => {
  if (state.token) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    updateAdminUI();
    connect();
    toast('Controls locked.');
    return;
  }
  setText($('token-error'), '');
  $('token-input').value = '';
  dialog.showModal();
  $('token-input').focus();
});
$('token-cancel').addEventListener('click', () => dialog.close());
$('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('token-input').value.trim();
  if (!token) {
    setText($('token-error'), 'Enter the token.');
    return;
  }
  const res = await fetch('/api/v1/auth', { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
  if (!res) {
    setText($('token-error'), 'The service is unreachable; try again.');
  } else if (res.ok) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    dialog.close();
    updateAdminUI();
    connect(); // now with the token: a stream place of its own
    toast('Controls unlocked.');
  } else {
    setText($('token-error'), res.status === 403 ? 'The admin API is off on this service.' : 'That token is not right.');
  }
});

// api sends an admin request and returns the JSON answer, or throws with
// the service's error message.
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (res.status === 401) {
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    updateAdminUI();
    throw new Error('The admin token was refused; unlock the controls again.');
  }
  if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
  return data;
}

const idPath = (identity) => encodeURIComponent(identity);

async function releaseIdentity(identity) {
  const row = state.qRows.get(identity);
  if (row) {
    row.classList.add('leaving');
    setActionState(row);
  }
  try {
    await api('DELETE', `/api/v1/quarantine/${idPath(identity)}`);
    state.released.set(identity, serverNow());
    setTimeout(() => {
      const r = state.qRows.get(identity);
      if (r && r.classList.contains('leaving')) {
        r.remove();
        state.qRows.delete(identity);
        $('q-empty').hidden = state.qRows.size > 0;
      }
    }, 320);
    toast(`Released ${identity}.`);
    if (state.drawerId === identity) refreshDrawer();
  } catch (err) {
    if (row) {
      row.classList.remove('leaving');
      setActionState(row);
    }
    toast(`Release failed: ${err.message}`, true);
  }
}

async function extend10(identity) {
  try {
    const q = await api('POST', `/api/v1/quarantine/${idPath(identity)}/extend`, { by: '10m' });
    const row = state.qRows.get(identity);
    if (row) {
      row.q = q;
      tickCountdowns();
    }
    toast(`Extended ${identity} by 10 minutes.`);
    if (state.drawerId === identity) refreshDrawer();
  } catch (err) {
    toast(`Extend failed: ${err.message}`, true);
  }
}

$('ban-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const identity = $('ban-identity').value.trim();
  const ttl = $('ban-ttl').value;
  const reason = $('ban-reason').value.trim();
  if (!identity) return;
  try {
    await ban(identity, ttl, reason);
    $('ban-identity').value = '';
    $('ban-reason').value = '';
  } catch {
    // ban has told the operator
  }
});

async function ban(identity, ttl, reason) {
  try {
    await api('POST', '/api/v1/quarantine', { identity, ttl, reason: reason || undefined });
    state.released.delete(identity);
    toast(`Banned ${identity} for ${ttl}.`);
    if (state.drawerId === identity) refreshDrawer();
  } catch (err) {
    toast(`Ban failed: ${err.message}`, true);
    throw err;
  }
}

function toast(message, error = false) {
  const t = el('div', { class: `toast${error ? ' error' : ''}`, role: error ? 'alert' : 'status', text: message });
  $('toasts').append(t);
  setTimeout(() => t.remove(), error ? 6000 : 3500);
}

// ---------------------------------------------------------------- explain

const drawer = $('drawer');
$('drawer-close').addEventListener('click', closeDrawer);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && state.drawerId && !dialog.open) closeDrawer();
});

function openDrawer(identity) {
  state.drawerId = identity;
  setText($('drawer-title'), identity);
  drawer.classList.add('open');
  setAttr(drawer, 'aria-hidden', 'false');
  $('drawer-body').replaceChildren(el('p', { class: 'empty', text: 'Loading…' }));
  refreshDrawer();
}

function closeDrawer() {
  state.drawerId = null;
  drawer.classList.remove('open');
  setAttr(drawer, 'aria-hidden', 'true');
}

let drawerSeq = 0;

async function refreshDrawer() {
  const identity = state.drawerId;
  if (!identity) return;
  state.drawerAt = Date.now();
  const seq = ++drawerSeq;
  let data = null, message = '';
  try {
    const res = await fetch(`/api/v1/identities/${idPath(identity)}`);
    data = await res.json();
    if (!res.ok) message = data.error || `HTTP ${res.status}`;
  } catch (err) {
    message = `Unreachable: ${err.message}`;
  }
  if (seq !== drawerSeq || state.drawerId !== identity) return; // a newer request won
  $('drawer-body').replaceChildren(...(message ? [el('p', { class: 'empty', text: message })] : explainView(data)));
}

const featureLabels = {
  periodic: 'Periodic intervals',
  low_entropy: 'Low interval entropy',
  anti_bursty: 'More regular than chance',
  periodic_bursts: 'Bursts on a timer',
  no_pause: 'No pause',
  continuity: 'Around the clock',
  human_signature: 'Human signature (discount)',
  shared: 'Shared address (NAT)',
};

function explainView(d) {
  const x = d.explanation;
  const q = d.quarantine;
  const parts = [];
  const g = gauge();
  setGauge(g, x ? x.score : q ? q.score : 0);
  const wrap = el('div', { class: band(x ? x.score : 0, x ? x.reason : 'none', Boolean(q)) }, g);
  const facts = el('dl', { class: 'x-facts' });
  const fact = (k, v) => facts.append(el('dt', { text: k }), el('dd', { text: v }));
  if (x) {
    fact('Sign that fired', x.reason === 'none' ? 'none (below the watch band)' : x.reason.replace(/_/g, ' '));
    fact('Requests', fmtInt(x.requests));
    fact('Quarantine line', `score ≥ ${x.threshold}, ${x.confirm}× in a row (now ${x.consecutive}×)`);
    fact('Watch band', `score ≥ ${x.challenge_threshold}`);
    fact('First seen', fmtClock(Date.parse(x.first_seen)));
    fact('Last seen', fmtAgo(Date.parse(x.last_seen), serverNow()));
  } else {
    fact('Timing', 'not tracked (idle, forgotten on release, or never seen)');
  }
  if (q) {
    fact('Quarantined', `${fmtLeft(Date.parse(q.until) - serverNow())} left`);
    fact('Strikes', `${q.strikes}${q.manual ? ' · manual ban' : ''}`);
    fact('Refused', `${fmtInt(q.hits || 0)} requests during this quarantine`);
  }
  if (d.fingerprint) {
    fact('TLS fingerprint', `${d.fingerprint.key}${d.fingerprint.flagged ? ' · flagged: confirmed on its first evaluation over the line' : ''}`);
  }
  parts.push(el('div', { class: 'x-summary' }, wrap, facts));

  const actions = el('div', { class: 'x-actions' });
  if (q) {
    actions.append(
      el('button', { type: 'button', class: 'btn ok', text: 'Release', disabled: !canAct(), on: { click: () => releaseIdentity(d.identity) } }),
      el('button', { type: 'button', class: 'btn', text: 'Extend 10 min', disabled: !canAct(), on: { click: () => extend10(d.identity) } }),
    );
  } else {
    actions.append(el('button', {
      type: 'button', class: 'btn danger', text: 'Ban for 1 hour', disabled: !canAct(),
      on: { click: () => ban(d.identity, '1h', 'manual').catch(() => {}) },
    }));
  }
  if (!canAct()) actions.append(el('span', { class: 'empty', text: state.admin ? 'Unlock the controls to act.' : 'Admin API off.' }));
  parts.push(actions);

  if (x) {
    parts.push(el('section', { class: 'x-section' }, el('h3', { text: `Rhythm · last ${x.recent_ms ? x.recent_ms.length : 0} intervals (log scale)` }), rhythmChart(x.recent_ms || [])));
    const list = el('div', { class: 'features' });
    for (const f of x.features || []) {
      const contribution = f.probability * f.gate;
      const firing = f.name !== 'human_signature' && f.name !== 'shared' ? contribution >= 0.3 : f.probability >= 1;
      const bar = el('span');
      setVar(bar, '--p', Math.max(0, Math.min(1, f.name === 'human_signature' || f.name === 'shared' ? f.probability : contribution)).toFixed(3));
      list.append(el('div', { class: `feature${firing ? ' firing' : ''}` },
        el('div', { class: 'f-top' },
          el('span', { class: 'f-name', text: featureLabels[f.name] || f.name }),
          el('span', { class: 'f-num', text: `value ${fmtValue(f.value)}` }),
          el('span', { class: 'f-num', text: `p ${f.probability.toFixed(2)} · w ${f.gate.toFixed(2)}` })),
        el('div', { class: 'f-bar' }, bar),
        el('div', { class: 'f-rule', text: f.threshold })));
    }
    parts.push(el('section', { class: 'x-section' }, el('h3', { text: `Features · ${fmtInt(x.intervals)} intervals seen` }), list));
  }

  const decisions = el('ol', { class: 'decisions' });
  for (const e of d.decisions || []) {
    const detail = [e.reason, e.strikes ? `strike ${e.strikes}` : '', e.until && e.action !== 'expired' ? `until ${fmtClock(Date.parse(e.until))}` : '', `by ${e.by}`]
      .filter(Boolean).join(' · ');
    decisions.append(el('li', {},
      el('time', { datetime: e.time, text: fmtClock(Date.parse(e.time)) }),
      el('strong', { text: actionWords[e.action] || e.action }),
      el('span', { text: detail })));
  }
  parts.push(el('section', { class: 'x-section' }, el('h3', { text: 'Recent decisions' }),
    (d.decisions || []).length ? decisions : el('p', { class: 'empty', text: 'None recorded since this service started.' })));
  return parts;
}

function rhythmChart(intervals) {
  const w = 520, h = 90;
  const node = svg('svg', { class: 'x-rhythm', viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'recent inter-request intervals' });
  for (const [ms, label] of [[100, '100 ms'], [1000, '1 s'], [10000, '10 s']]) {
    const y = h - (Math.log10(ms) - 1) / 4 * (h - 8) - 2;
    node.append(svg('line', { class: 'guide', x1: 0, x2: w, y1: y.toFixed(1), y2: y.toFixed(1) }), svg('text', { x: 4, y: (y - 3).toFixed(1) }, label));
  }
  const bw = (w - 60) / 32;
  intervals.slice(-32).forEach((ms, i) => {
    const bh = Math.max(2, Math.min(1, (Math.log10(Math.max(ms, 10)) - 1) / 4) * (h - 8));
    const bar = svg('rect', { class: 'bar', x: (56 + i * bw).toFixed(1), y: (h - 2 - bh).toFixed(1), width: (bw - 2).toFixed(1), height: bh.toFixed(1), rx: 1.5 });
    bar.append(svg('title', {}, fmtInterval(ms)));
    node.append(bar);
  });
  return node;
}

// ---------------------------------------------------------------- motion

// Parallax: the backdrop drifts against the pointer, and a stat card tilts
// towards it. Custom properties are set through the CSSOM.
function setupMotion() {
  const root = document.documentElement;
  let frame = 0, px = 0, py = 0;
  const onMove = (e) => {
    px = e.clientX / window.innerWidth - 0.5;
    py = e.clientY / window.innerHeight - 0.5;
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVar(root, '--px', px.toFixed(3));
        setVar(root, '--py', py.toFixed(3));
      });
    }
  };
  const cards = document.querySelectorAll('.tilt');
  const tilt = (e) => {
    const r = e.currentTarget.getBoundingClientRect();
    setVar(e.currentTarget, '--tx', (((e.clientX - r.left) / r.width - 0.5) * 14).toFixed(2));
    setVar(e.currentTarget, '--ty', (((e.clientY - r.top) / r.height - 0.5) * -12).toFixed(2));
  };
  const untilt = (e) => {
    setVar(e.currentTarget, '--tx', 0);
    setVar(e.currentTarget, '--ty', 0);
  };
  const apply = () => {
    if (reducedMotion.matches) {
      window.removeEventListener('pointermove', onMove);
      cards.forEach((c) => { c.removeEventListener('pointermove', tilt); c.removeEventListener('pointerleave', untilt); });
      setVar(root, '--px', 0);
      setVar(root, '--py', 0);
    } else {
      window.addEventListener('pointermove', onMove, { passive: true });
      cards.forEach((c) => { c.addEventListener('pointermove', tilt); c.addEventListener('pointerleave', untilt); });
    }
  };
  reducedMotion.addEventListener('change', apply);
  apply();
}

// ---------------------------------------------------------------- start

setupMotion();
updateAdminUI();
connect();

// ---------------------------------------------------------------- fleets

// The fleet panel asks /api/v1/fleets every 5 s: fleets change at the
// service's sweep, not per request, so they are not on the stream.
const FLEET_MEMBERS_SHOWN = 8;

async function refreshFleets() {
  const res = await fetch('/api/v1/fleets').catch(() => null);
  if (!res || !res.ok) return;
  const body = await res.json().catch(() => null);
  if (!body) return;
  const box = $('fleet-rows');
  const fleets = body.fleets || [];
  box.replaceChildren(...fleets.map((f) => {
    const shown = (f.members || []).slice(0, FLEET_MEMBERS_SHOWN).join(', ');
    const more = f.size - Math.min(f.size, FLEET_MEMBERS_SHOWN);
    return el('div', { class: 'row fleet-row', role: 'listitem', data: { testid: 'fleet-row' } },
      el('span', { class: 'kind', text: f.kind }),
      el('span', { class: 'num', text: `${fmtInt(f.size)} ids` }),
      el('span', { class: 'sig', text: f.signature }),
      el('span', { class: 'members mono', text: more > 0 ? `${shown} … and ${fmtInt(more)} more` : shown, title: shown }));
  }));
  setText($('fleet-sub'), body.enabled
    ? `groups of ${body.min_members} or more identities sharing one schedule or script; ${fmtInt(body.tracked)} tracked`
    : 'fleet detection is off (--fleet-min-members 0)');
  $('fleet-empty').hidden = fleets.length > 0;
}

refreshFleets();
setInterval(refreshFleets, 5000);
