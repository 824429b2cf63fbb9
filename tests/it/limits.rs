//! Request limits and HTTP hygiene: body size, depth, complexity, aliases,
//! batches, CSRF rules, introspection, CORS and the request timeout.

use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings};

async fn app_with(vars: &[(&'static str, &str)]) -> TestApp {
    let mut settings = TestSettings::new(Backend::Sqlite);
    settings.vars = vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    TestApp::spawn_with(settings).await
}

async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    // The specification's media type: request errors are 400 with it.
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_five_megabyte_body_is_413() {
    let app = app_with(&[]).await;
    let huge = format!(
        "{{\"query\":\"{{ animeCount }}\",\"pad\":\"{}\"}}",
        "x".repeat(5 * 1024 * 1024)
    );
    let (status, body) = post_raw(&app, Some("application/json"), huge).await;
    assert_eq!(status, 413);
    assert_eq!(code(&body), "BAD_REQUEST", "{body}");
    let ten = vec![b' '; 10 * 1024 * 1024];
    let (status, _) = post_raw(&app, Some("application/json"), ten).await;
    assert_eq!(status, 413, "a 10 MB body");
}

#[tokio::test]
async fn deep_complex_and_alias_heavy_documents_are_refused() {
    // Our schema nests three levels at most; a depth limit of 2 shows the
    // check (async-graphql exempts introspection from it).
    let shallow = app_with(&[("GRAPHQL_MAX_DEPTH", "2")]).await;
    let body = shallow
        .graphql("{ animePage { items { id } } }", json!({}))
        .await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");

    let app = app_with(&[]).await;

    let fields = "id title titleEnglish format episodes status season year score popularity genres pictureUrl synopsis createdAt updatedAt";
    // Seven full lists of 1,500 each: past the 10,000 budget.
    let heavy: String = (0..7)
        .map(|i| format!("l{i}: popularAnime(limit: 100) {{ {fields} }} "))
        .collect();
    let heavy = format!("{{ {heavy} }}");
    let body = app.graphql(&heavy, json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    let single = format!("{{ popularAnime(limit: 100) {{ {fields} }} }}");
    assert!(
        app.graphql(&single, json!({}))
            .await
            .get("errors")
            .is_none(),
        "one full list is allowed"
    );

    let aliases: String = (0..31).map(|i| format!("c{i}: animeCount ")).collect();
    let body = app.graphql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("31 aliases"))
    );
}

#[tokio::test]
async fn documents_are_bounded_by_their_tokens_before_they_are_parsed() {
    let app = app_with(&[]).await;
    let post = |query: String| {
        post_raw(
            &app,
            Some("application/json"),
            json!({ "query": query }).to_string(),
        )
    };

    // 15,000 tokens (the default limit): `{`, 14,998 fields, `}`.
    let (status, body) = post(format!("{{ {}}}", "__typename ".repeat(14_998))).await;
    assert_eq!(status, 200, "{body:.300}");
    assert_eq!(body, json!({ "data": { "__typename": "Query" } }));

    // One over: refused, as a request error (no `data`).
    let (status, body) = post(format!("{{ {}}}", "__typename ".repeat(14_999))).await;
    assert_eq!((status, code(&body)), (400, "QUERY_TOO_LARGE"), "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        json!("the document has more than 15000 tokens; send a smaller one")
    );
    assert!(body.get("data").is_none(), "{body}");

    // The 1 MiB body of 95,000 selections.
    let huge = format!("{{ {}}}", "__typename ".repeat(95_000));
    assert!(huge.len() > 1_000_000);
    let started = std::time::Instant::now();
    let (status, body) = post(huge).await;
    assert_eq!((status, code(&body)), (400, "QUERY_TOO_LARGE"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    // Comments, commas and whitespace are not tokens.
    let commented = format!("{{ __typename {}}}", "# a comment\n, ".repeat(20_000));
    let (status, body) = post(commented).await;
    assert_eq!(status, 200, "{body:.300}");

    // Fragments may not multiply a small document past the limit either.
    let doubling: String = (0..20)
        .map(|i| {
            format!(
                " fragment F{i} on Query {{ ...F{next} ...F{next} }}",
                next = i + 1
            )
        })
        .collect();
    let (status, body) = post(format!(
        "{{ ...F0 }}{doubling} fragment F20 on Query {{ __typename }}"
    ))
    .await;
    assert_eq!((status, code(&body)), (400, "QUERY_TOO_LARGE"), "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        json!(
            "the document holds more than 15000 fields once its fragments are expanded \
             (each spread counts its fragment's fields again); send a smaller one"
        )
    );
}

#[tokio::test]
async fn batches_are_answered_up_to_the_cap() {
    let app = app_with(&[]).await;
    let one = json!({ "query": "{ animeCount }" });
    let (status, body) = post_raw(
        &app,
        Some("application/json"),
        json!([one, one]).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!([{ "data": { "animeCount": 250 } }, { "data": { "animeCount": 250 } }])
    );

    let eleven: Vec<Value> = (0..11).map(|_| one.clone()).collect();
    let (status, body) = post_raw(&app, Some("application/json"), json!(eleven).to_string()).await;
    assert_eq!((status, code(&body)), (400, "BATCH_TOO_LARGE"), "{body}");
    let (status, body) = post_raw(&app, Some("application/json"), "[]").await;
    assert_eq!((status, code(&body)), (400, "BATCH_TOO_LARGE"), "{body}");
}

#[tokio::test]
async fn cross_site_shapes_are_refused() {
    let app = app_with(&[]).await;
    let body = json!({ "query": "{ animeCount }" }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (status, response) = post_raw(&app, content_type, body.clone()).await;
        assert_eq!(status, 415, "{content_type:?}: {response}");
        assert!(
            response["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("application/json"))
        );
    }
    let (status, _) = post_raw(&app, Some("application/json; charset=utf-8"), body.clone()).await;
    assert_eq!(status, 200);

    let (status, response) = post_raw(&app, Some("application/json"), "{not json").await;
    assert_eq!(
        (status, code(&response)),
        (400, "BAD_REQUEST"),
        "{response}"
    );

    // GET runs queries, never mutations.
    let response = app
        .http
        .get(app.url("/graphql?query=%7BanimeCount%7D"))
        .send()
        .await
        .expect("GET query");
    assert_eq!(response.status(), 200);
    let response = app
        .http
        .get(app.url("/graphql?query=mutation%7BclearAllCache%7Bdeleted%7D%7D"))
        .send()
        .await
        .expect("GET mutation");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test]
async fn introspection_can_be_switched_off_while_graphiql_still_loads() {
    let app = app_with(&[("GRAPHQL_INTROSPECTION", "false")]).await;
    let body = app
        .graphql("{ __schema { types { name } } }", json!({}))
        .await;
    assert!(
        body.get("errors").is_some() || body["data"]["__schema"].is_null(),
        "{body}"
    );
    assert_eq!(
        app.graphql("{ animeCount }", json!({})).await["data"]["animeCount"],
        json!(250)
    );
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GraphiQL");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap_or_default().contains("graphiql"));
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = app_with(&[("CORS_ALLOWED_ORIGINS", "http://localhost:3000")]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_request_past_the_timeout_gets_504_with_a_timeout_code() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};

    let mut settings = TestSettings::new(Backend::Postgres);
    settings.vars = vec![
        ("REQUEST_TIMEOUT_SECS", "1".to_owned()),
        ("CACHE_TTL_ANIME_COUNT", "0".to_owned()),
        // Longer than the request timeout, so the request's own limit is
        // what stops the blocked count (not the database's).
        ("DATABASE_STATEMENT_TIMEOUT_MS", "5000".to_owned()),
    ];
    let app = TestApp::spawn_with(settings).await;
    // Another session locks the table, so the count blocks.
    let other = Database::connect(&app.database_url).await.expect("connect");
    let txn = other.begin().await.expect("begin");
    txn.execute_unprepared("LOCK TABLE anime IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let started = std::time::Instant::now();
    let (status, body) = post_raw(
        &app,
        Some("application/json"),
        json!({ "query": "{ animeCount }" }).to_string(),
    )
    .await;

    assert_eq!((status, code(&body)), (504, "TIMEOUT"), "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    txn.rollback().await.expect("unlock");
}
