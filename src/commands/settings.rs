//! `doclink settings`: every setting, its environment variable and TOML key, its
//! default, the value doclink would use and where that comes from. Secrets hidden.

use super::Stdout;
use super::table::{Column, Table, output_width};
use crate::Failure;
use doclink::config::{self, CurrentSetting};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SettingsArgs {
    /// TOML settings file; DOCLINK_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output: a table to read, or JSON for scripts.
    #[arg(long, value_enum, default_value = "table")]
    format: SettingsFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SettingsFormat {
    Table,
    Json,
}

const COLUMNS: [Column; 5] = [
    Column::fixed("VARIABLE", 32),
    Column::shrinks("KEY", 24, 12),
    Column::shrinks("DEFAULT", 16, 8),
    Column::fixed("SOURCE", 7),
    Column::shrinks("VALUE", 40, 10),
];

pub fn run(args: SettingsArgs) -> Result<(), Failure> {
    let current =
        config::current_settings(args.config.as_deref(), &|name| std::env::var(name).ok())
            .map_err(config::ConfigErrors::from)?;
    let mut out = Stdout::new();
    match args.format {
        SettingsFormat::Table => {
            let table = Table::new(&COLUMNS, output_width());
            out.line(&table.heading())?;
            for setting in &current {
                let default = match setting.spec.default {
                    None => "required",
                    Some("") => "none",
                    Some(default) => default,
                };
                let value = match shown_value(setting) {
                    None => "(not set)".to_string(),
                    Some(value) if value.is_empty() => "(none)".to_string(),
                    Some(value) => value,
                };
                out.line(&table.row(&[
                    setting.spec.env,
                    setting.spec.key,
                    default,
                    setting.source.as_str(),
                    &value,
                ]))?;
            }
        }
        SettingsFormat::Json => {
            let rows: Vec<serde_json::Value> = current
                .iter()
                .map(|setting| {
                    serde_json::json!({
                        "variable": setting.spec.env,
                        "key": setting.spec.key,
                        "default": setting.spec.default,
                        "required": setting.spec.default.is_none(),
                        "value": shown_value(setting),
                        "source": setting.source.as_str(),
                        "secret": setting.spec.secret,
                        "meaning": setting.spec.help,
                    })
                })
                .collect();
            out.line(&serde_json::to_string_pretty(&rows).expect("settings serialize"))?;
        }
    }
    Ok(out.flush()?)
}

/// The value as it may be shown: a secret setting's credential hidden (the only
/// secret setting, DATABASE_URL, keeps its user, host and database; see
/// `SettingSpec::secret`).
fn shown_value(setting: &CurrentSetting) -> Option<String> {
    let value = setting.value.as_deref()?;
    Some(match (setting.spec.secret, setting.spec.key) {
        (false, _) => value.to_string(),
        (true, "database_url") => config::redact_database_url(value),
        (true, _) => "(hidden)".to_string(),
    })
}
