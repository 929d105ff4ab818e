//! The `kreisel` binary: `kreisel [--config FILE]` runs the router; `kreisel --check FILE` validates a config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kreisel_io::config::LogFormat;
use kreisel_io::{config, Config, Server};
use tracing_subscriber::EnvFilter;

/// kreisel: a fast WAMP v2 router (broker and dealer) over WebSocket and RawSocket.
///
/// Without --config it runs the embedded defaults: realm `realm1` open to anonymous clients, WebSocket on
/// 127.0.0.1:8080 (path /ws) and RawSocket on 127.0.0.1:8081.
///
/// Signals: SIGINT/SIGTERM end every session with GOODBYE `wamp.close.system_shutdown` and exit 0 (a second one
/// exits at once). SIGUSR2 drains as a lame duck: stop accepting, /readyz answers 503, the sessions get that GOODBYE
/// one after another over `limits.lame_duck_ms`, then exit 0. SIGHUP reloads the --config file's principals, roles
/// and anonymous access (`anonymous`, `anonymous_role`) of the running realms without dropping anyone; other changes
/// are logged as needing a restart, and a file that does not load changes nothing.
///
/// Any string in the configuration may be `${ENV_VAR}`; secrets may come from files (`ticket_file`, ...). Started by
/// systemd with `Type=notify`, kreisel reports readiness, stopping and watchdog pings on $NOTIFY_SOCKET.
#[derive(Parser, Debug)]
#[command(name = "kreisel", version)]
struct Cli {
    /// Run with this TOML configuration file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["check", "print_config"])]
    config: Option<PathBuf>,
    /// Validate this configuration file, explain what is wrong, and exit (0 when valid; what is valid but probably
    /// not meant, such as a realm nobody can join, is a `warning:` line on stderr).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Print an annotated configuration with every default and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the WAMP-CRA key derived from the password read from stdin with this salt (PBKDF2-HMAC-SHA256, as
    /// clients derive it): the value for a principal's `wampcra_secret` next to `wampcra_salt = SALT`.
    #[arg(long, value_name = "SALT", conflicts_with_all = ["config", "check", "print_config"])]
    derive_key: Option<String>,
    /// Print a kreisel configuration equivalent to this crossbar.io node configuration (`.crossbar/config.json`
    /// or `config.yaml`) and exit: realms, roles and permissions, static ticket, WAMP-CRA and cryptosign principals,
    /// anonymous access, WebSocket/RawSocket listeners on TCP or Unix sockets with their serializers and TLS files.
    /// What kreisel cannot take over (dynamic authenticators and authorizers, components, other workers, HTTP
    /// services, MQTT, router links, options kreisel lacks) is a `# not carried over:` comment in the output and a
    /// warning on stderr.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "check", "print_config", "derive_key"])]
    import_crossbar: Option<PathBuf>,
    /// PBKDF2 iterations for --derive-key (the principal's `wampcra_iterations`).
    #[arg(long, default_value_t = 1000, requires = "derive_key")]
    iterations: u32,
    /// Derived key length in bytes for --derive-key (the principal's `wampcra_keylen`).
    #[arg(long, default_value_t = 32, requires = "derive_key")]
    keylen: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", config::EXAMPLE);
        return ExitCode::SUCCESS;
    }
    if let Some(path) = cli.import_crossbar {
        return import_crossbar(&path);
    }
    if let Some(salt) = cli.derive_key {
        if cli.iterations == 0 || !(1..=64).contains(&cli.keylen) {
            eprintln!("--iterations must be at least 1 and --keylen within 1 ..= 64");
            return ExitCode::FAILURE;
        }
        let mut password = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut password) {
            eprintln!("cannot read the password from stdin: {e}");
            return ExitCode::FAILURE;
        }
        let password = password.trim_end_matches(['\r', '\n']);
        let salt = kreisel_engine::Salt {
            salt,
            iterations: cli.iterations,
            keylen: cli.keylen,
        };
        println!("{}", kreisel_engine::auth::derive_key(password, &salt));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = cli.check {
        return match Config::load(&path) {
            Ok(config) => {
                let warnings = config.warnings();
                for warning in &warnings {
                    eprintln!("warning: {}: {warning}", path.display());
                }
                println!(
                    "{}: valid ({} realms, {} listeners, {} warnings)",
                    path.display(),
                    config.realms.len(),
                    config.listeners.len(),
                    warnings.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    // Log lines go to stderr through a bounded queue and a thread of their own: a slow or stuck stderr never
    // blocks an event loop (lines are dropped and counted instead).
    let (writer, _flush_at_exit) = match kreisel_io::log::spawn(std::io::stderr()) {
        Ok(writer) => writer,
        Err(e) => {
            eprintln!("cannot start the logging thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.log.format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    for warning in config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    match run(config, cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--import-crossbar`: the configuration on stdout, the warnings on stderr; fails if the result would not load.
fn import_crossbar(path: &std::path::Path) -> ExitCode {
    let imported = match kreisel_io::import_crossbar::import_file(path) {
        Ok(imported) => imported,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", imported.toml);
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    match kreisel_io::import_crossbar::check(&imported.toml) {
        Ok(problems) => {
            for problem in problems {
                eprintln!("warning: {problem}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut server = Server::bind(config, kreisel_io::random_seed())?;
    server.handle_signals()?;
    server.reload_on_sighup(path)?;
    if let Err(e) = server.notify_systemd() {
        tracing::warn!(error = %e, "NOTIFY_SOCKET is set but unusable: no systemd notifications");
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "kreisel starting");
    server.run()?;
    Ok(())
}
