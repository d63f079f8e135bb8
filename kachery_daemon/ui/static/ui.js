// The node's pages: copy buttons and a confirmation before revoking a token.
// Served by the node from this file (the pages allow no inline script).
"use strict";

function copyText(text, button) {
  function done() {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
  } else {
    fallback(text);
    done();
  }
}

function fallback(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); } catch (e) { /* the URI stays visible to copy by hand */ }
  document.body.removeChild(area);
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () { copyText(button.dataset.copy, button); });
  });
  document.querySelectorAll("form.revoke").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm("Revoke the token " + JSON.stringify(form.dataset.label) + "?")) {
        event.preventDefault();
      }
    });
  });
});
