"""The console's texts in Chinese and English, and how it writes money, rates and dates.

Quote texts (reasons, names, promises) come bilingual in the quote itself; this holds only the page's own
labels and messages. CNY always has thousands separators; in Chinese large amounts also in 万元."""

from __future__ import annotations

import datetime as dt
from typing import Any

LANGS = ("zh", "en")
LANG_COOKIE = "ilui_lang"

TEXT: dict[str, dict[str, str]] = {
    "title": {"zh": "指数贷工作台", "en": "Index-loan console"},
    "quote_nav": {"zh": "报价", "en": "Quote"},
    "history_nav": {"zh": "历史报价", "en": "History"},
    "risk_nav": {"zh": "风险管理", "en": "Risk"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "sign_out": {"zh": "退出", "en": "Sign out"},
    "api_key": {"zh": "API 密钥", "en": "API key"},
    "api_key_help": {"zh": "密钥只用于换取会话，不会保存在浏览器中。",
                     "en": "The key is only exchanged for a session; it is never stored in the browser."},
    "signed_in_as": {"zh": "当前用户", "en": "Signed in as"},
    "session_until": {"zh": "会话有效至", "en": "Session until"},
    "need_key": {"zh": "请输入 API 密钥", "en": "Enter an API key"},
    "bad_key": {"zh": "API 密钥无效、已停用或已过期", "en": "The API key is unknown, revoked or expired"},
    "too_many": {"zh": "失败次数过多，请稍后再试", "en": "Too many failed sign-ins; try again later"},
    "session_ended": {"zh": "会话已过期或已结束，请重新登录",
                      "en": "Your session has expired or ended; please sign in again"},
    "signed_out": {"zh": "已退出登录", "en": "You have signed out"},
    "csrf": {"zh": "表单已失效（安全校验未通过），请刷新页面后重试",
             "en": "The form has expired (security check failed); reload the page and try again"},
    "credit_code": {"zh": "统一社会信用代码", "en": "Unified social credit code"},
    "code_help": {"zh": "18 位，输入时即校验末位校验码",
                  "en": "18 characters; the check character is checked as you type"},
    "amount": {"zh": "申请金额（元，可选）", "en": "Requested amount (CNY, optional)"},
    "collateral": {"zh": "担保方式", "en": "Collateral"},
    "collateral_any": {"zh": "不限（全部产品）", "en": "Any (all products)"},
    "collateral_unsecured": {"zh": "纯信用（仅信用类产品）", "en": "None (unsecured products only)"},
    "collateral_guaranteed": {"zh": "可提供担保", "en": "A guarantee"},
    "collateral_secured": {"zh": "可提供抵质押", "en": "A pledge or mortgage"},
    "consent_ref": {"zh": "企业授权编号", "en": "Enterprise consent reference"},
    "submit": {"zh": "查询报价", "en": "Get quote"},
    "bad_code": {"zh": "统一社会信用代码有误", "en": "Invalid unified social credit code"},
    "bad_amount": {"zh": "申请金额须为大于 0 且不超过 10 亿的数字",
                   "en": "The requested amount must be a number above 0 and at most 1,000,000,000"},
    "unknown_firm": {"zh": "库中没有该企业的数据", "en": "This enterprise is not in the data store"},
    "no_products": {"zh": "没有符合该担保方式的产品", "en": "No product takes this collateral"},
    "bad_request": {"zh": "请求有误", "en": "Invalid request"},
    "unavailable": {"zh": "服务暂不可用，请稍后重试", "en": "The service is unavailable; retry later"},
    "summary": {"zh": "报价汇总", "en": "Summary"},
    "product": {"zh": "产品", "en": "Product"},
    "eligible": {"zh": "可授信", "en": "Eligible"},
    "ineligible": {"zh": "不可授信", "en": "Not eligible"},
    "grade": {"zh": "等级", "en": "Grade"},
    "limit": {"zh": "额度", "en": "Limit"},
    "rate": {"zh": "执行利率", "en": "Point rate"},
    "rate_band": {"zh": "利率区间", "en": "Rate band"},
    "fee": {"zh": "担保费", "en": "Guarantee fee"},
    "subsidy": {"zh": "贴息", "en": "Subsidy"},
    "all_in": {"zh": "综合成本", "en": "All-in cost"},
    "per_year": {"zh": "每年", "en": "a year"},
    "best": {"zh": "最优方案", "en": "Best offer"},
    "no_offer": {"zh": "无可授信产品", "en": "No eligible product"},
    "yes": {"zh": "是", "en": "Yes"},
    "no": {"zh": "否", "en": "No"},
    "index": {"zh": "指数", "en": "Index"},
    "tier": {"zh": "档位", "en": "Tier"},
    "pd": {"zh": "违约概率", "en": "Probability of default"},
    "promise": {"zh": "服务承诺", "en": "Service promise"},
    "contact_by": {"zh": "对接截止日", "en": "Contact by"},
    "within_limit": {"zh": "申请金额在额度内", "en": "Requested amount within the limit"},
    "main_reason": {"zh": "主要原因", "en": "Main reason"},
    "more_reasons": {"zh": "其他原因", "en": "Other reasons"},
    "dimensions": {"zh": "各维度得分（满分）", "en": "Points per dimension (of the maximum)"},
    "shap": {"zh": "风险模型主要因素（SHAP，对数几率）", "en": "Risk model's top factors (SHAP, log-odds)"},
    "shap_base": {"zh": "基准", "en": "Base"},
    "shap_score": {"zh": "得分", "en": "Score"},
    "next_grade": {"zh": "如何提升到下一等级", "en": "How to reach the next grade"},
    "to_grade": {"zh": "目标等级", "en": "Target grade"},
    "points_needed": {"zh": "还需分数", "en": "Points needed"},
    "together": {"zh": "需同时提升", "en": "Raise together"},
    "unreachable": {"zh": "现有指标无法达到下一等级",
                    "en": "The next grade cannot be reached with the current indicators"},
    "top_grade": {"zh": "已是最高等级", "en": "Already the top grade"},
    "points_lost": {"zh": "主要失分项", "en": "Where points were lost"},
    "quote_id": {"zh": "报价编号", "en": "Quote ID"},
    "as_of": {"zh": "数据日期", "en": "Data as of"},
    "created": {"zh": "报价时间", "en": "Issued"},
    "expires": {"zh": "有效期至", "en": "Valid until"},
    "model": {"zh": "风险模型", "en": "Risk model"},
    "versions": {"zh": "版本", "en": "Versions"},
    "version": {"zh": "版本", "en": "Version"},
    "print": {"zh": "打印视图", "en": "Print view"},
    "print_now": {"zh": "打印", "en": "Print"},
    "back": {"zh": "返回", "en": "Back"},
    "result_for": {"zh": "报价结果", "en": "Quote for"},
    "stored_note": {"zh": "以下为存档的报价数字，未重新计算。",
                    "en": "These are the stored numbers of the quote, not recomputed."},
    "replay_check": {"zh": "重算核对", "en": "Replay check"},
    "replay_run": {"zh": "重算核对", "en": "Run the replay check"},
    "replay_same": {"zh": "按存档快照重算，结果一致", "en": "Recomputed from the stored snapshot: identical"},
    "replay_diff": {"zh": "按存档快照重算，结果不一致", "en": "Recomputed from the stored snapshot: differences"},
    "replay_gone": {"zh": "该报价所用版本已不可用，无法重算",
                    "en": "The versions this quote used are no longer available"},
    "search": {"zh": "查询", "en": "Search"},
    "date_from": {"zh": "起始日期", "en": "From"},
    "date_to": {"zh": "截止日期", "en": "To"},
    "no_quotes": {"zh": "没有符合条件的报价", "en": "No quote matches"},
    "open": {"zh": "打开", "en": "Open"},
    "eligible_count": {"zh": "可授信产品数", "en": "Eligible products"},
    "bad_date": {"zh": "日期格式应为 YYYY-MM-DD", "en": "Dates are YYYY-MM-DD"},
    "not_found": {"zh": "未找到该报价", "en": "Quote not found"},
    "forbidden": {"zh": "无权访问", "en": "Not allowed"},
    "forbidden_detail": {"zh": "您的角色（{role}）无权查看此页面；允许的角色：{allowed}",
                         "en": "Your role ({role}) may not open this page; allowed: {allowed}"},
    "platform_quote": {"zh": "平台角色须提供企业授权编号",
                       "en": "The platform role must give the enterprise's consent reference"},
    "products_page": {"zh": "产品与版本", "en": "Products and versions"},
    "models_page": {"zh": "风险模型", "en": "Risk models"},
    "batch_page": {"zh": "批量预授信", "en": "Batch pre-credit runs"},
    "audit_page": {"zh": "审计链", "en": "Audit chain"},
    "in_force": {"zh": "生效中", "en": "In force"},
    "scheduled": {"zh": "待生效", "en": "Scheduled"},
    "superseded": {"zh": "已被替代", "en": "Superseded"},
    "effective_date": {"zh": "生效日期", "en": "Effective date"},
    "state": {"zh": "状态", "en": "State"},
    "stage": {"zh": "阶段", "en": "Stage"},
    "created_at": {"zh": "创建时间", "en": "Created"},
    "stage_candidate": {"zh": "候选", "en": "candidate"},
    "stage_challenger": {"zh": "挑战者", "en": "challenger"},
    "stage_champion": {"zh": "冠军（在用）", "en": "champion (in use)"},
    "stage_retired": {"zh": "已退役", "en": "retired"},
    "created_by": {"zh": "创建人", "en": "Created by"},
    "rows": {"zh": "样本数", "en": "Rows"},
    "report": {"zh": "评估报告", "en": "Evaluation report"},
    "no_models": {"zh": "注册表中没有模型", "en": "No model in the registry"},
    "job": {"zh": "任务", "en": "Job"},
    "status": {"zh": "状态", "en": "Status"},
    "progress": {"zh": "进度", "en": "Progress"},
    "download": {"zh": "下载", "en": "Download"},
    "no_jobs": {"zh": "还没有批量任务", "en": "No batch run yet"},
    "audit_ok": {"zh": "审计链完整", "en": "The audit chain is intact"},
    "audit_broken": {"zh": "审计链已损坏", "en": "The audit chain is broken"},
    "audit_rows": {"zh": "记录数", "en": "Rows"},
    "requested_by": {"zh": "发起人", "en": "Requested by"},
    "error": {"zh": "错误", "en": "Error"},
    # risk workbench: product versions, simulations, monitoring; officers' overrides
    "state_draft": {"zh": "草稿", "en": "Draft"},
    "state_submitted": {"zh": "已提交待审批", "en": "Submitted"},
    "state_approved": {"zh": "已批准", "en": "Approved"},
    "state_scheduled": {"zh": "已批准待生效", "en": "Approved, scheduled"},
    "state_active": {"zh": "生效中", "en": "In force"},
    "state_superseded": {"zh": "已被替代", "en": "Superseded"},
    "state_rejected": {"zh": "已驳回", "en": "Rejected"},
    "origin": {"zh": "来源", "en": "Origin"},
    "origin_seed": {"zh": "初始配置", "en": "seed file"},
    "origin_store": {"zh": "版本库", "en": "store"},
    "draft_new": {"zh": "新建草稿版本", "en": "Draft a new version"},
    "definition_text": {"zh": "产品定义（YAML 或 JSON）", "en": "Product definition (YAML or JSON)"},
    "definition_help": {"zh": "整份产品配置；版本号须为新号，生效日期不早于今天",
                        "en": "The whole product file; a new version number, effective today or later"},
    "note": {"zh": "变更说明", "en": "What changes and why"},
    "save_draft": {"zh": "保存草稿", "en": "Save draft"},
    "bad_definition": {"zh": "产品定义不是有效的 YAML/JSON 对象", "en": "The definition is not a YAML/JSON mapping"},
    "version_page": {"zh": "产品版本", "en": "Product version"},
    "definition_summary": {"zh": "定义摘要", "en": "Definition summary"},
    "diff_against": {"zh": "与现行版本的差异", "en": "Changes against the version in force"},
    "no_changes": {"zh": "与现行版本无差异", "en": "No change against the version in force"},
    "path": {"zh": "配置项", "en": "Path"},
    "before": {"zh": "现行", "en": "Before"},
    "after": {"zh": "本版本", "en": "After"},
    "decisions": {"zh": "审批流程", "en": "Maker-checker"},
    "submitted_by": {"zh": "提交人", "en": "Submitted by"},
    "decided_by": {"zh": "审批人", "en": "Decided by"},
    "decision_reason": {"zh": "审批意见", "en": "Decision reason"},
    "reason": {"zh": "原因", "en": "Reason"},
    "submit_version": {"zh": "提交审批", "en": "Submit for approval"},
    "approve": {"zh": "批准", "en": "Approve"},
    "reject": {"zh": "驳回", "en": "Reject"},
    "approve_reason": {"zh": "审批意见（可选）", "en": "Reason (optional)"},
    "reject_reason": {"zh": "驳回理由（必填）", "en": "Reason for rejecting (required)"},
    "refused": {"zh": "操作未完成", "en": "Not done"},
    "version_not_found": {"zh": "未找到该产品版本", "en": "Product version not found"},
    "limit_range": {"zh": "额度范围", "en": "Limit range"},
    "scale": {"zh": "满分", "en": "Scale"},
    "max_pd": {"zh": "违约概率上限", "en": "Maximum PD"},
    "valid_days": {"zh": "报价有效天数", "en": "Quote valid (days)"},
    "gates": {"zh": "准入条件数", "en": "Gates"},
    "simulate": {"zh": "模拟", "en": "Simulate"},
    "simulations_page": {"zh": "情景模拟", "en": "What-if simulations"},
    "simulate_new": {"zh": "发起模拟", "en": "Start a simulation"},
    "simulate_version": {"zh": "待模拟的版本", "en": "Version to simulate"},
    "simulate_as_of": {"zh": "样本日期", "en": "Population as of"},
    "start": {"zh": "开始", "en": "Start"},
    "no_versions": {"zh": "版本库中还没有版本，请先新建草稿", "en": "The store holds no version yet: draft one first"},
    "no_simulations": {"zh": "还没有模拟任务", "en": "No simulation yet"},
    "simulation": {"zh": "模拟任务", "en": "Simulation"},
    "open_report": {"zh": "查看报告", "en": "Open the report"},
    "enterprises": {"zh": "企业数", "en": "Enterprises"},
    "changed": {"zh": "结果变化", "en": "Outcome changed"},
    "grade_changed": {"zh": "等级变化", "en": "Grade changed"},
    "eligibility_changed": {"zh": "准入变化", "en": "Eligibility changed"},
    "refreshing": {"zh": "任务进行中，页面每 2 秒自动刷新", "en": "Running: this page refreshes every 2 seconds"},
    "monitoring_computing": {"zh": "监测报告正在后台计算，页面每 3 秒自动刷新",
                             "en": "The monitoring report is being computed: this page refreshes every 3 seconds"},
    "monitoring_page": {"zh": "监控", "en": "Monitoring"},
    "alerts": {"zh": "警报", "en": "Alerts"},
    "alert_counts": {"zh": "{alerts} 条警报，{warnings} 条提示", "en": "{alerts} alerts, {warnings} warnings"},
    "no_alerts": {"zh": "当前没有警报", "en": "No alert"},
    "level": {"zh": "级别", "en": "Level"},
    "level_alert": {"zh": "警报", "en": "alert"},
    "level_warning": {"zh": "提示", "en": "warning"},
    "subject": {"zh": "对象", "en": "Subject"},
    "figures": {"zh": "数据", "en": "Figures"},
    "reference": {"zh": "参照样本", "en": "Reference"},
    "current": {"zh": "当前样本", "en": "Current"},
    "psi": {"zh": "群体稳定性（PSI）", "en": "Population stability (PSI)"},
    "challenger": {"zh": "挑战者模型（影子运行）", "en": "Challenger models in shadow"},
    "no_challenger": {"zh": "该期间没有挑战者模型的影子评分", "en": "No challenger scored in shadow in this window"},
    "rank_correlation": {"zh": "排序相关（Spearman）", "en": "Rank correlation (Spearman)"},
    "psi_vs_champion": {"zh": "相对冠军模型 PSI", "en": "PSI against the champion"},
    "share_changed": {"zh": "结果变化占比", "en": "Share changed"},
    "quotes_n": {"zh": "报价数", "en": "Quotes"},
    "overrides": {"zh": "人工调整", "en": "Officer overrides"},
    "override_new": {"zh": "记录人工调整", "en": "Record an override"},
    "override_amount": {"zh": "调整后金额（元）", "en": "New amount (CNY)"},
    "override_rate": {"zh": "调整后利率（%）", "en": "New rate (%)"},
    "override_reason": {"zh": "调整原因（必填）", "en": "Reason (required)"},
    "override_save": {"zh": "保存调整", "en": "Save override"},
    "override_help": {"zh": "报价本身不变；调整单独记录并进入审计链",
                      "en": "The quote itself never changes; the override is recorded apart, with its audit row"},
    "no_overrides": {"zh": "尚无人工调整", "en": "No override recorded"},
    "officer": {"zh": "客户经理", "en": "Officer"},
    "quoted": {"zh": "原报价", "en": "Quoted"},
    "bad_number": {"zh": "须为数字", "en": "Must be a number"},
    "dash": {"zh": "—", "en": "—"},
    "lang_other": {"zh": "English", "en": "中文"},
    "code_ok": {"zh": "校验码正确", "en": "Check character correct"},
}

ROLE_NAMES = {
    "loan_officer": {"zh": "客户经理", "en": "loan officer"},
    "platform": {"zh": "金融服务平台", "en": "platform"},
    "risk_analyst": {"zh": "风险分析师", "en": "risk analyst"},
    "risk_approver": {"zh": "风险审批人", "en": "risk approver"},
    "admin": {"zh": "管理员", "en": "administrator"},
}


def lang_of(value: str | None) -> str:
    return value if value in LANGS else "zh"


def texts(lang: str) -> dict[str, str]:
    return {key: both[lang] for key, both in TEXT.items()}


def pick(value: Any, lang: str) -> Any:
    """A {zh, en} text in the page's language; anything else unchanged."""
    if isinstance(value, dict) and ("zh" in value or "en" in value):
        return value.get(lang) or value.get("zh") or value.get("en")
    return value


def cny(amount: float | int | None, lang: str) -> str:
    """An amount in CNY with thousands separators: '5,000,000 元（500万元）' or 'CNY 5,000,000'."""
    if amount is None:
        return "—"
    whole = float(amount).is_integer()
    digits = f"{int(amount):,}" if whole else f"{amount:,.2f}"
    if lang == "en":
        return f"CNY {digits}"
    if abs(amount) >= 10_000:
        wan = f"{amount / 10_000:,.2f}".rstrip("0").rstrip(".")
        return f"{digits} 元（{wan}万元）"
    return f"{digits} 元"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def when(value: str | dt.datetime | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
