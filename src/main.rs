use clap::Parser;
use lingshi::cli::{self, AgentCommand, Cli, Command, KbCommand};

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
        Command::Kb(KbCommand::Import { dir }) => match cli::kb_import(&config, dir).await {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Kb(KbCommand::Reindex) => cli::kb_reindex(&config).await,
        Command::Escalations(cmd) => cli::escalations(&config, cmd).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lingshi: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
