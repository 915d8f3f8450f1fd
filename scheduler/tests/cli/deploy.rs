//! What deploys chainbatch: the executor image, which docker/build.sh builds
//! with no registry and in which the eth_daily pipeline runs every task
//! against SeaweedFS (reached over the host network), giving the same tables
//! as the in-process run; and terraform/, checked offline.

use crate::s3::{import_fixture, prefix, snapshot};
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker must be installed and its daemon running");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn executor_image_runs_the_pipeline_tasks_against_seaweedfs() {
    let (_, image, _cleanup) = build_executor_image("test");
    // Small, non-root, and nothing but the executor as its entry point.
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Config.User}}", &image]),
        "65532:65532"
    );
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}}",
            &image
        ]),
        r#"["/usr/local/bin/chainbatch-executor"]"#
    );
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &image])
        .parse()
        .unwrap();
    let binary = std::fs::metadata(executor_bin()).unwrap().len();
    assert!(
        size < binary + 64 * 1024 * 1024,
        "image {size} bytes for a {binary}-byte binary"
    );

    // The process backend's executor is `docker run` of the image: each task
    // gets exactly the environment a Batch container gets, and S3 settings
    // by name only, so no secret is on a command line.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("executor-in-docker");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec docker run --rm --network host \
             -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
             -e AWS_ENDPOINT_URL -e AWS_ALLOW_HTTP \
             -e AWS_BATCH_JOB_ARRAY_INDEX -e AWS_BATCH_JOB_ATTEMPT {image} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let local = Project::fixture();
    local.run_ok(&["run"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut expected = vec![];
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        expected.push(rows_as_text(
            &rt.block_on(local.query(ds, "SELECT * FROM t ORDER BY 1, 2, 3")),
        ));
    }

    let raw = prefix("raw-container");
    import_fixture(&raw);
    let out = prefix("out-container");
    let p = Project::fixture();
    let o = p
        .command_on(&["run", "--backend", "process"], &raw, &out)
        .env("CHAINBATCH_EXECUTOR", &wrapper)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "run in containers: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(rt.block_on(snapshot(&out)), expected);
}

#[test]
fn executor_containers_join_an_embedded_scheduler_and_run_a_distributed_node() {
    let (tag, image, _cleanup) = build_executor_image("ballista");
    // The embedded cluster starts its executors through this wrapper: each
    // is `docker run` of the image with the executor's arguments, on the
    // host network (the scheduler listens on 127.0.0.1), S3 settings by
    // name. A stopped wrapper removes its container.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("executor-in-docker");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nname=cb-test-$$\n\
             trap 'docker rm -f $name >/dev/null 2>&1' EXIT INT TERM\n\
             docker run --rm --name $name --label chainbatch-test={tag} --network host \
             -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_REGION \
             -e AWS_ENDPOINT_URL -e AWS_ALLOW_HTTP {image} \"$@\" &\nwait $!\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let raw = prefix("raw-container-ballista");
    gen_transfers(&raw, 3000, 2);
    let out = prefix("out-container-ballista");
    let p = Project::fixture();
    crate::distributed::add_join_pipeline(&p);
    let o = p
        .command_on(
            &[
                "run",
                "--pipeline",
                "tx_token_join",
                "--backend",
                "ballista",
                "--executors",
                "2",
            ],
            &raw,
            &out,
        )
        .env("CHAINBATCH_EXECUTOR", &wrapper)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "run on executor containers: {stderr}");

    let local = tempfile::tempdir().unwrap();
    let o = p
        .command_on(
            &["run", "--pipeline", "tx_token_join"],
            &raw,
            &local.path().display().to_string(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = tempfile::tempdir().unwrap();
    crate::s3::download(&format!("{out}/transfers_with_fees"), got.path());
    use crate::distributed::{JOIN_COLUMNS, output_rows};
    let rows = output_rows(got.path(), JOIN_COLUMNS);
    assert!(rows.len() > 100, "{} rows", rows.len());
    assert_eq!(
        rows,
        output_rows(&local.path().join("transfers_with_fees"), JOIN_COLUMNS)
    );
    // The files came from Ballista tasks, and no container is left.
    let files = data_files(got.path());
    assert!(
        files.iter().all(|f| f.contains("-s") && f.contains("-t")),
        "{files:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=chainbatch-test={tag}"),
        ]);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "executor containers left running: {left}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Builds the executor image from the test binaries with docker/build.sh,
/// under a fresh tag; returns the tag, the image, and what removes it.
fn build_executor_image(prefix: &str) -> (String, String, RemoveImage) {
    let tag = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let image = format!("chainbatch-executor:{tag}");
    let cleanup = RemoveImage(image.clone());
    let build = Command::new(repo().join("docker/build.sh"))
        .args(["--only", "executor", "--tag", &tag, "--bin-dir"])
        .arg(executor_bin().parent().unwrap())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "docker/build.sh: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    (tag, image, cleanup)
}

/// Removes the test image however the test ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn terraform_parses_is_formatted_and_grants_least_privilege() {
    let python = std::env::var("CHAINBATCH_PYTHON")
        .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it");
    let o = Command::new(python)
        .arg(repo().join("scheduler/tests/cli/peers/check_terraform.py"))
        .arg(repo().join("terraform"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("resources, formatting, references and IAM checked"),
        "{out}"
    );
}
