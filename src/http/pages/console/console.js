// The console: polls GET /console/status every few seconds and shows it; "Try a model"
// posts to /predict and draws the answer. Plain JavaScript, no framework, no build step.
// A key is asked for only when the gateway answers 401, and kept in sessionStorage (this
// tab only): never in a URL or a cookie.
"use strict";

const POLL_MS = 2000;
const BARS = 5;
const KEY = "infergate.key";

const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = value; };

let models = [];
let polling = null;
let asking = null;

// ---- API calls, with the key when one was given ----

async function call(path, init = {}, why = "") {
  for (;;) {
    const headers = new Headers(init.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", "Bearer " + key);
    // No `cache` option: the browser would send `Cache-Control: no-cache`, which the
    // gateway takes as "bypass the answer cache".
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401 && response.status !== 403) return response;
    const body = await response.clone().json().catch(() => ({}));
    // Protected mode: there are no keys, so none typed here would help; the message says
    // what would.
    if (body.error && body.error.code === "protected_mode") return response;
    const message = (body.error && body.error.message) || "this needs an API key";
    if (!(await askForKey(why + message))) return response;
  }
}

// Opens the key dialog (once at a time); resolves true when a key was entered.
function askForKey(why) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const dialog = $("key-dialog");
    text("key-why", why);
    $("key").value = "";
    dialog.addEventListener("close", () => {
      asking = null;
      const key = $("key").value.trim();
      if (dialog.returnValue === "use" && key) {
        sessionStorage.setItem(KEY, key);
        resolve(true);
      } else {
        resolve(false);
      }
    }, { once: true });
    dialog.showModal();
    $("key").focus();
  });
  return asking;
}

// ---- the gateway, its traffic and its models ----

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

const ms = (v) => (v == null ? "–" : v < 10 ? `${v.toFixed(2)} ms` : `${v.toFixed(1)} ms`);
const percent = (v) => (v == null ? "–" : `${(v * 100).toFixed(1)} %`);

function showStatus(s) {
  text("version", s.version);
  text("uptime", duration(s.uptime_s));
  text("io", s.ready.io_backend);
  text("device", s.ready.image_device);
  const ready = s.ready.status === "ready";
  const status = ready ? "ready" : s.ready.draining ? "draining" : "not ready";
  text("status", status);
  $("status").className = ready ? "good" : "poor";

  const checks = [["warm-up", s.ready.checks.model], ["redis", s.ready.checks.redis],
    ["database", s.ready.checks.database], ["listening", s.ready.listening ? "yes" : "no"]];
  for (const name of s.ready.required_down) checks.push([`required ${name}`, "down"]);
  $("checks").replaceChildren(...checks.map(([name, state]) => {
    const li = document.createElement("li");
    li.textContent = `${name}: ${state}`;
    li.className = state === "ok" || state === "yes" ? "good" : state === "down" || state === "no" ? "poor" : "";
    return li;
  }));

  const t = s.traffic;
  text("window", `(last ${Math.round(t.window_s)} s)`);
  text("rate", t.per_s.toFixed(t.per_s < 10 ? 2 : 1));
  text("hits", percent(t.cache_hit_rate));
  text("p50", ms(t.latency_ms && t.latency_ms.p50));
  text("p90", ms(t.latency_ms && t.latency_ms.p90));
  text("p99", ms(t.latency_ms && t.latency_ms.p99));
  text("served", t.served_total.toLocaleString("en"));

  $("models").tBodies[0].replaceChildren(...s.models.map(modelRow));
  if (JSON.stringify(s.models.map((m) => [m.name, m.input])) !==
      JSON.stringify(models.map((m) => [m.name, m.input]))) {
    models = s.models;
    fillModelChoice();
  } else {
    models = s.models;
  }
}

function modelRow(m) {
  const tr = document.createElement("tr");
  const versions = m.versions.map((v) => `${v.version} (${Math.round(v.traffic_percent)} %)`).join(", ");
  const shadow = m.versions.filter((v) => v.shadow_percent != null)
    .map((v) => `${v.version} (${Math.round(v.shadow_percent)} %)`).join(", ");
  const devices = [...new Set(m.versions.map((v) => `${v.device} ${v.precision}`))].join(", ");
  const cells = [m.name, m.input || "–", m.state.toLowerCase(), versions || "–", shadow || "–", devices || "–"];
  for (const [i, value] of cells.entries()) {
    const td = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) td.scope = "row";
    td.textContent = value;
    if (i === 2) {
      td.className = m.state === "READY" ? "good" : m.state === "UNAVAILABLE" ? "poor" : "";
      if (m.reason) td.title = m.reason;
    }
    tr.append(td);
  }
  return tr;
}

async function poll() {
  try {
    const response = await call("/console/status", {}, "The console's numbers: ");
    if (response.status === 401 || response.status === 403) {
      const e = (await response.json().catch(() => ({}))).error || {};
      text("notice", e.code === "protected_mode"
        ? `The gateway's numbers: ${e.message}`
        : "The gateway's numbers need an admin key; reload the page to give one.");
      stopPolling();
      return;
    }
    if (!response.ok) throw new Error(`GET /console/status answered ${response.status}`);
    text("notice", "");
    showStatus(await response.json());
  } catch (e) {
    text("notice", `The gateway did not answer: ${e.message}`);
  }
}

function stopPolling() {
  clearInterval(polling);
  polling = null;
}

// ---- try a model ----

function fillModelChoice() {
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(...models.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name} (${m.input || "not loaded"})`;
    return option;
  }));
  if (models.some((m) => m.name === chosen)) select.value = chosen;
  showInputs();
}

function chosenModel() {
  return models.find((m) => m.name === $("model").value);
}

function showInputs() {
  const m = chosenModel();
  const input = m ? m.input : null;
  $("image-input").hidden = input !== "image";
  // A hidden field still counts in the form's validation unless its fieldset is disabled.
  $("feature-input").hidden = $("feature-input").disabled = input !== "features";
  $("file").disabled = input !== "image";
  $("other-input").hidden = input === "image" || input === "features";
  text("other-input", input === "tensors"
    ? "This model takes named tensors: try it from the API docs (Open Inference Protocol)."
    : "This model is not loaded; a prediction loads it when the repository allows.");
  $("send").disabled = input === "tensors";
  if (input === "features") {
    $("features").replaceChildren(...m.features.map((name, i) => {
      const label = document.createElement("label");
      const field = document.createElement("input");
      field.type = "number";
      field.step = "any";
      field.required = true;
      field.name = `f${i}`;
      field.id = `feature-${i}`;
      label.htmlFor = field.id;
      label.append(name, field);
      return label;
    }));
  }
}

function chooseFile(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `Preview of ${file.name}`;
}

function drawBars(classes) {
  const rows = [];
  for (let i = 0; i < BARS; i++) {
    const c = classes[i];
    const li = document.createElement("li");
    const label = document.createElement("span");
    const track = document.createElement("span");
    const fill = document.createElement("span");
    const pct = document.createElement("span");
    label.className = "label";
    track.className = "track";
    fill.className = "fill";
    pct.className = "pct";
    track.append(fill);
    if (c) {
      label.textContent = c.label;
      label.title = `${c.label} (class ${c.class_id})`;
      pct.textContent = `${(c.confidence * 100).toFixed(1)} %`;
      fill.style.width = `${Math.max(0, Math.min(1, c.confidence)) * 100}%`;
      li.dataset.label = c.label;
      li.dataset.confidence = String(c.confidence);
    } else {
      li.setAttribute("aria-hidden", "true");
    }
    li.append(label, track, pct);
    rows.push(li);
  }
  $("bars").replaceChildren(...rows);
}

function serverTime(header) {
  const total = /(?:^|,\s*)total;dur=([0-9.]+)/.exec(header || "");
  return total ? `${Number(total[1]).toFixed(1)} ms` : "–";
}

async function predict(event) {
  event.preventDefault();
  const m = chosenModel();
  if (!m) return;
  let init;
  if (m.input === "image") {
    const file = $("file").files[0];
    if (!file) {
      text("outcome", "Choose or drop an image first.");
      return;
    }
    const form = new FormData();
    form.append("model", m.name);
    form.append("file", file, file.name);
    init = { method: "POST", body: form };
  } else {
    const fields = [...$("features").querySelectorAll("input")];
    const features = fields.map((f) => (f.value === "" ? null : Number(f.value)));
    init = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: m.name, features }),
    };
  }
  $("send").disabled = true;
  text("outcome", "Asking…");
  try {
    const response = await call("/predict", init, "Predictions: ");
    const body = await response.json().catch(() => ({}));
    text("x-cache", response.headers.get("x-cache") || "–");
    text("request-id", response.headers.get("x-request-id") || "–");
    text("server-time", serverTime(response.headers.get("server-timing")));
    if (!response.ok) {
      const e = body.error || {};
      text("outcome", `${response.status} ${e.code || ""}: ${e.message || "refused"}`);
      drawBars([]);
      return;
    }
    const classes = body.predictions || body.top_k || [];
    if (typeof body.prediction === "number") {
      text("outcome", `${body.model.name} ${body.model.version}: ${body.prediction}`);
    } else {
      const top = classes[0];
      text("outcome", top
        ? `${body.model.name} ${body.model.version}: ${top.label}`
        : `${body.model.name} ${body.model.version}: ${body.prediction}`);
    }
    drawBars(classes);
  } catch (e) {
    text("outcome", `The gateway did not answer: ${e.message}`);
  } finally {
    $("send").disabled = chosenModel() && chosenModel().input === "tensors";
  }
}

// ---- wiring ----

function start() {
  drawBars([]);
  $("model").addEventListener("change", showInputs);
  $("try").addEventListener("submit", predict);
  $("file").addEventListener("change", () => chooseFile($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      $("file").files = e.dataTransfer.files;
      chooseFile(e.dataTransfer.files[0]);
    }
  });
  poll();
  polling = setInterval(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
