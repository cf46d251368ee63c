// Loan officer page: one form, one call to POST /v1/quotes, one card per product. No external assets.
"use strict";

const TEXT = {
  zh: {
    title: "指数贷报价", apiKey: "API 密钥", creditCode: "统一社会信用代码", amount: "申请金额(元,可选)",
    submit: "查询报价", resultFor: "报价结果", quoteId: "报价编号", asOf: "数据日期", expires: "有效期至",
    model: "模型", eligible: "可授信", ineligible: "不可授信", index: "指数", grade: "等级", tier: "档位",
    limit: "额度(元)", rateBand: "利率区间", rate: "执行利率", fee: "担保费率", subsidy: "贴息",
    allIn: "综合成本", pd: "违约概率", reasons: "主要原因", nextGrade: "提升到下一等级", riskFactors: "风险因素",
    loading: "正在报价…", best: "最优方案", none: "无可授信产品", version: "版本",
  },
  en: {
    title: "Index-loan quotes", apiKey: "API key", creditCode: "Unified social credit code",
    amount: "Requested amount (CNY, optional)", submit: "Get quote", resultFor: "Quote", quoteId: "Quote ID",
    asOf: "Data as of", expires: "Expires", model: "Model", eligible: "Eligible", ineligible: "Not eligible",
    index: "Index", grade: "Grade", tier: "Tier", limit: "Limit (CNY)", rateBand: "Rate band", rate: "Rate",
    fee: "Guarantee fee", subsidy: "Subsidy", allIn: "All-in cost", pd: "PD", reasons: "Main reasons",
    nextGrade: "To reach the next grade", riskFactors: "Risk factors", loading: "Quoting…", best: "Best offer",
    none: "No eligible product", version: "version",
  },
};

let lang = localStorage.getItem("indexloan.lang") || "zh";
let lastQuote = null;

function t(key) { return TEXT[lang][key] || key; }

function pick(obj) {
  // Bilingual values come as {zh, en} or as plain strings.
  if (obj && typeof obj === "object" && ("zh" in obj || "en" in obj)) return obj[lang] || obj.zh || obj.en;
  return obj;
}

function pct(v) { return v === null || v === undefined ? "—" : `${Number(v).toFixed(2)}%`; }
function cny(v) { return v === null || v === undefined ? "—" : Number(v).toLocaleString(lang === "zh" ? "zh-CN" : "en-US"); }

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang-zh").setAttribute("aria-pressed", String(lang === "zh"));
  document.getElementById("lang-en").setAttribute("aria-pressed", String(lang === "en"));
  document.title = t("title");
  if (lastQuote) render(lastQuote);
}

function reasonText(r) {
  if (typeof r === "string") return r;
  return pick(r.text) || r[lang] || r.code;
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
    ["fee", pct(q.guarantee_fee)], ["subsidy", pct(q.subsidy)], ["allIn", pct(q.all_in_cost)],
    ["pd", q.pd === null || q.pd === undefined ? "—" : `${(q.pd * 100).toFixed(2)}%`],
  ];
  for (const [key, value] of rows) {
    const dt = document.createElement("dt"); dt.textContent = t(key);
    const dd = document.createElement("dd"); dd.textContent = value; dd.dataset.field = key;
    dl.append(dt, dd);
  }
  div.appendChild(dl);
  const lists = [["reasons", (q.reasons || []).map(reasonText)],
    ["nextGrade", (q.next_grade && q.next_grade.changes ? q.next_grade.changes : []).map((c) => pick(c.text) || JSON.stringify(c))],
    ["riskFactors", (q.risk_factors || []).slice(0, 3).map((f) => `${pick(f.reason) || f.feature}: ${Number(f.contribution).toFixed(3)}`)]];
  for (const [key, items] of lists) {
    if (!items.length) continue;
    const p = document.createElement("p"); p.textContent = t(key);
    const ul = document.createElement("ul");
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
  const box = document.getElementById("products");
  box.replaceChildren(...data.quotes.map(card));
}

async function submitQuote(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  const key = document.getElementById("api-key").value.trim();
  sessionStorage.setItem("indexloan.key", key);
  const body = { credit_code: document.getElementById("credit-code").value.trim().toUpperCase() };
  const amount = document.getElementById("amount").value;
  if (amount) body.requested_amount_cny = Number(amount);
  status.className = ""; status.textContent = t("loading");
  try {
    const response = await fetch("/v1/quotes", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      const fields = (data.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      throw new Error(`${data.status} ${data.detail}${fields ? ` (${fields})` : ""}`);
    }
    lastQuote = data; status.textContent = ""; render(data);
  } catch (error) {
    status.className = "error"; status.textContent = error.message;
    document.getElementById("result").hidden = true;
  }
}

document.getElementById("quote-form").addEventListener("submit", submitQuote);
document.getElementById("lang-zh").addEventListener("click", () => { lang = "zh"; localStorage.setItem("indexloan.lang", lang); applyLanguage(); });
document.getElementById("lang-en").addEventListener("click", () => { lang = "en"; localStorage.setItem("indexloan.lang", lang); applyLanguage(); });
document.getElementById("api-key").value = sessionStorage.getItem("indexloan.key") || "";
applyLanguage();
