//! The embedding example's wiring: the host's route and the chat's, served
//! by the host's own server, then shut down together.

// The example's file itself, so that this test runs the code a reader
// copies; its `main` is not called here.
#[path = "../../examples/embedded.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use anyhow::Context;
use chat_storage::testing::TestDatabase;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_example_serves_its_own_route_beside_the_chat() -> anyhow::Result<()> {
    let database = TestDatabase::sqlite();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = database.url().to_owned();
    let server = tokio::spawn(async move {
        example::run(listener, &url, async {
            let _ = stopped.await;
        })
        .await
    });

    let http = reqwest::Client::new();
    let hello = http.get(format!("{base}/hello")).send().await?;
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().await?, "hello from the host service\n");
    let health = http.get(format!("{base}/health")).send().await?;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await?["status"], "ok");
    let openapi = http
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await?;
    assert_eq!(openapi.status(), 200);
    assert!(
        openapi.json::<Value>().await?["paths"]["/health"].is_object(),
        "the OpenAPI document describes the chat's routes"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .context("the example did not shut down within ten seconds")???;
    database.drop_database().await;
    Ok(())
}
