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

/// Rewrites one day's input file through DataFusion with `select` as its
/// projection (adding or retyping a column).
async fn rewrite_day(p: &Project, day: &str, select: &str) {
    let dir = p.raw_root.join(format!("transactions/date={day}"));
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet("f", file.display().to_string(), Default::default())
        .await
        .unwrap();
    let tmp = dir.join("rewritten.tmp");
    ctx.sql(&format!(
        "COPY (SELECT {select} FROM f) TO '{}' STORED AS PARQUET",
        tmp.display()
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
}

#[tokio::test]
async fn schema_drift_a_new_column_is_ignored_and_a_type_change_is_named() {
    let p = Project::generated(4_000, 2, 1);
    p.run_ok(&["run", "--nodes", "clean_transactions"]);
    let before = rows_as_text(
        &p.query("clean_transactions", "SELECT count(*), sum(fee_wei) FROM t")
            .await,
    );

    // A column the schema does not declare is not read: same rows, same fees.
    rewrite_day(&p, "2024-03-02", "*, 'surprise' AS new_column").await;
    p.run_ok(&["run", "--nodes", "clean_transactions"]);
    let after = rows_as_text(
        &p.query("clean_transactions", "SELECT count(*), sum(fee_wei) FROM t")
            .await,
    );
    assert_eq!(after, before);

    // A declared column whose type changed is an error naming the file.
    let published = data_files(&p.out());
    rewrite_day(
        &p,
        "2024-03-02",
        "* EXCEPT (nonce), CAST(nonce AS VARCHAR) AS nonce",
    )
    .await;
    let o = p.run(&["run", "--nodes", "clean_transactions"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("date=2024-03-02") && stderr.contains("nonce"),
        "{stderr}"
    );
    assert_eq!(data_files(&p.out()), published, "nothing published");
}

#[test]
fn an_output_that_cannot_be_written_is_named_and_nothing_is_left() {
    let p = Project::fixture();
    // A file where a directory must be: no user, root included, can write below it.
    let blocker = p.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let out = blocker.join("out");
    let o = p
        .command_on(
            &["run"],
            &p.raw_root.display().to_string(),
            &out.display().to_string(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not-a-dir/out"), "{stderr}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"x");
}

#[test]
fn a_full_disk_fails_clearly_and_publishes_nothing() {
    // A 2 MiB tmpfs as out_root, mounted in a private mount namespace (as
    // an unprivileged user too): the 8 MiB output cannot fit.
    let p = Project::generated(60_000, 2, 1);
    let out = p.dir.path().join("small-disk");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=2m tmpfs '{out}' || exit 99; \
         '{bin}' run --conf '{conf}' --globals 'raw_root={raw}' --globals 'out_root={out}'; \
         echo \"exit=$?\"; find '{out}' -name '*.parquet' -not -path '*/_chainbatch/*' | wc -l",
        out = out.display(),
        bin = bin(),
        conf = p.conf().display(),
        raw = p.raw_root.display(),
    );
    let o = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("CHAINBATCH_EXECUTOR", executor_bin())
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "unshare/mount failed: {stderr}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("exit=1"), "{stdout}\n{stderr}");
    assert_eq!(
        lines.next().map(str::trim),
        Some("0"),
        "published files: {stdout}"
    );
    assert!(
        stderr.contains("No space left on device") || stderr.contains("os error 28"),
        "{stderr}"
    );
}
