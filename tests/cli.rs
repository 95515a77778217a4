//! The command line as a new user meets it: the exact message and exit status of
//! each common mistake, stdout closed early, and a terminal on stdin. No stack is
//! needed: the database and AWS endpoints here are meant to be unreachable.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY_PAIR_ID: &str = "K2JCJMDEHXQW5F";

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `doclink ARGS` with only PATH from our environment plus `env`, so no setting of
/// the machine (or of scripts/stack.sh) changes the outcome.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doclink"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    command
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    output_of(command(args, env), stdin)
}

/// Runs `command` with `stdin` as its input, to completion.
fn output_of(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        // The command may not read it all; that is its business.
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Asserts the exit status and the exact stderr, with nothing on stdout.
#[track_caller]
fn assert_fails(out: &Output, code: i32, stderr: &str) {
    assert_eq!(
        (out.status.code(), text(&out.stderr).as_str()),
        (Some(code), stderr),
        "stdout: {}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout), "");
}

/// Runs `doclink ARGS` with its stdout a pipe whose reader is already gone, so any
/// write meets EPIPE at once (`| true` that always loses the race).
fn run_into_closed_pipe(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = command(args, env)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn sign_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "sign",
        "--key-pair-id",
        KEY_PAIR_ID,
        "--private-key",
        &fixture("ec_p256_sec1.pem"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

// ---- settings and services ----------------------------------------------------

#[test]
fn run_names_every_missing_setting_in_one_message() {
    let out = run(&["run"], &[], "");
    assert_fails(
        &out,
        2,
        "doclink: 6 settings are missing or invalid:
  setting DATABASE_URL (database_url): is required but not set
  setting DOCLINK_QUEUE_URL (queue_url): is required but not set
  setting DOCLINK_KEY_PAIR_ID (key_pair_id): is required but not set
  setting DOCLINK_PRIVATE_KEY_CIPHERTEXT (private_key_ciphertext): is required with signer=local (the default)
  setting DOCLINK_LINK_BASE_URL (link_base_url): is required but not set
  setting DOCLINK_FROM (from): is required but not set
",
    );
}

#[test]
fn run_names_invalid_branding_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ciphertext = dir.path().join("key.ct");
    std::fs::write(&ciphertext, b"x").unwrap();
    let ciphertext = ciphertext.display().to_string();
    let out = run(
        &["run"],
        &[
            ("DATABASE_URL", "postgres://doclink@127.0.0.1:1/doclink"),
            ("DOCLINK_QUEUE_URL", "http://127.0.0.1:1/000000000000/q"),
            ("DOCLINK_KEY_PAIR_ID", KEY_PAIR_ID),
            ("DOCLINK_PRIVATE_KEY_CIPHERTEXT", &ciphertext),
            ("DOCLINK_LINK_BASE_URL", "https://documents.example.org"),
            ("DOCLINK_FROM", "letters@example.org"),
            ("DOCLINK_LOGO_URL", "http://cdn.example.org/logo.png"),
            ("DOCLINK_TIMEZONE", "Europe/Pariss"),
        ],
        "",
    );
    assert_fails(
        &out,
        2,
        "doclink: 3 settings are missing or invalid:
  setting DOCLINK_ORG_NAME (org_name): is required when DOCLINK_FROM has no display name; set it, or write DOCLINK_FROM as 'Name <address>'
  setting DOCLINK_LOGO_URL (logo_url): \"http://cdn.example.org/logo.png\" must be an https:// URL
  setting DOCLINK_TIMEZONE (timezone): \"Europe/Pariss\" is not an IANA time zone name such as Europe/Paris, America/New_York or UTC
",
    );
}

/// A complete, valid daemon configuration (its database at a closed port), so that
/// start-up gets past the settings; `extra` on top.
fn daemon_env<'a>(ciphertext: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("DATABASE_URL", "postgres://doclink@127.0.0.1:1/doclink"),
        ("DOCLINK_QUEUE_URL", "http://127.0.0.1:1/000000000000/q"),
        ("DOCLINK_KEY_PAIR_ID", KEY_PAIR_ID),
        ("DOCLINK_PRIVATE_KEY_CIPHERTEXT", ciphertext),
        ("DOCLINK_LINK_BASE_URL", "https://documents.example.org"),
        ("DOCLINK_FROM", "Letters <letters@example.org>"),
        ("DOCLINK_LOG_FORMAT", "text"),
    ];
    env.extend_from_slice(extra);
    env
}

/// A DOCLINK_* variable that is no setting is warned of at start-up, with the
/// setting it most likely meant; and a database that is down is named at once with
/// its host, port and why, not after the pool's 10 s as "pool timed out".
#[test]
fn run_warns_of_an_unknown_variable_and_names_a_database_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let ciphertext = dir.path().join("key.ct");
    std::fs::write(&ciphertext, b"x").unwrap();
    let ciphertext = ciphertext.display().to_string();
    let started = std::time::Instant::now();
    let out = run(
        &["run"],
        &daemon_env(&ciphertext, &[("DOCLINK_SEND_RAT", "10")]),
        "",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains(
            "WARN doclink::commands::daemon: DOCLINK_SEND_RAT is not a doclink setting and is \
             ignored; did you mean DOCLINK_SEND_RATE?"
        ),
        "{err}"
    );
    assert_eq!(
        lines[1],
        "doclink: cannot connect to the database at 127.0.0.1:1 (connection refused); check that \
         PostgreSQL is running there and that DATABASE_URL is right"
    );
}

/// Without DOCLINK_LOG_FORMAT, `run` logs JSON into a pipe and text on a terminal
/// (`script` gives it one); DOCLINK_LOG_FORMAT=text or json is obeyed either way.
#[test]
fn logs_are_json_into_a_pipe_and_text_on_a_terminal_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let ciphertext = dir.path().join("key.ct");
    std::fs::write(&ciphertext, b"x").unwrap();
    let ciphertext = ciphertext.display().to_string();
    let untold: Vec<(&str, &str)> = daemon_env(&ciphertext, &[("DOCLINK_SEND_RAT", "10")])
        .into_iter()
        .filter(|(name, _)| *name != "DOCLINK_LOG_FORMAT")
        .collect();
    let told = |format| {
        let mut env = untold.clone();
        env.push(("DOCLINK_LOG_FORMAT", format));
        env
    };
    let text_warning = "WARN doclink::commands::daemon: DOCLINK_SEND_RAT is not a doclink setting";

    // Into a pipe, untold: JSON.
    let out = run(&["run"], &untold, "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let first: serde_json::Value = serde_json::from_str(err.lines().next().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(first["level"], "WARN", "{err}");
    assert_eq!(first["variable"], "DOCLINK_SEND_RAT", "{err}");

    // Into a pipe, told text: text.
    let err = text(&run(&["run"], &told("text"), "").stderr);
    assert!(err.lines().next().unwrap().contains(text_warning), "{err}");

    // On a terminal: text untold, JSON when told.
    let on_a_terminal = |env: &[(&str, &str)]| {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut inner = String::from("env");
        for (name, value) in env {
            inner.push_str(&format!(" {}", quote(&format!("{name}={value}"))));
        }
        inner.push_str(&format!(" {} run", quote(env!("CARGO_BIN_EXE_doclink"))));
        let mut script = Command::new("script");
        script
            .args(["-q", "-c", &inner, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        text(&output_of(script, "").stdout)
    };
    let screen = on_a_terminal(&untold);
    assert!(screen.contains(text_warning), "{screen}");
    assert!(!screen.contains("\"level\":"), "{screen}");
    let screen = on_a_terminal(&told("json"));
    assert!(screen.contains("\"level\":\"WARN\""), "{screen}");
}

/// A log filter that would show nothing (EnvFilter reads `verbose` as a target
/// name) is a setting error, exit 2, named with the others; a TOML key with a typo
/// is answered with the key it most likely meant.
#[test]
fn an_invalid_log_filter_and_a_toml_typo_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ciphertext = dir.path().join("key.ct");
    std::fs::write(&ciphertext, b"x").unwrap();
    let ciphertext = ciphertext.display().to_string();
    assert_fails(
        &run(
            &["run"],
            &daemon_env(&ciphertext, &[("DOCLINK_LOG", "verbose")]),
            "",
        ),
        2,
        "doclink: setting DOCLINK_LOG (environment only): \"verbose\" is not a log level; give a \
         level (trace, debug, info, warn, error, off) or target=level directives, e.g. \
         DOCLINK_LOG=info,doclink=debug\n",
    );
    assert_fails(
        &run(
            &["run"],
            &daemon_env(
                &ciphertext,
                &[("DOCLINK_LOG", "verbose"), ("DOCLINK_HASH", "md5")],
            ),
            "",
        ),
        2,
        "doclink: 2 settings are missing or invalid:
  setting DOCLINK_HASH (hash): \"md5\" is not sha1 or sha256
  setting DOCLINK_LOG (environment only): \"verbose\" is not a log level; give a level (trace, debug, info, warn, error, off) or target=level directives, e.g. DOCLINK_LOG=info,doclink=debug
",
    );
    let file = dir.path().join("doclink.toml");
    std::fs::write(&file, "send_rat = 10\n").unwrap();
    let out = run(
        &["run", "--config", file.to_str().unwrap()],
        &daemon_env(&ciphertext, &[]),
        "",
    );
    assert_fails(
        &out,
        2,
        &format!(
            "doclink: setting --config (file): {}: unknown setting \"send_rat\"; did you mean \
             send_rate?\n",
            file.display()
        ),
    );
}

/// A minimal AWS environment pointed at `endpoint`, with nothing from this machine.
fn aws_env<'a>(home: &'a str, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HOME", home),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "eu-west-3"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

#[test]
fn keys_encrypt_without_an_endpoint_says_where_and_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().display().to_string();
    let output = dir.path().join("k.ct");
    let args = [
        "keys",
        "encrypt",
        "--kms-key-id",
        "alias/doclink",
        "--in",
        &fixture("ec_p256_pkcs8.pem"),
        "--out",
        output.to_str().unwrap(),
    ];
    let out = run(&args, &aws_env(&home, "http://127.0.0.1:1"), "");
    assert_fails(
        &out,
        3,
        "doclink: KMS Encrypt failed: cannot connect to http://127.0.0.1:1 (connection refused); \
         check AWS_ENDPOINT_URL / AWS_REGION and your network\n",
    );
    assert!(!output.exists());

    // Without credentials, or without a region, the message says which to set.
    let mut env = aws_env(&home, "http://127.0.0.1:1");
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    assert_fails(
        &run(&args, &env, ""),
        3,
        "doclink: KMS Encrypt failed: no AWS credentials were found; set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role\n",
    );
    let mut env = aws_env(&home, "http://127.0.0.1:1");
    env.retain(|(k, _)| *k != "AWS_REGION");
    assert_fails(
        &run(&args, &env, ""),
        3,
        "doclink: KMS Encrypt failed: no AWS region is set; set AWS_REGION (for example AWS_REGION=eu-west-1)\n",
    );
}

#[test]
fn migrate_names_an_unreachable_database_at_once() {
    let started = std::time::Instant::now();
    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")],
        "",
    );
    assert_fails(
        &out,
        3,
        "doclink: cannot connect to the database at 127.0.0.1:1 (connection refused); check that \
         PostgreSQL is running there and that DATABASE_URL is right\n",
    );
    // At once: not after the pool's 10 s acquire timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The audit commands, too, name a database that is down at once.
#[test]
fn links_name_an_unreachable_database_at_once() {
    let started = std::time::Instant::now();
    let out = run(
        &["links", "list"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")],
        "",
    );
    assert_fails(
        &out,
        3,
        "doclink: cannot connect to the database at 127.0.0.1:1 (connection refused); check that \
         PostgreSQL is running there and that DATABASE_URL is right\n",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn migrate_refuses_a_url_that_is_not_postgresql() {
    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "mysql://nobody@127.0.0.1/x")],
        "",
    );
    assert_fails(
        &out,
        2,
        "doclink: setting DATABASE_URL (database_url): must be a postgres:// or postgresql:// URL\n",
    );
    let out = run(
        &["migrate"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:notaport/x")],
        "",
    );
    assert_fails(
        &out,
        2,
        "doclink: setting DATABASE_URL (database_url): error with configuration: invalid port number\n",
    );
}

// ---- broken pipes --------------------------------------------------------------

const EVENT: &str = r#"{"event_id": "cli-1", "document_key": "decisions/2026/ABC-123/Décision finale.pdf",
    "recipient": {"email": "jane@example.org", "name": "Zoë O'Neil"}, "template": "decision_letter",
    "locale": "fr", "data": {"case_number": "ABC-123", "case_numbr": "typo"}}"#;

#[test]
fn preview_into_a_closed_pipe_exits_0_quietly() {
    let out = run_into_closed_pipe(
        &["preview", "--event", "-"],
        &[("DOCLINK_ORG_NAME", "Greffe")],
        EVENT,
    );
    assert_eq!(out.status.code(), Some(0));
    // Only the warnings that belong on stderr anyway; no panic, no "Broken pipe".
    assert_eq!(
        text(&out.stderr),
        "doclink: warning: data.case_numbr is not read by the decision_letter template (known keys: case_number, subject, message)\n\
         doclink: note: DOCLINK_CONTACT is not set; the letter shows [DOCLINK_CONTACT] in its place\n"
    );
}

#[test]
fn verify_into_a_closed_pipe_keeps_its_verdict_quietly() {
    let signed = run(
        &strs(&sign_args(&[
            "--ttl",
            "1d",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
    let url = text(&signed.stdout).trim().to_string();
    let verify = |url: &str| {
        run_into_closed_pipe(
            &[
                "verify",
                "--public-key",
                &fixture("ec_p256_public.pem"),
                url,
            ],
            &[],
            "",
        )
    };
    let valid = verify(&url);
    assert_eq!(
        (valid.status.code(), text(&valid.stderr)),
        (Some(0), String::new())
    );
    // The exit status is the verdict, read or not.
    let tampered = verify(&url.replace("a.pdf", "b.pdf"));
    assert_eq!(
        (tampered.status.code(), text(&tampered.stderr)),
        (Some(1), String::new())
    );
}

/// `verify` states an expiry, or the start of a link not yet valid, as a date in
/// DOCLINK_TIMEZONE with its offset and the zone named, not as Unix seconds.
#[test]
fn verify_states_times_as_dates_in_the_timezone() {
    let signed = run(
        &strs(&sign_args(&[
            "--not-before",
            "1893369600",
            "--expires",
            "1893456000",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_eq!(signed.status.code(), Some(0), "{}", text(&signed.stderr));
    let url = text(&signed.stdout).trim().to_string();
    let verify = |at: &str, env: &[(&str, &str)]| {
        run(
            &[
                "verify",
                "--public-key",
                &fixture("ec_p256_public.pem"),
                "--at",
                at,
                &url,
            ],
            env,
            "",
        )
    };
    let paris = [("DOCLINK_TIMEZONE", "Europe/Paris")];
    let out = verify("1893456000", &paris);
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (
            Some(1),
            "expired: the link expired at 2030-01-01 01:00:00 +01:00 (Europe/Paris)\n".into(),
            String::new()
        )
    );
    let out = verify("1893369599", &paris);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(1),
            "not yet valid: the link is valid from 2029-12-31 01:00:00 +01:00 (Europe/Paris)\n"
                .into()
        )
    );
    // Without DOCLINK_TIMEZONE, UTC; an invalid one is named, exit 2.
    let out = verify("1893456000", &[]);
    assert_eq!(
        text(&out.stdout),
        "expired: the link expired at 2030-01-01 00:00:00 +00:00 (UTC)\n"
    );
    assert_fails(
        &verify("1893456000", &[("DOCLINK_TIMEZONE", "Europe/Pariss")]),
        2,
        "doclink: setting DOCLINK_TIMEZONE (timezone): \"Europe/Pariss\" is not an IANA time zone name \
         such as Europe/Paris, America/New_York or UTC\n",
    );
}

#[test]
fn sign_into_a_closed_pipe_exits_0_quietly() {
    let out = run_into_closed_pipe(
        &strs(&sign_args(&[
            "--ttl",
            "1d",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(0), String::new())
    );
}

#[test]
fn bulk_sign_into_head_stops_quietly_after_the_first_line() {
    // Far more output than a pipe holds, so doclink is still writing when the
    // reader goes away after one line, as with `| head -1`.
    let input: String = (0..20_000)
        .map(|i| format!("https://documents.example.org/doc-{i}.pdf\n"))
        .collect();
    let mut child = command(&strs(&sign_args(&["--ttl", "1d"])), &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        text(&first).starts_with("https://documents.example.org/doc-0.pdf?Expires="),
        "{}",
        text(&first)
    );
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(0), String::new())
    );
}

// ---- arguments -----------------------------------------------------------------

#[test]
fn a_ttl_without_a_unit_is_blamed_not_the_url() {
    let out = run(
        &strs(&sign_args(&[
            "--ttl",
            "7",
            "days",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        "error: invalid value '7' for '--ttl <DURATION>': a duration needs a unit: 7d (days), 7h (hours), \
         7m (minutes) or 7s (seconds)\n\nFor more information, try '--help'.\n",
    );
    let out = run(
        &strs(&sign_args(&[
            "--ttl",
            "7 days",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        "error: invalid value '7 days' for '--ttl <DURATION>': write it without a space, e.g. 7d\n\n\
         For more information, try '--help'.\n",
    );
}

#[test]
fn without_an_expiry_both_options_are_named() {
    let out = run(
        &strs(&sign_args(&["https://documents.example.org/a.pdf"])),
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        "error: the following required arguments were not provided:
  <--expires <EPOCH>|--ttl <DURATION>>

Usage: doclink sign --key-pair-id <ID> --private-key <FILE> <--expires <EPOCH>|--ttl <DURATION>> <URL>

For more information, try '--help'.
",
    );
}

#[test]
fn an_expiry_in_milliseconds_is_recognised() {
    let out = run(
        &strs(&sign_args(&[
            "--expires",
            "1795892521000",
            "https://documents.example.org/a.pdf",
        ])),
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        "error: invalid value '1795892521000' for '--expires <EPOCH>': looks like milliseconds; Unix time \
         in seconds would be 1795892521\n\nFor more information, try '--help'.\n",
    );
}

#[test]
fn keys_generate_checks_both_paths_before_writing_either() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("new.pem");
    let public = dir.path().join("taken.pub.pem");
    std::fs::write(&public, "someone else's key\n").unwrap();
    let out = run(
        &[
            "keys",
            "generate",
            "--type",
            "ecdsa",
            "--out-private",
            private.to_str().unwrap(),
            "--out-public",
            public.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        &format!(
            "doclink: --out-public {}: already exists; not overwriting it\n",
            public.display()
        ),
    );
    assert!(!private.exists(), "a private key was left behind");
    assert_eq!(
        std::fs::read_to_string(&public).unwrap(),
        "someone else's key\n"
    );
}

#[test]
fn a_missing_key_file_is_reported_once() {
    let out = run(
        &[
            "sign",
            "--key-pair-id",
            KEY_PAIR_ID,
            "--private-key",
            "/nonexistent/key.pem",
            "--ttl",
            "1d",
            "https://documents.example.org/a.pdf",
        ],
        &[],
        "",
    );
    assert_fails(
        &out,
        2,
        "doclink: --private-key /nonexistent/key.pem: cannot read the key file: No such file or directory (os error 2)\n",
    );
}

#[test]
fn an_ed25519_key_is_named() {
    let key = fixture("ed25519.pem");
    let out = run(&["keys", "public", "--private-key", &key], &[], "");
    assert_fails(
        &out,
        2,
        &format!(
            "doclink: --private-key {key}: ED25519 key: CloudFront accepts only RSA-2048 and ECDSA P-256 keys\n"
        ),
    );
}

#[test]
fn sign_on_a_terminal_says_it_reads_stdin() {
    // `script` gives doclink a terminal for stdin and forwards our input to it.
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let inner = format!(
        "{} {} 2>{}",
        quote(env!("CARGO_BIN_EXE_doclink")),
        sign_args(&["--ttl", "1d"])
            .iter()
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        quote(stderr.to_str().unwrap())
    );
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    let out = output_of(script, "https://documents.example.org/a.pdf\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&stderr).unwrap(),
        "doclink: no URL given, so signing one URL per line from stdin (end with Ctrl-D); give a URL \
         as an argument to sign just one\n"
    );
    assert!(
        text(&out.stdout).contains("https://documents.example.org/a.pdf?Expires="),
        "{}",
        text(&out.stdout)
    );
}

/// The subcommands a `--help` lists under "Commands:" (without `help`).
fn subcommands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| line.trim_end() != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// What is wrong with how `help` (of `doclink PATH`) ends, if anything: it must end
/// with an example, after the options and the subcommands, that runs this command.
fn help_ending_problem(path: &[String], help: &str) -> Option<String> {
    let lines: Vec<&str> = help.lines().collect();
    let last_of = |wanted: &dyn Fn(&str) -> bool| lines.iter().rposition(|l| wanted(l));
    let Some(examples) = last_of(&|l| {
        let l = l.trim_start();
        l.starts_with("Example:") || l.starts_with("Examples:")
    }) else {
        return Some("no example".into());
    };
    let sections = last_of(&|l| l.trim_end() == "Options:" || l.trim_end() == "Commands:");
    if sections.is_some_and(|at| at > examples) {
        return Some("the example comes before the options".into());
    }
    let command = format!("doclink {}", path.join(" ")).trim_end().to_string();
    let mut runs_this_command = false;
    let mut continued = false;
    for (at, line) in lines.iter().enumerate().skip(examples) {
        let text = line.trim();
        let text = if at == examples {
            text.trim_start_matches("Examples:")
                .trim_start_matches("Example:")
                .trim()
        } else {
            text
        };
        if text.is_empty() {
            continued = false;
            continue;
        }
        let is_example = text.starts_with("doclink ") || text.contains("| doclink ");
        if !is_example && !continued {
            return Some(format!("{text:?} follows the example"));
        }
        runs_this_command |= text.contains(&command);
        continued = text.ends_with('\\');
    }
    (!runs_this_command).then(|| format!("no example runs {command:?}"))
}

/// Walks every command the binary has, from `doclink --help` down through each
/// "Commands:" list, and checks that each `--help` ends with an example of itself.
#[test]
fn every_help_ends_with_an_example() {
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(&args, &[], "");
        assert_eq!(out.status.code(), Some(0), "{path:?}");
        let help = text(&out.stdout);
        match help_ending_problem(&path, &help) {
            None => {}
            Some(problem) => {
                problems.push(format!("doclink {}: {problem}\n{help}", path.join(" ")))
            }
        }
        for sub in subcommands_in(&help) {
            let mut next = path.clone();
            next.push(sub);
            pending.push(next);
        }
        checked.push(path.join(" "));
    }
    // The walk reached every level, parents included.
    for expected in [
        "",
        "links",
        "links list",
        "links show",
        "rejections",
        "rejections retry",
        "revocations",
        "revocations export",
        "revocations list",
        "rejections show",
        "keys",
        "keys encrypt",
        "run",
        "doctor",
        "settings",
        "completions",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected:?} not reached: {checked:?}"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

// ---- preview -------------------------------------------------------------------

#[test]
fn preview_reads_stdin_and_shows_the_headers_as_sent() {
    let out = run(
        &["preview", "--event", "-"],
        &[
            ("DOCLINK_FROM", "Greffe des litiges <greffe@example.org>"),
            ("DOCLINK_REPLY_TO", "Support <support@example.org>"),
            ("DOCLINK_CONTACT", "+33 1 23 45 67 89"),
            ("DOCLINK_TIMEZONE", "Europe/Paris"),
        ],
        EVENT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "From: \"Greffe des litiges\" <greffe@example.org>\n\
             Reply-To: \"Support\" <support@example.org>\n\
             To: =?UTF-8?B?Wm/DqyBPJ05laWw=?= <jane@example.org>\n\
             Subject: Votre décision est disponible (dossier ABC-123)\n\
             Template: decision_letter (fr)\n\n\
             Greffe des litiges\n\n\
             Votre décision est disponible\n\n\
             Bonjour Zoë O'Neil,\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("(Europe/Paris)"), "{stdout}");
    assert!(
        stdout.contains("contactez Greffe des litiges\u{a0}: +33 1 23 45 67 89\n"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(".\n") && !stdout.ends_with("\n\n"),
        "{stdout:?}"
    );
    assert_eq!(
        text(&out.stderr),
        "doclink: warning: data.case_numbr is not read by the decision_letter template (known keys: \
         case_number, subject, message)\n"
    );
}

#[test]
fn preview_without_settings_shows_visible_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(&event, EVENT.replace(r#", "case_numbr": "typo""#, "")).unwrap();
    let html = dir.path().join("letter.html");
    let out = run(
        &[
            "preview",
            "--event",
            event.to_str().unwrap(),
            "--html-out",
            html.to_str().unwrap(),
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("From: [DOCLINK_FROM is not set]\nTo: "),
        "{stdout}"
    );
    assert!(stdout.contains("\n[DOCLINK_ORG_NAME]\n"), "{stdout}");
    assert!(stdout.contains("[DOCLINK_CONTACT]"), "{stdout}");
    assert_eq!(
        text(&out.stderr),
        format!(
            "doclink: note: DOCLINK_ORG_NAME is not set; the letter shows [DOCLINK_ORG_NAME] in its place\n\
             doclink: note: DOCLINK_CONTACT is not set; the letter shows [DOCLINK_CONTACT] in its place\n\
             wrote the HTML part to {}\n",
            html.display()
        )
    );
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("<html lang=\"fr\""), "{html}");
    assert!(html.contains("[DOCLINK_ORG_NAME]"));
}

#[test]
fn preview_of_an_invalid_event_says_why() {
    let out = run(
        &["preview", "--event", "-"],
        &[],
        &EVENT.replace("Zoë O'Neil", "Zoë\\r\\nBcc: all@example.org"),
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(1),
            "rejected: recipient.name: holds a control character (U+000D); CR, LF and tabs are not allowed\n"
                .to_string()
        )
    );
}

#[test]
fn preview_of_a_missing_file_says_so_once() {
    let missing = Path::new("/nonexistent/event.json");
    let out = run(&["preview", "--event", missing.to_str().unwrap()], &[], "");
    assert_fails(
        &out,
        2,
        "doclink: --event /nonexistent/event.json: No such file or directory (os error 2)\n",
    );
}

// ---- version, settings, completions, doctor --format json ------------------------

/// `--version` names the crate's version, the commit it was built from (git's HEAD
/// when the tests run in a checkout) and the build date.
#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = run(&["--version"], &[], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let rest = said
        .strip_prefix(concat!("doclink ", env!("CARGO_PKG_VERSION"), " (commit "))
        .unwrap_or_else(|| panic!("{said}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{said}"));
    let date = rest
        .strip_suffix(" UTC)\n")
        .unwrap_or_else(|| panic!("{said}"));
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap_or_else(|e| panic!("{e}: {said}"));
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
            assert!(hash.len() >= 7, "{said}");
            assert!(text(&head.stdout).starts_with(hash), "{said}");
        }
        _ => assert_eq!(commit, "unknown", "{said}"),
    }
}

/// `settings` lists every setting in order with its value and where it comes from
/// (env over file over default; unset when required), the database password hidden;
/// as a table and as JSON. An unknown key in the file exits 2.
#[test]
fn settings_lists_every_setting_with_its_source_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doclink.toml");
    std::fs::write(&file, "link_ttl = \"2d\"\nconcurrency = 4\n").unwrap();
    let file = file.to_str().unwrap();
    let env = [
        (
            "DATABASE_URL",
            "postgres://doclink:hunter2-secret@db.internal/doclink",
        ),
        ("DOCLINK_CONCURRENCY", "8"),
    ];
    let out = run(
        &["settings", "--config", file, "--format", "json"],
        &env,
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(!said.contains("hunter2"), "{said}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&said).unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    let expected: Vec<&str> = doclink::config::SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(keys, expected);
    let row = |key: &str| rows.iter().find(|r| r["key"] == key).unwrap().clone();
    assert_eq!(
        row("database_url")["value"],
        "postgres://doclink:(hidden)@db.internal/doclink"
    );
    assert_eq!(row("database_url")["secret"], true);
    assert_eq!(
        (
            row("concurrency")["value"].clone(),
            row("concurrency")["source"].clone()
        ),
        ("8".into(), "env".into())
    );
    assert_eq!(
        (
            row("link_ttl")["value"].clone(),
            row("link_ttl")["source"].clone()
        ),
        ("2d".into(), "file".into())
    );
    assert_eq!(
        (
            row("log_format")["value"].clone(),
            row("log_format")["source"].clone()
        ),
        ("auto".into(), "default".into())
    );
    assert_eq!(
        (
            row("queue_url")["value"].clone(),
            row("queue_url")["source"].clone()
        ),
        (serde_json::Value::Null, "unset".into())
    );
    assert_eq!(row("queue_url")["variable"], "DOCLINK_QUEUE_URL");

    let out = run(&["settings", "--config", file], &env, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(!table.contains("hunter2"), "{table}");
    assert!(table.starts_with("VARIABLE "), "{table}");
    assert_eq!(
        table.lines().count(),
        1 + doclink::config::SETTINGS.len(),
        "{table}"
    );
    let words = |variable: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{variable} ")))
            .unwrap_or_else(|| panic!("no {variable} in {table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        words("DOCLINK_CONCURRENCY"),
        ["DOCLINK_CONCURRENCY", "concurrency", "16", "env", "8"]
    );
    assert_eq!(
        words("DOCLINK_QUEUE_URL"),
        [
            "DOCLINK_QUEUE_URL",
            "queue_url",
            "required",
            "unset",
            "(not",
            "set)"
        ]
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "concurency = 4\n").unwrap();
    assert_fails(
        &run(&["settings", "--config", bad.to_str().unwrap()], &[], ""),
        2,
        &format!(
            "doclink: setting --config (file): {}: unknown setting \"concurency\"; did you mean \
             concurrency?\n",
            bad.display()
        ),
    );
}

/// `completions` writes a script for each shell that completes doclink's commands.
#[test]
fn completions_are_written_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _doclink"),
        ("zsh", "#compdef doclink"),
        ("fish", "complete -c doclink"),
    ] {
        let out = run(&["completions", shell], &[], "");
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["settings", "doctor", "revocations"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let out = run(&["completions", "powershell"], &[], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value 'powershell'"),
        "{}",
        text(&out.stderr)
    );
}

/// With settings that are wrong, `doctor --format json` lists each as a problem of
/// the settings check, with what to do, and exits 1 as the text does.
#[test]
fn doctor_as_json_names_each_wrong_setting() {
    let out = run(
        &["doctor", "--format", "json"],
        &[("DOCLINK_HASH", "md5")],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let checks: Vec<serde_json::Value> = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(checks.len(), 7, "{checks:#?}");
    for check in &checks {
        assert_eq!(check["name"], "settings");
        assert_eq!(check["status"], "problem");
        assert_eq!(
            check["fix"],
            "set them (docs/settings.md), then run doctor again"
        );
    }
    assert_eq!(
        checks[0]["detail"],
        "setting DATABASE_URL (database_url): is required but not set"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["detail"] == "setting DOCLINK_HASH (hash): \"md5\" is not sha1 or sha256"),
        "{checks:#?}"
    );
    assert_eq!(text(&out.stderr), "doctor: 7 problems found\n");
}

/// The README's quick start and every `doclink` command line in a shell block of the
/// README or docs/ parse as written: each is run with `--help` appended, which clap
/// answers with exit 0 only when every subcommand, option and value before it is
/// valid. And every `DOCLINK_*` variable the quick start exports is a setting.
#[test]
fn the_documented_command_lines_parse_and_name_real_settings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path.display().to_string());
        }
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let document = std::fs::read_to_string(file).unwrap();
        let mut in_shell = false;
        let mut line = String::new();
        for raw in document.lines() {
            if raw.starts_with("```") {
                in_shell = raw == "```sh";
                continue;
            }
            if !in_shell {
                continue;
            }
            // Continued lines are one command.
            line.push_str(raw.trim_end_matches('\\'));
            line.push(' ');
            if raw.ends_with('\\') {
                continue;
            }
            let command = std::mem::take(&mut line);
            let command = command.trim_start().trim_start_matches("$ ");
            // `[VAR=value ...] doclink ARGS`, up to a pipe, redirection or `&&`.
            let words = shell_words(command.split(" #").next().unwrap());
            let mut words = words.iter().skip_while(|w| {
                w.split_once('=')
                    .is_some_and(|(v, _)| v.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            });
            if words.next().map(String::as_str) != Some("doclink") {
                continue;
            }
            let args: Vec<String> = words
                .take_while(|w| !["|", ">", "<", "&&", ">>"].contains(&w.as_str()))
                .cloned()
                .collect();
            if args.is_empty() || args[0].starts_with('$') {
                continue;
            }
            let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
            with_help.push("--help");
            let out = run(&with_help, &[], "");
            checked += 1;
            if out.status.code() != Some(0) {
                problems.push(format!(
                    "{file}: doclink {}: {}",
                    args.join(" "),
                    text(&out.stderr)
                ));
            }
        }
    }
    assert!(checked >= 9, "only {checked} command lines found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let quick = &readme[readme.find("## Quick start").unwrap()..];
    let quick = &quick[..quick[3..].find("\n## ").unwrap()];
    let exported: Vec<&str> = quick
        .lines()
        .filter_map(|l| l.strip_prefix("export DOCLINK_"))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert!(exported.len() >= 5, "{exported:?}");
    for name in exported {
        let variable = format!("DOCLINK_{name}");
        assert!(
            doclink::config::SETTINGS.iter().any(|s| s.env == variable),
            "the quick start exports {variable}, which is no setting"
        );
    }
}

/// Words as a shell splits them: whitespace outside quotes, quotes removed.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = None::<String>;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}
