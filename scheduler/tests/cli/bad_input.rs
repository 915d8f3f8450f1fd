//! Bad input through the CLI: a clear error naming the file or window, a
//! non-zero exit, and nothing published.

use crate::support::*;

#[test]
fn empty_input_window_is_an_error() {
    let p = Project::fixture();
    let o = p.run(&["run", "--dates", "2030-01-01..2030-01-02"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("input `raw_transactions` has no")
            && stderr.contains("2030-01-01..2030-01-02"),
        "{stderr}"
    );
    assert!(
        data_files(&p.out())
            .iter()
            .all(|f| !f.ends_with(".parquet"))
    );
}

#[test]
fn corrupt_parquet_input_names_the_file_and_publishes_nothing() {
    let p = Project::generated(4_000, 2, 1);
    // A first good run, whose output must survive the failed one untouched.
    p.run_ok(&["run"]);
    let before = data_files(&p.out());
    let bad = p
        .raw_root
        .join("transactions/date=2024-03-02/part-00001.parquet");
    std::fs::write(&bad, b"PAR1 this is not a parquet file PAR1").unwrap();
    let o = p.run(&["run"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("part-00001.parquet") && stderr.contains("bad spec"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed after 1 attempt(s)"),
        "a bad file is not retried: {stderr}"
    );
    assert_eq!(
        data_files(&p.out()),
        before,
        "nothing published, nothing removed"
    );
    let staging = p.out().join("clean_transactions/_chainbatch/staging");
    assert!(files_below(&staging, true).is_empty(), "staging removed");
}

#[test]
fn gc_rolls_back_a_crashed_run_and_removes_leftovers() {
    let p = Project::fixture();
    p.run_ok(&["run"]);
    let before = data_files(&p.out());
    let crashed = p
        .command(&["run"])
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let staging = p.out().join("clean_transactions/_chainbatch/staging");
    assert!(
        !files_below(&staging, true).is_empty(),
        "the crash left staging behind"
    );
    // A stray attempt of a run nobody remembers.
    let stray = staging.join("stray-run/0/0/attempt-1/part-0-0-000000.zstd.parquet");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"left over").unwrap();

    let out = p.run_ok(&["gc"]);
    assert!(
        out.contains("recovered run") && out.contains("stray-run"),
        "{out}"
    );
    assert!(
        files_below(&staging, true).is_empty(),
        "staging is empty after gc"
    );
    assert_eq!(data_files(&p.out()), before, "published data untouched");
    let runs = p.run_ok(&["runs", "--format", "json"]);
    assert!(runs.contains("rolled_back"), "{runs}");
}
