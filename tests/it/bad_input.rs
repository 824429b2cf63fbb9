//! Bad input gets a clear error with a stable code; a database failure gets
//! INTERNAL with a request id and no detail.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings, first_error_code};

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

/// The errors of `body` as (message, code, `argument` or `variable`).
/// POSTs asking for `application/graphql-response+json`, the media type
/// whose status says whether anything executed (a request error is 400;
/// as plain JSON it would be 200: tests/it/http.rs).
async fn post_for_status(app: &TestApp, query: &str, variables: Value) -> reqwest::Response {
    app.http
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("sending the GraphQL request")
}

fn errors(body: &Value) -> Vec<(String, String, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| {
                    let extensions = &error["extensions"];
                    let named = extensions["argument"]
                        .as_str()
                        .or_else(|| extensions["variable"].as_str())
                        .unwrap_or_default();
                    (
                        error["message"].as_str().unwrap_or_default().to_owned(),
                        extensions["code"].as_str().unwrap_or_default().to_owned(),
                        named.to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn one(message: &str, code: &str, named: &str) -> Vec<(String, String, String)> {
    vec![(message.to_owned(), code.to_owned(), named.to_owned())]
}

#[tokio::test]
async fn wrongly_typed_arguments_are_one_bad_user_input_error_each() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let cases = [
        (
            "{ popularAnime(limit: \"ten\") { id } }",
            "Argument \"limit\" has an invalid value: expected type \"Int!\", found \"ten\".",
            "limit",
        ),
        (
            "{ animePage(page: 1.5) { total } }",
            "Argument \"page\" has an invalid value: expected type \"Int!\", found 1.5.",
            "page",
        ),
        (
            "{ popularAnime(limit: 99999999999999999999999) { id } }",
            "Argument \"limit\" has an invalid value: expected type \"Int!\", found 1e+23.",
            "limit",
        ),
        (
            "{ popularAnime(limit: 3000000000) { id } }",
            "Argument \"limit\" has an invalid value: expected type \"Int!\", found 3000000000, outside the 32-bit range of Int.",
            "limit",
        ),
    ];
    for (query, message, argument) in cases {
        let response = post_for_status(&app, query, json!({})).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(
            errors(&body),
            one(message, "BAD_USER_INPUT", argument),
            "{query}"
        );
        assert!(body.get("data").is_none(), "{body}");
    }
}

#[tokio::test]
async fn one_wrong_variable_gives_one_error_with_one_code() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let query = "query($limit: Int) { popularAnime(limit: $limit) { id } }";
    for (value, found) in [
        (json!("abc"), "\"abc\""),
        (json!(1e99), "1e+99"),
        (json!({"a": 1}), "{\"a\":1}"),
        (json!([1, 2]), "[1,2]"),
        (
            json!(3_000_000_000_u64),
            "3000000000, outside the 32-bit range of Int",
        ),
    ] {
        let body = app.graphql(query, json!({ "limit": value })).await;
        assert_eq!(
            errors(&body),
            one(
                &format!(
                    "Variable \"$limit\" has an invalid value: expected type \"Int\", found {found}."
                ),
                "BAD_USER_INPUT",
                "limit"
            ),
            "{value}"
        );
    }
}

#[tokio::test]
async fn declared_variables_that_were_not_sent_say_so() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    // Required and missing, or null.
    let required = "query($limit: Int!) { popularAnime(limit: $limit) { id } }";
    let response = post_for_status(&app, required, json!({})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        errors(&body),
        one(
            "Variable \"$limit\" of required type \"Int!\" was not provided.",
            "BAD_USER_INPUT",
            "limit"
        )
    );
    assert_eq!(
        body["errors"][0]["locations"],
        json!([{ "line": 1, "column": 7 }])
    );
    let body = app.graphql(required, json!({ "limit": null })).await;
    assert_eq!(
        errors(&body),
        one(
            "Variable \"$limit\" of non-null type \"Int!\" must not be null.",
            "BAD_USER_INPUT",
            "limit"
        )
    );

    // Nullable and not sent: the argument's default applies, as the
    // GraphQL specification says; null is refused where none is allowed.
    let nullable = "query($limit: Int) { popularAnime(limit: $limit) { id } }";
    let data = app.data(nullable, json!({})).await;
    assert_eq!(data["popularAnime"].as_array().map(Vec::len), Some(20));
    let body = app.graphql(nullable, json!({ "limit": null })).await;
    assert_eq!(
        errors(&body),
        one(
            "Variable \"$limit\" is null, but argument \"limit\" of type \"Int!\" must not be null.",
            "BAD_USER_INPUT",
            "limit"
        )
    );
    let body = app
        .graphql("query($id: ID) { anime(id: $id) { id } }", json!({}))
        .await;
    assert_eq!(
        errors(&body),
        one(
            "Variable \"$id\" of type \"ID\" was not provided, but argument \"id\" of type \"ID!\" needs a value.",
            "BAD_USER_INPUT",
            "id"
        )
    );

    // Used but never declared: a validation error, once.
    let body = app
        .graphql("{ popularAnime(limit: $limit) { id } }", json!({}))
        .await;
    assert_eq!(
        errors(&body),
        one(
            "Variable \"$limit\" is not defined",
            "GRAPHQL_VALIDATION_FAILED",
            ""
        )
    );
}

const TOKEN: &str = "bad-input-admin-token-0123456789";

async fn admin_app() -> TestApp {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    TestApp::spawn_with(settings).await
}

async fn admin_graphql(app: &TestApp, query: &str, variables: Value) -> Value {
    app.http
        .post(app.url("/graphql"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn an_invalid_input_object_reports_every_invalid_field() {
    let app = admin_app().await;
    let bad = |path: &str, what: &str| {
        (
            format!("Argument \"input\" has an invalid value at \"{path}\": {what}."),
            "BAD_USER_INPUT".to_owned(),
            path.to_owned(),
        )
    };

    // Types, in the document: every field, not only the first.
    let body = admin_graphql(
        &app,
        r#"mutation { createAnime(input: {title: 5, format: XX, status: FINISHED, year: "1999", pictureUrl: "https://img.example/a.webp", synopsis: "s"}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        errors(&body),
        [
            bad("input.title", "expected type \"String!\", found 5"),
            bad(
                "input.format",
                "expected type \"AnimeFormat!\" (one of TV, MOVIE, OVA, ONA, SPECIAL, MUSIC), found XX"
            ),
            bad("input.year", "expected type \"Int\", found \"1999\""),
        ]
    );

    // Types, in a variable.
    let body = admin_graphql(
        &app,
        "mutation($input: UpdateAnimeInput!) { updateAnime(id: \"1\", input: $input) { id } }",
        json!({ "input": { "year": "1999", "genres": ["Drama", 7], "rating": 5 } }),
    )
    .await;
    let got = errors(&body);
    assert_eq!(
        got.iter()
            .map(|(_, _, path)| path.as_str())
            .collect::<Vec<_>>(),
        ["input.year", "input.genres.1", "input.rating"],
        "{body}"
    );
    assert!(got.iter().all(|(_, code, _)| code == "BAD_USER_INPUT"));
    assert_eq!(
        got[0].0,
        "Variable \"$input\" has an invalid value at \"input.year\": expected type \"Int\", found \"1999\"."
    );
    assert_eq!(
        got[2].0,
        "Variable \"$input\" has an invalid value at \"input.rating\": type \"UpdateAnimeInput\" has no field \"rating\"."
    );

    // Ranges, checked by the service: every field, and nothing written.
    let body = admin_graphql(
        &app,
        r#"mutation { createAnime(input: {title: " ", format: TV, status: FINISHED, year: 1800, score: 11, pictureUrl: "ftp://img.example/a", synopsis: "s"}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        errors(&body),
        [
            (
                "input.title must be 1 to 255 characters without control characters (got 0)"
                    .to_owned(),
                "BAD_USER_INPUT".to_owned(),
                "input.title".to_owned()
            ),
            (
                "input.year must be between 1900 and 2100 (got 1800)".to_owned(),
                "BAD_USER_INPUT".to_owned(),
                "input.year".to_owned()
            ),
            (
                "input.score must be between 0 and 10 (got 11)".to_owned(),
                "BAD_USER_INPUT".to_owned(),
                "input.score".to_owned()
            ),
            (
                "input.pictureUrl must be an http(s) URL of at most 512 characters".to_owned(),
                "BAD_USER_INPUT".to_owned(),
                "input.pictureUrl".to_owned()
            ),
        ]
    );
    for error in body["errors"].as_array().expect("errors") {
        assert_eq!(error["path"], json!(["createAnime"]), "{body}");
    }
    assert_eq!(app.count().await, 250, "nothing was created");

    let body = admin_graphql(
        &app,
        r#"mutation { updateAnime(id: "1", input: {episodes: -1, popularity: -5}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        errors(&body)
            .iter()
            .map(|(_, _, path)| path.as_str())
            .collect::<Vec<_>>(),
        ["input.episodes", "input.popularity"],
        "{body}"
    );
}

#[tokio::test]
async fn a_database_failure_is_internal_with_a_request_id_and_no_sql() {
    // Arrange: a working app whose table then disappears under it (with
    // the foreign keys of the tables that refer to it).
    let app = TestApp::spawn(Backend::Postgres).await;
    app.state
        .db
        .execute_unprepared("DROP TABLE anime CASCADE")
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
