// The gpumarket explorer: hash routes over the relay's JSON reads, SVG charts, live updates from
// the relay's WebSocket stream. No framework, no external resource (docs/decisions/0027-explorer.md).
"use strict";

const page = document.getElementById("page");
const live = document.getElementById("live");
const feed = [];
let token = { symbol: "", decimals: 0 };

// --- reading the relay --------------------------------------------------------------------------

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const frame = await response.json();
  if (!response.ok || frame.type === "ErrorResponse") {
    const body = frame.body || {};
    throw new Error(`${path}: ${body.message || response.statusText} (${response.status})`);
  }
  if (frame.body && frame.body.token) token = frame.body.token;
  return frame.body;
}

// --- units: amounts in tokens with the symbol, prices per GPU-hour --------------------------------

function big(value) {
  return BigInt(typeof value === "number" ? Math.round(value) : String(value));
}

function tokens(baseUnits, places) {
  const scale = 10n ** BigInt(token.decimals);
  const v = big(baseUnits);
  const whole = v / scale;
  let frac = (v % scale).toString().padStart(token.decimals, "0");
  const keep = places === undefined ? Math.min(token.decimals, 6) : places;
  frac = frac.slice(0, keep).replace(/0+$/, "");
  if (frac.length < 2 && keep >= 2) frac = frac.padEnd(2, "0");
  const grouped = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac ? `${grouped}.${frac}` : grouped;
}

function amount(baseUnits) {
  return `${tokens(baseUnits)} ${token.symbol}`;
}

function perHour(pricePerGpuSecond) {
  return `${tokens(big(pricePerGpuSecond) * 3600n)} ${token.symbol}/GPU-hour`;
}

function hourly(pricePerGpuSecond) {
  return Number(big(pricePerGpuSecond) * 3600n) / 10 ** token.decimals;
}

// --- small helpers ------------------------------------------------------------------------------

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function when(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function span(seconds) {
  const s = Number(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function short(hex) {
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

const leaseLink = (id) => `<a class="mono" href="#/lease/${esc(id)}" title="${esc(id)}">${esc(short(id))}</a>`;
const accountLink = (a) => `<a class="mono" href="#/account/${esc(a)}" title="${esc(a)}">${esc(short(a))}</a>`;
const modelLink = (m) => `<a href="#/prices/${encodeURIComponent(m)}">${esc(m)}</a>`;

function table(headers, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  const head = headers.map((h) => `<th class="${h.endsWith(" ") ? "num" : ""}">${esc(h.trim())}</th>`);
  const body = rows.map((r) => `<tr>${r.map((c, i) => `<td class="${headers[i].endsWith(" ") ? "num" : ""}">${c}</td>`).join("")}</tr>`);
  return `<table><thead><tr>${head.join("")}</tr></thead><tbody>${body.join("")}</tbody></table>`;
}

function leaseRows(leases) {
  return leases.map((l) => [
    leaseLink(l.leaseId), modelLink(l.model), `${l.gpus} `, perHour(l.pricePerGpuSecond),
    esc(when(l.time)), esc(span(l.duration)),
    `<span class="badge ${l.state === "open" ? "open" : ""}">${esc(l.state)}</span>`,
    accountLink(l.provider), accountLink(l.lab),
  ]);
}
const LEASE_HEADERS = ["Lease", "Model", "GPUs ", "Price", "Opened", "Term", "State", "Provider", "Lab"];

// --- charts (inline SVG) ------------------------------------------------------------------------

const W = 420, H = 200, PAD = { l: 44, r: 26, t: 10, b: 34 };

// A round top for a y axis of four steps: whole steps for counts, 1-2-5 steps for prices.
function niceTop(ymax, whole) {
  if (whole) return 4 * Math.max(1, Math.ceil(ymax / 4));
  const raw = (ymax || 1) / 4, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= raw);
  return 4 * step;
}

function decimalsFor(top) {
  return Math.max(0, Math.ceil(-Math.log10(top / 4)));
}

function axes(xmin, xmax, ymax, xlabel, ylabel, xfmt, yfmt) {
  const parts = [`<line x1="${PAD.l}" y1="${H - PAD.b}" x2="${W - PAD.r}" y2="${H - PAD.b}" stroke="#98a2b3"/>`,
    `<line x1="${PAD.l}" y1="${PAD.t}" x2="${PAD.l}" y2="${H - PAD.b}" stroke="#98a2b3"/>`];
  for (let i = 0; i <= 4; i++) {
    const xv = xmin + ((xmax - xmin) * i) / 4;
    const x = PAD.l + ((W - PAD.l - PAD.r) * i) / 4;
    parts.push(`<text x="${x}" y="${H - PAD.b + 12}" text-anchor="middle">${esc(xfmt(xv))}</text>`);
    const yv = (ymax * i) / 4;
    const y = H - PAD.b - ((H - PAD.t - PAD.b) * i) / 4;
    parts.push(`<text x="${PAD.l - 4}" y="${y + 3}" text-anchor="end">${esc(yfmt(yv))}</text>`);
  }
  parts.push(`<text x="${(W + PAD.l) / 2}" y="${H - 4}" text-anchor="middle">${esc(xlabel)}</text>`);
  parts.push(`<text x="10" y="${(H - PAD.b) / 2}" transform="rotate(-90 10 ${(H - PAD.b) / 2})" text-anchor="middle">${esc(ylabel)}</text>`);
  return parts.join("");
}

function depthChart(depth) {
  const cumulative = (levels) => {
    let total = 0;
    return levels.map((l) => ({ x: hourly(l.pricePerGpuSecond), y: (total += Number(l.gpus)) }));
  };
  const asks = cumulative(depth.asks), bids = cumulative(depth.bids);
  const all = asks.concat(bids);
  if (!all.length) return `<p class="muted">No resting orders.</p>`;
  let xmin = Math.min(...all.map((p) => p.x)), xmax = Math.max(...all.map((p) => p.x));
  if (xmax === xmin) { xmin = xmin * 0.9; xmax = xmax * 1.1 || 1; }
  const pad = (xmax - xmin) * 0.05; xmin = Math.max(0, xmin - pad); xmax += pad;
  const ymax = niceTop(Math.max(...all.map((p) => p.y)) * 1.1, true);
  const sx = (x) => PAD.l + ((x - xmin) / (xmax - xmin)) * (W - PAD.l - PAD.r);
  const sy = (y) => H - PAD.b - (y / ymax) * (H - PAD.t - PAD.b);
  const steps = (points, edge) => {
    if (!points.length) return "";
    let d = `M${sx(points[0].x)},${sy(0)}`;
    let prev = 0;
    for (const p of points) d += ` L${sx(p.x)},${sy(prev)} L${sx(p.x)},${sy(p.y)}`, (prev = p.y);
    return d + ` L${sx(edge)},${sy(prev)}`;
  };
  const fmt = (v) => v.toFixed(v < 10 ? 2 : 0);
  return `<svg class="depth" role="img" aria-label="order-book depth for ${esc(depth.model)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">
    ${axes(xmin, xmax, ymax, `price, ${token.symbol}/GPU-hour`, "GPUs (cumulative)", fmt, String)}
    <path class="asks" d="${steps(asks, xmax)}" fill="none" stroke="var(--ask)" stroke-width="2"/>
    <path class="bids" d="${steps(bids, xmin)}" fill="none" stroke="var(--bid)" stroke-width="2"/>
  </svg>
  <div class="muted"><span style="color:var(--ask)">■</span> asks · <span style="color:var(--bid)">■</span> bids · ${depth.asks.length + depth.bids.length} price levels</div>`;
}

function priceChart(history) {
  const points = history.leases.map((l) => ({ x: Number(l.time), y: hourly(l.pricePerGpuSecond) }));
  if (!points.length) return `<p class="muted">No lease of ${esc(history.model)} opened yet.</p>`;
  let xmin = Math.min(...points.map((p) => p.x)), xmax = Math.max(...points.map((p) => p.x));
  if (xmax === xmin) { xmin -= 60; xmax += 60; }
  const ymax = niceTop(Math.max(...points.map((p) => p.y)) * 1.2, false);
  const places = decimalsFor(ymax);
  const sx = (x) => PAD.l + ((x - xmin) / (xmax - xmin)) * (W - PAD.l - PAD.r);
  const sy = (y) => H - PAD.b - (y / ymax) * (H - PAD.t - PAD.b);
  const line = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x)},${sy(p.y)}`).join(" ");
  const dots = points.map((p) => `<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="3" fill="var(--accent)"><title>${esc(p.y.toFixed(4))} ${esc(token.symbol)}/GPU-hour at ${esc(when(p.x))}</title></circle>`);
  const clock = (v) => when(v).slice(11, xmax - xmin < 600 ? 19 : 16);
  const axis = axes(xmin, xmax, ymax, "time (UTC)", `${token.symbol}/GPU-hour`, clock, (v) => v.toFixed(places));
  return `<svg class="prices" role="img" aria-label="lease prices of ${esc(history.model)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">
    ${axis}<path d="${line}" fill="none" stroke="var(--accent)" stroke-width="1.5"/>${dots.join("")}</svg>`;
}

// --- pages --------------------------------------------------------------------------------------

async function overview() {
  const [models, leases] = await Promise.all([api("/v1/models"), api("/v1/leases?recent=10")]);
  const depths = await Promise.all(models.models.map((m) => api(`/v1/depth/${encodeURIComponent(m.model)}`)));
  const rows = models.models.map((m) => [
    modelLink(m.model), `${m.offers} `, `${m.gpusOffered} `, m.offers ? perHour(m.bestAsk) : "—",
    `${m.bids} `, `${m.gpusWanted} `, m.bids ? perHour(m.bestBid) : "—",
  ]);
  const cards = depths.map((d) => `<div class="card"><h3>${modelLink(d.model)} depth</h3>${depthChart(d)}</div>`);
  return `<h1>Market</h1>
    ${table(["Model", "Offers ", "GPUs offered ", "Best ask", "Bids ", "GPUs wanted ", "Best bid"], rows, "No resting orders on this relay.")}
    <h2>Order-book depth</h2><div class="cards">${cards.join("") || '<p class="muted">No model on offer.</p>'}</div>
    <h2>Recent leases <span class="muted">(${leases.open} open)</span></h2>
    ${table(LEASE_HEADERS, leaseRows(leases.leases), "No lease opened yet.")}
    <h2>Live</h2>${feedHtml()}`;
}

async function leasesPage() {
  const leases = await api("/v1/leases?recent=200");
  const open = leases.leases.filter((l) => l.state === "open");
  return `<h1>Leases</h1>
    <h2>Open (${leases.open})</h2>${table(LEASE_HEADERS, leaseRows(open), "No open lease.")}
    <h2>Recent</h2>${table(LEASE_HEADERS, leaseRows(leases.leases), "No lease opened yet.")}`;
}

async function pricesPage(model) {
  const history = await api(`/v1/prices/${encodeURIComponent(model)}`);
  const rows = history.leases.slice().reverse().map((l) => [esc(when(l.time)), leaseLink(l.leaseId), `${l.gpus} `, perHour(l.pricePerGpuSecond)]);
  return `<h1>${esc(model)}: prices</h1>
    <p class="muted">What each lease pays per GPU-hour (for a lease opened by a batch auction, its clearing price).</p>
    <div class="card">${priceChart(history)}</div>
    <h2>Leases</h2>${table(["Opened", "Lease", "GPUs ", "Price"], rows, "None yet.")}`;
}

function reputationCells(r) {
  if (!r) return ["—", "—", "—", "—"];
  return [`${r.leasesOpened} `, `${r.leasesCompleted} `, `${r.slashes} `, amount(r.tokensEarned)];
}

async function providersPage() {
  const list = await api("/v1/providers");
  const rows = list.providers.map((p) => [
    accountLink(p.provider), p.registered ? "yes" : "no", amount(p.stake), amount(p.locked),
    `${p.offers} `, `${p.gpusOffered} `, ...reputationCells(p.reputation),
  ]);
  return `<h1>Providers</h1>${table(["Provider", "Registered", "Stake", "Locked", "Offers ", "GPUs offered ", "Leases ", "Completed ", "Slashes ", "Earned"], rows, "No provider known yet.")}`;
}

async function leasePage(id) {
  const lease = await api(`/v1/leases/${encodeURIComponent(id)}`);
  const t = lease.terms;
  const events = lease.events.map((e) => [esc(e.name), `${e.block} `,
    esc(Object.entries(e.values).map(([k, v]) =>
      `${k}=${(e.amounts || []).includes(k) ? amount(v) : (e.times || []).includes(k) ? when(v) : v}`).join(" "))]);
  return `<h1>Lease <span class="mono">${esc(lease.leaseId)}</span></h1>
    <dl class="kv">
      <dt>State</dt><dd><span class="badge">${esc(lease.status)}</span>${lease.disputed ? " disputed" : ""}${lease.slashed ? " slashed" : ""}</dd>
      <dt>Provider</dt><dd>${accountLink(t.provider)}</dd>
      <dt>Lab</dt><dd>${accountLink(t.lab)}</dd>
      <dt>GPUs</dt><dd>${t.gpus}</dd>
      <dt>Price</dt><dd class="price">${perHour(t.pricePerGpuSecond)}</dd>
      <dt>Start</dt><dd>${esc(when(t.start))}</dd>
      <dt>Term</dt><dd>${esc(span(t.duration))}${lease.end ? `, ended ${esc(when(lease.end))}` : ""}</dd>
      <dt>Billing</dt><dd>${t.billing === 0 ? "rental" : "metered"}</dd>
      <dt>Minimum charge</dt><dd>${amount(t.minCharge)}</dd>
      <dt>Paid</dt><dd>${amount(lease.paid)}</dd>
      <dt>Opened in block</dt><dd>${lease.openedBlock}</dd>
      <dt>Orders</dt><dd class="mono">offer ${esc(lease.offerHash)}<br>bid ${esc(lease.bidHash)}</dd>
    </dl>
    <h2>Events</h2>${table(["Event", "Block ", "Values"], events, "No events.")}`;
}

async function accountPage(address) {
  const a = await api(`/v1/accounts/${encodeURIComponent(address)}`);
  const p = a.provider;
  const offers = a.offers.map((o) => [esc(o.model), `${o.remaining}/${o.gpus} `, perHour(o.pricePerGpuSecond), esc(when(o.expiry))]);
  const bids = a.bids.map((b) => [esc(b.model), `${b.remaining}/${b.gpus} `, perHour(b.maxPricePerGpuSecond), esc(b.fate),
    b.leaseIds.map(leaseLink).join(" ") || (b.error ? `<span class="error">${esc(b.error.slice(0, 80))}</span>` : "")]);
  return `<h1>Account <span class="mono">${esc(a.address)}</span></h1>
    <dl class="kv">
      <dt>Balance</dt><dd class="balance">${amount(a.balance)}</dd>
      ${p ? `<dt>Stake</dt><dd>${amount(p.stake)} (${amount(p.locked)} locked)</dd>
             <dt>Registered provider</dt><dd>${p.registered ? "yes" : "no"} ${esc(p.endpoint)}</dd>` : "<dt>Stake</dt><dd>none</dd>"}
    </dl>
    <h2>Offers</h2>${table(["Model", "GPUs left ", "Price", "Expires"], offers, "No resting offer on this relay.")}
    <h2>Bids</h2>${table(["Model", "GPUs left ", "Max price", "Fate", "Leases"], bids, "No bid this relay knows.")}
    <h2>Leases</h2>${table(LEASE_HEADERS, leaseRows(a.leases), "No lease.")}`;
}

const ROUTES = [
  [/^#?\/?$/, overview],
  [/^#\/leases$/, leasesPage],
  [/^#\/providers$/, providersPage],
  [/^#\/prices\/(.+)$/, (m) => pricesPage(decodeURIComponent(m))],
  [/^#\/lease\/(0x[0-9a-fA-F]{64})$/, leasePage],
  [/^#\/account\/(0x[0-9a-fA-F]{40})$/, accountPage],
];

let rendering = Promise.resolve();
function render() {
  rendering = rendering.then(async () => {
    const hash = location.hash || "#/";
    for (const [pattern, show] of ROUTES) {
      const match = hash.match(pattern);
      if (!match) continue;
      try {
        page.innerHTML = await show(...match.slice(1));
      } catch (error) {
        page.innerHTML = `<p class="error">${esc(error.message)}</p>`;
      }
      return;
    }
    page.innerHTML = `<p class="error">No page ${esc(hash)}.</p>`;
  });
}

document.getElementById("go").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = document.getElementById("go-input").value.trim();
  location.hash = value.length === 66 ? `#/lease/${value}` : `#/account/${value}`;
});
window.addEventListener("hashchange", render);

// --- live updates: the relay's stream is msgpack frames {v, type, body} (unpack: msgpack.js) ----

function describe(frame) {
  const b = frame.body || {};
  const id = (key, alt) => (b[key] || b[alt] || "");
  switch (frame.type) {
    case "BookChange": return `book: ${b.model || b.m} ${b.side === 0 || b.side === "offer" ? "ask" : "bid"} ${short(id("orderHash", "order_hash"))} has ${b.remaining} GPUs left`;
    case "LeaseOpened": return `lease opened: ${short(id("leaseId", "lease_id"))} in block ${b.blockNumber ?? b.block_number}`;
    case "Fill": return `fill ${b.status}: ${b.gpus} GPUs`;
    default: return frame.type;
  }
}

function feedHtml() {
  const items = feed.map((f) => `<div><span class="muted">${esc(f.at)}</span> ${esc(f.text)}</div>`);
  return `<div class="feed" id="feed">${items.join("") || '<span class="muted">Waiting for book changes and leases…</span>'}</div>`;
}

let refresh = null;
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  ws.onclose = () => {
    live.textContent = "offline"; live.classList.add("off");
    setTimeout(connect, 3000);
  };
  ws.onmessage = (event) => {
    let frame;
    try { frame = unpack(event.data); } catch (error) { return; }
    if (!frame || !frame.type || frame.type === "BookSnapshot") return;
    feed.unshift({ at: new Date().toISOString().slice(11, 19), text: describe(frame) });
    feed.length = Math.min(feed.length, 50);
    const box = document.getElementById("feed");
    if (box) box.outerHTML = feedHtml();
    clearTimeout(refresh); // redraw the page once the burst settles
    refresh = setTimeout(render, 800);
  };
}

render();
connect();
