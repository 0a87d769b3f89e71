// Small SVG charts: the score gauge, the rhythm bars and the area
// sparkline. Each is built once and then updated in place.

import { svg, setAttr, setText } from './dom.js';

const GAUGE_R = 18;
const GAUGE_C = 2 * Math.PI * GAUGE_R;

// band names the colour band of a score: calm below the watch band, watch
// in it, hot when quarantined (or at the line).
export function band(score, reason, quarantined) {
  if (quarantined) return 'hot';
  if (reason && reason !== 'none') return score >= 80 ? 'hot' : 'watch';
  return 'calm';
}

// gauge returns a ring gauge; update it with setGauge.
export function gauge() {
  const fill = svg('circle', { class: 'fill', cx: 23, cy: 23, r: GAUGE_R, 'stroke-dasharray': GAUGE_C.toFixed(2), 'stroke-dashoffset': GAUGE_C.toFixed(2) });
  const label = svg('text', { x: 23, y: 24 }, '0');
  const node = svg('svg', { class: 'gauge', viewBox: '0 0 46 46', role: 'img', 'aria-label': 'risk score' },
    svg('circle', { class: 'track', cx: 23, cy: 23, r: GAUGE_R }), fill, label);
  node.gaugeParts = { fill, label };
  return node;
}

export function setGauge(node, score) {
  const s = Math.max(0, Math.min(100, Math.round(score || 0)));
  const { fill, label } = node.gaugeParts;
  setAttr(fill, 'stroke-dashoffset', (GAUGE_C * (1 - s / 100)).toFixed(2));
  setText(label, s);
  setAttr(node, 'aria-label', `risk score ${s} of 100`);
}

// Rhythm bars: one bar per inter-request interval, on a log scale from
// 10 ms to 100 s, so a bot's flat line and a human's jagged one show at a
// glance.
const BARS = 32;

export function rhythm(width = 128, height = 30, cls = 'rhythm') {
  const node = svg('svg', { class: cls, viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  const bw = width / BARS;
  const bars = [];
  for (let i = 0; i < BARS; i++) {
    const r = svg('rect', { class: 'bar', x: (i * bw + 0.5).toFixed(2), width: Math.max(1, bw - 1).toFixed(2), y: height, height: 0, rx: 0.8 });
    bars.push(r);
    node.append(r);
  }
  node.rhythmParts = { bars, height };
  return node;
}

export function logHeight(ms, height) {
  const lo = 1, hi = 5; // log10 of 10 ms and 100 s
  const x = (Math.log10(Math.max(ms, 10)) - lo) / (hi - lo);
  return Math.max(1.5, Math.min(1, x) * height);
}

export function setRhythm(node, intervals) {
  const { bars, height } = node.rhythmParts;
  const xs = (intervals || []).slice(-BARS);
  const offset = BARS - xs.length; // right-align: the newest interval is at the right
  for (let i = 0; i < BARS; i++) {
    const v = i >= offset ? xs[i - offset] : null;
    const h = v === null ? 0 : logHeight(v, height);
    setAttr(bars[i], 'height', h.toFixed(2));
    setAttr(bars[i], 'y', (height - h).toFixed(2));
  }
}

// setArea draws values (oldest first) as a filled area in a 120×32 box.
export function setArea(node, values) {
  const w = 120, h = 32;
  const max = Math.max(1, ...values);
  const n = values.length;
  if (n < 2) return;
  const pts = values.map((v, i) => [(i / (n - 1)) * w, h - 2 - (v / max) * (h - 6)]);
  const line = 'M' + pts.map(([x, y]) => `${x.toFixed(1)} ${y.toFixed(1)}`).join('L');
  setAttr(node.querySelector('.line'), 'd', line);
  setAttr(node.querySelector('.area'), 'd', `${line}L${w} ${h}L0 ${h}Z`);
}
