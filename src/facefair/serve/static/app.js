// facefair web page: send a photo to POST /predict, draw the returned boxes and labels.
// Plain JS with no build step and no CDN, so it works offline and is served as package data.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#e6194b", "#2f9e44", "#2f5bd3", "#f08c00", "#9c36b5", "#0c8599", "#d6336c", "#795548"];
const TITLES = { gender: "Gender", race: "Race", age_group: "Age group", age: "Age" };
let limits = null;   // from /health, to refuse too-large files before uploading them
let taskOrder = [];  // classification tasks, in the model's order

function setState(state, text) {
  document.body.dataset.state = state;  // also what the headless-browser test waits for
  $("status").textContent = text || "";
  $("status").className = state === "error" ? "error" : "";
}

async function loadHealth() {
  try {
    const health = await (await fetch("health")).json();
    limits = health.limits;
    taskOrder = health.model.tasks.filter((t) => t.kind === "classification").map((t) => t.name);
    const detect = health.model.detect === "none" ? "no face detection: each photo is one face crop"
                                                  : `face detection: ${health.model.detect}`;
    $("model").textContent = `${health.model.backbone}, ${health.model.input_size}px · ${detect}`;
    $("limits").textContent = `up to ${(limits.max_bytes / 2 ** 20).toFixed(0)} MB and ` +
      `${limits.max_upload_side} px per side`;
  } catch (error) {
    $("model").textContent = "model information unavailable";
  }
}

function loadImage(file) {
  // Browsers apply EXIF orientation when drawing, as the server does before predicting,
  // so the boxes (in oriented pixel coordinates) line up.
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => resolve(null);  // e.g. TIFF: boxes are still drawn, on a blank frame
    image.src = URL.createObjectURL(file);
  });
}

async function handleFile(file) {
  if (!file) return;
  if (limits && file.size > limits.max_bytes) {
    setState("error", `${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MB is over the ` +
      `${(limits.max_bytes / 2 ** 20).toFixed(0)} MB limit`);
    return;
  }
  setState("busy", `Predicting ${file.name || "photo"}…`);
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  let response, body;
  try {
    response = await fetch("predict", { method: "POST", body: form });
    body = await response.json().catch(() => ({}));
  } catch (error) {
    setState("error", `could not reach the server: ${error}`);
    return;
  }
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
    setState("error", `${response.status} — ${detail}`);
    $("result").hidden = true;
    return;
  }
  const image = await loadImage(file);
  $("result").hidden = false;
  draw(image, body);
  fillTable(body);
  const n = body.faces.length;
  setState("done", `${n === 0 ? "No face found" : n === 1 ? "1 face" : `${n} faces`} in ` +
    `${body.image.width}×${body.image.height} px · ${body.timing_ms.total} ms`);
}

function shortLabel(face) {
  const parts = taskOrder.filter((t) => face.predictions[t]).map((t) => face.predictions[t].label);
  if (typeof face.age === "number") parts.push(`${face.age.toFixed(0)} y`);
  return parts.join(" · ");
}

function draw(image, result) {
  const canvas = $("canvas");
  const { width, height } = result.image;
  const room = Math.min(940, document.documentElement.clientWidth - 48);
  // Small face crops are scaled up (to 3x) so boxes and labels stay readable.
  const scale = Math.min(room / width, 560 / height, 3);
  const ratio = window.devicePixelRatio || 1;
  canvas.style.width = `${Math.round(width * scale)}px`;
  canvas.style.height = `${Math.round(height * scale)}px`;
  canvas.width = Math.round(width * scale * ratio);
  canvas.height = Math.round(height * scale * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const w = width * scale, h = height * scale;
  if (image) ctx.drawImage(image, 0, 0, w, h);
  else { ctx.fillStyle = "#333"; ctx.fillRect(0, 0, w, h); }

  const font = 14;
  ctx.font = `600 ${font}px system-ui, "DejaVu Sans", sans-serif`;
  ctx.textBaseline = "top";
  result.faces.forEach((face, i) => {
    const color = COLORS[i % COLORS.length];
    const lw = 3;
    // Inset by half the line so a whole-image box (detect none) is not half clipped.
    const x0 = Math.max(lw / 2, face.box[0] * scale), y0 = Math.max(lw / 2, face.box[1] * scale);
    const x1 = Math.min(w - lw / 2, face.box[2] * scale), y1 = Math.min(h - lw / 2, face.box[3] * scale);
    ctx.strokeStyle = color;
    ctx.lineWidth = lw;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);

    const text = `${i + 1}  ${shortLabel(face)}`;
    const tw = ctx.measureText(text).width + 10, th = font + 8;
    let tx = Math.min(Math.max(0, x0 - lw / 2), w - tw);
    // Above the box when there is room, otherwise inside its top edge.
    let ty = y0 - lw / 2 - th >= 0 ? y0 - lw / 2 - th : y0 + lw / 2;
    ctx.fillStyle = color;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, tx + 5, ty + 4);
  });
}

function cell(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className) el.className = className;
  return el;
}

function fillTable(result) {
  const head = $("faces").tHead, body = $("faces").tBodies[0];
  head.replaceChildren();
  body.replaceChildren();
  const row = head.insertRow();
  ["Face", ...taskOrder.map((t) => TITLES[t] || t), "Age (years)", "Box (x0, y0, x1, y1)"]
    .forEach((title) => row.appendChild(cell("th", title)));
  result.faces.forEach((face, i) => {
    const tr = body.insertRow();
    const first = cell("td");
    const swatch = cell("span", undefined, "swatch");
    swatch.style.background = COLORS[i % COLORS.length];
    first.append(swatch, String(i + 1));
    tr.appendChild(first);
    for (const task of taskOrder) {
      const td = cell("td");
      const prediction = face.predictions[task];
      if (prediction) {
        const ranked = Object.entries(prediction.probs).sort((a, b) => b[1] - a[1]);
        td.append(prediction.label, " ", cell("span", `${(ranked[0][1] * 100).toFixed(0)}%`, "p"));
        // The runner-up matters when the model is unsure (and for auditing who it confuses).
        if (ranked.length > 2) {
          td.appendChild(cell("span", `then ${ranked[1][0]} ${(ranked[1][1] * 100).toFixed(0)}%`, "alt"));
        }
        td.title = ranked.map(([c, p]) => `${c}: ${(p * 100).toFixed(1)}%`).join("\n");
      }
      tr.appendChild(td);
    }
    tr.appendChild(cell("td", typeof face.age === "number" ? face.age.toFixed(1) : "—"));
    tr.appendChild(cell("td", face.box.map((v) => Math.round(v)).join(", ")));
  });
}

function setupInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => handleFile(event.target.files[0]));
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    handleFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((it) => it.type.startsWith("image/"));
    if (item) handleFile(item.getAsFile());
  });
}

async function main() {
  setupInput();
  await loadHealth();
  // /?demo=1 predicts the server's demo image (facefair serve --demo-image), for a first look
  // and for the headless-browser test.
  if (new URLSearchParams(location.search).has("demo")) {
    const response = await fetch("demo.jpg");
    if (!response.ok) { setState("error", "no demo image on this server (--demo-image)"); return; }
    const blob = await response.blob();
    handleFile(new File([blob], "demo.jpg", { type: blob.type }));
  }
}

main();
