// Loan officer page: one form, one call to POST /v1/quotes, one card per product. No external assets.
"use strict";

const TEXT = {
  zh: {
    title: "指数贷报价", apiKey: "API 密钥", creditCode: "统一社会信用代码", amount: "申请金额(元,可选)",
    submit: "查询报价", resultFor: "报价结果", quoteId: "报价编号", asOf: "数据日期", expires: "有效期至",
    model: "模型", eligible: "可授信", ineligible: "不可授信", index: "指数", grade: "等级", tier: "档位",
    limit: "额度(元)", rateBand: "利率区间", rate: "执行利率", fee: "担保费", subsidy: "贴息",
    allIn: "综合成本", pd: "违约概率", reasons: "主要原因", nextGrade: "提升到下一等级", riskFactors: "风险因素",
    loading: "正在报价…", best: "最优方案", none: "无可授信产品", version: "版本", perYear: "年",
    together: "需同时提升", unreachable: "现有指标无法达到下一等级", pointsNeeded: "还需分数",
    needKey: "请输入 API 密钥", needCode: "请输入统一社会信用代码",
    badRequest: "请求有误", badCode: "统一社会信用代码有误", authFailed: "API 密钥无效或已停用",
    forbidden: "此密钥的角色无权报价", notFound: "未找到", network: "无法连接服务",
  },
  en: {
    title: "Index-loan quotes", apiKey: "API key", creditCode: "Unified social credit code",
    amount: "Requested amount (CNY, optional)", submit: "Get quote", resultFor: "Quote", quoteId: "Quote ID",
    asOf: "Data as of", expires: "Expires", model: "Model", eligible: "Eligible", ineligible: "Not eligible",
    index: "Index", grade: "Grade", tier: "Tier", limit: "Limit (CNY)", rateBand: "Rate band", rate: "Rate",
    fee: "Guarantee fee", subsidy: "Subsidy", allIn: "All-in cost", pd: "PD", reasons: "Main reasons",
    nextGrade: "To reach the next grade", riskFactors: "Risk factors", loading: "Quoting…", best: "Best offer",
    none: "No eligible product", version: "version", perYear: "a year", together: "Raise together",
    unreachable: "The next grade cannot be reached with the current indicators", pointsNeeded: "points needed",
    needKey: "Enter an API key", needCode: "Enter a unified social credit code",
    badRequest: "Invalid request", badCode: "Invalid unified social credit code",
    authFailed: "The API key is unknown or revoked", forbidden: "This key's role may not request quotes",
    notFound: "Not found", network: "The service cannot be reached",
  },
};
const MAX_REASONS = 5;
const UNITS = { zh: { CNY: "元", points: "分", mu: "亩" }, en: {} }; // units in quotes are English codes

let lang = localStorage.getItem("indexloan.lang") === "en" ? "en" : "zh";
let lastQuote = null;
let lastError = null; // {key, detail}: re-rendered in the other language on a switch
const indicatorNames = {}; // product -> indicator code -> {zh, en}, from GET /v1/products/{code}

function t(key) { return TEXT[lang][key] || key; }

function pick(obj) {
  // Bilingual values come as {zh, en} or as plain strings.
  if (obj && typeof obj === "object" && ("zh" in obj || "en" in obj)) return obj[lang] || obj.zh || obj.en;
  return obj;
}

function missing(v) { return v === null || v === undefined; }
function pct(v) { return missing(v) ? "—" : `${Number(v).toFixed(2)}%`; }
function cny(v) { return missing(v) ? "—" : Number(v).toLocaleString(lang === "zh" ? "zh-CN" : "en-US"); }
// Fees, subsidies and the all-in cost come as {pct, cny}: a yearly percentage and its amount on the limit.
function money(v) {
  if (missing(v)) return "—";
  if (typeof v !== "object") return pct(v);
  return `${pct(v.pct)} (¥${cny(v.cny)}/${t("perYear")})`;
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang-zh").setAttribute("aria-pressed", String(lang === "zh"));
  document.getElementById("lang-en").setAttribute("aria-pressed", String(lang === "en"));
  document.title = t("title");
  if (lastQuote) render(lastQuote);
  if (lastError) showError(lastError);
}

function reasonText(r) {
  if (typeof r === "string") return r;
  return r[lang] || pick(r.text) || r.code;
}

function indicatorName(product, code) {
  const names = indicatorNames[product];
  return (names && names[code] && pick(names[code])) || code;
}

function nextGradeLines(q) {
  const next = q.next_grade;
  if (!next) return [];
  if (!next.reachable) return [t("unreachable")];
  const lines = (next.changes || []).map((c) => {
    if (c.text && c.text[lang]) return `→ ${next.grade}: ${c.text[lang]}`; // worded by the server's visibility rule
    const from = missing(c.from) ? "—" : c.from;
    return `→ ${next.grade}: ${pick(c.name) || c.indicator} ${from} → ${c.to}${c.unit ? ` ${UNITS[lang][c.unit] || c.unit}` : ""} (+${c.points_gain})`;
  });
  if (next.combined && next.combined.length) {
    const parts = next.combined.map((c) => `${indicatorName(q.product, c.indicator)} +${c.points_gain}`);
    lines.push(`→ ${next.grade}: ${t("together")} (${t("pointsNeeded")} ${next.points_needed}): ${parts.join(", ")}`);
  }
  return lines;
}

function card(q) {
  const div = document.createElement("div");
  div.className = `card ${q.eligible ? "eligible" : "ineligible"}`;
  div.dataset.product = q.product;
  const name = pick(q.product_name) || q.product;
  const h = document.createElement("h3");
  h.textContent = `${name} — ${q.eligible ? t("eligible") : t("ineligible")}`;
  div.appendChild(h);
  const dl = document.createElement("dl");
  const band = Array.isArray(q.rate_band) ? `${pct(q.rate_band[0])} – ${pct(q.rate_band[1])}` : "—";
  const rows = [
    ["index", q.index ?? "—"], ["grade", q.grade ?? "—"], ["tier", pick(q.tier) ?? "—"],
    ["limit", cny(q.limit_cny)], ["rateBand", band], ["rate", pct(q.rate)],
    ["fee", money(q.guarantee_fee)], ["subsidy", money(q.subsidy)], ["allIn", money(q.all_in_cost)],
    ["pd", missing(q.pd) ? "—" : `${(q.pd * 100).toFixed(2)}%`],
  ];
  for (const [key, value] of rows) {
    const dt = document.createElement("dt"); dt.textContent = t(key);
    const dd = document.createElement("dd"); dd.textContent = value; dd.dataset.field = key;
    dl.append(dt, dd);
  }
  div.appendChild(dl);
  // Why: the decline reasons first, then where the score lost most points.
  const reasons = [...(q.reasons || []), ...(q.top_reasons || [])].slice(0, MAX_REASONS).map(reasonText);
  const lists = [["reasons", reasons], ["nextGrade", nextGradeLines(q)],
    ["riskFactors", (q.risk_factors || []).slice(0, 3).map((f) => `${f[lang] || f.feature} (${Number(f.contribution).toFixed(3)})`)]];
  for (const [key, items] of lists) {
    if (!items.length) continue;
    const p = document.createElement("p"); p.textContent = t(key);
    const ul = document.createElement("ul"); ul.dataset.list = key;
    for (const item of items) { const li = document.createElement("li"); li.textContent = item; ul.appendChild(li); }
    div.append(p, ul);
  }
  const small = document.createElement("p"); small.className = "meta";
  small.textContent = `${t("version")} ${q.product_version}`;
  div.appendChild(small);
  return div;
}

function render(data) {
  document.getElementById("result").hidden = false;
  document.getElementById("result-code").textContent = data.credit_code;
  document.getElementById("quote-id").textContent = data.quote_id;
  document.getElementById("as-of").textContent = data.as_of;
  document.getElementById("expires").textContent = data.expires_at;
  document.getElementById("model-version").textContent = data.model_version || "—";
  const best = data.best_offer;
  document.getElementById("best-offer").textContent = best
    ? `${t("best")}: ${pick(best.product_name) || best.product} · ${cny(best.limit_cny)} · ${pct(best.rate)}`
    : t("none");
  document.getElementById("products").replaceChildren(...data.quotes.map(card));
}

function showError(error) {
  const status = document.getElementById("status");
  status.className = "error";
  status.textContent = error.detail ? `${t(error.key)}: ${error.detail}` : t(error.key);
}

function problemKey(status, data) {
  if (status === 401) return "authFailed";
  if (status === 403) return "forbidden";
  if ((data.errors || []).some((e) => e.field === "credit_code")) return "badCode";
  return status === 404 ? "notFound" : "badRequest";
}

async function loadIndicatorNames(key, products) {
  // Names for the "raise together" hints; the page works without them (codes are shown instead).
  await Promise.all(products.filter((p) => !indicatorNames[p]).map(async (p) => {
    try {
      const response = await fetch(`/v1/products/${encodeURIComponent(p)}`, { headers: { Authorization: `Bearer ${key}` } });
      if (!response.ok) return;
      const names = {};
      for (const dim of Object.values((await response.json()).definition.dimensions || {})) {
        for (const ind of dim.indicators || []) names[ind.code] = ind.name;
      }
      indicatorNames[p] = names;
    } catch (_) { /* optional */ }
  }));
}

async function submitQuote(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  const key = document.getElementById("api-key").value.trim();
  const code = document.getElementById("credit-code").value.trim().toUpperCase();
  lastError = null;
  if (!key || !code) {
    lastError = { key: key ? "needCode" : "needKey" };
    showError(lastError);
    return;
  }
  sessionStorage.setItem("indexloan.key", key);
  const body = { credit_code: code };
  const amount = document.getElementById("amount").value;
  if (amount) body.requested_amount_cny = Number(amount);
  status.className = ""; status.textContent = t("loading");
  let response;
  try {
    response = await fetch("/v1/quotes", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
  } catch (_) {
    lastError = { key: "network" };
  }
  const data = response ? await response.json().catch(() => ({})) : {};
  if (response && !response.ok) {
    const fields = (data.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    lastError = { key: problemKey(response.status, data), detail: fields || data.detail || String(response.status) };
  }
  if (lastError) {
    lastQuote = null;
    document.getElementById("result").hidden = true;
    showError(lastError);
    return;
  }
  await loadIndicatorNames(key, data.quotes.map((q) => q.product));
  lastQuote = data; status.className = ""; status.textContent = ""; render(data);
}

function setLanguage(value) { lang = value; localStorage.setItem("indexloan.lang", lang); applyLanguage(); }

document.getElementById("quote-form").addEventListener("submit", submitQuote);
document.getElementById("lang-zh").addEventListener("click", () => setLanguage("zh"));
document.getElementById("lang-en").addEventListener("click", () => setLanguage("en"));
document.getElementById("api-key").value = sessionStorage.getItem("indexloan.key") || "";
applyLanguage();
