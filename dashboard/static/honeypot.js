// "What the quarantined clients went for": the decoy's records, as
// /api/v1/honeypot relays them (flowlock-authz --honeypot-url). The panel
// stays hidden while the endpoint answers 404 (no decoy configured). Every
// value goes in as text (dom.js).

import { $, el, setText } from './dom.js';
import { fmtInt, fmtAgo } from './format.js';

const panel = $('honeypot');
const every = 5000;

function pathItem(p) {
  return el('li', {},
    el('span', { class: 'mono hp-path', text: p.path, title: p.path }),
    el('span', { class: 'num', text: `${fmtInt(p.count)}×` }),
    p.identities ? el('span', { class: 'sub', text: `${fmtInt(p.identities)} client${p.identities === 1 ? '' : 's'}` }) : null);
}

function identityItem(id, now) {
  const paths = (id.top_paths || []).slice(0, 4).map((p) => `${p.path} ×${p.count}`).join(' · ');
  return el('li', { data: { identity: id.identity } },
    el('span', { class: 'mono hp-path', text: id.identity }),
    el('span', { class: 'num', text: `${fmtInt(id.requests)} req` }),
    el('span', { class: 'sub', text: `last ${fmtAgo(Date.parse(id.last), now)}` }),
    el('span', { class: 'mono hp-paths', text: paths, title: paths }));
}

function render(v) {
  const now = Date.parse(v.fetched_at) || Date.now();
  $('hp-paths').replaceChildren(...v.top_paths.map(pathItem));
  $('hp-ids').replaceChildren(...v.identities.map((id) => identityItem(id, now)));
  $('hp-empty').hidden = v.records > 0;
  setText($('hp-sub'), `${fmtInt(v.records)} of the last ${fmtInt(v.capacity)} requests kept · ${fmtInt(v.total)} in all`);
}

async function refresh() {
  const res = await fetch('/api/v1/honeypot').catch(() => null);
  if (res && res.status === 404) {
    panel.hidden = true;
    return; // no decoy configured: stop asking
  }
  if (res && res.ok) {
    panel.hidden = false;
    render(await res.json());
  } else if (!panel.hidden) {
    setText($('hp-sub'), 'the decoy cannot be read just now');
  }
  setTimeout(refresh, every);
}

// Only a service with --honeypot-url has a decoy to read (the page says so).
if (panel.dataset.configured === 'true') refresh();
