// Usage of the last 30 days: calls per day as an SVG bar chart (errors stacked in red,
// tokens and cost in each bar's tooltip and in the table alternative), a table by model,
// and the hosted trial quotas as <progress> bars.

import { h, s, clear, fmtNumber, uid, debounce } from "./dom.js";
import { put, tenantPath } from "./api.js";
import { state, hooks, displayName, isOperator } from "./state.js";
import { openDialog, alertBox, buttonRow, field, toast } from "./ui.js";

const DAY_MS = 86400000;
const CHART_HEIGHT = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 44 };

/** UTC dates "YYYY-MM-DD" of the last 30 days, oldest first (today included). */
export function last30Days(now = new Date()) {
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - 29);
  return Array.from({ length: 30 }, (_, i) => new Date(start + i * DAY_MS).toISOString().slice(0, 10));
}

export function buildUsageSection() {
  const section = h("section", { id: "usage", class: "section", "aria-labelledby": "usage-title" },
    h("div", { class: "section__head" },
      h("h2", { id: "usage-title", tabindex: "-1", text: "Usage" }),
      h("p", { class: "muted section__lead", text: "The last 30 days, UTC." })),
    h("div", { class: "usage__grid" },
      h("div", { class: "panel usage__chart" }),
      h("div", { class: "panel usage__quota" })),
    h("div", { class: "panel usage__models" }));
  // The chart is drawn at the container's real width so its text stays legible on phones;
  // redraw when that width changes (rotation, window resize).
  const redraw = debounce(() => {
    const slot = section.querySelector(".usage__chart");
    if (slot && Math.abs(slot.clientWidth - Number(slot.dataset.drawnWidth || 0)) > 8) renderChart(section);
  }, 150);
  // Watch the chart's own box: it also changes width when the quota panel beside it goes.
  new ResizeObserver(redraw).observe(section.querySelector(".usage__chart"));
  return section;
}

function niceMax(value) {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/** US dollars as the API gives them: null is "unpriced" (no price configured), never $0;
 * "+" marks a sum that leaves unpriced calls out. */
export function fmtCost(cost, unpriced = 0) {
  if (cost === null || cost === undefined) return unpriced ? "unpriced" : "—";
  const digits = cost === 0 || cost >= 0.01 ? 2 : Math.min(9, 2 - Math.floor(Math.log10(cost)));
  return `$${cost.toFixed(digits)}${unpriced ? "+" : ""}`;
}

function dayRows() {
  const byDay = new Map((state.data.usageDay?.data || []).map((row) => [row.key, row]));
  return last30Days().map((day) => {
    const row = byDay.get(day) || {};
    return { day, requests: row.requests || 0, errors: row.errors || 0, tokens: row.total_tokens || 0,
      estimated: Boolean(row.estimated), cost: row.cost ?? null, unpriced: row.unpriced_requests || 0 };
  });
}

function renderChart(section) {
  const slot = section.querySelector(".usage__chart");
  const title = h("h3", { class: "panel__title", text: "Calls per day" });
  if (state.errors.usageDay || !state.data.usageDay) {
    clear(slot, title, h("p", { class: state.errors.usageDay ? "error-text" : "muted",
      text: state.errors.usageDay ? `Could not load usage: ${state.errors.usageDay.message}` : "Loading…" }));
    return;
  }
  const days = dayRows();
  const width = Math.max(slot.clientWidth - 32, 280);
  const plotW = width - PAD.left - PAD.right;
  const plotH = CHART_HEIGHT - PAD.top - PAD.bottom;
  const max = niceMax(Math.max(...days.map((d) => d.requests)));
  const slotW = plotW / days.length;
  const barW = Math.max(Math.min(slotW * 0.7, 24), 2);
  const y = (v) => PAD.top + plotH - (v / max) * plotH;

  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
    const v = Math.round(max * f);
    return s("g", { class: "chart__grid" },
      s("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", text: fmtNumber(v) }));
  });
  const labelEvery = width < 500 ? 7 : 5;
  const bars = days.map((d, i) => {
    const x = PAD.left + i * slotW + (slotW - barW) / 2;
    const ok = d.requests - d.errors;
    const tip = `${d.day}: ${fmtNumber(d.requests)} calls` + (d.errors ? ` (${fmtNumber(d.errors)} failed)` : "") +
      `, ${d.estimated ? "~" : ""}${fmtNumber(d.tokens)} tokens` + (d.requests ? `, ${fmtCost(d.cost, d.unpriced)}` : "");
    return s("g", { class: "chart__day" },
      s("title", { text: tip }),
      // A full-height transparent target so the tooltip works on empty days too.
      s("rect", { class: "chart__hit", x: PAD.left + i * slotW, y: PAD.top, width: slotW, height: plotH }),
      ok > 0 ? s("rect", { class: "chart__bar", x, y: y(d.requests), width: barW, height: y(d.errors) - y(d.requests) }) : null,
      d.errors > 0 ? s("rect", { class: "chart__bar chart__bar--error", x, y: y(d.errors), width: barW,
        height: y(0) - y(d.errors) }) : null,
      // Count label positions back from today so the last label never collides with another.
      (days.length - 1 - i) % labelEvery === 0
        ? s("text", { class: "chart__label", x: x + barW / 2, y: CHART_HEIGHT - 8, "text-anchor": "middle",
          text: d.day.slice(5) }) : null);
  });
  const svg = s("svg", { class: "chart", role: "img", "aria-label": "Calls per day, last 30 days",
    width, height: CHART_HEIGHT, viewBox: `0 0 ${width} ${CHART_HEIGHT}` },
  grid, s("line", { class: "chart__axis", x1: PAD.left, x2: width - PAD.right, y1: y(0), y2: y(0) }), bars);

  const total = days.reduce((a, d) => ({ requests: a.requests + d.requests, errors: a.errors + d.errors,
    tokens: a.tokens + d.tokens, cost: d.cost === null ? a.cost : (a.cost ?? 0) + d.cost,
    unpriced: a.unpriced + d.unpriced }), { requests: 0, errors: 0, tokens: 0, cost: null, unpriced: 0 });
  const table = h("div", { class: "table-scroll" }, h("table", { class: "table table--compact" },
    h("thead", {}, h("tr", {}, ["Day (UTC)", "Calls", "Failed", "Tokens", "Cost"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, days.map((d) => h("tr", {}, h("th", { scope: "row", text: d.day }),
      h("td", { text: fmtNumber(d.requests) }), h("td", { text: fmtNumber(d.errors) }),
      h("td", { text: `${d.estimated ? "~" : ""}${fmtNumber(d.tokens)}` }),
      h("td", { text: fmtCost(d.cost, d.unpriced) }))))));
  clear(slot, title,
    h("p", { class: "chart__summary" },
      h("span", { class: "legend legend--ok", text: `${fmtNumber(total.requests - total.errors)} succeeded` }), " ",
      h("span", { class: "legend legend--error", text: `${fmtNumber(total.errors)} failed` }), " ",
      h("span", { class: "muted", text: `${fmtNumber(total.tokens)} tokens` }),
      total.requests ? h("span", { class: "muted", text: ` · ${fmtCost(total.cost, total.unpriced)}` }) : null),
    h("div", { class: "chart__wrap" }, svg),
    h("details", { class: "chart__data" }, h("summary", { text: "Show the numbers" }), table));
  slot.dataset.drawnWidth = String(slot.clientWidth);
}

function renderModels(section) {
  const slot = section.querySelector(".usage__models");
  const title = h("h3", { class: "panel__title", text: "By model" });
  if (state.errors.usageModel || !state.data.usageModel) {
    clear(slot, title, h("p", { class: state.errors.usageModel ? "error-text" : "muted",
      text: state.errors.usageModel ? `Could not load usage: ${state.errors.usageModel.message}` : "Loading…" }));
    return;
  }
  const rows = [...(state.data.usageModel.data || [])].sort((a, b) => (b.requests || 0) - (a.requests || 0));
  if (!rows.length) {
    clear(slot, title, h("p", { class: "muted empty", text: "No calls in the last 30 days." }));
    return;
  }
  const mark = (row, n) => `${row.estimated ? "~" : ""}${fmtNumber(n)}`;
  const ms = (v) => (typeof v === "number" ? `${fmtNumber(Math.round(v))} ms` : "—");
  const anyEstimated = rows.some((r) => r.estimated);
  clear(slot, title,
    h("div", { class: "table-scroll", role: "region", "aria-label": "Usage by model", tabindex: "0" },
      h("table", { class: "table" },
        h("thead", {}, h("tr", {}, ["Model", "Calls", "Failed", "Hosted", "Prompt tokens", "Completion tokens",
          "Total tokens", "Cost", "Avg latency", "Avg first token"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, rows.map((row) => h("tr", {},
          h("th", { scope: "row", class: "mono", text: row.key }),
          h("td", { text: fmtNumber(row.requests) }),
          h("td", { text: fmtNumber(row.errors) }),
          h("td", { text: fmtNumber(row.hosted) }),
          h("td", { text: mark(row, row.prompt_tokens) }),
          h("td", { text: mark(row, row.completion_tokens) }),
          h("td", { text: mark(row, row.total_tokens) }),
          h("td", { text: fmtCost(row.cost, row.unpriced_requests) }),
          h("td", { text: ms(row.avg_latency_ms) }),
          h("td", { text: ms(row.avg_ttft_ms) })))))),
    anyEstimated ? h("p", { class: "muted small", text: "~ includes token counts estimated by the gateway." }) : null,
    rows.some((r) => r.unpriced_requests) ? h("p", { class: "muted small",
      text: "unpriced: the gateway has no price for the model; + leaves such calls out of the cost." }) : null);
}

function renderQuota(section) {
  const slot = section.querySelector(".usage__quota");
  const title = h("h3", { class: "panel__title", text: "Hosted trial quota" });
  if (state.errors.quota) {
    clear(slot, title, h("p", { class: "error-text", text: `Could not load the quota: ${state.errors.quota.message}` }));
    return;
  }
  const quota = state.data.quota;
  if (!quota) {
    clear(slot, title, h("p", { class: "muted", text: "Loading…" }));
    return;
  }
  // Without a hosted trial the panel would be an empty box: give the chart the whole row.
  section.querySelector(".usage__grid").classList.toggle("usage__grid--single", !quota.length);
  if (!quota.length) {
    clear(slot, title, h("p", { class: "muted empty", text: "This gateway offers no hosted trial." }));
    return;
  }
  clear(slot, title, h("ul", { class: "quota-list" }, quota.map((q) => {
    const id = uid("quota");
    const name = displayName(q.provider);
    const unlimited = q.limit < 0;
    const exhausted = !unlimited && q.remaining === 0;
    const text = unlimited ? `${name}: ${fmtNumber(q.used)} calls used, unlimited`
      : `${name}: ${fmtNumber(q.used)} / ${fmtNumber(q.limit)} calls used`;
    return h("li", { class: "quota" },
      unlimited ? h("p", { class: "quota__label", text }) : h("label", { for: id, class: "quota__label", text }),
      // No bar for an unlimited quota: a <progress> without a value would look busy instead.
      unlimited ? null
        : h("progress", { id, class: ["quota__bar", exhausted && "is-exhausted"], max: Math.max(q.limit, 1),
          value: Math.min(q.used, Math.max(q.limit, 1)) }),
      h("p", { class: ["small", exhausted && !q.own_credential ? "danger-text" : "muted"], text: q.own_credential
        ? "Not in use: requests go with this tenant's own key."
        : exhausted ? "quota exhausted" : unlimited ? "No limit." : `${fmtNumber(q.remaining)} calls left.` }),
      // Hosted quotas are the operator's to grant; a tenant's console only shows them.
      isOperator() ? h("button", { type: "button", class: "btn btn--small", "data-focus-key": `quota-${q.provider}`,
        "aria-label": `Set the ${name} trial limit`, text: "Set limit", onClick: (e) => quotaDialog(q, e.currentTarget) })
        : null);
  })));
}

/** PUT T/quota/{provider}: a number of calls in total (-1 unlimited), or empty for the configured quota. */
function quotaDialog(q, opener) {
  const name = displayName(q.provider);
  const d = openDialog({ title: `${name} trial limit`, opener });
  const alert = alertBox();
  const input = h("input", { type: "number", name: "limit", min: "-1", step: "1", inputmode: "numeric",
    value: q.limit, autocomplete: "off" });
  const save = h("button", { type: "submit", class: "btn btn--primary", text: "Save" });
  const form = h("form", { class: "form", novalidate: true },
    field({ label: "Calls allowed", control: input,
      help: `${fmtNumber(q.used)} used so far (they still count). -1 for unlimited; empty for the gateway's configured quota.` }),
    alert.el,
    buttonRow(save, h("button", { type: "button", class: "btn", text: "Cancel", onClick: () => d.close() })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const raw = input.value.trim();
    const limit = raw === "" ? null : Number(raw);
    if (limit !== null && (!Number.isInteger(limit) || limit < -1)) {
      alert.show("Enter a whole number of calls, -1 for unlimited, or leave it empty.");
      return;
    }
    save.disabled = true;
    alert.hide();
    try {
      await put(tenantPath(state.tenant.id, "quota", q.provider), { limit });
    } catch (error) {
      if (error.status === 401) return;
      alert.show(error.message);
      save.disabled = false;
      return;
    }
    d.close();
    toast("Modified successfully");
    hooks.refresh(["quota", "choices", "providers"]);
  });
  d.body.append(form);
  input.focus();
}

export function renderUsage(section, parts = ["chart", "models", "quota"]) {
  if (parts.includes("chart")) renderChart(section);
  if (parts.includes("models")) renderModels(section);
  if (parts.includes("quota")) renderQuota(section);
}
