//! The bench report three ways: a terminal table, JSON, and an HTML page
//! with SVG charts that opens in any browser without network access.

use crate::bench::layouts::BenchReport;
use crate::progress::human_bytes;
use std::fmt::Write;

pub fn table(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} rows from {}; each query run {} time(s), median shown\n",
        r.rows, r.input, r.runs
    );
    let _ = writeln!(
        s,
        "{:<16} {:>8} {:>8} {:>10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "layout",
        "write s",
        "cpu s",
        "peak RSS",
        "files",
        "bytes",
        "min file",
        "median",
        "max file",
        "rows/rg"
    );
    for l in &r.layouts {
        let w = &l.written;
        let _ = writeln!(
            s,
            "{:<16} {:>8.2} {:>8.2} {:>10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9}",
            l.layout,
            l.write.seconds,
            l.write.cpu_seconds,
            human_bytes(l.write.peak_rss_bytes),
            w.files,
            human_bytes(w.bytes),
            human_bytes(w.min_file_bytes),
            human_bytes(w.median_file_bytes),
            human_bytes(w.max_file_bytes),
            w.rows_per_row_group
        );
    }
    let _ = writeln!(s);
    let _ = write!(s, "{:<18}", "query (median ms)");
    for l in &r.layouts {
        let _ = write!(s, " {:>16}", l.layout);
    }
    let _ = writeln!(s);
    let queries = r.layouts[0].queries.len();
    for i in 0..queries {
        let _ = write!(s, "{:<18}", r.layouts[0].queries[i].query);
        for l in &r.layouts {
            let _ = write!(s, " {:>16.1}", l.queries[i].median_ms);
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "{:<18}", "suite total");
    for l in &r.layouts {
        let _ = write!(s, " {:>16.1}", l.suite_ms);
    }
    let _ = writeln!(s, "\n");
    let _ = writeln!(
        s,
        "{:<18} {:<16} {:>10} {:>10} {:>14} {:>16} {:>16}",
        "query",
        "layout",
        "bytes read",
        "of data",
        "Athena $/1k q",
        "ranges read/skip",
        "row groups r/s"
    );
    for i in 0..queries {
        for l in &r.layouts {
            let q = &l.queries[i];
            let _ = writeln!(
                s,
                "{:<18} {:<16} {:>10} {:>9.2}% {:>14.4} {:>16} {:>16}",
                q.query,
                l.layout,
                human_bytes(q.bytes_scanned),
                q.percent_of_dataset,
                q.athena_usd * 1000.0,
                format!("{}/{}", q.file_ranges_scanned, q.file_ranges_pruned),
                format!("{}/{}", q.row_groups_scanned, q.row_groups_pruned)
            );
        }
    }
    let _ = writeln!(
        s,
        "\nrecommended: {}\n{}",
        r.recommendation.layout, r.recommendation.why
    );
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// Horizontal bars: one per (label, value).
fn bar_chart(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let (left, width, row) = (170.0, 420.0, 24.0);
    let height = 40.0 + row * bars.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="700" height="{height}" role="img"><title>{}</title><text x="0" y="16" font-weight="bold">{}</text>"#,
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 28.0 + row * i as f64;
        let w = width * v / max;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{}"/><text x="{}" y="{}">{v:.2} {}</text>"#,
            left - 6.0,
            y + 14.0,
            esc(label),
            row - 6.0,
            COLOURS[i % COLOURS.len()],
            left + w + 4.0,
            y + 14.0,
            esc(unit)
        );
    }
    s.push_str("</svg>");
    s
}

/// Grouped bars: per query, one bar per layout.
fn grouped_chart(
    title: &str,
    unit: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9);
    let (left, width, bar) = (170.0, 420.0, 14.0);
    let group_h = bar * series.len() as f64 + 10.0;
    let height = 50.0 + group_h * groups.len() as f64 + 20.0 * series.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="700" height="{height}" role="img"><title>{}</title><text x="0" y="16" font-weight="bold">{}</text>"#,
        esc(title),
        esc(title)
    );
    for (g, name) in groups.iter().enumerate() {
        let y0 = 30.0 + group_h * g as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + group_h / 2.0,
            esc(name)
        );
        for (k, (_, values)) in series.iter().enumerate() {
            let v = values[g];
            let w = width * v / max;
            let y = y0 + bar * k as f64;
            let _ = write!(
                s,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{}"/><text x="{}" y="{}" font-size="11">{v:.1} {}</text>"#,
                bar - 2.0,
                COLOURS[k % COLOURS.len()],
                left + w + 4.0,
                y + bar - 4.0,
                esc(unit)
            );
        }
    }
    let legend_y = 40.0 + group_h * groups.len() as f64;
    for (k, (label, _)) in series.iter().enumerate() {
        let y = legend_y + 20.0 * k as f64;
        let _ = write!(
            s,
            r#"<rect x="{left}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLOURS[k % COLOURS.len()],
            left + 18.0,
            y + 11.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

/// One figure per query, per layout: a grouped chart's series.
fn per_query(
    r: &BenchReport,
    figure: impl Fn(&crate::bench::queries::QueryResult) -> f64,
) -> Vec<(String, Vec<f64>)> {
    r.layouts
        .iter()
        .map(|l| (l.layout.clone(), l.queries.iter().map(&figure).collect()))
        .collect()
}

pub fn html(r: &BenchReport) -> String {
    let queries: Vec<String> = r.layouts[0]
        .queries
        .iter()
        .map(|q| q.query.clone())
        .collect();
    let latency = per_query(r, |q| q.median_ms);
    let read = per_query(r, |q| q.bytes_scanned as f64 / (1024.0 * 1024.0));
    let share = per_query(r, |q| q.percent_of_dataset);
    let writes: Vec<(String, f64)> = r
        .layouts
        .iter()
        .map(|l| (l.layout.clone(), l.write.seconds))
        .collect();
    let suite: Vec<(String, f64)> = r
        .layouts
        .iter()
        .map(|l| (l.layout.clone(), l.suite_ms))
        .collect();
    let mut rows = String::new();
    for l in &r.layouts {
        let w = &l.written;
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{}</td><td>{:.1}</td></tr>",
            esc(&l.layout),
            esc(&l.partition_by.join(", ")),
            l.write.seconds,
            l.write.cpu_seconds,
            human_bytes(l.write.peak_rss_bytes),
            w.files,
            human_bytes(w.bytes),
            human_bytes(w.min_file_bytes),
            human_bytes(w.median_file_bytes),
            human_bytes(w.max_file_bytes),
            w.rows_per_row_group,
            l.suite_ms
        );
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>chainbatch layout benchmark</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}svg{{font-family:sans-serif;font-size:12px;display:block;margin:1.5em 0}}
.rec{{background:#eef6ee;border-left:4px solid #59a14f;padding:0.5em 1em}}</style></head>
<body><h1>Layout benchmark</h1>
<p>{rows_total} rows from <code>{input}</code>; every query ran {runs} time(s); medians shown.</p>
<div class="rec"><p><b>Recommended: {best}</b></p><p>{why}</p></div>
<h2>Writing</h2>
<table><tr><th>layout</th><th>partition by</th><th>write s</th><th>CPU s</th><th>peak RSS</th><th>files</th><th>bytes</th><th>file size min / median / max</th><th>rows per row group</th><th>suite ms</th></tr>
{rows}</table>
{write_chart}
<h2>Queries</h2>
{suite_chart}
{latency_chart}
{read_chart}
{share_chart}
<p>Athena bills ${price} per TB scanned, at least 10 MB a query.</p>
</body></html>
"#,
        rows_total = r.rows,
        input = esc(&r.input),
        runs = r.runs,
        best = esc(&r.recommendation.layout),
        why = esc(&r.recommendation.why),
        write_chart = bar_chart("Write time", "s", &writes),
        suite_chart = bar_chart("Whole suite, sum of medians", "ms", &suite),
        latency_chart = grouped_chart("Median latency per query", "ms", &queries, &latency),
        read_chart = grouped_chart("Bytes read per query", "MiB", &queries, &read),
        share_chart = grouped_chart("Share of the dataset read", "%", &queries, &share),
        price = crate::bench::cost::ATHENA_USD_PER_TB,
    )
}
