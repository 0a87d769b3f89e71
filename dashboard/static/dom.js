// DOM helpers. Every value from the wire goes in as text (textContent,
// createTextNode) or as an attribute value, never as markup: the page's
// Content-Security-Policy enforces Trusted Types, under which the browser
// refuses every HTML sink altogether.

const SVG_NS = 'http://www.w3.org/2000/svg';

// el creates an HTML element. attrs: class, text, data (an object for
// dataset), on (an object of event listeners), and any other attribute,
// set with setAttribute. Children are nodes or strings (as text).
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// svg creates an SVG element, with attrs as for el.
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.setAttribute('class', v);
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'data') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'style' || k.startsWith('on')) throw new Error(`el: refusing attribute ${k}`);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

// setText changes node's text only when it differs, so unchanged values
// cause no layout work.
export function setText(node, value) {
  const s = String(value);
  if (node.textContent !== s) node.textContent = s;
}

// setAttr changes an attribute only when it differs.
export function setAttr(node, name, value) {
  const s = String(value);
  if (node.getAttribute(name) !== s) node.setAttribute(name, s);
}

// setVar sets a CSS custom property through the CSSOM, which the
// Content-Security-Policy allows (style attributes in markup it does not).
export function setVar(node, name, value) {
  node.style.setProperty(name, String(value));
}

// toggle sets or clears a class.
export function toggle(node, cls, on) {
  node.classList.toggle(cls, Boolean(on));
}

// $ finds one element by id.
export function $(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`missing #${id}`);
  return node;
}
