//! The same pipeline with input and output on a real S3 server (SeaweedFS,
//! started by scripts/test.sh), through both backends, across a crash; and
//! credentials that never appear in output, plans, specs or errors.

use crate::support::*;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::path::Path;
use std::process::Command;

fn bucket() -> String {
    std::env::var("CHAINBATCH_S3_BUCKET").expect(
        "CHAINBATCH_S3_BUCKET and AWS_ENDPOINT_URL must point at an S3 server: scripts/test.sh starts SeaweedFS and sets them",
    )
}

/// A fresh prefix in the test bucket.
pub(crate) fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{}/{name}-{nanos}", bucket())
}

/// Copies every object below `uri` into `dir`. Object stores are cached per
/// process and their HTTP connections belong to the runtime that opened them,
/// so all S3 access of this test binary goes through one runtime of its own.
pub(crate) fn download(uri: &str, dir: &Path) {
    let (uri, dir) = (uri.to_string(), dir.to_path_buf());
    on_s3_runtime(async move { download_with(&uri, &dir).await });
}

pub(crate) fn on_s3_runtime<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    std::thread::spawn(move || {
        let rt = RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"));
        rt.block_on(work)
    })
    .join()
    .expect("S3 thread")
}

/// Every key below `uri`, relative to it.
pub(crate) fn list_keys(uri: &str) -> Vec<String> {
    let uri = uri.to_string();
    on_s3_runtime(async move {
        let loc = chainbatch_executor::storage::resolve(&uri).unwrap();
        let metas: Vec<_> = loc.store.list(Some(&loc.path)).try_collect().await.unwrap();
        metas
            .iter()
            .map(|m| m.location.as_ref().to_string())
            .collect()
    })
}

async fn download_with(uri: &str, dir: &Path) {
    let loc = chainbatch_executor::storage::resolve(uri).unwrap();
    let metas: Vec<_> = loc.store.list(Some(&loc.path)).try_collect().await.unwrap();
    assert!(!metas.is_empty(), "nothing under {uri}");
    for m in metas {
        let rel = m
            .location
            .as_ref()
            .strip_prefix(loc.path.as_ref())
            .unwrap()
            .trim_start_matches('/');
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let bytes = loc
            .store
            .get(&m.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

pub(crate) fn import_fixture(raw: &str) {
    let out = Command::new(bin())
        .args(["import", "ethereum-etl"])
        .arg(repo().join("fixtures/ethereum-etl"))
        .args(["--out", raw, "--tables", "transactions"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import to S3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s3_run(p: &Project, raw: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    p.command_on(&args, raw, out).output().unwrap()
}

pub(crate) async fn snapshot(out_uri: &str) -> Vec<Vec<Vec<String>>> {
    let local = tempfile::tempdir().unwrap();
    download(out_uri, local.path());
    let mut all = vec![];
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        all.push(rows_as_text(
            &query_dir(&local.path().join(ds), "SELECT * FROM t ORDER BY 1, 2, 3").await,
        ));
    }
    all
}

#[tokio::test]
async fn eth_daily_on_s3_equals_the_local_run_on_both_backends() {
    let expected = expected_local().await;

    let raw = prefix("raw");
    import_fixture(&raw);
    for backend in ["local", "process"] {
        let p = Project::fixture();
        let out = prefix(&format!("out-{backend}"));
        let o = s3_run(&p, &raw, &out, &["--backend", backend]);
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(snapshot(&out).await, expected, "{backend} on S3");
        // A rerun replaces partitions: still exactly the same rows.
        let o = s3_run(&p, &raw, &out, &["--backend", backend]);
        assert!(o.status.success());
        assert_eq!(snapshot(&out).await, expected, "{backend} rerun on S3");
    }
}

#[tokio::test]
async fn crash_during_publish_on_s3_then_rerun_is_exact() {
    let raw = prefix("raw-crash");
    import_fixture(&raw);
    let p = Project::fixture();
    let out = prefix("out-crash");
    assert!(s3_run(&p, &raw, &out, &[]).status.success());
    let expected = snapshot(&out).await;
    for step in chainbatch::commit::CRASH_STEPS {
        let crashed = p
            .command_on(&["run"], &raw, &out)
            .env("CHAINBATCH_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "{step}");
        let o = s3_run(&p, &raw, &out, &[]);
        assert!(
            o.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(snapshot(&out).await, expected, "{step}");
    }
}

#[tokio::test]
async fn credentials_never_appear_in_logs_plans_specs_or_errors() {
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").expect("scripts/test.sh sets S3 credentials");
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
    let raw = prefix("raw-secret");
    import_fixture(&raw);
    let p = Project::fixture();
    let out = prefix("out-secret");
    let mut texts = vec![];
    for extra in [&["--log-format", "json"][..], &["--backend", "process"][..]] {
        let o = s3_run(&p, &raw, &out, extra);
        assert!(o.status.success());
        texts.push(
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        );
    }
    let plan = p
        .command_on(&["plan", "--format", "json"], &raw, &out)
        .output()
        .unwrap();
    texts.push(String::from_utf8_lossy(&plan.stdout).into_owned());
    // Wrong credentials: a clear failure that names neither secret.
    let wrong = "wrong-secret-a1b2c3d4e5";
    let o = p
        .command_on(&["run"], &raw, &format!("{out}-wrong"))
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run failed") && stderr.contains("is denied"),
        "{stderr}"
    );
    texts.push(stderr);
    // Specs, manifests and journals stored on S3.
    let stored = tempfile::tempdir().unwrap();
    download(&out, stored.path());
    for f in files_below(stored.path(), true) {
        if f.ends_with(".json") {
            texts.push(std::fs::read_to_string(stored.path().join(&f)).unwrap_or_default());
        }
    }
    assert!(texts.len() > 4);
    for t in &texts {
        assert!(!t.contains(&secret), "the secret key leaked: {t}");
        assert!(!t.contains(wrong), "the wrong secret leaked: {t}");
    }
    assert!(!key.is_empty());
}

#[test]
fn a_missing_bucket_is_named_and_nothing_is_written() {
    let raw = prefix("raw-missing-bucket");
    import_fixture(&raw);
    let p = Project::fixture();
    let nowhere = "s3://chainbatch-no-such-bucket-4f1e/out";
    // Output in a bucket that does not exist.
    let o = s3_run(&p, &raw, nowhere, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("out_root: bucket `chainbatch-no-such-bucket-4f1e` does not exist"),
        "names the bucket: {stderr}"
    );
    // Input in a bucket that does not exist.
    let out = prefix("out-missing-bucket");
    let o = s3_run(&p, "s3://chainbatch-no-such-bucket-4f1e/raw", &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "dataset `raw_transactions`: bucket `chainbatch-no-such-bucket-4f1e` does not exist"
        ),
        "names the bucket: {stderr}"
    );
    assert!(
        list_keys(&out).iter().all(|k| k.contains("_chainbatch/")),
        "no data published"
    );
}

/// The eth daily output of a run on the fixture, on local disk.
async fn expected_local() -> Vec<Vec<Vec<String>>> {
    let local = Project::fixture();
    local.run_ok(&["run"]);
    crate::crash::snapshot(&local).await
}

/// `cmd` with no AWS credentials anywhere it could find them: no key
/// variables, no profile, empty credential files, no instance metadata.
fn without_credentials<'a>(cmd: &'a mut Command, empty: &Path) -> &'a mut Command {
    let none = empty.join("none");
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", &none)
        .env("AWS_SHARED_CREDENTIALS_FILE", &none)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

#[tokio::test]
async fn a_public_bucket_is_read_without_credentials_when_marked_anonymous() {
    let public = std::env::var("CHAINBATCH_S3_PUBLIC_BUCKET")
        .expect("scripts/seaweedfs.sh creates a bucket anyone may read");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let raw = format!("s3://{public}/raw-anonymous-{nanos}");
    // Publishing the data takes credentials; reading it does not.
    import_fixture(&raw);
    let expected = expected_local().await;
    let empty = tempfile::tempdir().unwrap();
    for backend in ["local", "process"] {
        let p = Project::fixture();
        let out = p.out().display().to_string();
        let o = without_credentials(
            &mut p.command_on(&["run", "--backend", backend], &raw, &out),
            empty.path(),
        )
        .env(
            "CHAINBATCH_S3_ANONYMOUS_BUCKETS",
            format!("other-bucket,{public}"),
        )
        .output()
        .unwrap();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            crate::crash::snapshot(&p).await,
            expected,
            "{backend} read anonymously"
        );
    }
    // Not marked anonymous, the same run needs credentials and says so
    // before anything runs.
    let p = Project::fixture();
    let out = p.out().display().to_string();
    let o = without_credentials(&mut p.command_on(&["run"], &raw, &out), empty.path())
        .env("CHAINBATCH_S3_ANONYMOUS_BUCKETS", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("bucket `{public}`")),
        "names the bucket: {stderr}"
    );
    assert!(!p.out().join("clean_transactions").exists());
}

#[tokio::test]
async fn credentials_from_a_profile_read_and_write() {
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("scripts/test.sh sets S3 credentials");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let aws = tempfile::tempdir().unwrap();
    std::fs::write(
        aws.path().join("config"),
        "[profile chainbatch-test]\nregion = us-east-1\n\n[default]\nregion = eu-north-1\n",
    )
    .unwrap();
    std::fs::write(
        aws.path().join("credentials"),
        format!(
            "[default]\naws_access_key_id = not-this-one\naws_secret_access_key = not-this-one\n\n\
             [chainbatch-test]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
    let with_profile = |cmd: &mut Command| {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", aws.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                aws.path().join("credentials"),
            )
            .env("AWS_PROFILE", "chainbatch-test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    // Writes: the import.
    let raw = prefix("raw-profile");
    let o = with_profile(
        Command::new(bin())
            .args(["import", "ethereum-etl"])
            .arg(repo().join("fixtures/ethereum-etl"))
            .args(["--out", &raw, "--tables", "transactions"]),
    );
    assert!(
        o.status.success(),
        "import with a profile: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Reads and writes: the run, in the driver and in executor processes.
    let expected = expected_local().await;
    let p = Project::fixture();
    let out = prefix("out-profile");
    let o = with_profile(&mut p.command_on(&["run", "--backend", "process"], &raw, &out));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "run with a profile: {text}");
    assert!(!text.contains(&secret), "the secret key leaked: {text}");
    assert_eq!(snapshot(&out).await, expected, "run with a profile");
}
