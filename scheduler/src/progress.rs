//! Progress of a run: a live line per stage on a terminal (tasks done of
//! total, rows, bytes, ETA), plain log lines otherwise, or JSON lines.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

struct State {
    label: String,
    total: usize,
    done: usize,
    rows: u64,
    bytes: u64,
    started: Instant,
}

pub struct Progress {
    format: LogFormat,
    live: bool,
    state: Mutex<State>,
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

impl Progress {
    pub fn new(format: LogFormat) -> Self {
        Self {
            format,
            live: format == LogFormat::Text && std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                label: String::new(),
                total: 0,
                done: 0,
                rows: 0,
                bytes: 0,
                started: Instant::now(),
            }),
        }
    }

    pub fn stage(&self, label: &str, tasks: usize) {
        let mut s = self.state.lock().expect("progress lock");
        *s = State {
            label: label.to_string(),
            total: tasks,
            done: 0,
            rows: 0,
            bytes: 0,
            started: Instant::now(),
        };
        drop(s);
        self.emit("stage_started", None);
    }

    pub fn task_done(&self, rows: u64, bytes: u64) {
        {
            let mut s = self.state.lock().expect("progress lock");
            s.done += 1;
            s.rows += rows;
            s.bytes += bytes;
        }
        self.emit("task_done", None);
    }

    pub fn note(&self, message: &str) {
        self.emit("note", Some(message));
    }

    pub fn stage_finished(&self) {
        if self.live {
            eprintln!();
        }
        let (label, elapsed) = {
            let s = self.state.lock().expect("progress lock");
            (s.label.clone(), s.started.elapsed().as_secs_f64())
        };
        self.emit(
            "stage_finished",
            Some(&format!("[{label}] done in {elapsed:.1}s")),
        );
    }

    fn emit(&self, event: &str, message: Option<&str>) {
        let s = self.state.lock().expect("progress lock");
        let elapsed = s.started.elapsed().as_secs_f64();
        let eta = if s.done > 0 && s.done < s.total {
            Some(elapsed / s.done as f64 * (s.total - s.done) as f64)
        } else {
            None
        };
        match self.format {
            LogFormat::Json => {
                let line = serde_json::json!({
                    "event": event, "stage": s.label, "tasks_done": s.done, "tasks": s.total,
                    "rows": s.rows, "bytes": s.bytes, "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
                    "eta_s": eta.map(|e| e.round()), "message": message,
                });
                eprintln!("{line}");
            }
            LogFormat::Text => {
                let eta = eta.map(|e| format!(" · ETA {e:.0}s")).unwrap_or_default();
                // A 20-cell bar of tasks done, for the live terminal line.
                let filled = (s.done * 20).checked_div(s.total).unwrap_or(0);
                let bar = if self.live {
                    format!("{}{} ", "#".repeat(filled), ".".repeat(20 - filled))
                } else {
                    String::new()
                };
                let text = format!(
                    "{bar}[{}] {}/{} tasks · {} rows · {}{eta}",
                    s.label,
                    s.done,
                    s.total,
                    human_count(s.rows),
                    human_bytes(s.bytes)
                );
                if let Some(m) = message {
                    if self.live {
                        eprint!("\r\x1b[2K");
                    }
                    eprintln!("chainbatch: {m}");
                } else if self.live {
                    eprint!("\r\x1b[2K{text}");
                    let _ = std::io::stderr().flush();
                } else if event != "stage_started" || s.total == 0 {
                    eprintln!("chainbatch: {text}");
                } else {
                    eprintln!("chainbatch: [{}] starting {} task(s)", s.label, s.total);
                }
            }
        }
    }
}
