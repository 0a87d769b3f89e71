// Number and time formatting for the command center.

const intFmt = new Intl.NumberFormat('en-US');

export function fmtInt(n) {
  return intFmt.format(Math.round(n || 0));
}

// fmtCompact writes large totals short enough for a card: 12,345 or 1.23M.
export function fmtCompact(n) {
  n = n || 0;
  if (n < 100000) return intFmt.format(n);
  if (n < 1e6) return (n / 1e3).toFixed(1) + 'k';
  if (n < 1e9) return (n / 1e6).toFixed(2) + 'M';
  return (n / 1e9).toFixed(2) + 'G';
}

export function fmtRate(n) {
  n = n || 0;
  if (n === 0) return '0';
  if (n < 10) return n.toFixed(1);
  return intFmt.format(Math.round(n));
}

// fmtLatency writes milliseconds as µs below 1 ms.
export function fmtLatency(ms) {
  if (!ms) return '–';
  if (ms < 1) return Math.round(ms * 1000) + ' µs';
  if (ms < 10) return ms.toFixed(2) + ' ms';
  return ms.toFixed(0) + ' ms';
}

// fmtLeft writes a countdown: 42s, 4:05, 1:02:03, 3d 4h.
export function fmtLeft(ms) {
  if (ms <= 0) return 'healing…';
  const s = Math.ceil(ms / 1000);
  if (s < 60) return s + 's';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h >= 48) return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  const pad = (x) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

// fmtAgo writes how long ago a time was, relative to now (both ms).
export function fmtAgo(t, now) {
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 2) return 'now';
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 86400) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

// fmtClock writes a time of day, HH:MM:SS, in the viewer's zone.
export function fmtClock(t) {
  const d = new Date(t);
  const pad = (x) => String(x).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// fmtInterval writes milliseconds as ms or s.
export function fmtInterval(ms) {
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  return (ms / 60000).toFixed(1) + ' min';
}

// fmtValue writes a feature statistic with three significant digits.
export function fmtValue(x) {
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1000) return intFmt.format(Math.round(x));
  return Number(x.toPrecision(3)).toString();
}
