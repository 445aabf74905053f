// tiffin's Swagger UI set-up: the document is this server's /docs.json (relative, so
// the page also works behind a path prefix), "Try it out" is on for every operation.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
