use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // On Lambda the runtime API is set: serve events, not a command line.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        init_tracing(true);
        return match updraft::lambda::run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "lambda runtime stopped");
                std::process::ExitCode::FAILURE
            }
        };
    }
    init_tracing(std::env::var("UPDRAFT_LOG_FORMAT").is_ok_and(|f| f == "json"));
    let cli = updraft::cli::Cli::parse();
    match updraft::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries command output): JSON lines on Lambda (for CloudWatch Logs
/// Insights) and when `UPDRAFT_LOG_FORMAT=json`, readable lines otherwise; `RUST_LOG` filters,
/// default `info`.
fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // No span list: on Lambda the runtime's request span would add ~180 bytes to every
        // line, and the request id is in Lambda's own START/END lines.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init();
    } else {
        builder.compact().init();
    }
}
