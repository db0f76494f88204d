// fleetward console: the one script. Pages whose <main> has data-refresh
// re-render it from the server every N seconds (same-origin fetch with the
// session cookie), so fleet and rollout pages stay live without a reload.
// Everything works without it; it only saves pressing reload.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main) { return; }
  var every = Math.max(2, Number(main.getAttribute("data-refresh")) || 5) * 1000;
  function busy() {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  function tick() {
    if (document.hidden || busy()) { return; }
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "main");
    fetch(url.toString(), { credentials: "same-origin", redirect: "manual" })
      .then(function (response) {
        if (response.status !== 200) { return null; }
        return response.text();
      })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh) { main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes)); }
      })
      .catch(function () { /* offline for a moment: try again next tick */ });
  }
  window.setInterval(tick, every);
})();
