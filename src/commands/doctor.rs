//! `doclink doctor`: one line per check, ok or problem, and what to do; or the same
//! checks as JSON.

use crate::Failure;
use doclink::config::Settings;
use doclink::doctor::Check;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output: lines to read, or JSON for scripts and monitoring (an array of checks,
    /// each with name, status ok, problem or skipped, detail, and fix for a problem).
    #[arg(long, value_enum, default_value = "text")]
    format: DoctorFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

/// What to do when settings are wrong.
const FIX_SETTINGS: &str = "set them (docs/settings.md), then run doctor again";

pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let settings = Settings::load(args.config.as_deref());
    let settings_failed = settings.is_err();
    let checks = match settings {
        Ok(settings) => {
            let runtime = super::command_runtime()?;
            runtime.block_on(doclink::doctor::examine(&settings))
        }
        Err(errors) => {
            // Nothing else can run; each setting's problem is a check of its own.
            let unknown = doclink::config::unknown_environment_variables();
            let problems = errors
                .0
                .iter()
                .map(ToString::to_string)
                .chain(unknown.iter().map(ToString::to_string));
            problems
                .map(|problem| Check {
                    name: "settings",
                    problem: Some(problem),
                    detail: FIX_SETTINGS.into(),
                    skipped: false,
                })
                .collect()
        }
    };
    let problems = checks.iter().filter(|c| c.problem.is_some()).count();
    match args.format {
        DoctorFormat::Text => print_text(&checks, settings_failed)?,
        DoctorFormat::Json => print_json(&checks)?,
    }
    if problems > 0 {
        eprintln!(
            "doctor: {problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
        Err(Failure::Work)
    } else {
        Ok(())
    }
}

/// One line per check; `settings_failed`: they are the settings' problems, which
/// share one line saying what to do, after them all.
fn print_text(checks: &[Check], settings_failed: bool) -> Result<(), Failure> {
    let mut out = super::Stdout::new();
    for check in checks {
        match &check.problem {
            None if check.skipped => {
                out.line(&format!("skipped  {}: {}", check.name, check.detail))?
            }
            None => out.line(&format!("ok       {}: {}", check.name, check.detail))?,
            Some(problem) if settings_failed => {
                out.line(&format!("problem  {}: {problem}", check.name))?
            }
            Some(problem) => {
                out.line(&format!("problem  {}: {problem}", check.name))?;
                out.line(&format!("         → {}", check.detail))?;
            }
        }
    }
    if settings_failed {
        out.line(&format!("         → {FIX_SETTINGS}"))?;
    }
    Ok(out.flush()?)
}

fn print_json(checks: &[Check]) -> Result<(), Failure> {
    let rows: Vec<serde_json::Value> = checks
        .iter()
        .map(|check| match &check.problem {
            None => serde_json::json!({
                "name": check.name,
                "status": if check.skipped { "skipped" } else { "ok" },
                "detail": check.detail,
            }),
            Some(problem) => serde_json::json!({
                "name": check.name,
                "status": "problem",
                "detail": problem,
                "fix": check.detail,
            }),
        })
        .collect();
    let mut out = super::Stdout::new();
    out.line(&serde_json::to_string_pretty(&rows).expect("checks serialize"))?;
    Ok(out.flush()?)
}
