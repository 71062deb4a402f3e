// The AutoCTV page: uploads, the case list with progress, cancel, delete and downloads.
// Every request goes through the HTTP API (docs/web.md) with the bearer token when one is set.
"use strict";

const TOKEN_KEY = "autoctv-token";
let token = "";

function initToken() {
  const params = new URLSearchParams(window.location.search);
  if (params.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  token = sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  let response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    const entered = window.prompt("This AutoCTV server needs its access token:");
    if (!entered) throw new Error("access token needed");
    token = entered.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    headers["Authorization"] = "Bearer " + token;
    response = await fetch(path, Object.assign({}, options, { headers }));
  }
  return response;
}

function showMessage(text, kind) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = kind;
}

async function upload(event) {
  event.preventDefault();
  const input = document.getElementById("file");
  if (!input.files.length) return;
  const form = new FormData();
  form.append("file", input.files[0]);
  const reference = document.getElementById("reference");
  if (reference.files.length) form.append("reference", reference.files[0]);
  form.append("uncertainty", document.getElementById("uncertainty").value || "0");
  const series = document.getElementById("series");
  if (!document.getElementById("series-label").hidden && series.value) {
    form.append("series_uid", series.value);
  }
  showMessage("Uploading and checking " + input.files[0].name + " …", "");
  const response = await api("/api/cases", { method: "POST", body: form });
  const body = await response.json();
  if (response.status === 201) {
    showMessage("Accepted: " + input.files[0].name + " is queued.", "ok");
    document.getElementById("series-label").hidden = true;
    refresh();
  } else {
    showMessage(body.error || ("upload refused (" + response.status + ")"), "error");
    offerSeries(body.error || "");
  }
}

// "several CT series" messages list the series UIDs: offer them in a list to pick one.
function offerSeries(message) {
  const uids = message.match(/\b\d+(?:\.\d+){4,}\b/g) || [];
  const label = document.getElementById("series-label");
  const select = document.getElementById("series");
  if (uids.length < 2) { label.hidden = true; return; }
  select.innerHTML = "";
  for (const uid of new Set(uids)) {
    const option = document.createElement("option");
    option.value = uid; option.textContent = uid;
    select.appendChild(option);
  }
  label.hidden = false;
}

async function download(caseId, kind, fileName) {
  const response = await api("/api/cases/" + caseId + "/" + kind);
  if (!response.ok) { showMessage((await response.json()).error, "error"); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url; link.download = fileName;
  document.body.appendChild(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  row.appendChild(td);
  return td;
}

function button(text, handler) {
  const element = document.createElement("button");
  element.textContent = text;
  element.addEventListener("click", handler);
  return element;
}

async function refresh() {
  let cases;
  try {
    const response = await api("/api/cases");
    if (!response.ok) return;
    cases = await response.json();
  } catch (error) { return; }
  const body = document.querySelector("#cases tbody");
  body.innerHTML = "";
  for (const item of cases.slice().reverse()) {
    const row = document.createElement("tr");
    row.dataset.caseId = item.id;
    row.dataset.status = item.status;
    cell(row, new Date(item.created_at * 1000).toLocaleString());
    cell(row, item.upload_name);
    const status = cell(row, item.status + (item.error ? ": " + item.error : ""));
    status.className = "status";
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = item.progress;
    const progress = cell(row, bar);
    progress.title = item.stage;
    cell(row, item.model_name ? item.model_name + " " + item.model_version : "");
    const links = document.createElement("span");
    for (const kind of item.downloads) {
      const link = document.createElement("a");
      link.className = "download"; link.textContent = kind; link.dataset.kind = kind;
      link.addEventListener("click", () => download(item.id, kind, "autoctv-" + kind));
      links.appendChild(link);
    }
    // structures completed in the viewer from a few drawn slices (stored with the case)
    for (const structure of item.structures || []) {
      const group = document.createElement("div");
      group.className = "structure";
      group.dataset.structure = structure.number;
      group.textContent = structure.name + " (" + structure.method + "): ";
      for (const kind of structure.downloads) {
        const link = document.createElement("a");
        link.className = "download"; link.textContent = kind; link.dataset.kind = kind;
        const path = "structures/" + structure.number + "/" + kind;
        link.addEventListener("click", () => download(
          item.id, path, "autoctv-structure" + structure.number + "-" + kind));
        group.appendChild(link);
      }
      links.appendChild(group);
    }
    cell(row, links);
    const actions = document.createElement("span");
    if (item.status === "queued" || item.status === "running") {
      actions.appendChild(button("Cancel", async () => {
        await api("/api/cases/" + item.id + "/cancel", { method: "POST" }); refresh();
      }));
    }
    actions.appendChild(button("Delete", async () => {
      await api("/api/cases/" + item.id, { method: "DELETE" }); refresh();
    }));
    cell(row, actions);
    body.appendChild(row);
  }
}

initToken();
document.getElementById("upload-form").addEventListener("submit", upload);
refresh();
setInterval(refresh, 1000);
