//! Bad specs through the binary: a clear error naming the spec field, exit
//! code 3 (never worth a retry), and no manifest.

use crate::support::*;
use chainbatch_executor::error::{EXIT_BAD_SPEC, EXIT_RETRYABLE};
use chainbatch_executor::layout::Layout;
use chainbatch_executor::spec::TaskSpec;
use std::path::Path;
use std::process::Command;

/// Runs one spec through the executor binary outside Batch.
fn run_spec(dir: &Path, spec: TaskSpec) -> std::process::Output {
    let spec_path = dir.join("spec.json");
    write_spec(&spec_path, &[spec]);
    Command::new(executor_bin())
        .args(["run", "--spec"])
        .arg(&spec_path)
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ATTEMPT")
        .output()
        .unwrap()
}

fn run_bad(dir: &Path, spec: TaskSpec, expect_field: &str, expect_text: &str) {
    let out = run_spec(dir, spec);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_BAD_SPEC), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("bad spec: {expect_field}")),
        "expected field {expect_field} in: {stderr}"
    );
    assert!(
        stderr.contains(expect_text),
        "expected {expect_text:?} in: {stderr}"
    );
    assert!(
        files_below(dir, "_manifest.json").is_empty(),
        "no manifest after a failure"
    );
}

fn good(dir: &Path) -> TaskSpec {
    let inputs = input_files(&dir.join("in"), 1, 100, 1);
    select_all(&inputs, Layout::default(), &dir.join("stage"))
}

/// A listed input that is gone when the task reads it (the dataset's nightly
/// compaction deletes per-block files) is retryable, named, and no manifest.
#[test]
fn input_file_gone_since_planning_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = good(dir.path());
    let gone = dir.path().join("in/nope.parquet").display().to_string();
    spec.inputs[0].files[0].uri = gone;
    let out = run_spec(dir.path(), spec);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_RETRYABLE), "stderr: {stderr}");
    assert!(stderr.contains("inputs[0].files[0].uri"), "{stderr}");
    assert!(stderr.contains("nope.parquet"), "{stderr}");
    assert!(
        stderr.contains("removed after the task was planned"),
        "{stderr}"
    );
    assert!(files_below(dir.path(), "_manifest.json").is_empty());
}

#[test]
fn schema_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = good(dir.path());
    spec.inputs[0].schema.as_mut().unwrap()[1].data_type = "string".into();
    run_bad(
        dir.path(),
        spec,
        "inputs[0].schema[1].type",
        "column \"block_number\" is declared string but",
    );
}

#[test]
fn sql_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = good(dir.path());
    spec.sql = "SELECT hash, no_such_column FROM tx".into();
    run_bad(dir.path(), spec, "sql", "no_such_column");
}

#[test]
fn unknown_column_in_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = good(dir.path());
    if let chainbatch_executor::spec::OutputSpec::Table { layout, .. } = &mut spec.output {
        layout.sort_by = vec!["block_height".into()];
    }
    run_bad(
        dir.path(),
        spec,
        "output.layout.sort_by[0]",
        "unknown column \"block_height\"",
    );
}

#[test]
fn output_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where the staging directory should be").unwrap();
    let mut spec = good(dir.path());
    if let chainbatch_executor::spec::OutputSpec::Table { staging_uri, .. } = &mut spec.output {
        *staging_uri = blocker.join("staging").display().to_string();
    }
    run_bad(dir.path(), spec, "output.staging_uri", "");
}

#[test]
fn malformed_spec_and_wrong_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = good(dir.path());
    spec.version = 99;
    run_bad(
        dir.path(),
        spec,
        "version",
        "spec version 99 is not supported",
    );
    let spec_path = dir.path().join("broken.json");
    std::fs::write(&spec_path, b"{ not json").unwrap();
    let out = Command::new(executor_bin())
        .args(["run", "--spec"])
        .arg(&spec_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_BAD_SPEC));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}

#[test]
fn help_documents_exit_codes() {
    let out = Command::new(executor_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("AWS_BATCH_JOB_ARRAY_INDEX") && text.contains("3  bad spec"),
        "{text}"
    );
}
