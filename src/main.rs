use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // On Lambda the runtime API is set: serve events, not a command line.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        updraft::runtime::logging::init(true);
        return match updraft::runtime::lambda::run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "lambda runtime stopped");
                std::process::ExitCode::FAILURE
            }
        };
    }
    updraft::runtime::logging::init(std::env::var("UPDRAFT_LOG_FORMAT").is_ok_and(|f| f == "json"));
    let cli = updraft::cli::Cli::parse();
    match updraft::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
