// image-labeler gallery: fills the server's page shells from its JSON API.
// Stored text (S3 keys, label names, reasons) reaches the page only through
// textContent and attribute setters, never as markup.
"use strict";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function detailHref(uri) {
  return "/image?uri=" + encodeURIComponent(uri);
}

function percent(confidence) {
  return `${Number(confidence).toFixed(1)}%`;
}

function say(text, isError) {
  const summary = document.getElementById("summary");
  summary.textContent = text;
  summary.classList.toggle("error", Boolean(isError));
}

function card(image, labels) {
  const img = el("img", { className: "thumb", src: image.url, alt: image.key, loading: "lazy" });
  // Skipped files are often not images at all: say so instead of a broken picture.
  img.addEventListener("error", () => {
    img.replaceWith(el("div", { className: "no-preview", text: "no preview" }));
  });
  const caption = el("div", { className: "caption" }, el("div", { className: "key", text: image.key }));
  if (labels.length > 0) {
    const list = el("ul", { className: "labels" });
    for (const label of labels) {
      list.append(el("li", { "data-label": label.name },
        el("span", { className: "name", text: label.name }),
        el("span", { className: "confidence", text: percent(label.confidence) })));
    }
    caption.append(list);
  }
  if (image.status && image.status !== "LABELED") {
    caption.append(el("p", { className: `status ${image.status.toLowerCase()}` },
      el("span", { className: "badge", text: image.status }),
      image.reason ? " " + image.reason : ""));
  }
  return el("li", { className: "card", "data-uri": image.uri },
    el("a", { href: detailHref(image.uri), title: image.uri }, img, caption));
}

async function gallery() {
  const params = new URLSearchParams(location.search);
  const label = (params.get("label") || "").trim();
  const min = params.get("min") || "0";
  const cursor = params.get("cursor") || "";
  const labelInput = document.getElementById("label");
  const minInput = document.getElementById("min");
  const minValue = document.getElementById("min-value");
  labelInput.value = label;
  minInput.value = min;
  minValue.textContent = minInput.value;
  minInput.addEventListener("input", () => { minValue.textContent = minInput.value; });
  document.getElementById("clear").hidden = !label;

  const grid = document.getElementById("grid");
  const query = new URLSearchParams();
  if (cursor) query.set("cursor", cursor);
  let next;
  try {
    if (label) {
      query.set("min", min);
      const page = await getJSON(`/api/labels/${encodeURIComponent(label)}?${query}`);
      for (const hit of page.hits) {
        grid.append(card(hit, [{ name: hit.label, confidence: hit.confidence }]));
      }
      say(page.hits.length === 0
        ? `No image carries the label “${label}” with confidence ≥ ${min}%.`
        : `${page.hits.length} images with “${label}” ≥ ${min}%, most confident first`);
      next = page.next;
    } else {
      const page = await getJSON(`/api/images?${query}`);
      for (const image of page.images) grid.append(card(image, image.labels));
      say(page.images.length === 0
        ? (cursor ? "No more images." : "No images yet: upload some to the bucket.")
        : `${page.images.length} images on this page`);
      next = page.next;
    }
  } catch (e) {
    say(`Could not load the images: ${e.message}`, true);
    return;
  }
  if (next) {
    const link = document.getElementById("next");
    const nextParams = new URLSearchParams();
    if (label) { nextParams.set("label", label); nextParams.set("min", min); }
    nextParams.set("cursor", next);
    link.href = `/?${nextParams}`;
    link.hidden = false;
  }
}

function fillReasons(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "3", className: "none", text: "none" })));
    return;
  }
  for (const row of rows) {
    body.append(el("tr", { "data-uri": row.uri },
      el("td", { className: "when", text: row.since || "-" }),
      el("td", {}, el("a", { href: detailHref(row.uri), text: row.uri })),
      el("td", { className: "reason", text: row.reason || "-" })));
  }
}

function fillCounts(counts, scanned) {
  const body = document.querySelector("#counts tbody");
  body.replaceChildren();
  const order = ["QUEUED", "LABELED", "FAILED", "SKIPPED", "DELETED"];
  for (const status of order) {
    const n = scanned ? scanned[status] : counts[status];
    body.append(el("tr", { "data-status": status },
      el("td", {}, el("span", { className: `badge ${status.toLowerCase()}`, text: status })),
      el("td", { className: "num", text: n === undefined ? "not counted" : String(n) })));
  }
}

async function status() {
  let view;
  try {
    view = await getJSON("/api/status?limit=20");
  } catch (e) {
    say(`Could not read the status: ${e.message}`, true);
    return;
  }
  say(`Table ${view.table}`);
  fillCounts(view.counts, null);
  fillReasons("failed", view.failed);
  fillReasons("skipped", view.skipped);
  if (view.oldest_queued) {
    const oldest = document.getElementById("oldest");
    oldest.replaceChildren("Oldest QUEUED image: ",
      el("a", { href: detailHref(view.oldest_queued.uri), text: view.oldest_queued.uri }),
      ` (since ${view.oldest_queued.since || "-"})`);
    oldest.hidden = false;
  }
  const button = document.getElementById("count-all");
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Counting…";
    try {
      const full = await getJSON("/api/status?scan=true&limit=20");
      fillCounts(full.counts, full.scanned);
      button.textContent = "Counted every status";
    } catch (e) {
      say(`Could not count: ${e.message}`, true);
      button.disabled = false;
      button.textContent = "Count every status";
    }
  });
}

function fact(list, name, value) {
  if (value === null || value === undefined || value === "") return;
  list.append(el("dt", { text: name }), el("dd", { text: String(value) }));
}

async function image() {
  const uri = new URLSearchParams(location.search).get("uri") || "";
  let record;
  try {
    record = await getJSON(`/api/images/${encodeURIComponent(uri)}`);
  } catch (e) {
    say(`Could not load ${uri}: ${e.message}`, true);
    return;
  }
  document.title = `${record.key} · image-labeler`;
  document.getElementById("title").textContent = record.key;
  say(record.reason ? `${record.status}: ${record.reason}` : record.status);

  const stage = document.getElementById("stage");
  const img = document.getElementById("full");
  img.alt = record.key;
  img.src = record.url;
  for (const label of record.labels) {
    for (const instance of label.instances) {
      const b = instance.bounding_box;
      // Rekognition's boxes are ratios of the image's width and height.
      const box = el("div", { className: "box", "data-label": label.name },
        el("span", { className: "tag", text: `${label.name} ${percent(instance.confidence)}` }));
      box.style.left = `${b.left * 100}%`;
      box.style.top = `${b.top * 100}%`;
      box.style.width = `${b.width * 100}%`;
      box.style.height = `${b.height * 100}%`;
      stage.append(box);
    }
  }

  const facts = document.getElementById("facts");
  fact(facts, "Image", record.uri);
  fact(facts, "Bucket", record.bucket);
  fact(facts, "Key", record.key);
  fact(facts, "Status", record.status);
  fact(facts, "Reason", record.reason);
  const job = record.job_id && record.array_index !== null && record.array_index !== undefined
    ? `${record.job_id} (array child ${record.array_index})` : record.job_id;
  fact(facts, "Batch job", job);
  fact(facts, "Job name", record.job_name);
  fact(facts, "Attempts", record.attempts);
  fact(facts, "Queued at", record.queued_at);
  fact(facts, "Updated at", record.updated_at);
  fact(facts, "Label model", record.label_model_version);
  fact(facts, "Converted", record.conversion);
  fact(facts, "Labels reused from", record.reused_from ? `${record.reused_from} (same content, no Rekognition call)` : null);
  fact(facts, "Size", record.size === null || record.size === undefined ? null : `${record.size} bytes`);
  fact(facts, "ETag", record.etag);
  fact(facts, "Version", record.version_id);

  const body = document.querySelector("#labels tbody");
  for (const label of record.labels) {
    body.append(el("tr", { "data-label": label.name },
      el("td", {}, el("a", { href: `/?label=${encodeURIComponent(label.name)}`, text: label.name })),
      el("td", { className: "num", text: percent(label.confidence) }),
      el("td", { className: "num", text: String(label.instances.length) }),
      el("td", { text: label.parents.join(", ") }),
      el("td", { text: label.categories.join(", ") })));
  }
}

const pages = { gallery, status, image };
document.addEventListener("DOMContentLoaded", () => {
  const page = pages[document.body.dataset.page];
  if (page) page();
});
