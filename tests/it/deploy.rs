//! The deployment users run with `docker compose up -d`: `compose.yaml`, the
//! `Dockerfile` and `.dockerignore`, checked without a Docker engine.
//!
//! `compose.yaml` is validated against the Compose Specification JSON Schema
//! (vendored in `tests/it/data/`, see its README) and then against the
//! stack's own rules. The Dockerfile is read instruction by instruction, and
//! every file it copies from the build context must exist and survive
//! `.dockerignore`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn repo_file(name: &str) -> String {
    let path = repo_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

// --- compose.yaml ------------------------------------------------------------

fn compose() -> Value {
    yaml_serde::from_str(&repo_file("compose.yaml"))
        .unwrap_or_else(|err| panic!("compose.yaml is not valid YAML: {err}"))
}

/// Validates a compose document against the vendored Compose Specification;
/// `Err` holds boon's indented list of every violation.
fn check_compose_schema(document: &Value) -> Result<(), String> {
    const SCHEMA_URL: &str = "file:///anigo/tests/it/data/compose-spec.json";
    let schema: Value = serde_json::from_str(&repo_file("tests/it/data/compose-spec.json"))
        .expect("tests/it/data/compose-spec.json is JSON");
    let mut compiler = boon::Compiler::new();
    let mut schemas = boon::Schemas::new();
    compiler
        .add_resource(SCHEMA_URL, schema)
        .expect("schema URL is absolute");
    let index = compiler
        .compile(SCHEMA_URL, &mut schemas)
        .unwrap_or_else(|err| panic!("the Compose Specification schema does not compile: {err}"));
    schemas
        .validate(document, index)
        .map_err(|err| format!("{err:#}"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("compose.yaml has no service `{name}`"))
}

/// A string-or-list field (`command`, `entrypoint`, `healthcheck.test`) as the
/// text the container sees: list items joined by spaces, `$$` unescaped.
fn shell_text(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map_or_else(|| item.to_string(), str::to_owned)
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    text.replace("$$", "$")
}

/// `environment:` in either syntax (map or `KEY=value` list).
fn environment(service: &Value) -> BTreeMap<String, String> {
    let scalar = |value: &Value| match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `volumes:` of a service as (source, target), in either syntax.
fn mounts(service: &Value) -> Vec<(String, String)> {
    let Some(items) = service["volumes"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                (source, target)
            }
            long => (
                long["source"].as_str().unwrap_or_default().to_owned(),
                long["target"].as_str().unwrap_or_default().to_owned(),
            ),
        })
        .collect()
}

/// Container ports a service publishes on the host, in either syntax. A
/// short entry without a host part (`"8000"`) is not counted: it publishes
/// on a random host port, which nobody can document.
fn published_ports(service: &Value) -> Vec<String> {
    let Some(items) = service["ports"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(short) => short
                .rsplit_once(':')
                .map(|(_, container)| container.split('/').next().unwrap_or_default().to_owned()),
            Value::Object(long) if long.contains_key("published") => {
                long.get("target").map(|target| match target {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
            }
            _ => None,
        })
        .collect()
}

/// Asserts that a service keeps its data in a named volume mounted at `target`.
fn assert_named_volume(compose: &Value, name: &str, target: &str) {
    let mounts = mounts(service(compose, name));
    let source = mounts
        .iter()
        .find(|(_, mounted_at)| mounted_at == target)
        .map(|(source, _)| source.clone())
        .unwrap_or_else(|| panic!("service `{name}` mounts nothing at {target}: {mounts:?}"));
    assert!(
        compose["volumes"].get(&source).is_some(),
        "service `{name}` mounts `{source}` at {target}, which is not a named volume \
         (declare it under the top-level `volumes:`; a bind mount loses the data's ownership)"
    );
}

/// Asserts that a service has an enabled health check whose command mentions
/// every one of `words`.
fn assert_healthcheck(compose: &Value, name: &str, words: &[&str]) -> String {
    let healthcheck = &service(compose, name)["healthcheck"];
    assert!(
        healthcheck.is_object() && healthcheck["disable"] != Value::Bool(true),
        "service `{name}` has no healthcheck (depends_on `service_healthy` needs one)"
    );
    let test = shell_text(&healthcheck["test"]);
    for word in words {
        assert!(
            test.contains(word),
            "service `{name}`: healthcheck `{test}` should mention `{word}`"
        );
    }
    test
}

#[test]
fn compose_yaml_follows_the_compose_specification() {
    let compose = compose();

    let result = check_compose_schema(&compose);

    if let Err(violations) = result {
        panic!("compose.yaml violates the Compose Specification:\n{violations}");
    }
}

#[test]
fn the_compose_schema_check_rejects_a_misspelled_key_and_a_wrong_type() {
    // Arrange: two mistakes Compose itself refuses, made to the real file so
    // the check is known to bite on it.
    let mut misspelled = compose();
    misspelled["services"]["app"]["depends-on"] = serde_json::json!(["postgres"]);
    let mut wrong_type = compose();
    wrong_type["services"]["app"]["ports"] = Value::from(8000);

    // Act
    let misspelled = check_compose_schema(&misspelled);
    let wrong_type = check_compose_schema(&wrong_type);

    // Assert
    let misspelled = misspelled.expect_err("a misspelled service key passed the schema check");
    assert!(misspelled.contains("depends-on"), "{misspelled}");
    let wrong_type = wrong_type.expect_err("a number for `ports` passed the schema check");
    assert!(wrong_type.contains("ports"), "{wrong_type}");
}

#[test]
fn compose_redis_is_an_unpublished_lru_cache_with_an_optional_password() {
    let compose = compose();
    let redis = service(&compose, "redis");

    let image = redis["image"].as_str().unwrap_or_default();
    assert!(
        image.starts_with("redis:7"),
        "redis image `{image}` should be pinned to a redis:7 tag"
    );
    let command = shell_text(&redis["command"]);
    for flag in [
        "--appendonly yes",
        "--maxmemory 256mb",
        "--maxmemory-policy allkeys-lru",
    ] {
        assert!(
            command.contains(flag),
            "redis command lacks `{flag}`: {command}"
        );
    }
    // `--requirepass` must sit inside `${REDIS_PASSWORD:+…}`, so it is only
    // passed (and only needed by clients) when a password is set.
    let conditional = command
        .find("${REDIS_PASSWORD:+")
        .map(|start| &command[start..])
        .and_then(|rest| rest.find('}').map(|end| &rest[..end]))
        .unwrap_or_else(|| {
            panic!("redis command lacks a `${{REDIS_PASSWORD:+…}}` expansion: {command}")
        });
    assert!(
        conditional.contains("--requirepass") && conditional.contains("$REDIS_PASSWORD"),
        "redis command's `${{REDIS_PASSWORD:+…}}` should pass `--requirepass \"$REDIS_PASSWORD\"`: {command}"
    );
    assert!(
        environment(redis).contains_key("REDIS_PASSWORD"),
        "the redis service must receive REDIS_PASSWORD in `environment:`, or its \
         command and healthcheck never see the password"
    );
    assert!(
        redis
            .get("ports")
            .is_none_or(|ports| ports.as_array().is_some_and(Vec::is_empty)),
        "redis must not publish ports (only the app talks to it): {}",
        redis["ports"]
    );
}

#[test]
fn compose_postgres_and_redis_keep_data_in_named_volumes_and_report_health() {
    let compose = compose();

    let postgres_image = service(&compose, "postgres")["image"]
        .as_str()
        .unwrap_or_default();
    assert!(
        postgres_image.starts_with("postgres:16"),
        "postgres image `{postgres_image}` should be pinned to a postgres:16 tag"
    );
    let postgres_env = environment(service(&compose, "postgres"));
    for var in ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"] {
        assert!(
            postgres_env.get(var).is_some_and(|value| !value.is_empty()),
            "postgres service should set {var} (from .env, with a default)"
        );
    }
    assert_named_volume(&compose, "redis", "/data");
    assert_named_volume(&compose, "postgres", "/var/lib/postgresql/data");
    let redis_check = assert_healthcheck(&compose, "redis", &["redis-cli", "ping"]);
    assert!(
        redis_check.contains("REDISCLI_AUTH") || redis_check.contains("-a "),
        "redis healthcheck `{redis_check}` should authenticate when REDIS_PASSWORD is set"
    );
    assert_healthcheck(&compose, "postgres", &["pg_isready"]);
}

#[test]
fn compose_app_waits_for_healthy_backends_migrates_then_serves_on_port_8000() {
    let compose = compose();
    let app = service(&compose, "app");

    // Built from this repository's Dockerfile.
    let context = app["build"]
        .as_str()
        .or_else(|| app["build"]["context"].as_str());
    assert_eq!(
        context,
        Some("."),
        "app should be built from the repository root (`build: .`)"
    );
    // Starts only once both backends answer their health checks.
    for backend in ["postgres", "redis"] {
        let condition = app["depends_on"][backend]["condition"].as_str();
        assert_eq!(
            condition,
            Some("service_healthy"),
            "app should depend on {backend} with `condition: service_healthy`"
        );
    }
    // Migrations run first, and a failed one stops the start.
    let command = shell_text(&app["command"]) + " " + &shell_text(&app["entrypoint"]);
    let migrate = command.find("anigo migrate up");
    let serve = command.find("anigo serve");
    assert!(
        matches!((migrate, serve), (Some(m), Some(s)) if m < s && command[m..s].contains("&&")),
        "app should run `anigo migrate up && … anigo serve`, got `{command}`"
    );
    // Reads .env, which a fresh clone does not have.
    let env_files: Vec<&Value> = match &app["env_file"] {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        single => vec![single],
    };
    let dot_env = env_files
        .iter()
        .find(|entry| entry.as_str().or_else(|| entry["path"].as_str()) == Some(".env"))
        .unwrap_or_else(|| panic!("app should read `.env` through `env_file:`"));
    assert_eq!(
        dot_env["required"].as_bool(),
        Some(false),
        "app's `.env` entry should use the long syntax with `required: false`, or \
         `docker compose up` fails on a fresh clone without .env"
    );
    // The stack's own addresses win over whatever .env says.
    let env = environment(app);
    assert_eq!(
        env.get("BIND_ADDR").map(String::as_str),
        Some("0.0.0.0:8000"),
        "app must listen on 0.0.0.0:8000 inside the container"
    );
    let database_url = env.get("DATABASE_URL").cloned().unwrap_or_default();
    assert!(
        database_url.starts_with("postgres://") && database_url.contains("@postgres:5432/"),
        "app's DATABASE_URL should point at the postgres service: `{database_url}`"
    );
    match env.get("REDIS_URL").filter(|url| !url.is_empty()) {
        Some(url) => assert!(
            url.contains("redis:6379") && url.contains("REDIS_PASSWORD"),
            "app's REDIS_URL should point at the redis service with REDIS_PASSWORD: `{url}`"
        ),
        None => {
            assert!(
                env.contains_key("REDIS_URL"),
                "app should set REDIS_URL (blank is fine), or a REDIS_URL in .env wins over REDIS_HOST"
            );
            assert_eq!(
                env.get("REDIS_HOST").map(String::as_str),
                Some("redis"),
                "app's REDIS_HOST should be the redis service"
            );
            assert!(
                env.get("REDIS_PASSWORD")
                    .is_some_and(|value| value.contains("${REDIS_PASSWORD")),
                "app should receive REDIS_PASSWORD, the password redis requires"
            );
        }
    }
    // Published, health-checked, restarted.
    let ports = published_ports(app);
    assert!(
        ports.iter().any(|port| port == "8000"),
        "app should publish container port 8000 on the host: {ports:?}"
    );
    assert_healthcheck(&compose, "app", &["/healthz", "8000"]);
    let restart = app["restart"].as_str().unwrap_or_default();
    assert!(
        matches!(restart, "always" | "unless-stopped" | "on-failure"),
        "app should have a restart policy, got `{restart}`"
    );
}

// --- Dockerfile and .dockerignore --------------------------------------------

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    /// 1-based line where the instruction starts.
    line: usize,
    /// Upper-cased keyword (`FROM`, `COPY`, …).
    keyword: String,
    /// Everything after the keyword, trimmed.
    args: String,
}

/// Splits a Dockerfile into instructions: a line ending in `\` continues on
/// the next, comment lines are dropped (inside a continuation too, as Docker
/// does), blank lines are skipped. Heredocs and `# escape=` are not used here.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (line, false),
        };
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body);
        if continues {
            pending = Some((start, joined));
            continue;
        }
        let (keyword, args) = joined
            .split_once(char::is_whitespace)
            .unwrap_or((&joined, ""));
        instructions.push(Instruction {
            line: start,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a `\\` continuation"
    );
    instructions
}

fn dockerfile() -> Vec<Instruction> {
    parse_dockerfile(&repo_file("Dockerfile"))
}

/// The build stages: each `FROM` and the instructions up to the next one.
fn stages(instructions: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, instruction)| instruction.keyword == "FROM")
        .map(|(index, _)| index)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied().unwrap_or(instructions.len());
            &instructions[start..end]
        })
        .collect()
}

/// `.dockerignore` rules with Docker's matching: patterns are relative to the
/// context root, `*` and `?` stay within one path segment, `**` spans any
/// number of segments, a rule matching a directory covers everything under
/// it, `!` re-includes, and the last matching rule decides.
struct DockerIgnore {
    /// (is an exclusion, pattern segments)
    rules: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (is_exclusion, pattern) = match line.strip_prefix('!') {
                    Some(pattern) => (false, pattern.trim()),
                    None => (true, line),
                };
                assert!(
                    !pattern.contains('['),
                    ".dockerignore pattern `{line}` uses a character class, which this \
                     check does not implement; extend `DockerIgnore` or avoid it"
                );
                let segments = pattern
                    .split('/')
                    .filter(|segment| !segment.is_empty() && *segment != ".")
                    .map(str::to_owned)
                    .collect();
                (is_exclusion, segments)
            })
            .collect();
        Self { rules }
    }

    /// Whether `path` (relative to the context root) is left out of the context.
    fn is_excluded(&self, path: &str) -> bool {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|segment| !segment.is_empty() && *segment != ".")
            .collect();
        let mut is_excluded = false;
        for (is_exclusion, pattern) in &self.rules {
            // The path itself or one of its parent directories.
            let matches = (1..=segments.len()).any(|n| path_matches(pattern, &segments[..n]));
            if matches {
                is_excluded = *is_exclusion;
            }
        }
        is_excluded
    }
}

/// Glob match of whole paths, segment by segment (`**` spans segments).
fn path_matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            path_matches(rest, path) || (!path.is_empty() && path_matches(pattern, &path[1..]))
        }
        Some((first, rest)) => {
            !path.is_empty()
                && segment_matches(
                    &first.chars().collect::<Vec<_>>(),
                    &path[0].chars().collect::<Vec<_>>(),
                )
                && path_matches(rest, &path[1..])
        }
    }
}

/// `*`, `?` and `\`-escapes within one path segment.
fn segment_matches(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && segment_matches(rest, &text[1..]),
        Some(('\\', [escaped, rest @ ..])) => {
            text.first() == Some(escaped) && segment_matches(rest, &text[1..])
        }
        Some((literal, rest)) => text.first() == Some(literal) && segment_matches(rest, &text[1..]),
    }
}

/// Every file and directory under the repository that reaches the build
/// context, relative to the root. Excluded directories are not entered (a
/// `!` rule re-including something below one is not followed).
fn context_paths(ignore: &DockerIgnore) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, ignore: &DockerIgnore, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|err| panic!("listing {}: {err}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            if ignore.is_excluded(&relative) {
                continue;
            }
            out.push(relative);
            if path.is_dir() {
                walk(root, &path, ignore, out);
            }
        }
    }
    let root = repo_path("");
    let mut paths = Vec::new();
    walk(&root, &root, ignore, &mut paths);
    paths
}

/// Sources of a `COPY`/`ADD` from the build context; `None` for a copy from
/// another stage or image (`--from=`).
fn context_sources(instruction: &Instruction) -> Option<Vec<String>> {
    // Flags (`--from=`, `--chown=`, …) come first, then either the shell
    // form `src… dest` or the JSON form `["src", …, "dest"]`.
    let mut rest = instruction.args.as_str();
    let mut flags = Vec::new();
    while let Some(flag) = rest.strip_prefix("--") {
        let (flag, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        flags.push(flag);
        rest = after.trim_start();
    }
    if flags.iter().any(|flag| flag.starts_with("from")) {
        return None;
    }
    let operands: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).unwrap_or_else(|err| {
            panic!(
                "Dockerfile line {}: bad JSON form `{rest}`: {err}",
                instruction.line
            )
        })
    } else {
        rest.split_whitespace().map(str::to_owned).collect()
    };
    assert!(
        operands.len() >= 2,
        "Dockerfile line {}: {} needs a source and a destination: `{}`",
        instruction.line,
        instruction.keyword,
        instruction.args
    );
    let sources = operands[..operands.len() - 1]
        .iter()
        .filter(|source| !source.contains("://"))
        .map(|source| {
            source
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_owned()
        })
        .collect();
    Some(sources)
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged_with_a_healthcheck() {
    let instructions = dockerfile();

    let stages = stages(&instructions);

    assert!(
        stages.len() >= 2,
        "the Dockerfile should be multi-stage (a build stage and a small runtime), found {} FROM",
        stages.len()
    );
    let runtime = stages.last().expect("at least one stage");
    let last = |keyword: &str| runtime.iter().rev().find(|i| i.keyword == keyword);
    let user = last("USER")
        .map(|i| i.args.clone())
        .unwrap_or_else(|| panic!("the final stage sets no USER, so the server runs as root"));
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "the final stage's USER `{user}` is root"
    );
    let healthcheck = last("HEALTHCHECK")
        .map(|i| i.args.clone())
        .unwrap_or_else(|| panic!("the final stage has no HEALTHCHECK"));
    assert!(
        healthcheck.contains("/healthz") && !healthcheck.eq_ignore_ascii_case("none"),
        "the final stage's HEALTHCHECK should probe /healthz: `{healthcheck}`"
    );
    let exposed: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .collect();
    assert!(
        exposed
            .iter()
            .any(|port| *port == "8000" || *port == "8000/tcp"),
        "the final stage should EXPOSE 8000, exposes {exposed:?}"
    );
    let listens_everywhere = runtime
        .iter()
        .any(|i| i.keyword == "ENV" && i.args.contains("BIND_ADDR=0.0.0.0:8000"));
    assert!(
        listens_everywhere,
        "the final stage should set ENV BIND_ADDR=0.0.0.0:8000 (the default 127.0.0.1 is unreachable from outside the container)"
    );
}

#[test]
fn dockerfile_copies_only_files_that_reach_the_build_context() {
    let instructions = dockerfile();
    let ignore = DockerIgnore::parse(&repo_file(".dockerignore"));
    let context = context_paths(&ignore);

    let mut problems = Vec::new();
    let mut checked = 0;
    for instruction in instructions
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
    {
        for source in context_sources(instruction).unwrap_or_default() {
            checked += 1;
            let at = format!("Dockerfile line {}: `{source}`", instruction.line);
            if source.is_empty() {
                continue; // `.` or `/`: the whole context
            }
            if source.contains(['*', '?']) {
                let pattern: Vec<String> = source.split('/').map(str::to_owned).collect();
                let found = context
                    .iter()
                    .any(|path| path_matches(&pattern, &path.split('/').collect::<Vec<_>>()));
                if !found {
                    problems.push(format!("{at} matches nothing in the build context (missing, or excluded by .dockerignore)"));
                }
            } else if !repo_path(&source).exists() {
                problems.push(format!("{at} does not exist in the repository"));
            } else if ignore.is_excluded(&source) {
                problems.push(format!("{at} is excluded by .dockerignore"));
            }
        }
    }

    assert!(
        checked > 0,
        "the Dockerfile copies nothing from the build context"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dockerfile_parser_joins_continuations_and_skips_comments() {
    let text = "# syntax comment\nFROM rust AS build\nRUN a \\\n  # dropped\n  && b \\\n  && c\n\ncopy x y\n";

    let instructions = parse_dockerfile(text);

    let summary: Vec<(usize, &str, &str)> = instructions
        .iter()
        .map(|i| (i.line, i.keyword.as_str(), i.args.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (2, "FROM", "rust AS build"),
            (3, "RUN", "a && b && c"),
            (8, "COPY", "x y"),
        ]
    );
}

#[test]
fn dockerignore_rules_follow_docker_matching() {
    let ignore = DockerIgnore::parse("# comment\ntarget/\n/.env\n*.db\n!keep.db\ndocs/**/*.png\n");

    let excluded = |path| ignore.is_excluded(path);

    assert!(excluded("target"));
    assert!(
        excluded("target/release/anigo"),
        "a directory rule covers its contents"
    );
    assert!(excluded(".env"));
    assert!(excluded("anigo.db"));
    assert!(!excluded("keep.db"), "`!` re-includes");
    assert!(
        !excluded("src/anigo.db"),
        "`*` stays in the top-level segment"
    );
    assert!(
        excluded("docs/a.png") && excluded("docs/a/b/c.png"),
        "`**` spans segments"
    );
    assert!(!excluded("docs/a.md"));
    assert!(!excluded("src/main.rs") && !excluded("Cargo.toml"));
}
