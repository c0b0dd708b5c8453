//! How the store's PostgreSQL connections plan: generic plans, and random
//! reads priced for solid-state storage unless the operator priced them.

use chat_storage::testing::{postgres_plan, postgres_setting};

use crate::support::TestDb;

/// The query PostgreSQL runs for the foreign key `messages.user_id` on
/// every inserted message.
const USER_KEY_CHECK: &str = "SELECT 1 FROM ONLY users x WHERE id = 1 FOR KEY SHARE OF x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_table_that_grew_since_it_was_analyzed_is_probed_by_key_on_every_message() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    assert_eq!(
        postgres_setting(&db.store, "plan_cache_mode")
            .await
            .unwrap(),
        Some("force_generic_plan".to_owned())
    );
    assert_eq!(
        postgres_setting(&db.store, "random_page_cost")
            .await
            .unwrap(),
        Some("1.1".to_owned())
    );
    // The statistics say one user; the table then grows to several pages,
    // as a new deployment's does between two runs of autovacuum. Priced at
    // the default cost, such a table is scanned whole for each message.
    db.user("first").await;
    db.execute_raw("ANALYZE users").await;
    for index in 0..250 {
        db.user(&format!("user{index}")).await;
    }
    let plan = postgres_plan(&db.store, USER_KEY_CHECK)
        .await
        .unwrap()
        .expect("a PostgreSQL plan");
    assert!(plan.contains("Index Scan using users_pkey"), "{plan}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_page_cost_the_operator_set_is_kept() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    db.execute_raw(
        "DO $$ BEGIN \
         EXECUTE format('ALTER DATABASE %I SET random_page_cost = 2', current_database()); \
         END $$",
    )
    .await;
    // New connections read the database's setting.
    let store = db.store_with(db.keys.clone()).await;
    assert_eq!(
        postgres_setting(&store, "random_page_cost").await.unwrap(),
        Some("2".to_owned())
    );
    db.cleanup().await;
}
