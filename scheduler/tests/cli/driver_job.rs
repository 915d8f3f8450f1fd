//! The driver as AWS runs it: as a Batch job whose retried attempt
//! continues the run its lost attempt left, with its config read from S3.

use crate::support::*;
use object_store::ObjectStoreExt;

#[tokio::test]
async fn a_retried_driver_job_continues_its_run() {
    let reference = Project::generated(6_000, 2, 1);
    reference.run_ok(&["run"]);
    let expected = crate::crash::snapshot(&reference).await;

    let p = Project::generated(6_000, 2, 1);
    // Attempt 1 loses its host after the tasks of the first node.
    let o = p
        .command(&["run"])
        .env("AWS_BATCH_JOB_ID", "0d5c7a3e-1b2f-4c1e-9a55-7f0e2d9c1a10")
        .env("AWS_BATCH_JOB_ATTEMPT", "1")
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let run_id = "batch-0d5c7a3e-1b2f-4c1e-9a55-7f0e2d9c1a10";
    assert!(p.out().join("_chainbatch/runs").join(run_id).exists());

    // Attempt 2 continues that run: finished tasks are reused.
    let o = p
        .command(&["run"])
        .env("AWS_BATCH_JOB_ID", "0d5c7a3e-1b2f-4c1e-9a55-7f0e2d9c1a10")
        .env("AWS_BATCH_JOB_ATTEMPT", "2")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains(&format!("continuing run {run_id}")), "{e}");
    assert!(e.contains("reusing"), "finished tasks are reused: {e}");
    assert_eq!(crate::crash::snapshot(&p).await, expected);
    let runs: serde_json::Value =
        serde_json::from_str(&p.run_ok(&["runs", "--format", "json"])).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run for the job: {runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");

    // A third attempt finds the run done.
    let o = p
        .command(&["run"])
        .env("AWS_BATCH_JOB_ID", "0d5c7a3e-1b2f-4c1e-9a55-7f0e2d9c1a10")
        .env("AWS_BATCH_JOB_ATTEMPT", "3")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("nothing to do"), "{e}");
}

/// Uploads the project's conf/ below `uri`.
fn upload_conf(p: &Project, uri: &str) {
    let conf = p.conf();
    let uri = uri.to_string();
    crate::s3::on_s3_runtime(async move {
        let root = chainbatch_executor::storage::resolve(&uri).unwrap();
        for rel in files_below(&conf, true) {
            let bytes = std::fs::read(conf.join(&rel)).unwrap();
            let loc = root.join(&rel);
            loc.store.put(&loc.path, bytes.into()).await.unwrap();
        }
    });
}

/// `chainbatch COMMAND --conf URI` reading the fixture into the project's out.
fn with_conf(p: &Project, command: &str, conf: &str) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.args([command, "--conf", conf])
        .arg("--globals")
        .arg(format!("raw_root={}", p.raw_root.display()))
        .arg("--globals")
        .arg(format!("out_root={}", p.out().display()))
        .current_dir(p.dir.path())
        .env("CHAINBATCH_EXECUTOR", executor_bin());
    c
}

#[tokio::test]
async fn conf_read_from_s3_runs_like_the_local_folder() {
    let local = Project::fixture();
    local.run_ok(&["run"]);
    let expected = crate::crash::snapshot(&local).await;

    let p = Project::fixture();
    let conf = crate::s3::prefix("conf");
    upload_conf(&p, &conf);
    let o = with_conf(&p, "run", &conf).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(crate::crash::snapshot(&p).await, expected);

    // An error in the remote config names the remote file.
    let broken = crate::s3::prefix("conf-broken");
    let catalog = p.conf().join("base/catalog.yml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(
        &catalog,
        text.replacen("type: parquet", "type: parquett", 1),
    )
    .unwrap();
    upload_conf(&p, &broken);
    let o = with_conf(&p, "validate", &broken).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(&format!("{broken}/base/catalog.yml")), "{e}");
    assert!(e.contains("unknown dataset type `parquett`"), "{e}");
}
