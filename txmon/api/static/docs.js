// The interactive API documentation (/docs): Swagger UI over the API's own OpenAPI document. A file of its
// own, not an inline script: the pages' security policy allows scripts from this server only.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null, // no badge from an outside validator: the page asks nothing of another server
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
