"""Writes the `chaos` section of RELIABILITY.md from the fragments the tests left in
DOCLINK_RELIABILITY_DIR during `make chaos` (tests/support/reliability.rs and
tests/support/ledger.rs). Usage: reliability_report.py FRAGMENT_DIR RELIABILITY.md

Every letter figure comes from a fragment's `evidence`: what the test counted at the
SES stand-in or moto, on the queues and in the rejections table (see
tests/support/ledger.rs). The script refuses (exit 2) a missing fragment, one with
no evidence, and evidence whose parts do not add up to the events fed in; it exits
1 when anything was lost, an extra email was not flagged, or a secret was found."""
import datetime, json, os, re, subprocess, sys

fragments, target = sys.argv[1], sys.argv[2]
errors = []


def load(name):
    path = os.path.join(fragments, f"{name}.json")
    if not os.path.exists(path):
        errors.append(f"{name}: no fragment (its test did not run or did not finish)")
        return None
    return json.load(open(path))


# Where each part of an event's fate is counted; every fed event is in exactly one.
FATES = ("emailed", "waiting_on_queue", "dead_lettered", "rejected", "failed_with_reason", "lost")


def evidence(name, fragment):
    """The fragment's counted evidence, checked to add up; None when unusable."""
    if fragment is None:
        return None
    e = fragment.get("evidence")
    if not isinstance(e, dict) or not e.get("counted_from"):
        errors.append(f"{name}: the fragment carries no counted evidence")
        return None
    if not isinstance(e.get("fed"), int) or e["fed"] <= 0:
        errors.append(f"{name}: evidence without events fed in")
        return None
    parts = sum(e.get(k, 0) for k in FATES)
    if parts != e["fed"]:
        errors.append(f"{name}: {e['fed']} fed, but the counted fates add up to {parts}: {e}")
    if e.get("extra_emails", 0) != e.get("extra_flagged", 0) + e.get("unflagged_duplicates", 0):
        errors.append(f"{name}: extra emails are neither flagged nor unflagged: {e}")
    return e


cpu = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpu).group(1).strip()
now = datetime.datetime.now(datetime.timezone.utc)
try:
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    commit += " (with uncommitted changes)" if dirty else ""
except (OSError, subprocess.CalledProcessError):
    commit = "unknown"

LETTER_FRAGMENTS = [
    "chaos",
    "outage-db-stop", "outage-db-restart",
    "fault-ses-throttle", "fault-ses-5xx", "fault-ses-errors-for-an-hour", "fault-ses-timeout", "fault-ses-reset",
    "fault-ses-expired-credentials", "fault-ses-rejected", "fault-ses-heartbeat",
    "fault-sqs-receive", "fault-sqs-delete", "fault-sqs-visibility", "fault-sqs-purged",
]
letters = [(n, f, evidence(n, f)) for n in LETTER_FRAGMENTS for f in [load(n)]]
hostile, fuzz, secrets, kms = load("hostile"), load("fuzz"), load("secrets"), load("kms")
for name, fragment, fields in [
    ("hostile", hostile, ("tried", "rejected", "crashes", "valid", "valid_sent")),
    ("fuzz", fuzz, ("event_cases", "url_cases", "panics")),
    ("secrets", secrets, ("places_checked", "patterns", "signed_links", "found")),
    ("kms", kms, ("faults", "clear_right_exit")),
]:
    if fragment is not None:
        absent = [f for f in fields if not isinstance(fragment.get(f), int)]
        if absent:
            errors.append(f"{name}: no counted {', '.join(absent)}")

if errors:
    print("reliability_report: cannot write the report:", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    sys.exit(2)


def describe(name, f):
    if name == "chaos":
        return f"SIGKILL at a random moment, {f['kills']} times, restarted after each (concurrency {f['concurrency']}, seed {f['seed']})"
    if name.startswith("outage-"):
        seen = f.get("readyz_503_seen")
        readyz = {True: "; /readyz 503 while down", False: "; /readyz NOT 503", None: ""}[seen]
        return f"{f['outage']}{readyz}"
    injected = f" ({f['injected']} injected, counted by the stand-in)" if "injected" in f else ""
    return f"{f['fault']}{injected}"


lost = sum(e["lost"] for _, _, e in letters)
unflagged = sum(e.get("unflagged_duplicates", 0) for _, _, e in letters)
stray = sum(e.get("stray_emails", 0) for _, _, e in letters)
found = secrets["found"]

lines = [
    "## Crashes, outages, faults, hostile input and secrets (`make chaos`, scripts/chaos.sh)",
    "",
    f"Run {now:%Y-%m-%d %H:%M UTC} on {model}, {os.cpu_count()} cores, commit {commit}, against PostgreSQL,",
    "the moto emulator and local stand-ins for what moto cannot do (SES faults, SQS faults, expiring",
    "credentials, the KMS refusal).",
    "",
    "Each row's letters were counted by the test where doclink cannot fake them: the emails the SES",
    "stand-in or moto accepted, matched to the events fed in by recipient and case number; the bodies",
    "left on the queue and the dead-letter queue; the rejections table. *Lost* is an event fed in that",
    "no email carried and that is on no queue and in no table. An extra email is *flagged* when its",
    "link is marked `possible_duplicate` with a hand-over in its history for every email.",
    "",
    "| what happened | fed | emailed | extra emails (flagged) | still queued | set aside | lost |",
    "|---|---:|---:|---:|---:|---:|---:|",
]
for name, f, e in letters:
    aside = e.get("dead_lettered", 0) + e.get("rejected", 0) + e.get("failed_with_reason", 0)
    lines.append(
        f"| {describe(name, f)} | {e['fed']:,} | {e['emailed']:,} | {e['extra_emails']} ({e['extra_flagged']}) "
        f"| {e['waiting_on_queue']} | {aside} | {e['lost']} |"
    )
lines += [
    "",
    "| what else was counted | figure |",
    "|---|---:|",
    f"| KMS start-up faults, each a clear message and the right exit (3 what may heal, 2 what cannot), nothing consumed | {kms['clear_right_exit']} of {kms['faults']} |",
    f"| hostile inputs tried through the pipeline, each rejected with its raw body kept | {hostile['tried']} ({hostile['rejected']} rejected) |",
    f"| valid events mixed in with them, each sent once | {hostile['valid_sent']} of {hostile['valid']} |",
    f"| crashes on hostile input | {hostile['crashes']} |",
    f"| fuzzed event bodies / URLs (proptest), panics | {fuzz['event_cases']} / {fuzz['url_cases']}, {fuzz['panics']} |",
    f"| places searched for secrets (logs at debug, metrics, every database column, errors), patterns | {secrets['places_checked']}, {secrets['patterns']} |",
    f"| **events lost** | **{lost}** |",
    f"| **extra emails not flagged** | **{unflagged}** |",
    f"| **emails carrying no event fed in** | **{stray}** |",
    f"| **secrets found** | **{found}** |",
    "",
    "`make test` runs the same tests at a small size (240 events and 10 kills for the crash test).",
    "",
]
section = "\n".join(lines)
text = open(target).read() if os.path.exists(target) else "# Reliability\n\nWritten by the runs that measure; do not edit by hand.\n\n"
begin, end = "<!-- chaos:begin -->", "<!-- chaos:end -->"
block = f"{begin}\n{section}{end}\n"
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):].lstrip("\n")
else:
    text = text.rstrip("\n") + "\n\n" + block
open(target, "w").write(text)
print(section)
sys.exit(1 if (lost or unflagged or stray or found) else 0)
