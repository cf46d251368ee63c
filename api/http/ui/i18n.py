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
