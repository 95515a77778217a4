#!/usr/bin/env python3
"""Writes MUTANTS.md from a `make mutants` run (scripts/mutants.sh).

Usage: mutants_report.py MUTANTS_OUT EXPLAINED_FILE REPORT

Reads what scripts/mutants.sh left in MUTANTS_OUT (run.txt, tree.txt, and per group
group.txt and cargo-mutants' mutants.out/{mutants,outcomes}.json and baseline log)
and the checked-in list of explained survivors. Every figure in the report comes
from those files or from this machine (/proc/cpuinfo, /proc/meminfo).

Exits 1 when a mutant survived (was missed) that EXPLAINED_FILE does not explain,
when a group's baseline failed or named a test that did not run, or when
EXPLAINED_FILE has a malformed line.
"""

import json
import re
import shlex
import sys
from collections import defaultdict
from pathlib import Path

SEPARATOR = " -- "
OUTCOMES = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Unviable": "unviable",
    "Timeout": "timeout",
}
# nextest's line for a test that passed: `PASS [   3.187s] (96/116) BINARY-ID TEST`.
PASSED = re.compile(r"^\s*(?:PASS|LEAK) \[\s*([\d.]+)s\]\s*\(\s*\d+/\d+\)\s+(\S+)\s+(\S+)\s*$")


def key_values(path):
    """`key value` lines; repeated keys give lists."""
    values = defaultdict(list)
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        values[key].append(value)
    return values


def read_explained(path):
    explained, problems = {}, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, separator, reason = line.partition(SEPARATOR)
        if not separator or not reason.strip():
            problems.append(f"{path.name}:{number}: no `{SEPARATOR.strip()}` followed by a reason")
            continue
        if name.strip() in explained:
            problems.append(f"{path.name}:{number}: {name.strip()} is explained twice")
        explained[name.strip()] = reason.strip()
    return explained, problems


def machine():
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cores = sum(1 for line in cpuinfo if line.startswith("processor"))
    memory = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB of memory"
    return f"{models[0] if models else 'unknown CPU'}, {cores} cores (/proc/cpuinfo){memory}"


def seconds(value):
    value = round(value)
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


def baseline_tests(log_path):
    """(binary-id, test) -> seconds, for the tests that passed in the baseline."""
    passed = {}
    if log_path.exists():
        for line in log_path.read_text(errors="replace").splitlines():
            match = PASSED.match(line)
            if match:
                passed[(match.group(2), match.group(3))] = float(match.group(1))
    return passed


def main():
    out, explained_path, report_path = (Path(arg) for arg in sys.argv[1:4])
    run = key_values(out / "run.txt")
    tree = key_values(out / "tree.txt")
    explained, problems = read_explained(explained_path)
    selected = run["groups"][0].split()
    every_group = run["all_groups"][0].split()

    functions = {}  # (guarantee, file, function) -> counts
    results = {}  # mutant name -> outcome
    missed, timeouts, untested = [], [], []
    groups = []
    build_total = test_total = 0.0
    tested = 0
    for name in selected:
        group = key_values(out / name / "group.txt")
        label = group["label"][0]
        labs = out / name / "mutants.out"
        generated = json.loads((labs / "mutants.json").read_text()) if (labs / "mutants.json").exists() else []
        outcomes = json.loads((labs / "outcomes.json").read_text())["outcomes"] if (labs / "outcomes.json").exists() else []
        group_tree = [line.partition(" ") for line in group.get("tree", [])]
        info = {"commit": next((v for k, _, v in group_tree if k == "commit"), "unknown"),
                "changed": [v for k, _, v in group_tree if k == "changed"],
                "name": name, "label": label, "exit": group["exit"][0], "seconds": float(group["seconds"][0]),
                "command": shlex.join((out / name / "command").read_text().split("\0")[:-1]), "mutants": len(generated), "tests": [], "baseline": None,
                "build": 0.0, "test": 0.0, "tested": 0}
        for mutant in generated:
            key = (label, mutant["file"], (mutant.get("function") or {}).get("function_name", "(outside a function)"))
            functions.setdefault(key, defaultdict(int))["mutants"] += 1
        seen = set()
        for outcome in outcomes:
            phases = outcome["phase_results"]
            build = sum(p["duration"] for p in phases if p["phase"] == "Build")
            test = sum(p["duration"] for p in phases if p["phase"] == "Test")
            if outcome["scenario"] == "Baseline":
                info["baseline"] = {"summary": outcome["summary"], "build": build, "test": test}
                continue
            mutant = outcome["scenario"]["Mutant"]
            seen.add(mutant["name"])
            key = (label, mutant["file"], (mutant.get("function") or {}).get("function_name", "(outside a function)"))
            result = OUTCOMES.get(outcome["summary"], outcome["summary"])
            functions[key][result] += 1
            results[mutant["name"]] = result
            info["build"] += build
            info["test"] += test
            info["tested"] += 1
            if result == "missed":
                missed.append((label, mutant["name"]))
            elif result == "timeout":
                timeouts.append((label, mutant["name"]))
        for mutant in generated:
            if mutant["name"] not in seen:
                untested.append((label, mutant["name"]))
        passed = baseline_tests(labs / "log" / "baseline.log")
        for spec in group["test"]:
            binary, _, test = spec.partition("/")
            if test.endswith("*"):
                prefix = test[:-1]
                matched = {t: s for (b, t), s in passed.items() if b == binary and t.startswith(prefix)}
                ran = f"{len(matched)} tests, {sum(matched.values()):.1f} s in all" if matched else None
            else:
                ran = f"{passed[(binary, test)]:.1f} s" if (binary, test) in passed else None
            info["tests"].append((spec, ran))
            if ran is None:
                problems.append(f"group {name}: {spec} did not pass in the baseline")
        if info["baseline"] is None or info["baseline"]["summary"] != "Success":
            problems.append(f"group {name}: the baseline did not pass (cargo-mutants exited {info['exit']})")
        build_total += info["build"]
        test_total += info["test"]
        tested += info["tested"]
        groups.append(info)

    unexplained = [(label, name) for label, name in missed if name not in explained]
    totals = defaultdict(int)
    for counts in functions.values():
        for result, count in counts.items():
            totals[result] += count

    def describe(commit, changed):
        paths = [f"`{line[3:]}` ({line[:2].strip()})" for line in changed]
        return f"`{commit}`; " + (
            f"the working tree was dirty: {len(paths)} uncommitted paths, copied as they were "
            f"({'; '.join(paths)})" if paths else "the working tree was clean")

    start = (tree["commit"][0], tree.get("changed", []))
    moved = [info["name"] for info in groups if (info["commit"], info["changed"]) != start]
    commit_line = f"- Commit at the start: {describe(*start)}" + (
        f". The tree changed while the drill ran (others work in it): groups {', '.join(moved)} "
        "copied another state, given with each group below" if moved else "")
    partial = selected != every_group
    lines = [
        "# Mutation drill",
        "",
        "Written by `make mutants` (scripts/mutants.sh, then scripts/mutants_report.py); "
        "do not edit by hand. cargo-mutants changes the functions that carry doclink's "
        "guarantees one small change (a mutant) at a time, and runs the tests that own "
        "each guarantee against every change: a mutant the tests do not notice is "
        "*missed*. Every missed mutant must be explained in `mutants-explained.txt` (the "
        "change makes no observable difference) or the drill fails.",
        "",
        f"- Date (UTC): {run['started'][0]} to {run['finished'][0]}",
        f"- Machine: {machine()}",
        commit_line,
        f"- Command: `make mutants` (`scripts/stack.sh scripts/mutants.sh`)"
        + (f" with `DOCLINK_MUTANTS_GROUPS=\"{' '.join(selected)}\"`: a partial run, "
           f"{len(selected)} of the {len(every_group)} groups" if partial else ""),
        f"- Time: {seconds(float(run['seconds'][0]))} in all for {tested} mutants"
        + (f", {test_total / tested + build_total / tested:.1f} s a mutant "
           f"({build_total / tested:.1f} s building, {test_total / tested:.1f} s testing)" if tested else ""),
        f"- Mutants: {totals['mutants']}: {totals['caught']} caught, {totals['missed']} missed "
        f"({len(missed) - len(unexplained)} explained, {len(unexplained)} unexplained), "
        f"{totals['unviable']} unviable (do not build), {totals['timeout']} timed out"
        + (f", {len(untested)} not tested" if untested else ""),
        "",
        "## Per function",
        "",
        "| Guarantee | Function | File | Mutants | Caught | Missed | Unviable | Timeout |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (label, file, function), counts in functions.items():
        lines.append(f"| {label} | `{function}` | {file} | {counts['mutants']} | {counts['caught']} | "
                     f"{counts['missed']} | {counts['unviable']} | {counts['timeout']} |")
    lines += ["", "## Missed mutants", ""]
    if not missed:
        lines.append("None.")
    for label, name in missed:
        if name in explained:
            lines.append(f"- explained: `{name}` ({label}): {explained[name]}")
        else:
            lines.append(f"- **UNEXPLAINED**: `{name}` ({label})")
    if timeouts:
        lines += ["", "## Timed out", "", "The tests did not finish within the timeout: counted apart from caught.", ""]
        lines += [f"- `{name}` ({label})" for label, name in timeouts]
    if untested:
        lines += ["", "## Not tested", "", "Generated but never run (the group's baseline failed or the run stopped).", ""]
        lines += [f"- `{name}` ({label})" for label, name in untested]
    lines += ["", "## Explained survivors", "",
              "From `mutants-explained.txt`: mutants that change nothing observable, and why.", ""]
    if not explained:
        lines.append("None.")
    for name, reason in explained.items():
        result = results.get(name)
        status = ("missed in this run" if result == "missed" else
                  f"{result} in this run: the explanation no longer holds" if result else "not in this run")
        lines.append(f"- `{name}`: {reason} ({status})")
    lines += ["", "## Groups", "",
              "Each group is one cargo-mutants run: its functions, the test binaries that own "
              "them, and only the tests named here, under nextest, stopping at the first failure. "
              "Times are the baseline's (the unmutated tree).", ""]
    for info in groups:
        baseline = info["baseline"]
        lines.append(f"### {info['name']}: {info['label']}")
        lines.append("")
        lines.append(f"{info['mutants']} mutants, {seconds(info['seconds'])} in all"
                     + (f"; baseline build {baseline['build']:.1f} s, tests {baseline['test']:.1f} s"
                        if baseline else "; no baseline")
                     + (f"; {info['build'] / info['tested']:.1f} s building and "
                        f"{info['test'] / info['tested']:.1f} s testing a mutant" if info["tested"] else "")
                     + f"; cargo-mutants exited {info['exit']}.")
        lines.append("")
        if info["name"] in moved:
            lines += [f"Copied from commit {describe(info['commit'], info['changed'])}.", ""]
        for spec, ran in info["tests"]:
            lines.append(f"- `{spec}`: {ran if ran else 'DID NOT PASS IN THE BASELINE'}")
        lines += ["", "```", info["command"], "```", ""]
    if problems:
        lines += ["## Problems", ""] + [f"- {problem}" for problem in problems] + [""]
    report_path.write_text("\n".join(lines).rstrip("\n") + "\n")

    for problem in problems:
        print(f"mutants: {problem}", file=sys.stderr)
    for label, name in unexplained:
        print(f"mutants: UNEXPLAINED missed mutant ({label}): {name}", file=sys.stderr)
    print(f"mutants: wrote {report_path}: {totals['caught']} caught, {totals['missed']} missed "
          f"({len(unexplained)} unexplained), {totals['unviable']} unviable, {totals['timeout']} timed out",
          file=sys.stderr)
    return 1 if unexplained or problems else 0


if __name__ == "__main__":
    sys.exit(main())
