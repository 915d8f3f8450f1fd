//! Killing the executor mid-write, then rerunning the same attempt or the
//! next: the manifest lists exactly the complete files.

use crate::support::*;
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::manifest::TaskManifest;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(spec: &Path, attempt: u32) -> std::process::Child {
    Command::new(executor_bin())
        .args(["run", "--spec"])
        .arg(spec)
        .env("AWS_BATCH_JOB_ARRAY_INDEX", "0")
        .env("AWS_BATCH_JOB_ATTEMPT", attempt.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts attempt `attempt` and kills it once it has written `files` files.
fn kill_mid_write(spec: &Path, attempt: u32, attempt_dir: &Path, files: usize) {
    let mut child = spawn(spec, attempt);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if files_below(attempt_dir, ".parquet").len() >= files {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the task finished ({status}) before it could be killed; make the input larger");
        }
        assert!(Instant::now() < deadline, "no output appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !attempt_dir.join("_manifest.json").exists(),
        "a killed task has no manifest"
    );
}

fn check_manifest_lists_complete_files(attempt_dir: &Path, rows: u64) -> TaskManifest {
    let m: TaskManifest =
        serde_json::from_slice(&std::fs::read(attempt_dir.join("_manifest.json")).unwrap())
            .unwrap();
    let listed: BTreeSet<String> = m.files.iter().map(|f| f.path.clone()).collect();
    let on_disk: BTreeSet<String> = files_below(attempt_dir, ".parquet")
        .iter()
        .map(|p| p.strip_prefix(attempt_dir).unwrap().display().to_string())
        .collect();
    assert_eq!(listed, on_disk, "manifest and directory agree");
    let mut total = 0;
    for f in &m.files {
        // Every listed file is a complete Parquet file with the listed rows.
        let file = std::fs::File::open(attempt_dir.join(&f.path)).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let n = parquet::file::reader::FileReader::metadata(&reader)
            .file_metadata()
            .num_rows();
        assert_eq!(n as u64, f.rows, "{}", f.path);
        total += f.rows;
    }
    assert_eq!(total, rows);
    assert_eq!(m.rows, rows);
    m
}

#[test]
fn kill_mid_write_then_rerun_same_or_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 4, 100_000, 3);
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "date".into(),
            expr: "CAST(block_timestamp AS DATE)".into(),
        }],
        max_rows_per_file: Some(5_000),
        ..Layout::default()
    };
    let stage = dir.path().join("stage");
    let spec = select_all(&inputs, layout, &stage);
    let spec_path = dir.path().join("stage.json");
    write_spec(&spec_path, &[spec]);
    let attempt_dir = |n: u32| stage.join(format!("run-1/0/0/attempt-{n}"));

    // Same attempt again.
    kill_mid_write(&spec_path, 1, &attempt_dir(1), 3);
    let status = spawn(&spec_path, 1).wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let first = check_manifest_lists_complete_files(&attempt_dir(1), 400_000);

    // The next attempt, after another kill.
    kill_mid_write(&spec_path, 2, &attempt_dir(2), 3);
    let status = spawn(&spec_path, 3).wait_with_output().unwrap();
    assert!(status.status.success());
    let third = check_manifest_lists_complete_files(&attempt_dir(3), 400_000);
    assert_eq!(first.checksum, third.checksum, "same rows, same checksum");
    assert!(!attempt_dir(2).join("_manifest.json").exists());
}
