//! What every bench writes beside its figures: the machine, the commit, the CPU
//! spent, and its own section of BENCHMARKS.md.
#![allow(dead_code)]

/// The CPU model and the number of cores this process may use.
pub fn cpu_and_cores() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The commit measured, and whether the tree had uncommitted changes to tracked files.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("commit {head} (with uncommitted changes)")
        }
        Some(head) => format!("commit {head}"),
        None => "commit unknown".into(),
    }
}

/// This process's user + system CPU time so far (all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Replaces this benchmark's section of BENCHMARKS.md, keeping the others.
pub fn write_section(name: &str, body: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by the runs that measure (`make bench`); do not edit by hand.\n\n".to_string()
    });
    let block = format!("{begin}\n{body}{end}\n");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => format!(
            "{}{}{}",
            &current[..b],
            block,
            current[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n{}", current.trim_end_matches('\n'), block),
    };
    std::fs::write(&path, updated).expect("write BENCHMARKS.md");
}
