// The openfgs console: a client of the public FunctionGraph API (and openfgs's documented
// extensions), signed in with an IAM token kept in sessionStorage. Every value from the API is
// put into the page as text (textContent, attributes): record error messages are written by
// whoever invoked the function.

const SESSION_KEY = "openfgs.console.session";
const REFRESH_KEY = "openfgs.console.autorefresh";
const STATUSES = ["WAIT", "RUNNING", "SUCCESS", "FAIL", "DISCARD"];
const RANGES = [
  ["15m", "Last 15 min", 15],
  ["1h", "Last 1 h", 60],
  ["1d", "Last 1 d", 1440],
  ["7d", "Last 7 d", 10080],
  ["custom", "Custom", 0],
];
const PAGE_SIZES = [10, 20, 50, 100];
const REFRESH_MS = 5000;
const MAX_TEXT = 4096; // longest text shown for one field; the rest is cut

// ---- DOM: elements built from text, never from markup --------------------------------------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function clip(value, limit = MAX_TEXT) {
  const text = value === undefined || value === null ? "" : String(value);
  return text.length > limit ? `${text.slice(0, limit)}… (${text.length - limit} more characters)` : text;
}

function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

function statusBadge(status) {
  return h("span", { class: `status ${STATUSES.includes(status) || status === "RETRY" ? status : ""}` }, status);
}

function props(pairs) {
  return h("dl", { class: "props" }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "")]));
}

function table(headers, rows, empty = "Nothing here.") {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
  );
}

const main = () => document.getElementById("main");

function render(...children) {
  main().replaceChildren(...children.flat(Infinity).filter(Boolean));
}

// ---- Messages --------------------------------------------------------------------------------

function showError(error) {
  const banner = document.getElementById("error");
  banner.textContent = error instanceof ApiError ? `${error.code}: ${clip(error.message)}` : clip(String(error?.message ?? error));
  banner.hidden = false;
}

function showNotice(...children) {
  const banner = document.getElementById("notice");
  banner.replaceChildren(...children);
  banner.hidden = false;
}

function clearMessages() {
  for (const id of ["error", "notice"]) {
    const banner = document.getElementById(id);
    banner.hidden = true;
    banner.replaceChildren();
  }
}

// ---- Session ---------------------------------------------------------------------------------

function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    if (saved && saved.token && Date.parse(saved.expiresAt) > Date.now()) return saved;
  } catch {
    // an unreadable entry is no session
  }
  return null;
}

function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
  route();
}

function tokenBody(method, project, accessKey, secretKey) {
  const identity =
    method === "hw_ak_sk"
      ? { methods: ["hw_ak_sk"], hw_ak_sk: { access: { key: accessKey }, secret: { key: secretKey } } }
      : { methods: ["password"], password: { user: { name: accessKey, password: secretKey } } };
  return { auth: { identity, scope: { project: { id: project } } } };
}

async function signIn(project, accessKey, secretKey) {
  let answer;
  try {
    answer = await request("POST", "/v3/auth/tokens", { body: tokenBody("hw_ak_sk", project, accessKey, secretKey), auth: false });
  } catch (error) {
    // An IAM that does not know the hw_ak_sk identity refuses the body; try a password one.
    if (!(error instanceof ApiError) || error.status !== 400) throw error;
    answer = await request("POST", "/v3/auth/tokens", { body: tokenBody("password", project, accessKey, secretKey), auth: false });
  }
  const token = answer.headers.get("X-Subject-Token");
  if (!token) throw new Error("the token answer has no X-Subject-Token header");
  const info = answer.data?.token ?? {};
  const saved = {
    token,
    project: info.project?.id || project,
    region: info.project?.name || "",
    user: info.user?.name || accessKey,
    expiresAt: info.expires_at || new Date(Date.now() + 3600e3).toISOString(),
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(saved));
  return saved;
}

// ---- API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function request(method, path, { query, body, auth = true } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (auth) {
    const current = session();
    if (!current) throw new ApiError(403, "FSS.0403", "signed out");
    headers["X-Auth-Token"] = current.token;
  }
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const url = params.toString() ? `${path}?${params}` : path;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(
      response.status,
      data?.error_code ?? `HTTP ${response.status}`,
      data?.error_msg ?? (text.slice(0, 200) || response.statusText),
    );
    if (auth && response.status === 403 && error.code === "FSS.0403" && /invalid token/.test(error.message)) {
      sessionStorage.removeItem(SESSION_KEY);
    }
    throw error;
  }
  return { data, headers: response.headers, status: response.status };
}

const enc = encodeURIComponent;
const projectPath = (suffix) => `/v2/${enc(session().project)}${suffix}`;
const functionPath = (urn, suffix = "") => projectPath(`/fgs/functions/${enc(urn)}${suffix}`);
const get = async (path, query) => (await request("GET", path, { query })).data;

async function findFunction(name, packageName) {
  const found = await get(projectPath("/fgs/functions"), { func_name: name, maxitems: 400 });
  const match = (found?.functions ?? []).find(
    (f) => f.func_name === name && (!packageName || f.package === packageName),
  );
  if (!match) throw new ApiError(404, "FSS.1051", `function ${name} not found`);
  return match;
}

function unqualified(urn) {
  // urn:fss:region:project:function:package:name[:qualifier]
  return urn.split(":").slice(0, 7).join(":");
}

// ---- Time ------------------------------------------------------------------------------------

// The API's times are UTC, "YYYY-MM-DDTHH:mm:ss" without a zone (or "YYYY-MM-DD HH:mm:ss").
function apiTime(date) {
  return date.toISOString().slice(0, 19);
}

function parseApiTime(text) {
  if (!text) return NaN;
  const iso = text.replace(" ", "T");
  return Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
}

function shownTime(text) {
  return text ? `${text.replace("T", " ").replace(/Z$/, "").slice(0, 19)}` : "";
}

function duration(start, end) {
  const ms = parseApiTime(end) - parseApiTime(start);
  if (!Number.isFinite(ms)) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 60000 ? 1 : 0)} s`;
}

// ---- Routing ---------------------------------------------------------------------------------

let generation = 0;
let timers = [];

function stopTimers() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
}

// One view's life: ``alive()`` turns false once another view has been opened.
function newView() {
  stopTimers();
  const mine = ++generation;
  return { alive: () => mine === generation };
}

function go(url) {
  history.pushState(null, "", url);
  route();
}

const ROUTES = [
  [/^\/console(?:\/functions)?\/?$/, () => functionsView()],
  [/^\/console\/functions\/([^/]+)\/?$/, (m) => functionView(decodeURIComponent(m[1]))],
  [/^\/console\/functions\/([^/]+)\/async-invocations\/?$/, (m) => invocationsView(decodeURIComponent(m[1]))],
  [
    /^\/console\/functions\/([^/]+)\/async-invocations\/([^/]+)\/?$/,
    (m) => detailView(decodeURIComponent(m[1]), decodeURIComponent(m[2])),
  ],
];

async function route() {
  clearMessages();
  const current = session();
  document.getElementById("who").textContent = current ? `${current.user} · project ${current.project}` : "";
  document.getElementById("sign-out").hidden = !current;
  if (!current) return signInView();
  for (const [pattern, view] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (match) {
      try {
        await view(match);
      } catch (error) {
        if (!session()) await route(); // the token was refused: sign in again, then say why
        showError(error);
      }
      return;
    }
  }
  newView();
  render(h("h1", {}, "Not found"), h("p", {}, link("/console/", "Functions")));
}

// ---- Sign-in ---------------------------------------------------------------------------------

function field(label, attrs) {
  return h("label", {}, label, h("input", { ...attrs, "aria-label": label }));
}

function signInView() {
  newView();
  const form = h(
    "form",
    { class: "signin card", autocomplete: "off" },
    h("h1", {}, "Sign in"),
    field("Project ID", { name: "project", required: true, autocomplete: "username" }),
    field("Access key", { name: "access", required: true }),
    field("Secret key", { name: "secret", type: "password", required: true, autocomplete: "current-password" }),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessages();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await signIn(form.project.value.trim(), form.access.value.trim(), form.secret.value);
      route();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });
  render(form);
}

// ---- Functions -------------------------------------------------------------------------------

async function functionsView() {
  const view = newView();
  const query = new URLSearchParams(location.search);
  const marker = Number(query.get("marker") ?? 0) || 0;
  const pageSize = 50;
  render(h("h1", {}, "Functions"), h("p", { class: "muted" }, "Loading…"));
  const page = await get(projectPath("/fgs/functions"), { marker, maxitems: pageSize });
  if (!view.alive()) return;
  const functions = page?.functions ?? [];
  const rows = functions.map((f) =>
    h(
      "tr",
      {},
      h("td", {}, link(`/console/functions/${enc(f.func_name)}${f.package !== "default" ? `?package=${enc(f.package)}` : ""}`, f.func_name)),
      h("td", {}, f.runtime),
      h("td", {}, `${f.memory_size} MB`),
      h("td", { class: "nowrap" }, shownTime(f.last_modified)),
      h("td", {}, f.package),
      h("td", {}, link(`/console/functions/${enc(f.func_name)}/async-invocations`, "Async invocations")),
    ),
  );
  const count = page?.count ?? functions.length;
  render(
    h("h1", {}, "Functions"),
    h(
      "section",
      { class: "card" },
      table(["Name", "Runtime", "Memory", "Last modified (UTC)", "Package", ""], rows, "No functions yet."),
      pager(marker, functions.length, count, (next) => go(`/console/functions?marker=${next}`), pageSize),
    ),
  );
}

function pager(marker, shown, count, open, pageSize) {
  const first = shown ? marker + 1 : 0;
  return h(
    "div",
    { class: "pager" },
    h("span", { class: "count", "data-testid": "count" }, `${first}–${marker + shown} of ${count}`),
    h("button", { type: "button", class: "secondary small", disabled: marker <= 0, onclick: () => open(Math.max(0, marker - pageSize)) }, "Previous"),
    h("button", { type: "button", class: "secondary small", disabled: marker + shown >= count, onclick: () => open(marker + shown) }, "Next"),
  );
}

async function functionView(name) {
  const view = newView();
  const packageName = new URLSearchParams(location.search).get("package");
  render(h("h1", {}, name), h("p", { class: "muted" }, "Loading…"));
  const fn = await findFunction(name, packageName);
  const urn = unqualified(fn.func_urn);
  const latest = `${urn}:latest`;
  const [config, asyncConfig, versions, aliases, triggers] = await Promise.allSettled([
    get(functionPath(latest, "/config")),
    get(functionPath(latest, "/async-invoke-config")),
    get(functionPath(urn, "/versions"), { maxitems: 400 }),
    get(functionPath(urn, "/aliases")),
    get(projectPath(`/fgs/triggers/${enc(urn)}`)),
  ]);
  if (!view.alive()) return;
  render(
    h("div", { class: "crumbs" }, link("/console/", "Functions"), " / ", name),
    h("h1", {}, name),
    h("div", { class: "actions" }, link(`/console/functions/${enc(name)}/async-invocations`, "Async invocations →")),
    section("Configuration", config, configPanel),
    section("Async invoke config", asyncConfig, asyncConfigPanel, (error) =>
      error.status === 404 ? h("p", { class: "muted" }, "None: events wait up to 3600 s and failed attempts are not retried.") : null,
    ),
    section("Versions", versions, (data) =>
      table(
        ["Version", "Version description", "Last modified (UTC)"],
        (data?.versions ?? []).map((v) => h("tr", {}, h("td", {}, v.version), h("td", {}, clip(v.version_description ?? "", 512)), h("td", { class: "nowrap" }, shownTime(v.last_modified)))),
      ),
    ),
    section("Aliases", aliases, (data) =>
      table(
        ["Alias", "Version", "Additional versions", "Description"],
        (Array.isArray(data) ? data : []).map((a) =>
          h(
            "tr",
            {},
            h("td", {}, a.name),
            h("td", {}, a.version),
            h("td", {}, Object.entries(a.additional_version_weights ?? {}).map(([v, w]) => `${v}: ${w}%`).join(", ")),
            h("td", {}, clip(a.description ?? "", 512)),
          ),
        ),
        "No aliases.",
      ),
    ),
    section("Triggers", triggers, (data) =>
      table(
        ["Type", "ID", "Status", "Details"],
        (Array.isArray(data) ? data : []).map((t) =>
          h("tr", {}, h("td", {}, t.trigger_type_code), h("td", { class: "mono" }, t.trigger_id), h("td", {}, t.trigger_status), h("td", { class: "msg" }, triggerSummary(t))),
        ),
        "No triggers.",
      ),
    ),
  );
}

function section(title, settled, show, onError) {
  let body;
  if (settled.status === "fulfilled") body = show(settled.value);
  else body = onError?.(settled.reason) ?? errorText(settled.reason);
  return h("section", { class: "card" }, h("h2", {}, title), body);
}

function errorText(error) {
  return h("p", { class: "banner error" }, error instanceof ApiError ? `${error.code}: ${clip(error.message)}` : String(error));
}

function configPanel(c) {
  return props([
    ["URN", h("span", { class: "mono" }, c.func_urn)],
    ["Runtime", c.runtime],
    ["Handler", c.handler],
    ["Memory", `${c.memory_size} MB`],
    ["Timeout", `${c.timeout} s`],
    ["Code type", c.code_type],
    ["Code size", `${c.code_size} bytes`],
    ["Concurrency", String(c.strategy_config?.concurrency ?? "")],
    ["Initializer", c.initializer_handler ? `${c.initializer_handler} (${c.initializer_timeout} s)` : "none"],
    ["Description", clip(c.description ?? "", 512)],
    ["Last modified (UTC)", shownTime(c.last_modified)],
  ]);
}

function asyncConfigPanel(a) {
  const destination = (d) => (d ? `${d.destination} ${clip(d.param ?? "", 512)}` : "none");
  return props([
    ["Max event age", `${a.max_async_event_age_in_seconds} s`],
    ["Max retry attempts", String(a.max_async_retry_attempts)],
    ["On success", destination(a.destination_config?.on_success)],
    ["On failure", destination(a.destination_config?.on_failure)],
    ["Last modified (UTC)", shownTime(a.last_modified)],
  ]);
}

function triggerSummary(t) {
  const e = t.event_data ?? {};
  if (t.trigger_type_code === "TIMER") return `${e.name ?? ""} ${e.schedule_type ?? ""} ${e.schedule ?? ""}`;
  if (e.invoke_url) return `${e.req_method ?? ""} ${e.invoke_url}`;
  return clip(JSON.stringify(e), 512);
}

// ---- Async invocations -----------------------------------------------------------------------

function filtersFromUrl() {
  const q = new URLSearchParams(location.search);
  const range = RANGES.some(([key]) => key === q.get("range")) ? q.get("range") : "1h";
  return {
    request_id: q.get("request_id") ?? "",
    status: STATUSES.includes(q.get("status")) ? q.get("status") : "",
    range,
    begin: q.get("begin") ?? "",
    end: q.get("end") ?? "",
    marker: Math.max(0, Number(q.get("marker") ?? 0) || 0),
    limit: PAGE_SIZES.includes(Number(q.get("limit"))) ? Number(q.get("limit")) : 20,
  };
}

function filtersUrl(name, filters) {
  const q = new URLSearchParams();
  for (const key of ["request_id", "status", "range", "begin", "end", "marker", "limit"]) {
    const value = filters[key];
    if (value !== "" && value !== undefined && !(key === "marker" && value === 0)) q.set(key, String(value));
  }
  if (filters.range !== "custom") {
    q.delete("begin");
    q.delete("end");
  }
  return `/console/functions/${enc(name)}/async-invocations?${q}`;
}

// The window the filters name, as [begin, end] Dates; quick ranges end now.
function timeWindow(filters) {
  if (filters.range === "custom") {
    const end = filters.end ? new Date(parseApiTime(filters.end)) : new Date();
    const begin = filters.begin ? new Date(parseApiTime(filters.begin)) : new Date(end.getTime() - 3600e3);
    return [begin, end];
  }
  const minutes = RANGES.find(([key]) => key === filters.range)[2];
  const end = new Date();
  return [new Date(end.getTime() - minutes * 60e3), end];
}

function filterForm(name, filters) {
  const select = (label, fieldName, options, value) =>
    h("label", {}, label, h("select", { name: fieldName, "aria-label": label }, options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(value) }, text))));
  const custom = filters.range === "custom";
  const form = h(
    "form",
    { class: "filters", role: "search" },
    h("label", { class: "wide" }, "Request ID", h("input", { name: "request_id", "aria-label": "Request ID", value: filters.request_id, maxlength: 64, spellcheck: "false" })),
    select("Status", "status", [["", "All"], ...STATUSES.map((x) => [x, x])], filters.status),
    select("Time range", "range", RANGES.map(([key, text]) => [key, text]), filters.range),
    h("label", { hidden: !custom }, "From (UTC)", h("input", { name: "begin", "aria-label": "From (UTC)", type: "datetime-local", step: 1, value: filters.begin })),
    h("label", { hidden: !custom }, "To (UTC)", h("input", { name: "end", "aria-label": "To (UTC)", type: "datetime-local", step: 1, value: filters.end })),
    select("Per page", "limit", PAGE_SIZES.map((n) => [n, String(n)]), filters.limit),
    h("button", { type: "submit" }, "Apply"),
  );
  form.range.addEventListener("change", () => {
    const on = form.range.value === "custom";
    form.begin.parentElement.hidden = !on;
    form.end.parentElement.hidden = !on;
    if (on && !form.begin.value) {
      const [begin, end] = timeWindow(filters);
      form.begin.value = apiTime(begin);
      form.end.value = apiTime(end);
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(
      filtersUrl(name, {
        request_id: form.request_id.value.trim(),
        status: form.status.value,
        range: form.range.value,
        begin: form.begin.value,
        end: form.end.value,
        limit: Number(form.limit.value),
        marker: 0,
      }),
    );
  });
  return form;
}

async function invocationsView(name) {
  const view = newView();
  const filters = filtersFromUrl();
  const fn = await findFunction(name, null);
  if (!view.alive()) return;
  const urn = unqualified(fn.func_urn);
  const list = h("div", { class: "records" }, h("p", { class: "muted" }, "Loading…"));
  const charts = h("div", { class: "charts" });
  const refresh = h("input", { type: "checkbox", name: "autorefresh", checked: sessionStorage.getItem(REFRESH_KEY) === "on" });
  render(
    h("div", { class: "crumbs" }, link("/console/", "Functions"), " / ", link(`/console/functions/${enc(name)}`, name), " / async invocations"),
    h("h1", {}, `Async invocations of ${name}`),
    h("section", { class: "card" }, filterForm(name, filters)),
    h(
      "section",
      { class: "card" },
      h("div", { class: "actions" }, h("label", { class: "check" }, refresh, ` Auto-refresh every ${REFRESH_MS / 1000} s`)),
      list,
    ),
    h("section", { class: "card" }, h("h2", {}, "Charts"), charts),
  );
  // Each load supersedes the ones before it (a Stop's reload may overlap the timer's): only
  // the newest one draws.
  let newest = 0;
  let inFlight = 0;
  const load = async () => {
    const mine = ++newest;
    const current = { alive: () => view.alive() && mine === newest };
    inFlight += 1;
    try {
      const [begin, end] = timeWindow(filters);
      const query = {
        request_id: filters.request_id,
        status: filters.status,
        query_begin_time: apiTime(begin),
        query_end_time: apiTime(end),
      };
      const page = await get(functionPath(urn, "/async-invocations"), { ...query, marker: filters.marker, limit: filters.limit });
      if (!current.alive()) return;
      list.replaceChildren(recordsTable(name, urn, page, filters, load));
      await drawCharts(charts, { urn, begin, end, view: current });
    } catch (error) {
      if (current.alive()) showError(error);
    } finally {
      inFlight -= 1;
    }
  };
  const setTimer = () => {
    stopTimers();
    if (refresh.checked) timers.push(setInterval(() => inFlight || load(), REFRESH_MS));
  };
  refresh.addEventListener("change", () => {
    sessionStorage.setItem(REFRESH_KEY, refresh.checked ? "on" : "off");
    setTimer();
  });
  setTimer();
  await load();
}

function recordsTable(name, urn, page, filters, reload) {
  const records = page?.invocations ?? [];
  const rows = records.map((r) =>
    h(
      "tr",
      { "data-request-id": r.request_id },
      h("td", { class: "mono" }, link(`/console/functions/${enc(name)}/async-invocations/${enc(r.request_id)}`, r.request_id)),
      h("td", {}, statusBadge(r.status)),
      h("td", { class: "nowrap" }, shownTime(r.start_time)),
      h("td", { class: "nowrap" }, shownTime(r.end_time)),
      h("td", {}, r.error_code ? String(r.error_code) : ""),
      h("td", { class: "msg" }, clip(r.error_message, 300)),
      h("td", {}, recordActions(urn, r, reload)),
    ),
  );
  return h(
    "div",
    {},
    table(["Request ID", "Status", "Start (UTC)", "End (UTC)", "Error code", "Error message", ""], rows, "No invocations match."),
    pager(filters.marker, records.length, page?.count ?? records.length, (marker) => go(filtersUrl(name, { ...filters, marker })), filters.limit),
  );
}

function recordActions(urn, record, after) {
  if (record.status === "WAIT" || record.status === "RUNNING") {
    return h("button", { type: "button", class: "danger small", onclick: (e) => act(e, () => stopInvocation(urn, record), after) }, "Stop");
  }
  if (record.status === "FAIL" || record.status === "DISCARD") {
    return h("button", { type: "button", class: "secondary small", onclick: (e) => act(e, () => rerunInvocation(urn, record), after) }, "Re-run");
  }
  return null;
}

async function act(event, operation, after) {
  const button = event.currentTarget;
  button.disabled = true;
  clearMessages();
  try {
    await operation();
    await after();
  } catch (error) {
    showError(error);
    button.disabled = false;
  }
}

async function stopInvocation(urn, record) {
  await request("POST", functionPath(urn, "/cancel"), { body: { request_id: record.request_id, type: "force" } });
  showNotice(`Stopped ${record.request_id}.`);
}

// The rerun extension, narrowed to this one record by its request id (and its own second).
async function rerunInvocation(urn, record) {
  const answer = await request("POST", projectPath(`/openfgs/functions/${enc(urn)}/rerun`), {
    body: {
      request_id: record.request_id,
      query_begin_time: record.start_time,
      query_end_time: record.start_time,
      status: record.status,
      limit: 1,
    },
  });
  const rerun = answer.data?.reruns?.[0];
  if (!rerun) throw new ApiError(404, "FSS.0404", `nothing to re-run for ${record.request_id}`);
  showNotice(`Re-run of ${rerun.rerun_of} queued as ${rerun.request_id}.`);
}

// ---- Charts ----------------------------------------------------------------------------------

// The statuses a bucket's records are stacked by, bottom up, as the async series names them
// (CANCELED: a FAIL or DISCARD that was a cancel; RUNNING and WAIT: not ended yet).
const KINDS = ["SUCCESS", "FAIL", "DISCARD", "CANCELED", "RUNNING", "WAIT"];
const MAX_PERIOD_MINUTES = 10080; // the statistics' longest window: a week
const PERCENTILES = ["p50", "p90", "p99"];

// openfgs's async series over the window (ListFunctionAsyncSeries: records per status, dispatch
// and run-time percentiles, waiting depth, per bucket), or null when the server has none.
async function loadSeries(urn, begin, end) {
  // Every minute the window touches, so that its first bucket holds its beginning (the last
  // week of a longer window).
  const touched = Math.floor(end.getTime() / 60e3) - Math.floor(begin.getTime() / 60e3) + 1;
  const minutes = Math.min(MAX_PERIOD_MINUTES, Math.max(1, touched));
  try {
    return await get(functionPath(urn, `/openfgs-statistics/${minutes}`), { end_time: String(end.getTime()) });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.code === "FSS.0404") return null;
    throw error;
  }
}

// Each panel: its title and what it draws from the series.
const PANELS = [
  ["Invocations per status", (data) => [stackedBars(data), legend(KINDS)]],
  ["Dispatch time (ms)", (data) => percentileLines(data, data.dispatch_ms, "dispatch")],
  ["Run time (ms)", (data) => percentileLines(data, data.run_ms, "run")],
  ["Waiting depth", (data) => [lines(data, [{ name: "waiting", values: data.waiting }]), legend(["waiting at each bucket's end"], true)]],
];

async function drawCharts(container, { urn, begin, end, view }) {
  const [settled] = await Promise.allSettled([loadSeries(urn, begin, end)]);
  if (!view.alive()) return;
  const panels = PANELS.map(([title, show]) => chartPanel(title, settled, show));
  if (settled.status === "fulfilled" && settled.value) {
    const minutes = settled.value.bucket_ms / 60e3;
    panels.push(h("p", { class: "muted chart-note" }, `Buckets of ${minutes < 60 ? `${minutes} min` : `${minutes / 60} h`} by accept time; a gap is a bucket without a time to show.`));
  }
  container.replaceChildren(...panels);
}

function chartPanel(title, settled, show) {
  let body;
  if (settled.status === "rejected") body = errorText(settled.reason);
  else if (settled.value === null) body = h("p", { class: "unavailable" }, "statistics not available");
  else body = show(settled.value);
  return h("figure", { class: "chart", "data-chart": title }, h("h2", {}, title), body);
}

function percentileLines(data, percentiles, what) {
  const series = PERCENTILES.map((p) => ({ name: `${what} ${p}`, values: percentiles?.[p] ?? [] }));
  const shown = [lines(data, series), legend(series.map((x) => x.name), true)];
  if (!series.some((x) => x.values.some((v) => v !== null))) shown.push(h("p", { class: "muted" }, "No record of this window has a time yet."));
  return shown;
}

// The window the series cover: the first bucket's start to the last one's end.
function span(data) {
  const times = data.timestamps;
  return [times[0], times[times.length - 1] + data.bucket_ms];
}

const CHART_W = 600;
const CHART_H = 220;
const PAD = { left: 44, right: 8, top: 12, bottom: 26 };

function axes(maxValue, fromTime, toTime) {
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const label = (t) => new Date(t).toISOString().slice(5, 16).replace("T", " ");
  return [
    s("line", { class: "axis", x1: PAD.left, y1: PAD.top + plotH, x2: CHART_W - PAD.right, y2: PAD.top + plotH }),
    s("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH }),
    s("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, formatNumber(maxValue)),
    s("text", { x: PAD.left - 4, y: PAD.top + plotH, "text-anchor": "end" }, "0"),
    s("text", { x: PAD.left, y: CHART_H - 6 }, label(fromTime)),
    s("text", { x: CHART_W - PAD.right, y: CHART_H - 6, "text-anchor": "end" }, label(toTime)),
  ];
}

function formatNumber(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : String(Math.round(value * 10) / 10);
}

function stackedBars(data) {
  const times = data.timestamps;
  const counts = (kind) => data.statuses?.[kind] ?? [];
  const totals = times.map((_, i) => KINDS.reduce((sum, kind) => sum + (counts(kind)[i] ?? 0), 0));
  const max = Math.max(1, ...totals);
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const barW = plotW / Math.max(1, times.length);
  const bars = [];
  times.forEach((time, i) => {
    let y = PAD.top + plotH;
    for (const kind of KINDS) {
      const count = counts(kind)[i] ?? 0;
      if (!count) continue;
      const height = (count / max) * plotH;
      y -= height;
      bars.push(
        s("rect", { class: `bar-${kind}`, "data-bucket": time, x: (PAD.left + i * barW + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(0.5, barW - 1).toFixed(1), height: height.toFixed(1) }, s("title", {}, `${new Date(time).toISOString().slice(0, 16)}Z ${kind}: ${count}`)),
      );
    }
  });
  const [from, to] = span(data);
  return s("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: "img", "aria-label": "invocations per status" }, axes(max, from, to), bars);
}

const LINE_COLOURS = ["#2563eb", "#d97706", "#dc2626", "#16a34a", "#7c3aed", "#0891b2"];

// Lines over the buckets (each value at its bucket's middle); a bucket without a value (null)
// breaks its line, and a value between two gaps is a dot.
function lines(data, series) {
  const [t0, t1] = span(data);
  const middle = data.bucket_ms / 2;
  const max = Math.max(1, ...series.flatMap((x) => x.values.filter((v) => v !== null)));
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const x = (t) => (PAD.left + ((t + middle - t0) / (t1 - t0)) * plotW).toFixed(1);
  const y = (v) => (PAD.top + plotH - (v / max) * plotH).toFixed(1);
  const marks = series.flatMap((one, i) => {
    const colour = LINE_COLOURS[i % LINE_COLOURS.length];
    return runsOf(data.timestamps, one.values).map((run) => {
      const attrs = { "data-series": one.name, "data-points": run.length };
      const title = s("title", {}, one.name);
      if (run.length === 1) return s("circle", { ...attrs, class: "dot", fill: colour, cx: x(run[0][0]), cy: y(run[0][1]), r: 2.5 }, title);
      return s("polyline", { ...attrs, class: "line", stroke: colour, points: run.map(([t, v]) => `${x(t)},${y(v)}`).join(" ") }, title);
    });
  });
  return s("svg", { viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: "img", "aria-label": series.map((x) => x.name).join(", ") }, axes(max, t0, t1), marks);
}

// The unbroken runs of [time, value] in a series: a null (or missing) value ends a run.
function runsOf(times, values) {
  const found = [];
  let run = [];
  times.forEach((time, i) => {
    const value = values[i];
    if (typeof value === "number" && Number.isFinite(value)) {
      run.push([time, value]);
    } else if (run.length) {
      found.push(run);
      run = [];
    }
  });
  if (run.length) found.push(run);
  return found;
}

function legend(names, coloured = false) {
  return h(
    "ul",
    { class: "legend" },
    names.map((name, i) => {
      const swatch = h("span", { class: coloured ? "swatch" : `swatch ${name}` });
      if (coloured) swatch.style.background = LINE_COLOURS[i % LINE_COLOURS.length];
      return h("li", {}, swatch, name);
    }),
  );
}

// ---- One record ------------------------------------------------------------------------------

async function detailView(name, requestId) {
  const view = newView();
  render(h("h1", {}, requestId), h("p", { class: "muted" }, "Loading…"));
  const load = async () => {
    const d = await get(projectPath(`/openfgs/async-invocations/${enc(requestId)}`));
    if (!view.alive()) return;
    const listUrl = `/console/functions/${enc(name)}/async-invocations`;
    const attempts = (d.attempts ?? []).map((a) =>
      h(
        "tr",
        {},
        h("td", {}, String(a.attempt)),
        h("td", {}, statusBadge(a.outcome)),
        h("td", { class: "nowrap" }, shownTime(a.start_time)),
        h("td", { class: "nowrap" }, shownTime(a.end_time)),
        h("td", { class: "nowrap" }, duration(a.start_time, a.end_time)),
        h("td", { class: "mono" }, a.worker_id),
        h("td", {}, a.error_code ? String(a.error_code) : ""),
        h("td", { class: "msg" }, clip(a.error_message, 1024)),
      ),
    );
    render(
      h("div", { class: "crumbs" }, link("/console/", "Functions"), " / ", link(`/console/functions/${enc(name)}`, name), " / ", link(listUrl, "async invocations"), " / ", requestId),
      h("h1", { class: "mono" }, d.request_id),
      h("div", { class: "actions" }, d.func_urn ? recordActions(d.func_urn, d, load) : null),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Record"),
        props([
          ["Status", statusBadge(d.status)],
          ["Function", h("span", { class: "mono" }, d.func_urn)],
          ["Accepted (UTC)", shownTime(d.start_time)],
          ["Ended (UTC)", shownTime(d.end_time)],
          ["Attempt", `${d.attempt} of at most ${d.max_attempts}`],
          ["Error code", d.error_code ? String(d.error_code) : ""],
          ["Error message", d.error_message ? h("pre", { class: "text" }, clip(d.error_message)) : ""],
          ["Re-run of", d.rerun_of ? link(`/console/functions/${enc(name)}/async-invocations/${enc(d.rerun_of)}`, d.rerun_of) : "—"],
        ]),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Attempts"),
        table(["#", "Outcome", "Start (UTC)", "End (UTC)", "Took", "Worker", "Error code", "Error message"], attempts, "Not run yet."),
      ),
      h("p", { class: "muted" }, "The API keeps no event, result or log of an async invocation; the error message above is what its attempts reported."),
    );
  };
  await load();
}

// ---- Start -----------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const anchor = event.target.closest?.("a[data-link]");
  if (!anchor || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  go(anchor.getAttribute("href"));
});
document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("popstate", route);
route();
