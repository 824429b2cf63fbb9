//! GraphiQL in a real browser, with no internet: headless Chromium opens the
//! page from the running server, runs `popularAnime`, and the test reads the
//! result pane, saves a screenshot (`target/browser/graphiql.png`) and checks
//! that the browser asked no host but the server for anything.
//!
//! Chromium is driven over W3C WebDriver by `chromedriver` (Debian packages
//! `chromium` and `chromium-driver`), spoken with reqwest, so no browser crate
//! is needed. Both binaries are required: without them the test fails with
//! the install command, locally and in CI; it never skips. Every process is
//! stopped by [`Browser`]'s `Drop`, also when an assertion fails.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, TestSettings};
use crate::support;

/// What to run when a binary is missing.
const INSTALL: &str = "install them with `apt-get install -y chromium chromium-driver` \
                       (scripts/test does so when run as root)";

/// Starting chromedriver and then Chromium: a few seconds on an idle machine,
/// much longer on two cores shared with compilers.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// From loading the page to the query's result on screen.
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Any other single WebDriver command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often waits poll the page.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The query the page's editor starts with (see `assets/graphiql/anigo-graphiql.js`).
const DEFAULT_QUERY: &str = "{ popularAnime(limit: 5) { id title } }";

#[tokio::test]
async fn graphiql_page_is_served_with_its_policy_and_immutable_assets() {
    // Arrange
    let app = TestApp::spawn(Backend::Sqlite).await;

    // Act
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET /graphql");
    let headers = page.headers().clone();
    let html = page.text().await.expect("page text");

    // Assert
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    let policy = header("content-security-policy");
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(header("cache-control"), "no-cache");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let assets: Vec<&str> = html
        .split("=\"/graphiql/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(assets.len(), 6, "two stylesheets and four scripts: {html}");
    for asset in assets {
        let response = app
            .http
            .get(app.url(&format!("/graphiql/{asset}")))
            .send()
            .await
            .expect("GET an asset");
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{asset}"
        );
    }
}

#[tokio::test]
async fn graphiql_runs_popular_anime_in_headless_chromium_without_internet() {
    // Arrange: the titles the API returns for the page's default query.
    let started = Instant::now();
    // GraphiQL's introspection query nests `ofType` nine times: 15 levels
    // as async-graphql counts them. The default GRAPHQL_MAX_DEPTH is 15 so
    // that GraphiQL gets its Docs and completion; this test runs on the
    // defaults and checks both.
    let app = TestApp::spawn_with(TestSettings::new(Backend::Sqlite)).await;
    let data = app.data(DEFAULT_QUERY, json!({})).await;
    let titles: Vec<String> = data["popularAnime"]
        .as_array()
        .expect("popularAnime is a list")
        .iter()
        .map(|anime| anime["title"].as_str().expect("title").to_owned())
        .collect();
    assert_eq!(titles.len(), 5);
    let origin = app.url("/");
    let browser = Browser::launch().await;

    // Act: open GraphiQL and its Docs (the schema loaded), run the default
    // query, read the result pane; then open the settings dialog, whose
    // scroll lock needs the policy's inline styles.
    browser.navigate(&app.url("/graphql")).await;
    browser
        .wait_for(
            "the query editor to hold the default query",
            RESULT_TIMEOUT,
            "const editor = document.querySelector('.graphiql-query-editor');\
             return !!editor && editor.innerText.includes('popularAnime');",
        )
        .await;
    let docs = browser
        .element(".graphiql-sidebar button[aria-label*='Documentation Explorer']")
        .await;
    browser.click(&docs).await;
    let docs_text = browser
        .wait_for(
            "the Docs to show the schema",
            RESULT_TIMEOUT,
            "const docs = document.querySelector('.graphiql-doc-explorer');\
             const text = docs ? docs.innerText : '';\
             return text.includes('Root Types') ? text : null;",
        )
        .await;
    let run = browser.element(".graphiql-execute-button").await;
    browser.click(&run).await;
    let result = browser
        .wait_for(
            "the result pane to show popularAnime",
            RESULT_TIMEOUT,
            "const pane = document.querySelector('.graphiql-response .result-window');\
             const text = pane ? pane.innerText : '';\
             return text.includes('popularAnime') && text.includes('title') ? text : null;",
        )
        .await;
    let screenshot = browser.screenshot().await;
    let path = save_screenshot(&screenshot);
    let settings_button = browser.element("[aria-label='Open settings dialog']").await;
    browser.click(&settings_button).await;
    browser
        .wait_for(
            "the settings dialog",
            RESULT_TIMEOUT,
            "return !!document.querySelector('[role=dialog]');",
        )
        .await;
    let requests = browser.requested_urls().await;
    let console_errors = browser.console_errors().await;
    browser.quit().await;
    eprintln!(
        "browser test: {:?} in all, screenshot at {}",
        started.elapsed(),
        path.display()
    );

    // Assert
    assert!(
        docs_text.as_str().unwrap_or_default().contains("Query"),
        "the Docs name the query root: {docs_text}"
    );
    let result = result.as_str().unwrap_or_default();
    for title in &titles {
        let shown = serde_json::to_string(title).expect("a JSON string");
        assert!(
            result.contains(&shown),
            "title {shown} is not in the result pane:\n{result}"
        );
    }
    assert!(
        screenshot.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    // The log also holds Chromium's own pages (e.g. chrome://new-tab-page
    // and its chrome:// resources), which never touch the network.
    let foreign: Vec<&String> = requests
        .iter()
        .filter(|url| is_network_url(url) && !url.starts_with(&origin))
        .collect();
    assert!(
        foreign.is_empty(),
        "Chromium asked other hosts than {origin}: {foreign:#?}"
    );
    for expected in [
        "graphiql/graphiql-4.1.2.min.",
        "graphiql/anigo-graphiql.",
        "graphql",
    ] {
        assert!(
            requests
                .iter()
                .any(|url| url.starts_with(&format!("{origin}{expected}"))),
            "no request for {origin}{expected} was seen (is the network log empty?): {requests:#?}"
        );
    }
    assert!(
        console_errors.is_empty(),
        "the page logged errors (a CSP violation shows here): {console_errors:#?}"
    );
}

/// Whether fetching `url` goes over the network (anything else, such as
/// `data:` or `chrome://`, is answered inside the browser).
fn is_network_url(url: &str) -> bool {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    ["http", "https", "ws", "wss", "ftp"]
        .iter()
        .any(|network| scheme.eq_ignore_ascii_case(network))
}

/// Writes the PNG to `target/browser/graphiql.png` and returns the path.
fn save_screenshot(png: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join("graphiql.png");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Headless Chromium behind its own chromedriver, with a fresh profile.
///
/// chromedriver runs in a process group of its own and starts Chromium in
/// it, so `Drop` can end both (and Chromium's helpers) by that group's id.
/// Only Chromium's crash handler (crashpad) leaves the group, into a session
/// of its own; it exits by itself once Chromium is gone.
struct Browser {
    http: reqwest::Client,
    port: u16,
    /// The WebDriver session; `None` once deleted.
    session: Option<String>,
    driver: Child,
    /// The Chromium profile and chromedriver's log; removed on drop.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; panics with the
    /// install command when either binary is missing.
    async fn launch() -> Self {
        let chromium = find_binary("/usr/bin/chromium", "chromium");
        let chromedriver = find_binary("/usr/bin/chromedriver", "chromedriver");
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            panic!(
                "the browser test needs Chromium and chromedriver and never skips without \
                 them: {INSTALL}"
            );
        };
        let dir = tempfile::tempdir().expect("a temp dir for the Chromium profile");
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))
            .expect("create the chromedriver log");
        let port = support::free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let mut browser = Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            port,
            session: None,
            driver,
            dir,
        };
        browser.wait_for_driver().await;
        browser.session = Some(browser.new_session(&chromium).await);
        browser
    }

    async fn wait_for_driver(&mut self) {
        let deadline = Instant::now() + SESSION_TIMEOUT;
        loop {
            let status = self
                .http
                .get(format!("{}/status", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(response) = status {
                let body: Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == json!(true) {
                    return;
                }
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("chromedriver exited ({exit}):\n{}", self.driver_log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver was not ready within {SESSION_TIMEOUT:?}:\n{}",
                self.driver_log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn new_session(&self, chromium: &Path) -> String {
        let profile = self.dir.path().join("profile");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    // Containers often have a 64 MB /dev/shm.
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            // Network events (every URL the page requests) and the console.
            "goog:loggingPrefs": { "performance": "ALL", "browser": "ALL" },
            "timeouts": { "pageLoad": SESSION_TIMEOUT.as_millis(), "script": COMMAND_TIMEOUT.as_millis() },
        }}});
        let response = self
            .http
            .post(format!("{}/session", self.base()))
            .json(&capabilities)
            .timeout(SESSION_TIMEOUT)
            .send()
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", self.driver_log()));
        let body: Value = response.json().await.unwrap_or_default();
        body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {body}\n{}", self.driver_log()))
            .to_owned()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One command of the session; panics unless WebDriver succeeded.
    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let session = self.session.as_deref().expect("an open session");
        let mut request = self
            .http
            .request(method, format!("{}/session/{session}{path}", self.base()))
            .timeout(COMMAND_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "WebDriver {path}: {status} {body}");
        body["value"].clone()
    }

    async fn navigate(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` in the page and returns its value.
    async fn execute(&self, script: &str) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Runs `script` until it returns something other than null or false,
    /// and returns that.
    async fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script).await;
            if !value.is_null() && value != json!(false) {
                return value;
            }
            if Instant::now() >= deadline {
                let page = self
                    .execute("return document.body ? document.body.innerText : '';")
                    .await;
                panic!("timed out after {timeout:?} waiting for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The element matching a CSS selector.
    async fn element(&self, selector: &str) -> String {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element id for {selector}: {found}"))
            .to_owned()
    }

    async fn click(&self, element: &str) {
        self.command(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The viewport as PNG bytes.
    async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command(Method::GET, "/screenshot", None).await;
        base64_decode(encoded.as_str().expect("base64 text"))
    }

    /// Every URL the page requested (network log), plus what the page's
    /// Resource Timing lists, as a cross-check.
    async fn requested_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .log("performance")
            .await
            .iter()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|event| event["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|event| {
                Some(
                    event["message"]["params"]["request"]["url"]
                        .as_str()?
                        .to_owned(),
                )
            })
            .collect();
        let timed = self
            .execute("return performance.getEntriesByType('resource').map(e => e.name);")
            .await;
        urls.extend(
            timed
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|url| Some(url.as_str()?.to_owned())),
        );
        urls
    }

    /// Console messages at level SEVERE (errors, CSP violations, failed loads).
    async fn console_errors(&self) -> Vec<String> {
        self.log("browser")
            .await
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// chromedriver's log of `kind` since the last read.
    async fn log(&self, kind: &str) -> Vec<Value> {
        let entries = self
            .command(Method::POST, "/se/log", Some(json!({ "type": kind })))
            .await;
        entries.as_array().cloned().unwrap_or_default()
    }

    /// Ends the session (Chromium exits); `Drop` stops chromedriver.
    async fn quit(mut self) {
        self.command(Method::DELETE, "", None).await;
        self.session = None;
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed test the session is still open: ask chromedriver to
        // close Chromium (blocking; `Drop` cannot await), then end whatever
        // is left of the group, helpers included, by the group's id.
        if let Some(session) = self.session.take() {
            let _ = delete_session(self.port, &session);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` over a plain socket, for `Drop`.
fn delete_session(port: u16, session: &str) -> std::io::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}

/// `preferred` when it is executable, else `name` on `PATH`.
fn find_binary(preferred: &str, name: &str) -> Option<PathBuf> {
    let is_executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    let preferred = PathBuf::from(preferred);
    if is_executable(&preferred) {
        return Some(preferred);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Standard base64 (what WebDriver screenshots use) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", char::from(c)),
        }
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut bytes = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (value(c) << (18 - 6 * i)));
        let [_, a, b, c] = bits.to_be_bytes();
        bytes.extend_from_slice(&[a, b, c][..chunk.len() - 1]);
    }
    bytes
}

#[test]
fn base64_decoding_matches_known_values() {
    assert_eq!(base64_decode("TWFu"), b"Man");
    assert_eq!(base64_decode("TWE="), b"Ma");
    assert_eq!(base64_decode("TQ=="), b"M");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
