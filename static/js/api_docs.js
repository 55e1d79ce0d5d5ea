// Starts Swagger UI (static/vendor/swagger-ui/) on the app's own OpenAPI document, for /api/docs.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",          // no top bar: this page documents one API, the app's own
    deepLinking: true,
    validatorUrl: null,            // the default posts the document to validator.swagger.io; stay offline
    defaultModelsExpandDepth: 0,
    tryItOutEnabled: false,
  });
})();
