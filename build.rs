//! Names the build for `doclink --version`: the git commit it was built from (short
//! hash, `-dirty` when tracked files had changes) and the build date (UTC). Without
//! git or a repository (a source tarball), the commit is `unknown`; the build never
//! fails for it.
//!
//! Cheap on purpose: it runs again only when HEAD moves (a commit, a checkout) or a
//! source file changes, which rebuilds doclink anyway; not on every build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    let commit = match commit {
        Some(hash) if dirty => format!("{hash}-dirty"),
        Some(hash) => hash,
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=DOCLINK_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=DOCLINK_BUILD_DATE={}", build_date());

    // HEAD, and the branch file it points to (through `git rev-parse --git-path`,
    // which also finds them for a worktree), and packed-refs; `src` and the manifest
    // for `-dirty`. Edits elsewhere (README) do not rebuild doclink to say so. Only
    // files that exist: cargo takes a missing one as changed, on every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    for path in ["src", "Cargo.toml", "Cargo.lock", "migrations", "templates"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

/// `git ARGS` in the package's directory: its trimmed output, or `None` when git is
/// missing or fails (no repository).
fn git(args: &[&str]) -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let out = Command::new("git")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // A path git gives relative to the package's directory, made absolute for cargo.
    if args.first() == Some(&"rev-parse") && args.get(1) == Some(&"--git-path") {
        return Some(dir.join(text).display().to_string());
    }
    Some(text)
}

/// Today's date in UTC (YYYY-MM-DD), or SOURCE_DATE_EPOCH's for a reproducible build.
fn build_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
