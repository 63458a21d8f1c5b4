// Starts the vendored Swagger UI on /api/docs. A file of its own, not an inline script: the
// page's Content-Security-Policy (script-src 'self') runs nothing else. The spec comes from
// this server; the online validator badge is off, so the page requests nothing elsewhere.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    onComplete: function () { root.dataset.rendered = "true"; }
  });
})();
