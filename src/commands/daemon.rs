//! `doclink run`, `doclink migrate` and `doclink preview`.

use crate::{Failure, report_on_stderr, write_stdout};
use anyhow::Context;
use doclink::config::{self, LogFormat, LogFormatSetting, Settings};
use doclink::event::DocumentReady;
use doclink::logging::{LogBuffer, LogFlushGuard, QuietNotices};
use doclink::mail::{Mailbox, templates};
use doclink::runtime::{self, RuntimeOptions, StopReason};
use doclink::stats::Stats;
use sqlx::postgres::PgConnectOptions;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Stop once the queue is empty and nothing is in flight, printing a summary:
    /// exit 0 when no letter failed, 1 when some did, 130 when a signal stopped it first.
    #[arg(long)]
    drain: bool,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// TOML settings file; DATABASE_URL overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PreviewArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A document-ready event (JSON) to render; `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Also write the HTML part to this file (open it in a browser to review it).
    #[arg(long, value_name = "FILE")]
    html_out: Option<PathBuf>,
}

/// Logs go to stderr through doclink's bounded, batching buffer (src/logging.rs),
/// as text for a person at a terminal and JSON otherwise, unless DOCLINK_LOG_FORMAT
/// says which.
fn init_logging(
    format: LogFormatSetting,
    filter: tracing_subscriber::EnvFilter,
) -> (LogBuffer, LogFlushGuard) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (buffer, guard) = LogBuffer::start(std::io::stderr(), 4 << 20);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(buffer.clone());
    match format.resolve(std::io::stderr().is_terminal()) {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(QuietNotices)
            .init(),
        LogFormat::Text => builder.with_ansi(false).finish().with(QuietNotices).init(),
    }
    (buffer, guard)
}

/// Copies the count of dropped log lines into its metric.
fn spawn_dropped_lines_metric(buffer: LogBuffer) {
    let counter = metrics::counter!("doclink_log_lines_dropped_total");
    tokio::spawn(async move {
        loop {
            counter.absolute(buffer.dropped_lines());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    // DOCLINK_LOG is checked with the settings: a filter that cannot be read is one
    // more setting to correct, not logging that is silently off.
    let (settings, filter) = match (
        Settings::load(args.config.as_deref()),
        doclink::logging::filter_from_env(),
    ) {
        (Ok(settings), Ok(filter)) => (settings, filter),
        (Err(mut errors), filter) => {
            errors.0.extend(filter.err());
            return Err(errors.into());
        }
        (Ok(_), Err(error)) => return Err(config::ConfigErrors::from(error).into()),
    };
    let (log_buffer, _log_guard) = init_logging(settings.log_format, filter);
    // A DOCLINK_* variable that is no setting is most likely a typo of one.
    for unknown in config::unknown_environment_variables() {
        tracing::warn!(variable = %unknown.name, closest = unknown.closest, "{unknown}");
    }
    // One thread by default: it keeps up with about a thousand letters a second, and
    // sparing the wake-ups between threads saves about a sixth of a letter's CPU
    // (measured; see BENCHMARKS.md).
    let runtime = match settings.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let metrics = doclink::http::install_metrics();
        spawn_dropped_lines_metric(log_buffer.clone());
        let stats = Arc::new(Stats::new());
        // Signals are handled from the start: a SIGTERM while start-up waits on the
        // database or KMS ends it there, cleanly, before anything is received.
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone(), stats.clone());
        let daemon = tokio::select! {
            built = doclink::startup::build(&settings, stats.clone()) => {
                built.map_err(|e| if e.is_configuration() {
                    Failure::Usage(e.into())
                } else if e.is_account_blocked() {
                    Failure::AccountBlocked(anyhow::anyhow!(
                        "{:#}; no letter can go until that is fixed, and every unsent message is still on the queue",
                        anyhow::Error::new(e)
                    ))
                } else {
                    Failure::Unavailable(e.into())
                })?
            }
            _ = shutdown.cancelled() => {
                tracing::warn!("shutdown requested during start-up; nothing was received");
                if args.drain {
                    // A batch job that was stopped did not do its job.
                    say!("interrupted during start-up: nothing was received");
                    return Err(Failure::Interrupted);
                }
                return Ok(());
            }
        };
        let http = match settings.http_addr {
            Some(addr) => Some(
                doclink::http::serve(addr, metrics, stats.clone())
                    .await
                    .with_context(|| {
                        format!("setting DOCLINK_HTTP_ADDR (http_addr): cannot listen on {addr}")
                    })
                    .map_err(Failure::Unavailable)?,
            ),
            None => None,
        };
        let duties = spawn_duties(&daemon, &settings, &stats, &shutdown);
        let progress = (args.drain && std::io::stderr().is_terminal())
            .then(|| spawn_progress(stats.clone(), log_buffer.clone()));
        let options = RuntimeOptions {
            concurrency: settings.concurrency,
            visibility_timeout: settings.visibility_timeout,
            shutdown_grace: settings.shutdown_grace,
            drain: args.drain,
        };
        tracing::info!(
            concurrency = options.concurrency,
            rate = daemon.pipeline.send_rate(),
            drain = args.drain,
            "receiving"
        );
        let reason = runtime::run(daemon.pipeline, daemon.queue, options, shutdown.clone()).await;
        // The duties beside the letters stop with them.
        shutdown.cancel();
        for duty in duties {
            let _ = duty.await;
        }
        // The letters have ended: seal what they wrote, so the last head is logged.
        runtime::watch::seal_once(&daemon.audit).await;
        if let Some(store) = &daemon.anchor {
            runtime::watch::anchor_head(&daemon.audit, store, &mut None).await;
        }
        if let Some(progress) = progress {
            progress.abort();
            // Gone before the summary is printed, which would otherwise share its line.
            log_buffer.clear_status();
        }
        // The last count of dropped log lines, for whoever reads the log after the
        // metrics endpoint is gone (0 proves that every line so far was written).
        tracing::info!(
            summary = %stats.summary(),
            ?reason,
            log_lines_dropped = log_buffer.dropped_lines(),
            "stopped"
        );
        let interrupted = args.drain && reason == StopReason::Shutdown;
        if args.drain {
            // The summary says how the run ended, not only what it counted.
            let ending = match reason {
                StopReason::Drained => "",
                StopReason::Shutdown => "interrupted before the queue was drained: ",
                StopReason::AccountBlocked => "stopped, SES refuses the account or KMS the key: ",
            };
            say!("{ending}{}", stats.summary());
        }
        if let Some(http) = http {
            http.stop().await;
        }
        let failed = stats.failed.get();
        match reason {
            // A batch job's honest answer: drained, and every letter went out.
            StopReason::Drained if failed > 0 => {
                report_on_stderr(format!(
                    "doclink: {failed} letter{} failed for good; each is `failed` in the audit log \
                     with its reason (`doclink links list --status failed`), and its event is kept \
                     (`doclink rejections list --kind refused`), from where \
                     `doclink rejections retry ID` sends it again once the cause is fixed\n",
                    if failed == 1 { "" } else { "s" }
                ));
                Err(Failure::Work)
            }
            StopReason::Shutdown if interrupted => Err(Failure::Interrupted),
            StopReason::Drained | StopReason::Shutdown => Ok(()),
            StopReason::AccountBlocked => Err(Failure::AccountBlocked(anyhow::anyhow!(
                "{}; no letter can go until that is fixed, and every unsent message is still on the queue",
                stats
                    .health
                    .account_blocked_reason()
                    .unwrap_or_else(|| "SES refuses the account".into())
            ))),
        }
    })
}

/// The SES events consumer, the revocation sync and the queue-depth gauges.
fn spawn_duties(
    daemon: &doclink::startup::Daemon,
    settings: &Settings,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut duties = vec![
        tokio::spawn(runtime::watch::queue_depths(
            daemon.watched_queues.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(runtime::watch::journal_seals(
            daemon.audit.clone(),
            daemon.anchor.clone(),
            settings.audit_seal_interval,
            shutdown.clone(),
        )),
    ];
    if let Some(events) = &daemon.delivery_events {
        let events = doclink::runtime::DeliveryEvents {
            queue: events.queue.clone(),
            audit: events.audit.clone(),
        };
        duties.push(tokio::spawn(events.run(stats.clone(), shutdown.clone())));
    }
    if let Some(logs) = &daemon.access_logs {
        let logs = doclink::runtime::AccessLogs {
            queue: logs.queue.clone(),
            audit: logs.audit.clone(),
            s3: logs.s3.clone(),
            ip: logs.ip,
        };
        duties.push(tokio::spawn(logs.run(shutdown.clone())));
    }
    if let Some(store) = &daemon.revocations {
        duties.push(tokio::spawn(runtime::watch::revocation_sync(
            store.clone(),
            daemon.audit.clone(),
            settings.revocation_sync_interval,
            shutdown.clone(),
        )));
    }
    duties
}

/// The live progress line of `run --drain` on a terminal, drawn by the log writer
/// so that log lines are written above it, never glued to it.
fn spawn_progress(stats: Arc<Stats>, log_buffer: LogBuffer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = format!("{}, in flight {}", stats.summary(), stats.in_flight());
            // A line that wraps could not be erased whole: keep it within the width.
            let status = match super::table::stderr_width() {
                Some(width) => super::table::cut(&status, width.saturating_sub(1)),
                None => status,
            };
            log_buffer.show_status(status);
        }
    })
}

/// The first SIGTERM/SIGINT starts a graceful shutdown; a second exits at once.
fn spawn_signal_handler(shutdown: CancellationToken, stats: Arc<Stats>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install the SIGTERM/SIGINT handlers");
            return;
        };
        for count in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if count == 0 {
                tracing::warn!(
                    "shutdown requested: finishing in-flight messages (signal again to exit at once)"
                );
                stats.health.set_shutting_down();
                shutdown.cancel();
            } else {
                tracing::error!("second signal: exiting at once");
                std::process::exit(130);
            }
        }
    });
}

pub fn migrate(args: MigrateArgs) -> Result<(), Failure> {
    let some = config::SomeSettings::load(args.config.as_deref())?;
    let database_url = some.database_url().map_err(config::ConfigErrors::from)?;
    let role_prefix = some.db_role_prefix().map_err(config::ConfigErrors::from)?;
    let options: PgConnectOptions = database_url.parse().map_err(|e: sqlx::Error| {
        Failure::Usage(anyhow::anyhow!("setting DATABASE_URL (database_url): {e}"))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        doclink::audit::reach(&options)
            .await
            .map_err(|e| Failure::Unavailable(e.into()))?;
        let pool = doclink::audit::connect(&database_url, 1)
            .await
            .map_err(|e| Failure::Unavailable(e.into()))?;
        doclink::audit::migrate(&pool, &role_prefix)
            .await
            .map_err(|e| Failure::Unavailable(e.into()))?;
        eprintln!("migrations applied");
        // Whether the roles could be set up: say so, with what to do, when not.
        let missing: Option<String> = sqlx::query_scalar(
            "SELECT CASE WHEN to_regprocedure('public.audit_grant_roles()') IS NULL THEN NULL ELSE public.audit_grant_roles() END",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| Some(format!("cannot apply the roles' privileges: {e}")));
        match missing {
            None => eprintln!(
                "database roles: {role_prefix}owner owns the tables; make login roles members of {role_prefix}writer (the daemon), {role_prefix}auditor or {role_prefix}retention"
            ),
            Some(missing) => eprintln!("warning: database roles not set up: {missing}"),
        }
        Ok(())
    })
}

pub fn preview(args: PreviewArgs) -> Result<(), Failure> {
    let settings = config::load_preview(args.config.as_deref())?;
    let body = if args.event.as_os_str() == "-" {
        let mut body = String::new();
        std::io::stdin()
            .read_to_string(&mut body)
            .context("--event -: reading stdin")?;
        body
    } else {
        std::fs::read_to_string(&args.event)
            .with_context(|| format!("--event {}", args.event.display()))?
    };
    let event = match DocumentReady::parse(&body, &settings.rules) {
        Ok(event) => event,
        Err(rejection) => {
            write_stdout(&format!("rejected: {rejection}\n"))?;
            return Err(Failure::Work);
        }
    };
    let resource = settings.base_url.document_url_with_param(
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
    let email = templates::render(event.template, &letter, &settings.branding)
        .context("rendering the letter")?;
    // A key no template reads is most likely a typo; say so rather than drop it.
    for key in event.template.unread_data_keys(&event.data) {
        eprintln!(
            "doclink: warning: data.{} is not read by the {} template (known keys: {})",
            key.escape_debug(),
            event.template.as_str(),
            event.template.data_keys().join(", ")
        );
    }
    for name in &settings.placeholders {
        eprintln!("doclink: note: {name} is not set; the letter shows [{name}] in its place");
    }
    if let Some(path) = &args.html_out {
        std::fs::write(path, &email.html)
            .with_context(|| format!("--html-out {}", path.display()))?;
        eprintln!("wrote the HTML part to {}", path.display());
    }
    // The headers as they will be sent: display names included, RFC 2047 encoded.
    let to = Mailbox {
        name: event.recipient.name.clone(),
        address: event.recipient.email.clone(),
    };
    let mut out = String::new();
    match &settings.from {
        Some(from) => out.push_str(&format!("From: {}\n", from.to_header())),
        None => out.push_str("From: [DOCLINK_FROM is not set]\n"),
    }
    if let Some(reply_to) = &settings.reply_to {
        out.push_str(&format!("Reply-To: {}\n", reply_to.to_header()));
    }
    out.push_str(&format!("To: {}\n", to.to_header()));
    out.push_str(&format!("Subject: {}\n", email.subject));
    out.push_str(&format!(
        "Template: {} ({})\n\n",
        event.template.as_str(),
        event.locale.as_str()
    ));
    out.push_str(&email.text);
    write_stdout(&out)?;
    Ok(())
}
