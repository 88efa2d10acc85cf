//! The `racetrace` command: parse arguments, run, map the outcome to the exit code
//! (0 ran, 1 a `check` rule was violated, 2 an input or the command line was wrong).

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    racetrace_core::engine::memory::tune_allocator();
    // Named, so that `top -H` and `perf` tell the workers from the reader and the main thread.
    // (Fails only if the pool already exists, which it cannot yet; it would then keep its
    // names.)
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("racetrace-work-{i}"))
        .build_global();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = cli::run(cli);
    if outcome.error {
        ExitCode::from(2)
    } else if outcome.violation {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
