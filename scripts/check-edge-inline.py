#!/usr/bin/env python3
"""Check that the CloudFront Function inlined in deploy/cloudformation.yaml is
byte-for-byte deploy/edge/revocation.js (the file the node tests exercise).

    check-edge-inline.py           exit 0 when identical, 1 with a diff otherwise
    check-edge-inline.py --write   rewrite the inlined block from the file

Needs PyYAML (the lint venv has it through cfn-lint).
"""
import difflib
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"
SOURCE = ROOT / "deploy" / "edge" / "revocation.js"
RESOURCE = "RevocationFunction"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain data."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CfnLoader.add_multi_constructor("!", _any_tag)


def inlined_code(text):
    doc = yaml.load(text, Loader=_CfnLoader)
    return doc["Resources"][RESOURCE]["Properties"]["FunctionCode"]


def write(text, code):
    # The block scalar under "FunctionCode: |" inside the RevocationFunction resource.
    start = re.search(rf"^  {RESOURCE}:\n", text, re.M)
    head = re.compile(r"^(?P<indent> +)FunctionCode: \|\n", re.M).search(text, start.end())
    body_indent = head.group("indent") + "  "
    pos = head.end()
    lines = text[pos:].split("\n")
    n = 0
    while n < len(lines) and (lines[n] == "" or lines[n].startswith(body_indent)):
        n += 1
    while n > 0 and lines[n - 1] == "":  # trailing blank lines belong to what follows
        n -= 1
    rest = "\n".join(lines[n:])
    block = "".join((body_indent + line if line else "") + "\n" for line in code.rstrip("\n").split("\n"))
    return text[:pos] + block + rest


def main():
    code = SOURCE.read_text(encoding="utf-8")
    text = TEMPLATE.read_text(encoding="utf-8")
    if "--write" in sys.argv[1:]:
        text = write(text, code)
        TEMPLATE.write_text(text, encoding="utf-8")
    inlined = inlined_code(text)
    if inlined == code:
        print(f"edge-inline: {TEMPLATE.relative_to(ROOT)} {RESOURCE} == {SOURCE.relative_to(ROOT)} ({len(code.encode())} bytes)")
        return 0
    sys.stdout.writelines(difflib.unified_diff(
        code.splitlines(True), inlined.splitlines(True),
        fromfile=str(SOURCE.relative_to(ROOT)), tofile=f"{TEMPLATE.relative_to(ROOT)}:{RESOURCE}.FunctionCode"))
    print("edge-inline: FAIL: the inlined function differs; run scripts/check-edge-inline.py --write")
    return 1


if __name__ == "__main__":
    sys.exit(main())
