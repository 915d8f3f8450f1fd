//! A throwaway project: the repository's conf/ with outputs in a temp dir.

use arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chainbatch")
}

/// The executor binary next to `chainbatch` in the target directory.
pub fn executor_bin() -> PathBuf {
    let p = Path::new(bin()).with_file_name("chainbatch-executor");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub raw_root: PathBuf,
}

impl Project {
    /// The repository's conf/ copied, reading the committed mainnet fixture.
    pub fn fixture() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("conf"), &dir.path().join("conf"));
        Self {
            raw_root: repo().join("fixtures/eth"),
            dir,
        }
    }

    /// The same conf/, reading `rows` generated transactions over `days`.
    pub fn generated(rows: u64, days: u32, files_per_day: u32) -> Self {
        let p = Self::fixture();
        let raw = p.dir.path().join("raw");
        gen_raw(&raw, 1, rows, days, "2024-03-01", files_per_day);
        Self { raw_root: raw, ..p }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Replaces the first `from` in `conf/<file>` with `to`; `from` must be there.
    pub fn edit_conf(&self, file: &str, from: &str, to: &str) {
        let path = self.conf().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// Appends `text` to `conf/<file>`.
    pub fn append_conf(&self, file: &str, text: &str) {
        let path = self.conf().join(file);
        let before = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, before + text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(
            args,
            &self.raw_root.display().to_string(),
            &self.out().display().to_string(),
        )
    }

    /// `chainbatch ARGS` on this project's conf/, reading `raw_root` and
    /// writing `out_root` (paths or URIs).
    pub fn command_on(&self, args: &[&str], raw_root: &str, out_root: &str) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--conf")
            .arg(self.conf())
            .arg("--globals")
            .arg(format!("raw_root={raw_root}"))
            .arg("--globals")
            .arg(format!("out_root={out_root}"))
            .current_dir(self.dir.path())
            .env("CHAINBATCH_EXECUTOR", executor_bin())
            .env_remove("CHAINBATCH_CRASH_AT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "chainbatch {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs SQL over an output dataset read back as a hive-partitioned table.
    pub async fn query(&self, dataset: &str, sql: &str) -> Vec<RecordBatch> {
        query_dir(&self.out().join(dataset), sql).await
    }
}

pub async fn query_dir(dir: &Path, sql: &str) -> Vec<RecordBatch> {
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    let opts = ParquetReadOptions::default()
        .table_partition_cols(vec![("date".to_string(), arrow::datatypes::DataType::Utf8)]);
    ctx.register_parquet("t", dir.display().to_string(), opts)
        .await
        .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// Every value of a result as text, row by row, for comparisons.
pub fn rows_as_text(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = vec![];
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                (0..b.num_columns())
                    .map(|c| arrow::util::display::array_value_to_string(b.column(c), r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Files below `dir` (relative paths), ignoring chainbatch's own state.
pub fn data_files(dir: &Path) -> Vec<String> {
    files_below(dir, false)
}

/// Files below `dir` (relative paths), with or without `_chainbatch/`.
pub fn files_below(dir: &Path, with_state: bool) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if with_state || !p.ends_with("_chainbatch") {
                    stack.push(p);
                }
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `chainbatch gen` into `dir`; returns its standard output.
pub fn gen_raw(
    dir: &Path,
    seed: u64,
    rows: u64,
    days: u32,
    start: &str,
    files_per_day: u32,
) -> String {
    run_gen(&[
        "--rows",
        &rows.to_string(),
        "--days",
        &days.to_string(),
        "--start",
        start,
        "--seed",
        &seed.to_string(),
        "--files-per-day",
        &files_per_day.to_string(),
        "--out",
        &dir.display().to_string(),
    ])
}

/// Generated transactions and their token transfers from 2024-03-01, below
/// `out` (a path or URI): what distributed nodes join.
pub fn gen_transfers(out: &str, rows: u64, days: u32) {
    run_gen(&[
        "--rows",
        &rows.to_string(),
        "--days",
        &days.to_string(),
        "--start",
        "2024-03-01",
        "--tables",
        "transactions,token_transfers",
        "--out",
        out,
    ]);
}

/// `chainbatch gen ARGS`, which must succeed; its standard output.
pub fn run_gen(args: &[&str]) -> String {
    let o = Command::new(bin()).arg("gen").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "chainbatch gen {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn moto_url() -> String {
    std::env::var("CHAINBATCH_MOTO_URL").expect(
        "CHAINBATCH_MOTO_URL must point at moto server: scripts/test.sh starts it and sets it",
    )
}

pub fn python() -> String {
    std::env::var("CHAINBATCH_PYTHON")
        .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it")
}

/// A peer (`scheduler/tests/cli/peers/<name>.py`) in front of the shared moto server, with
/// its own request log (a JSON line a request: op, body, status) and faults.
pub struct MotoPeer {
    child: std::process::Child,
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MotoPeer {
    /// Starts `script` with `--moto URL --log FILE --faults JSON` and `args`;
    /// it prints `PORT n` once it listens.
    pub fn start(script: &str, args: &[&std::ffi::OsStr], faults: &serde_json::Value) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let mut child = Command::new(python())
            .arg(repo().join("scheduler/tests/cli/peers").join(script))
            .args(["--moto", &moto_url(), "--log"])
            .arg(&log)
            .args(["--faults", &faults.to_string()])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("{script} did not start: {line:?}"));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    /// What the peer's jobs printed (the tail of each child's log), for a
    /// failure message.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        let dir = self.log.parent().expect("the log is in the peer's folder");
        let mut logs: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for l in logs {
            let text = std::fs::read_to_string(&l).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("== {}\n", l.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The request bodies of one operation, in order.
    pub fn requests(&self, op: &str) -> Vec<serde_json::Value> {
        self.answered(op).into_iter().map(|(b, _)| b).collect()
    }

    /// The request bodies of one operation with the HTTP status answered.
    pub fn answered(&self, op: &str) -> Vec<(serde_json::Value, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["op"] == op)
            .map(|v| (v["body"].clone(), v["status"].as_u64().unwrap_or(0)))
            .collect()
    }
}

impl Drop for MotoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
