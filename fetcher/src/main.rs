//! The `bds-fetch` command: parse arguments, set up logging, run, map the
//! outcome to an exit code (0 done, 1 finished with failures, 2 fatal).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bds_fetch::cli::Cli::parse();
    bds_fetch::logging::init(cli.verbose, cli.quiet);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(bds_fetch::execute(cli)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
