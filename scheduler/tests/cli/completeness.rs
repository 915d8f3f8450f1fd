//! The completeness gate: a day whose blocks are not all there is refused,
//! with the date and blocks named, unless `--allow-incomplete`.

use crate::support::*;
use std::path::Path;

const GATE: &str =
    "raw_transactions_completeness={blocks: raw_blocks, count_column: transaction_count}";

fn files_of(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_day_with_missing_blocks_is_refused_unless_allowed() {
    let p = Project::generated(8_000, 2, 4);
    let out = p.run_ok(&["run", "--globals", GATE, "--run-id", "complete"]);
    assert!(out.contains("succeeded"), "{out}");
    let before = data_files(&p.out().join("clean_transactions/date=2024-03-02"));

    // A day half-delivered: one of its transaction files is not there yet.
    let day = p.raw_root.join("transactions/date=2024-03-02");
    let held_back = files_of(&day)[1].clone();
    let parked = p.dir.path().join("parked.parquet");
    std::fs::rename(&held_back, &parked).unwrap();
    let o = p.run(&["run", "--globals", GATE, "--run-id", "partial"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("`raw_transactions` 2024-03-02"), "{e}");
    assert!(e.contains("rows `transaction_count` counts"), "{e}");
    assert!(
        !e.contains("2024-03-01:"),
        "the complete day is not named: {e}"
    );
    assert!(e.contains("--allow-incomplete"), "{e}");
    assert_eq!(
        data_files(&p.out().join("clean_transactions/date=2024-03-02")),
        before,
        "nothing was published"
    );
    std::fs::rename(&parked, &held_back).unwrap();

    // Blocks missing in the middle of a day: the range is named.
    let blocks = files_of(&p.raw_root.join("blocks/date=2024-03-02"));
    assert_eq!(blocks.len(), 1);
    let first = drop_blocks(&blocks[0], 10..=19).await;
    let o = p.run(&["run", "--globals", GATE, "--run-id", "gap"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let range = format!(
        "2024-03-02: blocks {}..{} are missing",
        first + 10,
        first + 19
    );
    assert!(e.contains(&range), "expected {range:?} in: {e}");

    // Asked to, it publishes and says so, and the journal records it.
    let o = p.run(&[
        "run",
        "--globals",
        GATE,
        "--run-id",
        "allowed",
        "--allow-incomplete",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("publishing incomplete input as asked"), "{e}");
    let journal =
        std::fs::read_to_string(p.out().join("_chainbatch/runs/allowed/journal.json")).unwrap();
    assert!(journal.contains("\"incomplete\""), "{journal}");
    assert!(journal.contains("2024-03-02"), "{journal}");
}

/// Rewrites a blocks file without the blocks `offsets` past its first;
/// returns the first block number.
async fn drop_blocks(file: &Path, offsets: std::ops::RangeInclusive<i64>) -> i64 {
    use datafusion::prelude::*;
    let ctx = SessionContext::new();
    let path = file.display().to_string();
    ctx.register_parquet("b", &path, ParquetReadOptions::default())
        .await
        .unwrap();
    let first = rows_as_text(
        &ctx.sql("SELECT min(number) FROM b")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    )[0][0]
        .parse::<i64>()
        .unwrap();
    let kept = ctx
        .sql(&format!(
            "SELECT * FROM b WHERE number NOT BETWEEN {} AND {}",
            first + offsets.start(),
            first + offsets.end()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let schema = kept[0].schema();
    let out = std::fs::File::create(file).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(out, schema, None).unwrap();
    for b in &kept {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    first
}

#[test]
fn completeness_naming_an_unknown_blocks_dataset_is_a_config_error() {
    let p = Project::generated(1_000, 1, 1);
    let o = p.run(&[
        "run",
        "--globals",
        "raw_transactions_completeness={blocks: raw_block}",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("raw_transactions.completeness.blocks"), "{e}");
    assert!(e.contains("did you mean `raw_blocks`"), "{e}");
}
