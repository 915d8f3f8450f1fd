//! Crash injection: the driver aborts at each commit step in turn; rerunning
//! the same command gives exactly the output of a clean run.

use crate::support::*;

const DATASETS: &[&str] = &["clean_transactions", "daily_address_stats", "daily_summary"];

pub(crate) async fn snapshot(p: &Project) -> Vec<Vec<Vec<String>>> {
    let mut out = vec![];
    for ds in DATASETS {
        out.push(rows_as_text(
            &p.query(ds, "SELECT * FROM t ORDER BY 1, 2, 3").await,
        ));
    }
    out
}

#[tokio::test]
async fn rerun_after_a_crash_at_every_commit_step_is_exact() {
    let reference = Project::generated(6_000, 2, 1);
    reference.run_ok(&["run"]);
    let expected = snapshot(&reference).await;
    assert_eq!(expected[0].len(), 6_000);

    for step in chainbatch::commit::CRASH_STEPS {
        let p = Project::generated(6_000, 2, 1);
        // A first good run, so the crashed run has partitions to replace.
        p.run_ok(&["run"]);
        let o = p
            .command(&["run"])
            .env("CHAINBATCH_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !o.status.success(),
            "{step}: the driver should have aborted"
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("CHAINBATCH_CRASH_AT={step}"))
        );
        let out = p.run_ok(&["run"]);
        assert!(out.contains("succeeded"), "{step}: {out}");
        assert_eq!(
            snapshot(&p).await,
            expected,
            "{step}: output after recovery"
        );
        let runs = p.run_ok(&["runs", "--format", "json"]);
        let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
        let statuses: Vec<&str> = runs
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses.len(), 3, "{step}: {statuses:?}");
        assert_eq!(statuses[0], "succeeded");
        assert!(
            matches!(statuses[1], "failed" | "rolled_back"),
            "{step}: {statuses:?}"
        );
        assert_eq!(statuses[2], "succeeded");
        // Nothing of the crashed run is left in staging.
        let staging = p.out().join("clean_transactions/_chainbatch/staging");
        let left: Vec<String> = data_files(&staging);
        assert!(left.is_empty(), "{step}: staging left behind: {left:?}");
    }
}

#[tokio::test]
async fn a_resume_planned_differently_reruns_the_tasks_whose_work_changed() {
    let reference = Project::generated(6_000, 2, 2);
    reference.run_ok(&["run"]);
    let expected = snapshot(&reference).await;

    // A task per input file, then the driver dies with every task done.
    let p = Project::generated(6_000, 2, 2);
    let o = p
        .command(&[
            "run",
            "--run-id",
            "small-tasks",
            "--globals",
            "target_task_bytes=1",
        ])
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!o.status.success());
    // Resumed without the override: one task reads every file now. Its
    // task 0 is not the task 0 that finished (one file): it runs again.
    let o = p.run(&["run", "--resume", "small-tasks"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("planned differently than before the failure"),
        "{err}"
    );
    assert_eq!(
        snapshot(&p).await,
        expected,
        "no task reused for other work"
    );
}

/// An executor for the process backend that SIGKILLs the real executor a
/// random 10 to 260 ms into every first attempt, and counts the kills that
/// landed (the task was still running).
/// Where [`killing_executor`] records each start: its arguments, which
/// name the run's stage spec (`.../<run id>/stage-<node>.json`).
pub(crate) fn starts_log(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("starts.log")
}

/// Waits until `log` has a line containing `needle` (any line when empty),
/// so a test kills things once the work it means to hit is running, not
/// after a guess at how long startup takes on a loaded machine.
pub(crate) fn wait_for_line(log: &std::path::Path, needle: &str, timeout: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "no line with {needle:?} in {} after {timeout:?}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub(crate) fn killing_executor(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let kills = dir.join("kills.log");
    let script = dir.join("killing-executor");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >> '{starts}'\n\
             if [ \"$AWS_BATCH_JOB_ATTEMPT\" = 1 ]; then\n\
               '{exe}' \"$@\" & pid=$!\n\
               sleep $(awk -v s=$$ 'BEGIN {{ srand(s); printf \"%.3f\", 0.01 + rand() * 0.25 }}')\n\
               if kill -9 $pid 2>/dev/null; then echo \"$AWS_BATCH_JOB_ARRAY_INDEX\" >> '{kills}'; fi\n\
               wait $pid; exit $?\n\
             fi\n\
             exec '{exe}' \"$@\"\n",
            exe = executor_bin().display(),
            kills = kills.display(),
            starts = starts_log(dir).display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, kills)
}

#[tokio::test]
async fn executors_killed_mid_task_are_retried_and_the_output_is_exact() {
    let reference = Project::generated(40_000, 4, 2);
    reference.run_ok(&["run", "--backend", "process"]);
    let expected = snapshot(&reference).await;

    let p = Project::generated(40_000, 4, 2);
    let (script, kills) = killing_executor(p.dir.path());
    let runs = 4;
    for run in 0..runs {
        let o = p
            .command(&[
                "run",
                "--backend",
                "process",
                "--parallelism",
                "2",
                "--globals",
                "target_task_bytes=1",
            ])
            .env("CHAINBATCH_EXECUTOR", &script)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Same rows, once each, after every run: retries never duplicate.
        assert_eq!(snapshot(&p).await, expected, "run {run}");
    }
    let killed = std::fs::read_to_string(&kills)
        .unwrap_or_default()
        .lines()
        .count();
    eprintln!("{runs} runs, {killed} executors killed mid-task, every output exact");
    assert!(
        killed > 0,
        "no kill landed mid-task; the test proved nothing"
    );
}

/// A driver killed with SIGKILL takes its executor processes with it, so
/// no attempt of a killed run goes on writing while a resume runs.
#[test]
fn executors_do_not_outlive_a_killed_driver() {
    let p = Project::generated(2_000, 1, 1);
    let pids = p.dir.path().join("executor.pids");
    let script = p.dir.path().join("slow-executor");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec sleep 60\n",
            pids.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut driver = p
        .command(&["run", "--backend", "process"])
        .env("CHAINBATCH_EXECUTOR", &script)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !pids.exists() && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = std::fs::read_to_string(&pids).expect("an executor started");
    let pid = pid.lines().next().unwrap().trim().to_string();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    driver.kill().unwrap();
    driver.wait().unwrap();
    let gone = (0..40).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its reaper.
        stat.is_empty()
            || stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    });
    assert!(gone, "executor {pid} outlived its driver");
}
