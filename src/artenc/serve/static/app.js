// artenc serve: the page's only script. Talks to the JSON API under /api/.
// Text from the store (paths, labels) is always set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1500;

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const detail = body && body.detail;
    const message = typeof detail === "string" ? detail
      : Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function labelText(labels) {
  return Object.entries(labels || {})
    .filter(([, v]) => v !== null && v !== "")
    .map(([k, v]) => `${k}: ${v}`).join(" · ");
}

// One work as a card; `badge` is a short text (similarity, "keep", size); `onOpen` on click.
function card(item, badge, onOpen, extraClass) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  if (extraClass) node.classList.add(extraClass);
  node.dataset.id = item.id;
  const img = node.querySelector("img");
  img.src = item.thumbnail_url;
  img.alt = item.path;
  node.querySelector(".badge").textContent = badge;
  const path = node.querySelector(".path");
  path.textContent = item.path;
  path.title = `${item.path} (${item.width}×${item.height})`;
  node.querySelector(".labels").textContent = labelText(item.labels);
  const button = node.querySelector(".thumb");
  button.title = onOpen ? "show similar works" : item.path;
  if (onOpen) button.addEventListener("click", () => onOpen(item));
  else button.disabled = true;
  return node;
}

const pct = (s) => `${(100 * s).toFixed(1)}%`;

// ----- similar works -------------------------------------------------------------------
function showResults(doc, label) {
  const grid = $("results");
  grid.replaceChildren(...doc.neighbors.map(
    (n) => card(n, pct(n.similarity), similarToItem, "result-card")));
  const ms = `${Math.round(doc.seconds * 1000)} ms on the server`;
  $("results-hint").textContent = doc.radius === undefined
    ? `${doc.neighbors.length} nearest works to ${label} (${ms})`
    : `${doc.within} works with cosine ≥ ${doc.radius} to ${label}` +
      (doc.within > doc.neighbors.length ? `; the ${doc.neighbors.length} most similar shown (raise Neighbours)` : "") +
      ` (${ms})`;
  const entries = Object.entries(doc.predicted || {});
  $("predicted").hidden = entries.length === 0;
  $("predicted-list").replaceChildren(...entries.flatMap(([column, p]) => {
    const dt = document.createElement("dt");
    dt.textContent = column;
    const dd = document.createElement("dd");
    const name = document.createElement("span");
    name.textContent = String(p.label);
    const bar = document.createElement("meter");
    bar.min = 0; bar.max = 1; bar.value = p.confidence;
    const share = document.createElement("small");
    share.textContent = pct(p.confidence);
    dd.append(name, bar, share);
    return [dt, dd];
  }));
}

function showQuery(src) {
  $("preview").src = src;
  $("preview").hidden = false;
  $("drop-text").hidden = true;
}

// The query string of a search: k, and the radius when one is set (a cosine similarity in [-1, 1]).
function searchParams() {
  const params = new URLSearchParams({ k: $("k").value });
  const radius = $("radius").value.trim();
  if (radius !== "") params.set("radius", radius);
  return params.toString();
}

async function searchFile(file) {
  const status = $("search-status");
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    setStatus(status, `${file.name} is not an image`, true);
    return;
  }
  showQuery(URL.createObjectURL(file));
  setStatus(status, "searching…");
  const form = new FormData();
  form.append("file", file);
  try {
    const doc = await api(`/api/search?${searchParams()}`, { method: "POST", body: form });
    showResults(doc, file.name);
    setStatus(status, "");
  } catch (err) {
    $("results").replaceChildren();
    $("predicted").hidden = true;
    setStatus(status, err.message, true);
  }
}

async function similarToItem(item) {
  activate("search");
  showQuery(item.thumbnail_url);
  setStatus($("search-status"), "searching…");
  try {
    const doc = await api(`/api/items/${item.id}/similar?${searchParams()}`);
    showResults(doc, item.path);
    setStatus($("search-status"), `query: ${item.path}`);
  } catch (err) {
    setStatus($("search-status"), err.message, true);
  }
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => searchFile(e.target.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    searchFile(e.dataTransfer.files[0]);
  });
  for (const id of ["k", "radius"]) {
    $(id).addEventListener("change", () => {
      const file = $("file").files[0];
      if (file) searchFile(file);
    });
  }
}

// ----- clusters and duplicates (computed by the server on first visit) -----------------
async function poll(url, statusEl, render) {
  try {
    const doc = await api(url);
    if (doc.state === "computing") {
      setStatus(statusEl, doc.message);
      setTimeout(() => poll(url, statusEl, render), POLL_MS);
      return;
    }
    setStatus(statusEl, doc.state === "failed" ? doc.message : "", doc.state === "failed");
    if (doc.state === "ready") render(doc);
  } catch (err) {
    setStatus(statusEl, err.message, true);
  }
}

function renderClusters(doc) {
  const how = doc.rule === "given" ? "k set with --clusters" : doc.rule;
  setStatus($("clusters-status"), `${doc.k} clusters (k-medoids; ${how}). Click a medoid to see its members.`);
  $("clusters").replaceChildren(...doc.clusters.map((c) =>
    card(c.medoid, `${c.size} works`, () => openCluster(c.id), "cluster-card")));
}

async function openCluster(id) {
  try {
    const c = await api(`/api/clusters/${id}?limit=120`);
    $("cluster-title").textContent = `Cluster ${id}: ${c.size} works, medoid first`;
    $("cluster-members").replaceChildren(...c.members.map((m, i) =>
      card(m, i === 0 ? "medoid" : "", similarToItem)));
    $("clusters").hidden = true;
    $("cluster-detail").hidden = false;
  } catch (err) {
    setStatus($("clusters-status"), err.message, true);
  }
}

function renderDuplicates(doc) {
  setStatus($("duplicates-status"), doc.total === 0
    ? `No near-duplicates at cosine ≥ ${doc.threshold}.`
    : `${doc.total} groups at cosine ≥ ${doc.threshold} (${doc.verified ? "confirmed by SIFT/RANSAC" : "embedding similarity"}; keeper = highest resolution).`);
  $("duplicates").replaceChildren(...doc.groups.map((g) => {
    const row = document.createElement("div");
    row.className = "group grid";
    row.append(card(g.keep, "keep", similarToItem, "keeper"),
      ...g.duplicates.map((d) => card(d, pct(d.similarity), similarToItem)));
    return row;
  }));
}

// ----- audit: label issues worst first (given and suggested label), then outliers ------
function labelPair(given, suggested) {
  const p = document.createElement("p");
  p.className = "label-pair";
  const g = document.createElement("span");
  g.className = "given";
  g.textContent = given;
  const s = document.createElement("span");
  s.className = "suggested";
  s.textContent = suggested;
  p.append("given ", g, " → suggested ", s);
  return p;
}

function renderAudit(doc) {
  const fields = Object.entries(doc.fields);
  const counts = fields.map(([name, f]) => `${name}: ${f.issues} label issues among ${f.checked}`);
  setStatus($("audit-status"), [...counts, `${doc.duplicate_pairs} duplicate pairs`, ...doc.notes].join(" · "));
  $("audit-issues").replaceChildren(...fields.map(([name, f]) => {
    const block = document.createElement("div");
    const title = document.createElement("h2");
    title.textContent = `Label issues: ${name}, worst first`;
    block.append(title, ...f.worst.map((issue) => {
      const row = document.createElement("div");
      row.className = "group grid audit-issue";
      const flag = issue.is_issue ? " · flagged" : "";
      const work = card(issue.item, `#${issue.rank} · quality ${issue.label_quality.toFixed(3)}${flag}`,
        similarToItem, "keeper");
      work.querySelector("figcaption").prepend(labelPair(issue.given, issue.suggested));
      row.append(work, ...issue.neighbors.map((n) => card(n, pct(n.similarity), similarToItem)));
      return row;
    }));
    return block;
  }));
  $("audit-outliers-title").hidden = doc.outliers.length === 0;
  $("audit-outliers").replaceChildren(...doc.outliers.map((o) => card(o.item,
    `#${o.rank} · d ${o.score.toFixed(3)} · z ${o.z.toFixed(1)}${o.duplicates.length ? " · has duplicates" : ""}`,
    similarToItem)));
}

// ----- tabs ----------------------------------------------------------------------------
const loaded = new Set();
function activate(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[role=tabpanel]")) {
    panel.hidden = panel.id !== `tab-${name}`;
  }
  if (loaded.has(name)) return;
  loaded.add(name);
  if (name === "clusters") poll("/api/clusters?members=0", $("clusters-status"), renderClusters);
  if (name === "duplicates") poll("/api/duplicates?limit=100", $("duplicates-status"), renderDuplicates);
  if (name === "audit") poll("/api/audit?limit=50", $("audit-status"), renderAudit);
}

async function init() {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => activate(tab.dataset.tab));
  }
  $("cluster-back").addEventListener("click", () => {
    $("cluster-detail").hidden = true;
    $("clusters").hidden = false;
  });
  setUpDrop();
  loaded.add("search");
  try {
    const h = await api("/api/health");
    const labels = h.label_columns.length ? ` · labels: ${h.label_columns.join(", ")}` : "";
    $("store-summary").textContent = `${h.items.toLocaleString()} works · ${h.model} · ${h.index} index${labels}`;
  } catch (err) {
    setStatus($("store-summary"), err.message, true);
  }
}

document.addEventListener("DOMContentLoaded", init);
