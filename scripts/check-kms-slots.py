#!/usr/bin/env python3
"""Check that the two KMS signing-key slots of deploy/cloudformation.yaml are the
same key but for their slot: KmsSigningKeyB is KmsSigningKey (slot A) with its
own condition, KeySpec parameter and description. A key policy widened in one
slot only would otherwise go unseen until a rotation brings that slot into use.

    check-kms-slots.py    exit 0 when the slots match, 1 with a diff otherwise

Needs PyYAML (the lint venv has it through cfn-lint).
"""
import difflib
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"
SLOT_A = "KmsSigningKey"
SLOT_B = "KmsSigningKeyB"
# What may differ, as slot B spells it -> as slot A does.
SLOT_NAMES = {
    "HasKmsKeyB": "HasKmsKeyA",
    "KmsSigningKeySpecB": "KmsSigningKeySpecA",
    ", slot B": ", slot A",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !Sub, ...) as
    {"!Tag": value}, so that a changed function shows in the comparison."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}


_CfnLoader.add_multi_constructor("!", _tagged)


def canonical(resource):
    return json.dumps(resource, indent=2, sort_keys=True).splitlines()


def main():
    resources = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)["Resources"]
    missing = [name for name in (SLOT_A, SLOT_B) if name not in resources]
    if missing:
        print(f"check-kms-slots: {', '.join(missing)} not in {TEMPLATE.relative_to(ROOT)}")
        return 1
    a = canonical(resources[SLOT_A])
    b_text = "\n".join(canonical(resources[SLOT_B]))
    for b_name, a_name in SLOT_NAMES.items():
        if b_name not in b_text:
            print(f"check-kms-slots: {SLOT_B} does not mention {b_name!r}")
            return 1
        b_text = b_text.replace(b_name, a_name)
    b = b_text.splitlines()
    if a != b:
        sys.stdout.writelines(
            line + "\n"
            for line in difflib.unified_diff(a, b, f"{SLOT_A}", f"{SLOT_B} (its slot names as A's)", lineterm="")
        )
        print(f"check-kms-slots: {SLOT_B} differs from {SLOT_A} beyond its slot")
        return 1
    print(f"check-kms-slots: {SLOT_B} == {SLOT_A} but for its slot (condition, KeySpec parameter, description)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
