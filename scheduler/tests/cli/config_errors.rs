//! A corpus of config mistakes: each gives a clear error naming the file,
//! line and key, exit code 2, and nothing written.

use crate::support::*;

/// Edits `file` (relative to conf/) by replacing `find` with `replace`.
fn edit(p: &Project, file: &str, find: &str, replace: &str) {
    let path = p.conf().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        find.is_empty() || text.contains(find),
        "{find:?} not in {file}"
    );
    let new = if find.is_empty() {
        format!("{text}\n{replace}\n")
    } else {
        text.replacen(find, replace, 1)
    };
    std::fs::write(path, new).unwrap();
}

struct Case {
    name: &'static str,
    file: &'static str,
    find: &'static str,
    replace: &'static str,
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "misspelt dataset key",
        file: "base/catalog.yml",
        find: "  path: ${globals:raw_root}/transactions",
        replace: "  pth: ${globals:raw_root}/transactions",
        args: &[],
        expect: &[
            "catalog.yml:",
            "raw_transactions.pth",
            "did you mean `path`",
        ],
    },
    Case {
        name: "unknown dataset type",
        file: "base/catalog.yml",
        find: "type: parquet",
        replace: "type: parquett",
        args: &[],
        expect: &[
            "catalog.yml:",
            "raw_transactions.type",
            "unknown dataset type `parquett`",
        ],
    },
    Case {
        name: "unknown input dataset",
        file: "base/pipelines.yml",
        find: "inputs: [raw_transactions]",
        replace: "inputs: [raw_transaction]",
        args: &[],
        expect: &[
            "pipelines.yml:",
            "eth_daily.nodes[0].inputs[0]",
            "did you mean `raw_transactions`",
        ],
    },
    Case {
        name: "node cycle",
        file: "base/pipelines.yml",
        find: "inputs: [raw_transactions]",
        replace: "inputs: [daily_summary]",
        args: &[],
        expect: &[
            "cycle between nodes",
            "clean_transactions -> daily_summary -> clean_transactions",
        ],
    },
    Case {
        name: "two nodes write one dataset",
        file: "base/pipelines.yml",
        find: "outputs: daily_summary",
        replace: "outputs: daily_address_stats",
        args: &[],
        expect: &[
            "eth_daily.nodes[2].outputs",
            "written by both `daily_address_stats` and `daily_summary`",
        ],
    },
    Case {
        name: "SQL that does not parse",
        file: "base/pipelines.yml",
        find: "SELECT\n          date,\n          count(*) AS tx_count,\n          count(DISTINCT",
        replace: "SELEC\n          date,\n          count(*) AS tx_count,\n          count(DISTINCT",
        args: &[],
        expect: &["eth_daily.nodes[2].sql", "node `daily_summary`"],
    },
    Case {
        name: "SQL naming an unknown column",
        file: "base/pipelines.yml",
        find: "method_id(input) AS method_id",
        replace: "method_id(calldata) AS method_id",
        args: &[],
        expect: &["eth_daily.nodes[0].sql", "calldata"],
    },
    Case {
        name: "SQL naming an unknown table",
        file: "base/pipelines.yml",
        find: "FROM raw_transactions",
        replace: "FROM raw_txs",
        args: &[],
        expect: &["eth_daily.nodes[0].sql", "raw_txs"],
    },
    Case {
        name: "interpolation cycle",
        file: "base/globals.yml",
        find: "",
        replace: "cycle_a: ${globals:cycle_b}\ncycle_b: ${globals:cycle_a}",
        args: &[],
        expect: &[
            "globals.yml:",
            "interpolation cycle: globals:cycle_b -> globals:cycle_a -> globals:cycle_b",
        ],
    },
    Case {
        name: "unknown global",
        file: "base/catalog.yml",
        find: "${globals:out_root}/daily_summary",
        replace: "${globals:out_rot}/daily_summary",
        args: &[],
        expect: &[
            "catalog.yml:",
            "daily_summary.path",
            "did you mean `out_root`",
        ],
    },
    Case {
        name: "unset environment variable",
        file: "base/catalog.yml",
        find: "${globals:out_root}/daily_summary",
        replace: "${env:CHAINBATCH_TEST_UNSET_VAR}/daily_summary",
        args: &[],
        expect: &["CHAINBATCH_TEST_UNSET_VAR is not set"],
    },
    Case {
        name: "bad compression level",
        file: "base/globals.yml",
        find: "compression: zstd(3)",
        replace: "compression: zstd(99)",
        args: &[],
        expect: &["clean_transactions.layout.compression", "zstd(99)"],
    },
    Case {
        name: "sort by an unknown column",
        file: "base/globals.yml",
        find: "sort_by: [block_number]",
        replace: "sort_by: [block_height]",
        args: &[],
        expect: &["layout.sort_by[0]", "unknown column `block_height`"],
    },
    Case {
        name: "YAML syntax error",
        file: "base/catalog.yml",
        find: "  partitions:\n    date: string",
        replace: "  partitions: [date: string",
        args: &[],
        expect: &["catalog.yml:", "not valid YAML"],
    },
    Case {
        name: "unknown environment",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--env", "staging"],
        expect: &["--env", "no environment `staging`", "local"],
    },
    Case {
        name: "bad date window",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--dates", "2024-13-01"],
        expect: &["--dates", "not a date"],
    },
    Case {
        name: "override without a value",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--globals", "out_root"],
        expect: &["--globals", "expected key=value"],
    },
    Case {
        name: "unknown pipeline",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--pipeline", "eth_dialy"],
        expect: &["--pipeline", "did you mean `eth_daily`"],
    },
    Case {
        name: "unknown node",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--nodes", "clean_transaction"],
        expect: &["--nodes", "did you mean `clean_transactions`"],
    },
    Case {
        name: "bad column type",
        file: "base/catalog.yml",
        find: "    date: date\n  layout: ${globals:layouts.daily}",
        replace: "    date: decimal(99,0)\n  layout: ${globals:layouts.daily}",
        args: &[],
        expect: &["clean_transactions.partitions", "precision"],
    },
    Case {
        name: "unknown save mode",
        file: "base/catalog.yml",
        find: "  layout: ${globals:layouts.daily}",
        replace: "  layout: ${globals:layouts.daily}\n  save_mode: upsert",
        args: &[],
        expect: &["clean_transactions.save_mode", "unknown save mode `upsert`"],
    },
    Case {
        name: "run id that is a path",
        file: "base/globals.yml",
        find: "",
        replace: "",
        args: &["--run-id", "../escape"],
        expect: &["--run-id", "must be letters, digits"],
    },
    Case {
        name: "unknown layout key",
        file: "base/globals.yml",
        find: "    target_file_bytes: 134217728\n    compression: zstd(3)\n  hourly",
        replace: "    target_file_size: 134217728\n    compression: zstd(3)\n  hourly",
        args: &[],
        expect: &[
            "clean_transactions.layout.target_file_size",
            "did you mean `target_file_bytes`",
        ],
    },
    Case {
        name: "zero rows per file is named as such",
        file: "base/globals.yml",
        find: "    target_file_bytes: 134217728\n    compression: zstd(3)\n  hourly",
        replace: "    target_file_bytes: 134217728\n    max_rows_per_file: 0\n    compression: zstd(3)\n  hourly",
        args: &[],
        expect: &["layout.max_rows_per_file", "must be positive"],
    },
    Case {
        name: "a bad global from the environment's file names that file",
        file: "local/globals.yml",
        find: "",
        replace: "target_task_bytes: lots",
        args: &[],
        expect: &[
            "local/globals.yml",
            "target_task_bytes",
            "expected a whole number",
        ],
    },
    Case {
        name: "a bad global from --globals names the flag",
        file: "local/globals.yml",
        find: "",
        replace: "",
        args: &["--globals", "lease_seconds=soon"],
        expect: &["--globals lease_seconds", "expected a whole number"],
    },
];

#[test]
fn each_config_mistake_is_named_and_nothing_is_written() {
    assert!(CASES.len() >= 15);
    let mut failures = vec![];
    for case in CASES {
        let p = Project::fixture();
        edit(&p, case.file, case.find, case.replace);
        let mut args = vec!["run"];
        args.extend_from_slice(case.args);
        let o = p.run(&args);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        if o.status.code() != Some(2) {
            failures.push(format!(
                "{}: exit {:?}, stderr: {stderr}",
                case.name,
                o.status.code()
            ));
            continue;
        }
        for e in case.expect {
            if !stderr.contains(e) {
                failures.push(format!("{}: expected {e:?} in: {stderr}", case.name));
            }
        }
        if p.out().exists() {
            failures.push(format!(
                "{}: something was written to {}",
                case.name,
                p.out().display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn config_error_points_at_the_line() {
    let p = Project::fixture();
    edit(
        &p,
        "base/catalog.yml",
        "  path: ${globals:out_root}/daily_summary",
        "  pth: ${globals:out_root}/daily_summary",
    );
    let o = p.run(&["validate"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let text = std::fs::read_to_string(p.conf().join("base/catalog.yml")).unwrap();
    let line = text.lines().position(|l| l.contains("pth:")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("catalog.yml:{line}: daily_summary.pth")),
        "{stderr}"
    );
}

/// `--tables` with a name the command does not know is a usage error for
/// every command that takes it: exit 2, a suggestion, nothing written.
#[test]
fn unknown_tables_are_usage_errors_for_gen_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let gen_ = std::process::Command::new(bin())
        .args(["gen", "--rows", "10", "--tables", "transaction", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let import = std::process::Command::new(bin())
        .args(["import", "ethereum-etl"])
        .arg(repo().join("fixtures/ethereum-etl"))
        .args(["--tables", "transaction", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    for (name, o) in [("gen", gen_), ("import", import)] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("--tables"), "{name}: {stderr}");
        assert!(
            stderr.contains("unknown table `transaction`"),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("did you mean `transactions`"),
            "{name}: {stderr}"
        );
    }
    assert!(!out.exists(), "nothing is written");
}
