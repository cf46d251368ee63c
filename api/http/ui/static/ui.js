// The console's little script: the credit code's check character as you type, and the print button.
// The server checks the code again (features/uscc.py); this only tells the officer early.
"use strict";

const ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
const MESSAGES = {
  zh: {
    length: (n) => `应为 18 位，当前 ${n} 位`,
    char: (pos, ch) => `第 ${pos} 位「${ch}」不是允许的字符（数字及除 I、O、S、V、Z 外的大写字母）`,
    division: "第 3-8 位（行政区划码）应为数字",
    check: (got, want) => `校验码（第 18 位）为「${got}」，应为「${want}」`,
  },
  en: {
    length: (n) => `must be 18 characters, ${n} so far`,
    char: (pos, ch) => `character ${pos} '${ch}' is not allowed (digits and upper-case letters except I, O, S, V, Z)`,
    division: "characters 3-8 (administrative division) must be digits",
    check: (got, want) => `check character (18th) is '${got}' but should be '${want}'`,
  },
};

function codeProblem(code, m) {
  if (code.length !== 18) return m.length(code.length);
  for (let i = 0; i < code.length; i += 1) {
    if (!ALPHABET.includes(code[i])) return m.char(i + 1, code[i]);
  }
  if (!/^[0-9]{6}$/.test(code.slice(2, 8))) return m.division;
  let total = 0;
  for (let i = 0; i < 17; i += 1) total += ALPHABET.indexOf(code[i]) * WEIGHTS[i];
  const want = ALPHABET[(31 - (total % 31)) % 31];
  return code[17] === want ? null : m.check(code[17], want);
}

function watchCreditCode(input) {
  const out = document.getElementById("code-check");
  const m = MESSAGES[input.dataset.lang] || MESSAGES.zh;
  const help = out.textContent;
  const update = () => {
    const code = input.value.trim().toUpperCase();
    if (!code) {
      out.textContent = help;
      out.className = "help";
      input.removeAttribute("aria-invalid");
      return;
    }
    const problem = codeProblem(code, m);
    out.textContent = problem || input.dataset.msgOk;
    out.className = problem ? "help bad" : "help good";
    if (problem && code.length === 18) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  input.addEventListener("input", update);
  if (input.value) update();
}

document.addEventListener("DOMContentLoaded", () => {
  const code = document.getElementById("credit-code");
  if (code) watchCreditCode(code);
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.addEventListener("click", () => window.print());
  });
});
