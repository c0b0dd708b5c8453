//! The API description and the operational endpoints.

use anyhow::Result;
use serde_json::Value;

use crate::helpers::TestApp;

crate::backend_tests!(
    openapi_describes_every_rest_route,
    swagger_ui_and_redoc_are_served_without_downloads,
    health_and_readiness_report_ok,
    unknown_paths_answer_404_with_a_detail,
);

async fn openapi_describes_every_rest_route(app: &TestApp) -> Result<()> {
    let doc: Value = app
        .http
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/",
        "/health",
        "/ready",
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/chat/messages",
        "/api/users/me",
        "/api/rooms",
        "/api/rooms/{name}/join",
        "/api/rooms/{name}/leave",
        "/api/rooms/{name}/messages",
        "/api/rooms/{name}/read",
        "/api/dm/{username}",
        "/api/rooms/{room}/mls/devices",
        "/ws/chat",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for schema in [
        "Credentials",
        "UserBody",
        "TokenBody",
        "RefreshRequest",
        "HistoryItem",
        "ErrorBody",
        "MessagePage",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    // The token routes document every answer they give.
    for (path, statuses) in [
        (
            "/api/auth/login",
            &["200", "401", "403", "422", "429", "503"][..],
        ),
        ("/api/auth/refresh", &["200", "401", "422", "503"][..]),
        ("/api/auth/logout", &["204", "400", "401", "503"][..]),
    ] {
        let responses = doc["paths"][path]["post"]["responses"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(documented, statuses, "{path}");
    }
    // The socket documents its resume position and the 400 it brings.
    let socket = &doc["paths"]["/ws/chat"]["get"];
    let params: Vec<&str> = socket["parameters"]
        .as_array()
        .map(|list| list.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(params, ["token", "last_seq"]);
    assert!(socket["responses"].get("400").is_some());
    let token_body = &schemas["TokenBody"]["properties"];
    for field in ["access_token", "token_type", "refresh_token", "expires_in"] {
        assert!(token_body.get(field).is_some(), "TokenBody.{field} missing");
    }
    Ok(())
}

async fn swagger_ui_and_redoc_are_served_without_downloads(app: &TestApp) -> Result<()> {
    let docs = app.http.get(app.url("/docs/")).send().await?;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await?.contains("swagger"));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(app.url("/docs"))
        .send()
        .await?;
    assert!(redirect.status().is_redirection());
    // ReDoc's page loads only what the server itself serves.
    let redoc = app.http.get(app.url("/redoc")).send().await?;
    assert_eq!(redoc.status(), 200);
    let policy = redoc
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(!policy.contains("http"), "{policy}");
    let page = redoc.text().await?;
    assert!(page.contains("<redoc"), "{page}");
    for external in ["http://", "https://", "\"//"] {
        assert!(!page.contains(external), "{page}");
    }
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\"", "spec-url=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            assets.push(rest[..rest.find('"').unwrap_or(0)].to_owned());
        }
    }
    assert_eq!(
        assets,
        ["/redoc/redoc.standalone.js", "/api-docs/openapi.json"],
        "every asset is the server's own"
    );
    for asset in assets {
        let response = app.http.get(app.url(&asset)).send().await?;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await?.len() > 1_000, "{asset}");
    }
    Ok(())
}

async fn health_and_readiness_report_ok(app: &TestApp) -> Result<()> {
    let health: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");
    let ready = app.http.get(app.url("/ready")).send().await?;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await?;
    assert_eq!(ready["database"], "ok");
    Ok(())
}

async fn unknown_paths_answer_404_with_a_detail(app: &TestApp) -> Result<()> {
    let response = app.http.get(app.url("/no/such/thing")).send().await?;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await?;
    assert!(body["detail"].is_string());
    Ok(())
}
