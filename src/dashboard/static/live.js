// Keeps the app's live section current: re-fetches it every 2.5 s and swaps it in when it
// changed, so a change made from the CLI or by the rollout pass shows within seconds.
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var src = live.getAttribute("data-src");
  var last = null;
  function tick() {
    fetch(src, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null && html !== last) {
          last = html;
          live.innerHTML = html;
        }
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 2500); });
  }
  setTimeout(tick, 2500);
})();
