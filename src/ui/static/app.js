// wharf dashboard: progressive enhancement only; every listing page reads
// fine without JavaScript. Served as /ui/static/app.js (the CSP forbids
// inline script).
"use strict";

function copyText(text, button) {
  const done = () => {
    const old = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = old; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
}

function fallbackCopy(text, done) {
  const t = document.createElement("textarea");
  t.value = text;
  document.body.appendChild(t);
  t.select();
  try { document.execCommand("copy"); done(); } finally { t.remove(); }
}

document.addEventListener("click", (ev) => {
  const copy = ev.target.closest("[data-copy]");
  if (copy) {
    ev.preventDefault();
    copyText(copy.getAttribute("data-copy"), copy);
    return;
  }
  // Links that open a confirmation <dialog> (without JS they lead to a
  // confirmation page with the same form).
  const opener = ev.target.closest("[data-dialog]");
  if (opener) {
    const d = document.getElementById(opener.getAttribute("data-dialog"));
    if (d && typeof d.showModal === "function") {
      ev.preventDefault();
      d.showModal();
    }
    return;
  }
  const close = ev.target.closest("[data-close]");
  if (close) {
    const d = close.closest("dialog");
    if (d) { ev.preventDefault(); d.close(); }
  }
});
