//! `chainbatch bench layouts`: every layout holds the same rows, every query
//! answers alike on each, the reports are written, and bad input is caught
//! before anything is written.

use crate::support::*;
use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["bench", "layouts"])
        .args(args)
        .arg("--conf")
        .arg(repo().join("conf"))
        .output()
        .unwrap()
}

#[tokio::test]
async fn two_layouts_hold_the_same_rows_and_answer_the_suite_alike() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = bench(&[
        "--rows",
        "20000",
        "--days",
        "3",
        "--runs",
        "2",
        "--layouts",
        "daily,block_chunks",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("recommended: "), "{stdout}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let layouts = report["layouts"].as_array().unwrap();
    assert_eq!(layouts.len(), 2);
    for l in layouts {
        assert_eq!(l["written"]["rows"], 20000, "{}", l["layout"]);
        assert!(l["write"]["seconds"].as_f64().unwrap() > 0.0);
        assert!(l["write"]["peak_rss_bytes"].as_u64().unwrap() > 0);
        let queries = l["queries"].as_array().unwrap();
        assert_eq!(queries.len(), 5);
        for q in queries {
            assert_eq!(q["runs_ms"].as_array().unwrap().len(), 2);
        }
        // The hash of one transaction finds exactly it.
        assert_eq!(queries[0]["query"], "point_lookup");
        assert_eq!(queries[0]["rows"], 1);
        // Each scan's share of the layout and its Athena bill: a small
        // scan pays the 10 MB minimum, $5 per TB.
        for q in queries {
            let share = q["percent_of_dataset"].as_f64().unwrap();
            assert!(share > 0.0 && share <= 100.0, "{q}");
            assert_eq!(q["athena_usd"].as_f64().unwrap(), 0.00005, "{q}");
        }
    }
    // The daily layout has one partition per day; block_chunks one per
    // 100,000 blocks (three days of 12 s blocks fit in one or two).
    assert_eq!(layouts[0]["written"]["partitions"], 3);
    assert!(layouts[1]["written"]["partitions"].as_u64().unwrap() <= 2);
    // The day summary skips the other days' files in the daily layout.
    let day = &layouts[0]["queries"][2];
    assert_eq!(day["query"], "day_summary");
    assert_eq!(day["file_ranges_pruned"], 2, "{day}");

    // The `{{day}}` placeholder names a day that holds transactions.
    let day_value = report["placeholders"]["day"].as_str().unwrap().to_string();
    let counted = rows_as_text(
        &query_dir(
            &out.join("layouts/daily/clean_transactions"),
            &format!("SELECT count(*) FROM t WHERE date = '{day_value}'"),
        )
        .await,
    );
    assert!(counted[0][0].parse::<u64>().unwrap() > 0);

    let best = report["recommendation"]["layout"].as_str().unwrap();
    assert!(["daily", "block_chunks"].contains(&best));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains(&format!("Recommended: {best}")));
}

#[test]
fn unknown_layouts_and_placeholders_fail_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let o = bench(&[
        "--rows",
        "1000",
        "--layouts",
        "daily,weekly",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no layout `weekly`") && err.contains("block_chunks"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");

    let queries = dir.path().join("queries");
    std::fs::create_dir_all(&queries).unwrap();
    std::fs::write(
        queries.join("by_miner.sql"),
        "SELECT * FROM transactions WHERE miner = '{{miner}}'",
    )
    .unwrap();
    let o = bench(&[
        "--rows",
        "1000",
        "--layouts",
        "daily",
        "--queries",
        queries.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("query by_miner: unknown placeholder {{miner}}"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");

    let o = bench(&["--layouts", "daily"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--rows"));
}
