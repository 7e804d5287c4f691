// Swagger UI over this gateway's own /openapi.json. Its script is loaded before this one
// (both deferred, in order). No request leaves for another host: the online validator's
// badge is off (validatorUrl), and every file comes from the gateway.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    displayRequestDuration: true,
    persistAuthorization: false,
  });
});
