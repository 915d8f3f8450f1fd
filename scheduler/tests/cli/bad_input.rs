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
