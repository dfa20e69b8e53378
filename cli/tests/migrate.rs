//! `hostfactory migrate` as an operator runs it: ORB's JSON database into SQLite, re-run,
//! onward copy, and a clear failure for a store it does not know.

use std::process::{Command, Output};

fn migrate(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostfactory"))
        .args(["migrate", "--from", from, "--to", to])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run hostfactory migrate")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn orb_database_imports_into_sqlite_and_survives_a_rerun_and_an_onward_copy() {
    let data = tempfile::tempdir().unwrap();
    let orb = format!("orb:{}/../tests/fixtures/orb/request_database.json", env!("CARGO_MANIFEST_DIR"));
    let first = format!("sqlite:{}", data.path().join("first.sqlite").display());
    let second = format!("sqlite:{}", data.path().join("second.sqlite").display());

    let import = migrate(&orb, &first);
    assert!(import.status.success(), "{}{}", stdout(&import), String::from_utf8_lossy(&import.stderr));
    assert!(stdout(&import).starts_with("migrated 4 requests and 4 machines"), "{}", stdout(&import));
    assert!(stdout(&import).contains("verified (sha256 "), "{}", stdout(&import));

    let rerun = migrate(&orb, &first);
    assert!(rerun.status.success(), "re-running is safe: {}", String::from_utf8_lossy(&rerun.stderr));

    // Imported finished records are kept for the retention period, not purged on the next open.
    let onward = migrate(&first, &second);
    assert!(onward.status.success(), "{}", String::from_utf8_lossy(&onward.stderr));
    assert!(stdout(&onward).starts_with("migrated 4 requests and 4 machines"), "{}", stdout(&onward));
}

#[test]
fn an_unknown_store_fails_with_a_message() {
    let output = migrate("postgres:x", "sqlite:/nonexistent/x.sqlite");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("'postgres:x' must be sqlite:<path>, dynamodb[:<table prefix>] or orb:"), "{stderr}");
}
