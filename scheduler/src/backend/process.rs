//! The process backend: each task is a `chainbatch-executor` child process
//! given exactly what AWS Batch gives a container: the spec URI, and
//! `AWS_BATCH_JOB_ARRAY_INDEX` and `AWS_BATCH_JOB_ATTEMPT`.

use crate::backend::{AttemptFailure, StageRun, TaskFailure, run_tasks, with_retries};
use crate::progress::Progress;
use chainbatch_executor::TaskManifest;
use chainbatch_executor::error::EXIT_BAD_SPEC;
use std::path::PathBuf;
use std::process::Stdio;

/// `$CHAINBATCH_EXECUTOR`, or `chainbatch-executor` beside this binary, or on PATH.
pub fn executor_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAINBATCH_EXECUTOR") {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("chainbatch-executor")));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("chainbatch-executor"),
    }
}

pub async fn run_stage(
    stage: &StageRun,
    progress: &Progress,
) -> Result<Vec<TaskManifest>, TaskFailure> {
    let exe = executor_binary();
    let concurrent = stage.parallelism.clamp(1, stage.specs.len().max(1));
    run_tasks(stage, concurrent, |index, spec| {
        let exe = exe.clone();
        async move {
            with_retries(stage, progress, spec.task_index, |attempt| {
                let exe = exe.clone();
                async move {
                    let mut command = tokio::process::Command::new(&exe);
                    command
                        .args(["run", "--spec", &stage.spec_uri])
                        .env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string())
                        .env("AWS_BATCH_JOB_ATTEMPT", attempt.to_string())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        // A task dropped because another failed must not run on.
                        .kill_on_drop(true);
                    die_with_parent(&mut command);
                    let out = command.output().await;
                    let (retryable, message) = match out {
                        Ok(o) if o.status.success() => {
                            match crate::commit::read_manifest(&spec.attempt_dir(attempt)).await {
                                Ok(m) => return Ok(m),
                                Err(e) => (true, e),
                            }
                        }
                        Ok(o) => {
                            let stderr = String::from_utf8_lossy(&o.stderr);
                            let last = stderr
                                .lines()
                                .rfind(|l| !l.trim().is_empty())
                                .unwrap_or("")
                                .to_string();
                            let why = match o.status.code() {
                                Some(c) => format!("exit code {c}: {last}"),
                                None => format!("killed by a signal: {last}"),
                            };
                            (o.status.code() != Some(EXIT_BAD_SPEC), why)
                        }
                        Err(e) => (false, format!("cannot start {}: {e}", exe.display())),
                    };
                    Err(AttemptFailure { retryable, message })
                }
            })
            .await
        }
    })
    .await
}

/// A task must not outlive a driver that was killed (SIGKILL runs no
/// destructor): the child gets SIGKILL when the driver thread that started
/// it exits, so a later `--resume` never races a leftover attempt.
pub(crate) fn die_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}
