"""Writes the `chaos` section of RELIABILITY.md from the fragments the tests left in
DOCLINK_RELIABILITY_DIR during `make chaos` (see tests/support/mod.rs,
record_reliability). Usage: reliability_report.py FRAGMENT_DIR RELIABILITY.md"""
import datetime, json, os, re, sys

fragments, target = sys.argv[1], sys.argv[2]
def load(name):
    path = os.path.join(fragments, f"{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None

cpu = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpu).group(1).strip()
now = datetime.datetime.now(datetime.timezone.utc)
missing = []
def need(name):
    value = load(name)
    if value is None:
        missing.append(name)
    return value

chaos = need("chaos")
outages = [(n, need(n)) for n in ("outage-db-stop", "outage-db-restart")]
faults = [(n, need(n)) for n in ("fault-ses-throttle", "fault-ses-5xx", "fault-ses-timeout", "fault-ses-reset",
                                 "fault-ses-expired-credentials", "fault-ses-rejected", "fault-sqs-receive", "fault-sqs-delete", "fault-sqs-visibility", "fault-sqs-purged")]
hostile, fuzz, secrets, kms = need("hostile"), need("fuzz"), need("secrets"), need("kms")

lost = sum(x.get("lost", 0) for x in [chaos] + [f for _, f in faults] if x) + sum((o or {}).get("result", {}).get("lost", 0) for _, o in outages)
unflagged = sum(x.get("unflagged_duplicates", 0) for x in [chaos] + [f for _, f in faults] if x) + sum((o or {}).get("result", {}).get("unflagged_duplicates", 0) for _, o in outages)
found = (secrets or {}).get("found", 0)

lines = [
    "## Crashes, outages, faults, hostile input and secrets (`make chaos`, scripts/chaos.sh)",
    "",
    f"Run {now:%Y-%m-%d %H:%M UTC} on {model}, {os.cpu_count()} cores, against PostgreSQL, the moto emulator and",
    "local stand-ins for what moto cannot do (SES faults, SQS faults, the KMS refusal). Every figure below",
    "was asserted by the test that produced it; the test fails otherwise.",
    "",
    "| what | figure |",
    "|---|---:|",
]
if chaos:
    lines += [
        f"| SIGKILLs survived ({chaos['events']:,} events, restarted after each) | {chaos['kills']} |",
        f"| emails beyond one per event (each on a `possible_duplicate` link, both sends in its history) | {chaos['extra_emails']} |",
    ]
for name, o in outages:
    if o:
        seen = o['result'].get('readyz_503_seen')
        readyz = {True: "; /readyz 503 while down", False: "; /readyz NOT 503", None: ""}[seen]
        lines.append(f"| {o['outage']}{readyz}: letters, extra emails (flagged) | {o['result']['letters']}, {o['result']['extra_emails']} |")
for name, f in faults:
    if f:
        lines.append(f"| fault injected: {f['fault']} | {f.get('injected', 'yes')} |")
if kms:
    lines.append(f"| KMS start-up faults, each a clear message and exit 3, nothing consumed | {kms.get('faults')} |")
if hostile:
    lines.append(f"| hostile inputs tried through the pipeline, each rejected with its raw body kept | {hostile.get('tried')} |")
    lines.append(f"| crashes on hostile input | {hostile.get('crashes', 0)} |")
if fuzz:
    lines.append(f"| fuzzed event bodies / URLs (proptest), panics | {fuzz.get('event_cases')} / {fuzz.get('url_cases')}, {fuzz.get('panics', 0)} |")
if secrets:
    lines.append(f"| places searched for secrets (logs at debug, metrics, every database column, errors) | {secrets.get('places_checked')} |")
lines += [
    f"| **events lost** | **{lost}** |",
    f"| **duplicates not flagged** | **{unflagged}** |",
    f"| **secrets found** | **{found}** |",
    "",
]
if missing:
    lines += [f"Not run in this pass: {', '.join(missing)}.", ""]
lines += [
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
sys.exit(1 if (lost or unflagged or found) else 0)
