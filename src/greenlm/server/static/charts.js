/* greenlm: draw the charts described by the page's JSON chart specs with the vendored Chart.js.
 * Specs come from greenlm.report.plots (plain JSON, no functions). Each canvas names its spec
 * with data-chart; after drawing it gets data-rendered="true" (or "error" / "empty"). */
(function () {
  "use strict";
  function draw() {
    var node = document.getElementById("greenlm-charts");
    if (!node || typeof Chart === "undefined") { return; }
    var specs = JSON.parse(node.textContent || "{}");
    var canvases = document.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i++) {
      var c = canvases[i];
      var spec = specs[c.getAttribute("data-chart")];
      if (!spec) { c.setAttribute("data-rendered", "empty"); continue; }
      spec.options = spec.options || {};
      spec.options.animation = false;
      spec.options.responsive = true;
      spec.options.maintainAspectRatio = false;
      try {
        new Chart(c, spec);
        c.setAttribute("data-rendered", "true");
      } catch (e) {
        c.setAttribute("data-rendered", "error");
        var p = document.createElement("p");
        p.className = "chart-error";
        p.textContent = "chart could not be drawn: " + e;
        c.parentNode.appendChild(p);
      }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
