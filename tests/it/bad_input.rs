//! Bad input gets a clear error with a stable code; a database failure gets
//! INTERNAL with a request id and no detail.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, first_error_code};

/// (query, variables, argument the message must name, text it must contain)
fn bad_inputs() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "query($v: Int) { popularAnime(limit: $v) { id } }",
            json!({"v": 0}),
            "limit",
            "between 1 and 100",
        ),
        (
            "query($v: Int) { popularAnime(limit: $v) { id } }",
            json!({"v": 101}),
            "limit",
            "between 1 and 100",
        ),
        (
            "query($v: Int) { popularAnime(limit: $v) { id } }",
            json!({"v": -1}),
            "limit",
            "between 1 and 100",
        ),
        (
            "query($v: Int) { animePage(perPage: $v) { total } }",
            json!({"v": 0}),
            "perPage",
            "between 1 and 100",
        ),
        (
            "query($v: Int) { animePage(perPage: $v) { total } }",
            json!({"v": 1000}),
            "perPage",
            "between 1 and 100",
        ),
        (
            "query($v: Int) { animePage(page: $v) { total } }",
            json!({"v": 0}),
            "page",
            "at least 1",
        ),
        (
            "query($v: Int) { animePage(page: $v) { total } }",
            json!({"v": -5}),
            "page",
            "at least 1",
        ),
        (
            "query($v: ID!) { anime(id: $v) { id } }",
            json!({"v": "abc"}),
            "id",
            "positive integer",
        ),
        (
            "query($v: ID!) { anime(id: $v) { id } }",
            json!({"v": "0"}),
            "id",
            "positive integer",
        ),
        (
            "query($v: ID!) { anime(id: $v) { id } }",
            json!({"v": "-3"}),
            "id",
            "positive integer",
        ),
        (
            "query($v: ID!) { anime(id: $v) { id } }",
            json!({"v": "1.5"}),
            "id",
            "positive integer",
        ),
        (
            "query($v: ID!) { anime(id: $v) { id } }",
            json!({"v": "4294967296"}),
            "id",
            "positive integer",
        ),
    ]
}

#[tokio::test]
async fn out_of_range_arguments_are_bad_user_input_naming_the_argument() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (query, variables, argument, allowed) in bad_inputs() {
        let body = app.graphql(query, variables.clone()).await;
        let error = &body["errors"][0];
        assert_eq!(
            first_error_code(&body),
            "BAD_USER_INPUT",
            "{query} {variables}: {body}"
        );
        assert_eq!(error["extensions"]["argument"], json!(argument), "{body}");
        let message = error["message"].as_str().expect("message");
        assert!(
            message.starts_with(argument),
            "message should name {argument}: {message}"
        );
        assert!(
            message.contains(allowed),
            "message should give the range: {message}"
        );
    }
}

#[tokio::test]
async fn wrongly_typed_arguments_are_bad_user_input() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for query in [
        "{ popularAnime(limit: \"ten\") { id } }",
        "{ animePage(page: 1.5) { total } }",
        "{ popularAnime(limit: 99999999999999999999999) { id } }",
    ] {
        let body = app.graphql(query, json!({})).await;
        assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("argument")),
            "{body}"
        );
    }
    let body = app
        .graphql(
            "query($v: Int) { popularAnime(limit: $v) { id } }",
            json!({"v": "x"}),
        )
        .await;
    assert_eq!(first_error_code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn malformed_documents_get_parse_and_validation_codes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = app
        .graphql("{ popularAnime(limit: 1 { id }", json!({}))
        .await;
    assert_eq!(first_error_code(&body), "GRAPHQL_PARSE_FAILED", "{body}");
    let body = app.graphql("{ noSuchField }", json!({})).await;
    assert_eq!(
        first_error_code(&body),
        "GRAPHQL_VALIDATION_FAILED",
        "{body}"
    );
}

#[tokio::test]
async fn a_database_failure_is_internal_with_a_request_id_and_no_sql() {
    // Arrange: a working app whose table then disappears under it.
    let app = TestApp::spawn(Backend::Postgres).await;
    app.state
        .db
        .execute_unprepared("DROP TABLE anime")
        .await
        .expect("dropping the table");

    // Act
    let response = app.post("{ animeCount }", json!({})).await;
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("x-request-id header");
    let body: Value = response.json().await.expect("JSON");

    // Assert
    assert_eq!(first_error_code(&body), "INTERNAL", "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["requestId"], json!(header_id));
    let text = body.to_string().to_lowercase();
    for leak in [
        "select",
        "anime\"",
        "relation",
        "postgres",
        "does not exist",
        "sqlx",
    ] {
        assert!(!text.contains(leak), "response leaks {leak:?}: {body}");
    }
}

#[tokio::test]
async fn a_client_request_id_is_echoed_and_used() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "trace-me-123")
        .json(&json!({ "query": "{ animeCount }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-123")
    );
}
