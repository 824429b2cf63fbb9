//! The contracts around the code: the committed SDL, `.env.example`, and the
//! binary's handling of bad configuration.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

#[test]
fn schema_graphql_equals_the_exported_sdl() {
    let committed = repo_file("schema.graphql");
    let exported = anigo::graphql::sdl();
    assert!(
        committed == exported,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn env_example_names_every_variable_the_config_reads() {
    // Arrange: record every variable name the config asks for, with the
    // REDIS_URL branch and the REDIS_HOST branch both exercised.
    let asked = RefCell::new(BTreeSet::new());
    let _ = anigo::Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        None
    });
    let _ = anigo::Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_owned());
        (name == "REDIS_URL").then(|| "redis://127.0.0.1:6379/0".to_owned())
    });
    let example = repo_file(".env.example");
    let documented: BTreeSet<String> = example
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect();

    // Assert
    let missing: Vec<_> = asked.borrow().difference(&documented).cloned().collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    assert!(
        asked.borrow().len() >= 12,
        "config read suspiciously few variables: {:?}",
        asked.borrow()
    );
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("REDIS_PORT", "abc")
        .output()
        .expect("running anigo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("REDIS_PORT=\"abc\""), "{stderr}");
    assert!(stderr.contains("port number"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .current_dir(dir.path())
        .env_clear()
        .env("REDIS_URL", "memcached://x:1")
        .output()
        .expect("running anigo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
}

#[test]
fn the_schema_command_prints_the_sdl() {
    let output = Command::new(env!("CARGO_BIN_EXE_anigo"))
        .arg("schema")
        .env_clear()
        .output()
        .expect("running anigo schema");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        anigo::graphql::sdl()
    );
}
