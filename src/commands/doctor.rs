//! `doclink doctor`: one line per check, ok or problem, and what to do.

use crate::Failure;
use doclink::config::Settings;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(errors) => {
            for error in &errors.0 {
                say!("problem  settings: {error}");
            }
            for unknown in doclink::config::unknown_environment_variables() {
                say!("problem  settings: {unknown}");
            }
            say!("         → set them (docs/settings.md), then run doctor again");
            return Err(Failure::Work);
        }
    };
    let runtime = super::command_runtime()?;
    let checks = runtime.block_on(doclink::doctor::examine(&settings));
    let mut out = super::Stdout::new();
    let mut problems = 0;
    for check in &checks {
        match &check.problem {
            None if check.skipped => {
                out.line(&format!("skipped  {}: {}", check.name, check.detail))?
            }
            None => out.line(&format!("ok       {}: {}", check.name, check.detail))?,
            Some(problem) => {
                problems += 1;
                out.line(&format!("problem  {}: {problem}", check.name))?;
                out.line(&format!("         → {}", check.detail))?;
            }
        }
    }
    out.flush()?;
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
