// The API reference page: Swagger UI (served from the swagger-ui-bundle-v2 package, no CDN)
// pointed at this version's openapi.json. An API key typed into "Authorize" lives in this page's
// memory only: persistAuthorization is off, so it is never written to localStorage and is gone
// when the tab closes or reloads. No inline script or style anywhere (the page's CSP forbids it).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="extapi-openapi"]');
  var url = meta ? meta.getAttribute("content") : "openapi.json";
  window.ui = window.SwaggerUIBundle({
    url: url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 1,
    // The default validator badge loads an image from validator.swagger.io: never.
    validatorUrl: null,
    withCredentials: false,
  });
})();
