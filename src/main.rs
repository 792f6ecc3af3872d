use clap::Parser;
use lingshi::cli::{self, AgentCommand, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match cli::load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lingshi: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Serve { .. } => {
            lingshi::telemetry::init(&config);
            lingshi::server::run(config).await
        }
        Command::Agent(AgentCommand::Add(args)) => cli::agent_add(&config, args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lingshi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
