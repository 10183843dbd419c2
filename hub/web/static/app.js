/* sanwang-hub dashboard: camera tiles, live incident feed (WS /ws/events), KPI header.
   Plain JS, no build step, no network access beyond this hub. */
"use strict";

const I18N = {
  zh: {
    title: "三网合一 · 智慧社区安防指挥", subtitle: "视频 / 物联 / 网格 联动",
    kpi_cameras: "在线摄像机", kpi_open: "待办事件", kpi_emergency: "应急事件", kpi_devices: "在线设备",
    conn_wait: "连接中", conn_up: "实时连接", conn_down: "连接断开，重试中",
    cameras: "视频监控", incidents: "实时事件", all: "全部",
    cls_emergency: "应急", cls_professional: "专业", cls_general: "一般",
    no_cameras: "未配置摄像机", no_incidents: "暂无事件", no_signal: "无信号",
    online: "在线", offline: "离线",
    st_received: "接收登记", st_classified: "梳理分类", st_dispatched: "分流转办", st_accepted: "部门承办",
    st_resolved: "结果反馈", st_closed: "办结归档", st_supervised: "跟踪督办", st_false_alarm: "误报",
    act_accept: "接收", act_arrive: "到场", act_resolve: "办结", act_close: "归档", act_reopen: "重开",
    act_false_alarm: "误报", camera_count: (n) => `共 ${n} 路`, action_failed: "操作失败",
  },
  en: {
    title: "Smart Community Security Command", subtitle: "video / IoT / grid",
    kpi_cameras: "Cameras online", kpi_open: "Open incidents", kpi_emergency: "Emergencies",
    kpi_devices: "Devices online",
    conn_wait: "connecting", conn_up: "live", conn_down: "disconnected, retrying",
    cameras: "Cameras", incidents: "Live incidents", all: "All",
    cls_emergency: "Emergency", cls_professional: "Professional", cls_general: "General",
    no_cameras: "No cameras configured", no_incidents: "No incidents", no_signal: "NO SIGNAL",
    online: "online", offline: "offline",
    st_received: "received", st_classified: "classified", st_dispatched: "dispatched", st_accepted: "accepted",
    st_resolved: "resolved", st_closed: "closed", st_supervised: "supervised", st_false_alarm: "false alarm",
    act_accept: "Accept", act_arrive: "Arrive", act_resolve: "Resolve", act_close: "Close", act_reopen: "Reopen",
    act_false_alarm: "False alarm", camera_count: (n) => `${n} cameras`, action_failed: "Action failed",
  },
};
const CLOSED = new Set(["closed", "false_alarm"]);
const ACTIONS_BY_STATE = {
  received: ["accept", "false_alarm"], classified: ["accept", "false_alarm"],
  dispatched: ["accept", "false_alarm"], supervised: ["accept", "arrive", "resolve"],
  accepted: ["arrive", "resolve"], resolved: ["close", "reopen"], closed: ["reopen"], false_alarm: ["reopen"],
};
const MJPEG_MAX_TILES = 4;   // browsers allow ~6 connections per host; more tiles poll snapshots
const SNAPSHOT_MS = 1000;
const FEED_MAX = 200;

const state = {
  lang: localStorage.getItem("hub.lang") || "zh",
  cameras: new Map(),     // id -> camera dict
  tiles: new Map(),       // id -> tile element
  devices: new Map(),
  incidents: new Map(),   // id -> incident dict
  filter: "",
  kpi: {},
  ws: null,
  wsUp: false,
};

const $ = (sel, root = document) => root.querySelector(sel);
const t = (key, ...args) => {
  const v = (I18N[state.lang] || I18N.zh)[key] ?? I18N.zh[key] ?? key;
  return typeof v === "function" ? v(...args) : v;
};

/* ---------- i18n ---------- */
function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("#lang").textContent = state.lang === "zh" ? "EN" : "中文";
  renderConn();
  state.cameras.forEach((cam) => updateTile(cam));
  $("#camera-count").textContent = state.cameras.size ? t("camera_count", state.cameras.size) : "";
  renderFeed();
  renderKpi();
}

/* ---------- time ---------- */
function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
  const n = Number(value);
  if (!Number.isNaN(n)) return toDate(n);
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}
const pad = (n) => String(n).padStart(2, "0");
function fmtTime(value) {
  const d = toDate(value);
  if (!d) return "";
  const today = new Date();
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === today.toDateString() ? hms : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}
function tickClock() {
  const d = new Date();
  $("#clock").textContent = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/* ---------- cameras ---------- */
function cameraStatus(cam) {
  if (cam.status) return cam.status;
  if (cam.online !== undefined) return cam.online ? "online" : "offline";
  return "offline";
}

function useMjpeg() { return state.cameras.size <= MJPEG_MAX_TILES; }

function ensureTile(cam) {
  let tile = state.tiles.get(cam.id);
  if (tile) return tile;
  tile = $("#tile-template").content.firstElementChild.cloneNode(true);
  tile.dataset.cameraId = cam.id;
  const img = $(".tile-img", tile);
  img.alt = cam.name || cam.id;
  img.addEventListener("load", () => tile.classList.remove("nosignal"));
  img.addEventListener("error", () => {
    tile.classList.add("nosignal");
    if (tile.dataset.mode === "mjpeg") setTimeout(() => startMjpeg(tile), 3000);
  });
  $("#tiles").appendChild(tile);
  state.tiles.set(cam.id, tile);
  tile.classList.add("nosignal");
  return tile;
}

function startMjpeg(tile) {
  if (!tile.isConnected) return;
  tile.dataset.mode = "mjpeg";
  $(".tile-img", tile).src = `/api/cameras/${encodeURIComponent(tile.dataset.cameraId)}/live.mjpeg?t=${Date.now()}`;
}

function pollSnapshot(tile) {
  tile.dataset.mode = "snapshot";
  const url = `/api/cameras/${encodeURIComponent(tile.dataset.cameraId)}/snapshot.jpg?t=${Date.now()}`;
  const loader = new Image();
  loader.onload = () => {
    $(".tile-img", tile).src = loader.src;
    setTimeout(() => pollSnapshot(tile), SNAPSHOT_MS);
  };
  loader.onerror = () => { tile.classList.add("nosignal"); setTimeout(() => pollSnapshot(tile), SNAPSHOT_MS * 3); };
  loader.src = url;
}

function updateTile(cam) {
  const tile = ensureTile(cam);
  const status = cameraStatus(cam);
  tile.classList.toggle("offline", status !== "online");
  tile.dataset.status = status;
  const badge = $(".badge", tile);
  badge.className = `badge ${status}`;
  badge.textContent = t(status) || status;
  $(".cam-name", tile).textContent = cam.name || cam.id;
  $(".cam-grid", tile).textContent = cam.grid || "";
  const s = cam.stats || {};
  const parts = [];
  if (s.fps !== undefined) parts.push(`${Number(s.fps).toFixed(1)} fps`);
  if (s.decoded !== undefined) parts.push(`dec ${s.decoded}`);
  if (s.dropped !== undefined) parts.push(`drop ${s.dropped}`);
  if (s.reconnects) parts.push(`reconn ${s.reconnects}`);
  if (status !== "online" && cam.reason) parts.push(cam.reason);
  $(".stats", tile).textContent = parts.join(" · ");
}

function renderCameras(list) {
  list.forEach((cam) => state.cameras.set(cam.id, { ...(state.cameras.get(cam.id) || {}), ...cam }));
  state.cameras.forEach((cam) => updateTile(cam));
  $("#no-cameras").hidden = state.cameras.size > 0;
  $("#camera-count").textContent = t("camera_count", state.cameras.size);
  const mjpeg = useMjpeg();
  state.tiles.forEach((tile) => {
    if (tile.dataset.mode) return;
    if (mjpeg) startMjpeg(tile); else pollSnapshot(tile);
  });
}

/* ---------- incidents ---------- */
function evidenceUrl(inc) {
  const ev = (inc.evidence || []).find((e) => e && e.url && /\.jpe?g(\?|$)/i.test(e.url));
  return ev ? ev.url : null;
}

function incidentTime(inc) { return toDate(inc.opened_at || inc.updated_at) || new Date(0); }

function incidentNode(inc) {
  const li = $("#incident-template").content.firstElementChild.cloneNode(true);
  li.dataset.incidentId = inc.id;
  const cls = inc.class || "general";
  li.classList.add(`cls-${cls}`);
  if (CLOSED.has(inc.state)) li.classList.add("done");
  li.dataset.class = cls;
  li.dataset.state = inc.state || "";
  $(".inc-class", li).textContent = t(`cls_${cls}`);
  $(".inc-state", li).textContent = t(`st_${inc.state}`);
  const time = $(".inc-time", li);
  time.textContent = fmtTime(inc.opened_at);
  const when = toDate(inc.opened_at);
  if (when) time.dateTime = when.toISOString();
  $(".inc-title", li).textContent = inc.title || inc.id;
  $(".inc-grid", li).textContent = inc.grid || "";
  const sources = (inc.sources || []).map((s) => (typeof s === "string" ? s : s.id || s.source_id || s.camera_id || ""));
  $(".inc-sources", li).textContent = sources.filter(Boolean).join(", ");
  const thumb = $(".inc-thumb", li);
  const url = evidenceUrl(inc);
  if (url) {
    const img = $("img", thumb);
    img.src = url;
    img.onerror = () => thumb.classList.add("none");
  } else {
    thumb.classList.add("none");
  }
  const actions = $(".inc-actions", li);
  (ACTIONS_BY_STATE[inc.state] || []).forEach((action) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.action = action;
    b.textContent = t(`act_${action}`);
    b.addEventListener("click", () => act(inc.id, action));
    actions.appendChild(b);
  });
  return li;
}

function renderFeed(freshId) {
  const feed = $("#feed");
  const items = [...state.incidents.values()]
    .filter((inc) => !state.filter || inc.class === state.filter)
    .sort((a, b) => incidentTime(b) - incidentTime(a))
    .slice(0, FEED_MAX);
  feed.replaceChildren(...items.map((inc) => {
    const node = incidentNode(inc);
    if (inc.id === freshId) node.classList.add("fresh");
    return node;
  }));
  $("#no-incidents").hidden = items.length > 0;
}

function upsertIncident(inc, fresh) {
  if (!inc || !inc.id) return;
  const isNew = !state.incidents.has(inc.id);
  state.incidents.set(inc.id, { ...(state.incidents.get(inc.id) || {}), ...inc });
  if (state.incidents.size > FEED_MAX * 2) {
    const oldest = [...state.incidents.values()].sort((a, b) => incidentTime(a) - incidentTime(b));
    oldest.slice(0, state.incidents.size - FEED_MAX).forEach((o) => state.incidents.delete(o.id));
  }
  renderFeed(fresh && isNew ? inc.id : null);
  if (fresh && isNew && inc.class === "emergency") flashCameras(inc);
}

function flashCameras(inc) {
  (inc.sources || []).forEach((s) => {
    const id = typeof s === "string" ? s : s.camera_id || s.id || s.source_id;
    const tile = state.tiles.get(id);
    if (!tile) return;
    tile.classList.remove("flash");
    void tile.offsetWidth;
    tile.classList.add("flash");
  });
}

async function act(id, action) {
  try {
    const r = await fetch(`/api/incidents/${encodeURIComponent(id)}/actions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action, note: "", actor: "operator" }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.status);
    upsertIncident(body, false);
  } catch (err) {
    console.warn("incident action failed", err);
    alert(`${t("action_failed")}: ${err.message}`);
  }
}

/* ---------- KPI ---------- */
function renderKpi() {
  const k = state.kpi;
  const cams = [...state.cameras.values()];
  const camsOnline = k.cameras_online ?? cams.filter((c) => cameraStatus(c) === "online").length;
  const camsTotal = k.cameras_total ?? cams.length;
  const open = [...state.incidents.values()].filter((i) => !CLOSED.has(i.state));
  const set = (id, v, total) => {
    $(`#${id} .v`).textContent = v ?? "–";
    const tEl = $(`#${id} .t`);
    if (tEl) tEl.textContent = total ?? "–";
  };
  set("kpi-cameras", camsOnline, camsTotal);
  set("kpi-open", k.open_incidents ?? open.length);
  const emergencies = k.open_emergency ?? open.filter((i) => i.class === "emergency").length;
  set("kpi-emergency", emergencies);
  $("#kpi-emergency").classList.toggle("alarm", emergencies > 0);
  const devs = [...state.devices.values()];
  set("kpi-devices", k.devices_online ?? devs.filter((d) => d.status !== "offline").length,
    k.devices_total ?? devs.length);
}

/* ---------- WebSocket ---------- */
function renderConn() {
  const c = $("#conn");
  c.classList.toggle("up", state.wsUp);
  c.classList.toggle("down", !state.wsUp && state.ws !== null);
  $(".conn-text", c).textContent = state.wsUp ? t("conn_up") : state.ws ? t("conn_down") : t("conn_wait");
}

let backoff = 1000;
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws/events`);
  state.ws = ws;
  ws.onopen = () => { state.wsUp = true; backoff = 1000; renderConn(); };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    const d = msg.data || {};
    switch (msg.type) {
      case "incident": upsertIncident(d, true); break;
      case "camera": {
        const id = d.id || d.camera_id;
        if (!id) break;
        renderCameras([{ ...d, id }]);
        break;
      }
      case "device": {
        const id = d.id || d.device_id;
        if (id) state.devices.set(id, { ...(state.devices.get(id) || {}), ...d });
        break;
      }
      case "kpi": state.kpi = d; break;
      default: return;
    }
    renderKpi();
  };
  ws.onclose = () => {
    state.wsUp = false;
    renderConn();
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
}

/* ---------- boot ---------- */
async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

async function refreshCameras() {
  try { renderCameras(await getJson("/api/cameras")); renderKpi(); } catch (err) { console.warn(err); }
}

async function boot() {
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("hub.lang", state.lang);
    applyLang();
  });
  $("#filters").addEventListener("click", (ev) => {
    const chip = ev.target.closest(".chip");
    if (!chip) return;
    state.filter = chip.dataset.class;
    document.querySelectorAll(".chip").forEach((c) => c.classList.toggle("active", c === chip));
    renderFeed();
  });
  applyLang();
  tickClock();
  setInterval(tickClock, 1000);
  connect();
  await refreshCameras();
  setInterval(refreshCameras, 5000);
  try {
    (await getJson("/api/devices")).forEach((d) => state.devices.set(d.id, d));
  } catch (err) { console.warn(err); }
  try {
    (await getJson("/api/incidents?limit=200")).forEach((inc) => upsertIncident(inc, false));
  } catch (err) { console.warn(err); }
  renderFeed();
  renderKpi();
  document.body.dataset.ready = "1";
}

boot();
