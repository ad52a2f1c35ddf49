// relay console: the only script, and everything works without it. It shows the copy
// buttons and copies exact bytes: an event body comes base64-encoded in data-copy-b64,
// because HTML would turn the body's CR LF into LF if it were text in the page.
"use strict";
(function () {
  function decode(b64) {
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder("utf-8").decode(bytes);
  }

  function fallbackCopy(text) {
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(ta);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function wire(button, text) {
    button.hidden = false;
    var label = button.textContent;
    button.addEventListener("click", function () {
      copy(text()).then(function () {
        button.textContent = "Copied";
      }, function () {
        button.textContent = "Copy failed: use Download";
      }).then(function () {
        setTimeout(function () { button.textContent = label; }, 1800);
      });
    });
  }

  // The exact text a copy button copies, for a test or a curious operator.
  window.relayCopyText = function (button) {
    if (button.hasAttribute("data-copy-b64")) return decode(button.getAttribute("data-copy-b64"));
    return button.getAttribute("data-copy-text");
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-copy-b64], [data-copy-text]").forEach(function (b) {
      wire(b, function () { return window.relayCopyText(b); });
    });
  });
})();
