// onnxvis serve: the page's behaviour. Plain JavaScript, no library, nothing fetched from elsewhere.
"use strict";

const state = {layer: null, photo: null, summary: null, layers: [], generation: 0};
const $ = (id) => document.getElementById(id);
const blobs = new Map(); // img id -> object URL shown now

function showError(message) {
  $("error").textContent = message ? String(message).split("\n")[0] : "";
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) throw new Error(await errorOf(response));
  return response.json();
}

// Pictures are fetched rather than set as img.src, so that a refusal shows its JSON message.
async function showPicture(id, url) {
  const img = $(id);
  const response = await fetch(url);
  if (!response.ok) {
    clearPicture(id);
    throw new Error(await errorOf(response));
  }
  const blob = await response.blob();
  const old = blobs.get(id);
  const objectUrl = URL.createObjectURL(blob);
  blobs.set(id, objectUrl);
  img.onload = () => enlarge(img);
  img.src = objectUrl;
  if (old) URL.revokeObjectURL(old);
  return response;
}

// Small pictures (3x3 kernels) are shown at a whole multiple of their size, pixels kept sharp.
function enlarge(img) {
  const side = Math.max(img.naturalWidth, img.naturalHeight);
  const times = Math.max(1, Math.floor(360 / side));
  img.style.width = `${img.naturalWidth * times}px`;
}

function clearPicture(id) {
  const old = blobs.get(id);
  if (old) URL.revokeObjectURL(old);
  blobs.delete(id);
  $(id).removeAttribute("src");
}

function fmt(x) {
  if (x === null || x === undefined) return "?";
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? x.toExponential(2) : x.toFixed(3);
}

function preset() {
  const value = $("preset").value;
  return value === "model" ? "" : value;
}

function colormap() {
  return document.querySelector("input[name=colormap]:checked").value;
}

async function loadSummary() {
  const s = await getJSON("/api/summary");
  state.summary = s;
  const list = $("summary");
  list.replaceChildren();
  let last = null;
  for (const [key, value] of s.rows) {
    if (!key && last) { // a row that goes on the one before
      last.textContent += " " + value;
      continue;
    }
    const dt = document.createElement("dt");
    dt.textContent = key;
    last = document.createElement("dd");
    last.textContent = value;
    list.append(dt, last);
    if (key === "model") $("model-name").textContent = value;
  }
  const select = $("preset");
  select.replaceChildren(new Option(`the model's (${s.preprocessing.split(":")[0]})`, "model"));
  for (const name of s.presets) select.appendChild(new Option(name, name));
  $("preprocessing").textContent = s.preprocessing;
  if (!s.photos) {
    for (const id of ["image", "sample", "preset"]) $(id).disabled = true;
    $("photo-note").textContent = `no photos: ${s.no_photos}`;
  }
  if (!s.cam) $("cam-note").textContent = "CAM is not available in this version of onnxvis";
}

async function loadLayers() {
  state.layers = await getJSON("/api/layers");
  const list = $("layers");
  list.replaceChildren();
  for (const layer of state.layers) {
    const li = document.createElement("li");
    li.dataset.layer = layer.index;
    li.tabIndex = 0;
    const title = document.createElement("div");
    title.className = "title";
    const shape = layer.shape ? layer.shape.join("x") : "?";
    title.textContent = `${layer.index} ${layer.name} ${layer.op} ${shape}`;
    const stats = document.createElement("div");
    stats.className = "stats";
    if (layer.stats) {
      const st = layer.stats;
      stats.textContent = `min ${fmt(st.min)} max ${fmt(st.max)} mean ${fmt(st.mean)} std ${fmt(st.std)}` +
        ` near-dead ${st.near_dead}/${st.filters}`;
    } else {
      stats.textContent = layer.problem || "weights not readable";
    }
    li.append(title, stats);
    li.addEventListener("click", () => selectLayer(layer.index));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") selectLayer(layer.index); });
    list.appendChild(li);
  }
  if (state.layers.length) await selectLayer(0);
}

async function selectLayer(index) {
  state.layer = index;
  for (const li of $("layers").children) li.classList.toggle("selected", Number(li.dataset.layer) === index);
  const layer = state.layers[index];
  $("layer-title").textContent = `${layer.index} ${layer.name}`;
  $("features-channel").max = layer.shape ? layer.shape[0] - 1 : 0;
  const channel = $("split-channel");
  channel.max = layer.shape ? layer.shape[0] - 1 : 0;
  if (Number(channel.value) > Number(channel.max)) channel.value = 0;
  await guarded(Promise.all([showKernels(), showFmaps()]));
}

async function showKernels() {
  if (state.layer === null) return;
  let url = `/api/kernels/${state.layer}.png?colormap=${encodeURIComponent(colormap())}`;
  if ($("split").checked) url += `&split=${encodeURIComponent($("split-channel").value || 0)}`;
  await showPicture("kernels", url);
}

async function showFmaps() {
  if (state.layer === null || state.photo === null) return;
  const layer = state.layers[state.layer];
  if (!layer.maps) {
    clearPicture("fmaps");
    return;
  }
  await showPicture("fmaps", `/api/fmaps/${state.photo}/${state.layer}.png?preset=${encodeURIComponent(preset())}`);
}

async function showPredictions() {
  if (state.photo === null) return;
  if (state.summary && !state.summary.predictions) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = `no top-5: ${state.summary.no_predictions}`;
    $("predictions").replaceChildren(li);
    return;
  }
  const result = await getJSON(`/api/predictions/${state.photo}?preset=${encodeURIComponent(preset())}`);
  const list = $("predictions");
  list.replaceChildren();
  $("labels-note").textContent = (state.summary && state.summary.labels_note) || "";
  for (const p of result.top) {
    const li = document.createElement("li");
    li.dataset.index = p.index;
    const score = p.score === null ? "?" : `${(100 * p.score).toFixed(2)}%`;
    li.textContent = `${p.index}${p.label ? " " + p.label : ""}: ${score}`;
    li.title = "show the class activation map of this class";
    li.addEventListener("click", () => { $("cam-target").value = p.index; guarded(showCam()); });
    list.appendChild(li);
  }
}

async function showCam() {
  if (state.photo === null || !state.summary || !state.summary.cam || !state.summary.predictions) return;
  const target = $("cam-target").value;
  let url = `/api/cam/${state.photo}.png?preset=${encodeURIComponent(preset())}`;
  if (target !== "") url += `&target=${encodeURIComponent(target)}`;
  const response = await showPicture("cam", url);
  $("cam-note").textContent = `class ${response.headers.get("x-onnxvis-class")}`;
}

async function showPhoto(photo) {
  state.photo = photo.id;
  await guarded(Promise.all([showFmaps(), showPredictions(), showCam()]));
}

// Runs a step of the page; a failure becomes the one-line #error and the page goes on.
async function guarded(promise) {
  const generation = ++state.generation;
  try {
    await promise;
    if (generation === state.generation) showError("");
  } catch (e) {
    showError(e.message || e);
  }
}

async function upload(file) {
  if (!file) return;
  const limit = state.summary ? state.summary.max_upload : Infinity;
  if (file.size > limit) {
    showError(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB, more than the limit of ${limit / 2 ** 20} MB; choose a smaller photo`);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const photo = await getJSON("/api/photos", {method: "POST", body: form});
    await showPhoto(photo);
  } catch (e) {
    showError(e.message || e);
  }
}

// Feature visualisation: one optimisation at a time (this page's id tells the server), streamed as
// server-sent events read from fetch (so that a refusal shows its JSON message, and cancel is an abort).
const clientId = Math.random().toString(36).slice(2) + Date.now().toString(36);
let features = null; // {controller} of the optimisation running now

function stopFeatures(note) {
  if (features) features.controller.abort();
  features = null;
  $("features-cancel").disabled = true;
  if (note !== undefined) $("features-note").textContent = note;
}

function showFeatureFrame(frame) {
  const bytes = Uint8Array.from(atob(frame.png), (c) => c.charCodeAt(0));
  const objectUrl = URL.createObjectURL(new Blob([bytes], {type: "image/png"}));
  const old = blobs.get("features");
  blobs.set("features", objectUrl);
  const img = $("features");
  img.onload = () => enlarge(img);
  img.src = objectUrl;
  if (old) URL.revokeObjectURL(old);
  $("features-note").textContent = `channel ${frame.channel}: step ${frame.step} of ${frame.steps}, mean activation ${fmt(frame.value)}`;
}

async function startFeatures() {
  if (state.layer === null) return;
  stopFeatures();
  const channel = Number($("features-channel").value || 0);
  const run = {controller: new AbortController()};
  features = run;
  $("features-cancel").disabled = false;
  $("features-note").textContent = `channel ${channel}: starting`;
  try {
    const url = `/api/features/${state.layer}/${channel}?client=${encodeURIComponent(clientId)}`;
    const response = await fetch(url, {signal: run.controller.signal});
    if (!response.ok) throw new Error(await errorOf(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      text += decoder.decode(value, {stream: true});
      let end;
      while ((end = text.indexOf("\n\n")) >= 0) {
        const message = text.slice(0, end);
        text = text.slice(end + 2);
        const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
        if (message.startsWith("event: done")) continue;
        const frame = JSON.parse(data || "{}");
        if (frame.error) throw new Error(frame.error);
        if (frame.png && features === run) showFeatureFrame({...frame, channel});
      }
    }
    if (features === run) stopFeatures(`${$("features-note").textContent} (done)`);
  } catch (e) {
    if (e.name === "AbortError") return; // cancelled, or another optimisation started
    if (features === run) stopFeatures("");
    showError(e.message || e);
  }
}

// A click on a feature map (the grid is make_grid's: 8 per row, 2 px apart) optimises its channel.
function channelAt(img, event) {
  const layer = state.layers[state.layer];
  if (!layer || !layer.shape || !img.naturalWidth) return null;
  const count = layer.shape[0];
  const cols = Math.min(8, count);
  const rows = Math.ceil(count / cols);
  const tileW = (img.naturalWidth - 2) / cols;
  const tileH = (img.naturalHeight - 2) / rows;
  const x = (event.offsetX * img.naturalWidth) / img.clientWidth - 1;
  const y = (event.offsetY * img.naturalHeight) / img.clientHeight - 1;
  const channel = Math.floor(y / tileH) * cols + Math.floor(x / tileW);
  return channel >= 0 && channel < count ? channel : null;
}

function wire() {
  $("fmaps").addEventListener("click", (e) => {
    const channel = channelAt($("fmaps"), e);
    if (channel === null) return;
    $("features-channel").value = channel;
    startFeatures();
  });
  $("features-start").addEventListener("click", () => startFeatures());
  $("features-cancel").addEventListener("click", () => stopFeatures(`${$("features-note").textContent} (cancelled)`));
  $("image").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = ""; // so that choosing the same file again is a change too
    upload(file);
  });
  $("sample").addEventListener("click", async () => {
    try {
      await showPhoto(await getJSON("/api/photos/sample", {method: "POST"}));
    } catch (e) {
      showError(e.message || e);
    }
  });
  for (const radio of document.querySelectorAll("input[name=colormap]")) {
    radio.addEventListener("change", () => guarded(showKernels()));
  }
  $("split").addEventListener("change", () => {
    $("split-channel").disabled = !$("split").checked;
    guarded(showKernels());
  });
  $("split-channel").addEventListener("change", () => guarded(showKernels()));
  $("preset").addEventListener("change", () => guarded(Promise.all([showFmaps(), showPredictions(), showCam()])));
  $("cam-target").addEventListener("change", () => guarded(showCam()));

  const hint = $("drop-hint");
  document.addEventListener("dragover", (e) => { e.preventDefault(); hint.classList.add("on"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) hint.classList.remove("on"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    hint.classList.remove("on");
    if (e.dataTransfer && e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
  });
}

async function start() {
  wire();
  try {
    await loadSummary();
    await loadLayers();
  } catch (e) {
    showError(e.message || e);
  }
  document.body.dataset.ready = "1";
}

start();
