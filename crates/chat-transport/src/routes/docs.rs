//! ReDoc at `/redoc`, from the binary: its page and its script are served
//! by the server itself, pinned (see `assets/redoc/README.md`), so the page
//! works offline and no third party learns who reads the documentation.
//! Swagger UI at `/docs` is vendored the same way by `utoipa-swagger-ui`.

use actix_web::http::header;
use actix_web::{HttpResponse, get};

/// ReDoc's standalone bundle, version 2.5.0.
const REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// What the page may load: only the server's own script and document;
/// ReDoc styles itself inline and runs its search in a worker from a blob.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    font-src 'self'; worker-src 'self' blob:";

/// The page: ReDoc reading the OpenAPI document served at
/// `/api-docs/openapi.json`, in the system's fonts.
const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Chat Server API</title>
    <style>body { margin: 0; padding: 0; }</style>
  </head>
  <body>
    <redoc spec-url="/api-docs/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>
"#;

/// The ReDoc page.
#[get("/redoc")]
pub(crate) async fn redoc() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .body(REDOC_PAGE)
}

/// ReDoc's script; it changes only with the binary.
#[get("/redoc/redoc.standalone.js")]
pub(crate) async fn redoc_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(REDOC_JS)
}
