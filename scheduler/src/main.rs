//! `chainbatch`: run, plan and validate pipelines; backfill, status, runs
//! and gc; generate, import and benchmark data. Each command is a module
//! of `cli`; the work is the `chainbatch` library's.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    chainbatch_executor::allocator::configure_malloc();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let exit_code = cli.exit_codes();
    match rt.block_on(cli.dispatch()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chainbatch: {}: {e}", e.kind());
            ExitCode::from(exit_code(&e))
        }
    }
}
