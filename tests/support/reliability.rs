//! Report fragments for RELIABILITY.md. When `DOCLINK_RELIABILITY_DIR` is set, a test
//! writes what it measured there as `<name>.json`; a script turns the fragments into
//! the report. Without the variable nothing is written.

use std::path::PathBuf;
use std::sync::Mutex;

/// Serialises read-change-write of one fragment by tests of the same binary.
static LOCK: Mutex<()> = Mutex::new(());

fn dir() -> Option<PathBuf> {
    std::env::var_os("DOCLINK_RELIABILITY_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Writes `fields` as `<name>.json`, merged into what the file holds already (another
/// test of the same fragment, or another run of the same binary with another
/// budget), so each test sets only its own fields.
pub fn write_fragment(name: &str, fields: serde_json::Value) {
    update_fragment(name, |fragment| {
        for (key, value) in fields.as_object().expect("fragment fields are an object") {
            fragment[key] = value.clone();
        }
    });
}

/// Reads `<name>.json` (or `{}`), lets `change` edit it, and writes it back whole
/// through a rename, so a reader never sees half a file.
pub fn update_fragment(name: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let Some(dir) = dir() else { return };
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(&dir).expect("create DOCLINK_RELIABILITY_DIR");
    let path = dir.join(format!("{name}.json"));
    let mut fragment = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    change(&mut fragment);
    let temporary = dir.join(format!(".{name}.json.{}", std::process::id()));
    std::fs::write(
        &temporary,
        serde_json::to_string_pretty(&fragment).unwrap() + "\n",
    )
    .expect("write the fragment");
    std::fs::rename(&temporary, &path).expect("move the fragment into place");
    say(&format!(
        "reliability fragment {}: {fragment}",
        path.display()
    ));
}

/// Prints a line that `cargo test` shows even for a passing test: written to the
/// process's stderr directly, past the harness's capture of `println!`.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
