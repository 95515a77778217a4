//! `doclink run`, `doclink migrate` and `doclink preview`.

use crate::Outcome;
use anyhow::Context;
use doclink::config::{self, LogFormat, Settings};
use doclink::event::DocumentReady;
use doclink::mail::templates;
use doclink::worker::{self, StopReason, WorkerOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exit status when start-up fails after the settings were valid.
pub const EXIT_STARTUP: u8 = 3;
/// Exit status when SES says the account cannot send.
pub const EXIT_ACCOUNT_BLOCKED: u8 = 4;

#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Exit 0 once the queue is empty and nothing is in flight, printing a summary.
    #[arg(long)]
    drain: bool,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PreviewArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// A document-ready event (JSON) to render.
    #[arg(long)]
    event: PathBuf,
    /// Also write the HTML part to this file.
    #[arg(long)]
    html_out: Option<PathBuf>,
}

/// A failure with its own exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    pub code: u8,
    pub message: String,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOCLINK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(args.config.as_deref())?;
    init_logging(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = doclink::http::install_metrics();
        let pipeline = doclink::startup::build_pipeline(&settings)
            .await
            .map_err(|e| ExitWith { code: EXIT_STARTUP, message: e.to_string() })?;
        let shutdown = CancellationToken::new();
        let stats = pipeline.stats.clone();
        let http = match settings.http_addr {
            Some(addr) => Some(doclink::http::serve(addr, metrics, stats.clone(), shutdown.clone()).await.map_err(|e| {
                ExitWith { code: EXIT_STARTUP, message: format!("setting DOCLINK_HTTP_ADDR (http_addr): cannot listen on {addr}: {e}") }
            })?),
            None => None,
        };
        metrics::gauge!("doclink_send_rate").set(pipeline.pacer.rate());
        spawn_signal_handler(shutdown.clone());
        let progress = (args.drain && std::io::stderr().is_terminal()).then(|| {
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    eprint!("\r{}, in flight {}   ", stats.summary(), stats.in_flight.load(Ordering::Relaxed));
                }
            })
        });
        let options = WorkerOptions {
            concurrency: settings.concurrency,
            visibility_timeout: settings.visibility_timeout,
            shutdown_grace: settings.shutdown_grace,
            drain: args.drain,
        };
        tracing::info!(concurrency = options.concurrency, rate = pipeline.pacer.rate(), drain = args.drain, "receiving");
        let reason = worker::run(pipeline, options, shutdown).await;
        if let Some(progress) = progress {
            progress.abort();
            eprintln!();
        }
        tracing::info!(summary = %stats.summary(), ?reason, "stopped");
        if args.drain {
            println!("{}", stats.summary());
        }
        if let Some(http) = http {
            http.abort();
        }
        match reason {
            StopReason::Drained | StopReason::Shutdown => Ok(Outcome::Success),
            StopReason::AccountBlocked => Err(ExitWith {
                code: EXIT_ACCOUNT_BLOCKED,
                message: "SES account cannot send (see the log); every unsent message is still on the queue".into(),
            }
            .into()),
        }
    })
}

/// The first SIGTERM/SIGINT starts a graceful shutdown; a second exits at once.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        for count in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if count == 0 {
                tracing::warn!(
                    "shutdown requested: finishing in-flight messages (signal again to exit at once)"
                );
                shutdown.cancel();
            } else {
                tracing::error!("second signal: exiting at once");
                std::process::exit(130);
            }
        }
    });
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<Outcome> {
    let database_url = config::load_database_url(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let pool = doclink::audit::connect(&database_url, 1)
            .await
            .map_err(|e| ExitWith {
                code: EXIT_STARTUP,
                message: e.to_string(),
            })?;
        doclink::audit::migrate(&pool).await.map_err(|e| ExitWith {
            code: EXIT_STARTUP,
            message: e.to_string(),
        })?;
        eprintln!("migrations applied");
        Ok(Outcome::Success)
    })
}

pub fn preview(args: PreviewArgs) -> anyhow::Result<Outcome> {
    let (base, rules) = config::load_preview(args.config.as_deref())?;
    let body = std::fs::read_to_string(&args.event)
        .with_context(|| format!("--event {}", args.event.display()))?;
    let event = match DocumentReady::parse(&body, &rules) {
        Ok(event) => event,
        Err(rejection) => {
            println!("rejected: {rejection}");
            return Ok(Outcome::Failed);
        }
    };
    let resource = base.document_url_with_param(
        &event.document_key,
        "lid",
        "00000000-0000-0000-0000-000000000000",
    );
    let expires_at =
        chrono::Utc::now() + chrono::Duration::seconds(event.link_ttl.as_secs() as i64);
    // A visibly fake signature: previews are never valid links.
    let link = format!(
        "{resource}&Expires={}&Signature=PREVIEW&Key-Pair-Id=PREVIEW",
        expires_at.timestamp()
    );
    let letter = event.letter(&link, expires_at);
    let email = templates::render(event.template, &letter)?;
    println!("To: {}", event.recipient.email);
    println!("Subject: {}", email.subject);
    println!(
        "Template: {} ({})",
        event.template.as_str(),
        event.locale.as_str()
    );
    println!();
    print!("{}", email.text);
    if let Some(path) = args.html_out {
        std::fs::write(&path, &email.html)
            .with_context(|| format!("--html-out {}", path.display()))?;
        eprintln!("wrote the HTML part to {}", path.display());
    }
    Ok(Outcome::Success)
}
