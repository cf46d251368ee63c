// Starts Swagger UI on the service's own OpenAPI document (a file, not an inline script: the CSP allows
// scripts from this origin only). validatorUrl null: no call to the public schema validator.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
