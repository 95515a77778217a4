#!/usr/bin/env python3
"""Check the CloudFront access-log wiring of deploy/cloudformation.yaml (and of
deploy/access-logs-us-east-1.yaml, which does the us-east-1 part for a stack in
another region). checkov's CKV_AWS_86 only knows the distribution's legacy
Logging property and is suppressed there; this is what checks standard logging
v2 instead:

- the delivery source is the distribution's ACCESS_LOGS, the destination is the
  access-log bucket's cloudfront/ prefix in W3C, and the delivery joins them,
  tab-separated, with every field doclink reads and none of those it must not
  keep (cookies, referer, X-Forwarded-For); the distribution has no legacy
  Logging besides;
- the one prefix, cloudfront/, is where the delivery writes, what the bucket
  policy lets it write, what the bucket announces on the access-log queue and
  what the worker role may read;
- the bucket policy admits the delivery source of the name the stack gives it,
  and the queue policy names the bucket by the name the bucket gets;
- the us-east-1 template's three resources are the main template's, but for
  the parameters that stand in for the main stack's references.

    check-access-logging.py    exit 0 when all holds, 1 with the findings

Needs PyYAML (the lint venv has it through cfn-lint).
"""
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"
US_EAST_1 = ROOT / "deploy" / "access-logs-us-east-1.yaml"

PREFIX = "cloudfront"
# What doclink's parser reads (issue 21): it maps columns by the #Fields
# header, so order does not matter, but each of these must be there.
REQUIRED_FIELDS = {
    "date", "time", "x-edge-location", "sc-bytes", "c-ip", "cs-method", "cs-uri-stem",
    "sc-status", "cs-uri-query", "x-edge-result-type", "x-edge-request-id",
    "x-edge-detailed-result-type", "x-edge-response-result-type", "sc-range-start",
    "sc-range-end", "cs(User-Agent)",
}
# Personal data doclink never reads: v2 lets the delivery leave it out.
FORBIDDEN_FIELDS = {"cs(Cookie)", "cs(Referer)", "x-forwarded-for"}
DELIVERY_NAMES = ("AccessLogDeliverySource", "AccessLogDeliveryDestination", "AccessLogDelivery")
SOURCE_NAME = "${AWS::StackName}-access-logs"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags as {"!Tag": value}."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}


_CfnLoader.add_multi_constructor("!", _tagged)


def load(path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)


def statement(policy_resource, sid):
    for st in policy_resource["Properties"]["PolicyDocument"]["Statement"]:
        if isinstance(st, dict) and st.get("Sid") == sid:
            return st
    return None


def as_list(value):
    return value if isinstance(value, list) else [value]


def check_main(t, errors):
    res = t["Resources"]
    missing = [n for n in DELIVERY_NAMES + ("AccessLogsBucket", "AccessLogsBucketPolicy", "AccessLogQueue",
                                            "AccessLogQueuePolicy", "WorkerPolicy") if n not in res]
    if missing:
        errors.append(f"{TEMPLATE.name}: missing {', '.join(missing)}")
        return
    src, dst, dlv = (res[n] for n in DELIVERY_NAMES)
    for name in DELIVERY_NAMES:
        if res[name].get("Condition") != "InUsEast1":
            errors.append(f"{name}: Condition is not InUsEast1 (v2 logging is configured in us-east-1 only)")
    if t["Conditions"].get("InUsEast1") != {"!Equals": [{"!Ref": "AWS::Region"}, "us-east-1"]}:
        errors.append("condition InUsEast1 is not AWS::Region == us-east-1")

    sp = src["Properties"]
    if sp.get("Name") != {"!Sub": SOURCE_NAME}:
        errors.append(f"AccessLogDeliverySource: Name is not !Sub {SOURCE_NAME}")
    if sp.get("LogType") != "ACCESS_LOGS":
        errors.append("AccessLogDeliverySource: LogType is not ACCESS_LOGS")
    if sp.get("ResourceArn") != {"!Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"}:
        errors.append("AccessLogDeliverySource: ResourceArn is not the stack's distribution")

    dp = dst["Properties"]
    if dp.get("OutputFormat") != "w3c":
        errors.append("AccessLogDeliveryDestination: OutputFormat is not w3c")
    if dp.get("DestinationResourceArn") != {"!Sub": "${AccessLogsBucket.Arn}/" + PREFIX}:
        errors.append(f"AccessLogDeliveryDestination: not the access-log bucket's {PREFIX} prefix")

    lp = dlv["Properties"]
    if lp.get("DeliverySourceName") != {"!Ref": "AccessLogDeliverySource"}:
        errors.append("AccessLogDelivery: DeliverySourceName is not AccessLogDeliverySource")
    if lp.get("DeliveryDestinationArn") != {"!GetAtt": "AccessLogDeliveryDestination.Arn"}:
        errors.append("AccessLogDelivery: DeliveryDestinationArn is not AccessLogDeliveryDestination's")
    if "AccessLogsBucketPolicy" not in as_list(dlv.get("DependsOn", [])):
        errors.append("AccessLogDelivery: does not wait for AccessLogsBucketPolicy")
    check_delivery_fields("AccessLogDelivery", lp, errors)

    dist = res["Distribution"]["Properties"]["DistributionConfig"]
    if "Logging" in dist:
        errors.append("Distribution: legacy Logging is set as well (every request would be logged twice)")

    # One prefix everywhere.
    bucket = res["AccessLogsBucket"]["Properties"]
    queues = bucket.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
    if len(queues) != 1:
        errors.append("AccessLogsBucket: not exactly one queue notification")
    else:
        q = queues[0]
        if q.get("Queue") != {"!GetAtt": "AccessLogQueue.Arn"}:
            errors.append("AccessLogsBucket: the notification does not go to AccessLogQueue")
        if q.get("Event") != "s3:ObjectCreated:*":
            errors.append("AccessLogsBucket: the notification is not s3:ObjectCreated:*")
        rules = q.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        if rules != [{"Name": "prefix", "Value": PREFIX + "/"}]:
            errors.append(f"AccessLogsBucket: the notification filter is not the prefix {PREFIX}/ alone")
    if bucket.get("OwnershipControls") != {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}:
        errors.append("AccessLogsBucket: ObjectOwnership is not BucketOwnerEnforced (v2 needs no ACLs)")
    if "AccessLogQueuePolicy" not in as_list(res["AccessLogsBucket"].get("DependsOn", [])):
        errors.append("AccessLogsBucket: does not wait for AccessLogQueuePolicy (S3 checks it may send)")

    policy = res["AccessLogsBucketPolicy"]
    write = statement(policy, "AWSLogDeliveryWrite")
    acl = statement(policy, "AWSLogDeliveryAclCheck")
    if write is None or acl is None:
        errors.append("AccessLogsBucketPolicy: AWSLogDeliveryWrite or AWSLogDeliveryAclCheck missing")
    else:
        if write.get("Resource") != {"!Sub": "${AccessLogsBucket.Arn}/" + PREFIX + "/*"}:
            errors.append(f"AccessLogsBucketPolicy: AWSLogDeliveryWrite is not {PREFIX}/* of the bucket")
        want = {"!Sub": "arn:${AWS::Partition}:logs:us-east-1:${AWS::AccountId}:delivery-source:" + SOURCE_NAME}
        for st in (write, acl):
            if st.get("Condition", {}).get("ArnLike", {}).get("aws:SourceArn") != want:
                errors.append(f"AccessLogsBucketPolicy: {st['Sid']} does not name the delivery source {SOURCE_NAME} in us-east-1")
            if st.get("Condition", {}).get("StringEquals", {}).get("aws:SourceAccount") != {"!Ref": "AWS::AccountId"}:
                errors.append(f"AccessLogsBucketPolicy: {st['Sid']} has no aws:SourceAccount condition")
    deny = statement(policy, "OnlyDoclinkReadsAccessLogs")
    if deny is None or deny.get("Effect") != "Deny" or {"!GetAtt": "WorkerRole.Arn"} not in \
            deny.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn", []):
        errors.append("AccessLogsBucketPolicy: OnlyDoclinkReadsAccessLogs does not deny reads to all but the worker role")

    read = statement(res["WorkerPolicy"], "ReadAccessLogs")
    if read is None or read.get("Action") != "s3:GetObject" \
            or read.get("Resource") != {"!Sub": "${AccessLogsBucket.Arn}/" + PREFIX + "/*"}:
        errors.append(f"WorkerPolicy: ReadAccessLogs is not s3:GetObject on {PREFIX}/* of the access-log bucket")

    # The queue policy names the bucket by the name the bucket gets.
    name = bucket.get("BucketName")
    send = statement(res["AccessLogQueuePolicy"], "AllowAccessLogsBucketNotifications")
    if send is None:
        errors.append("AccessLogQueuePolicy: AllowAccessLogsBucketNotifications missing")
    elif not (isinstance(name, dict) and isinstance(name.get("!Sub"), list)):
        errors.append("AccessLogsBucket: BucketName is not a !Sub [name, {StackUuid: ...}]")
    else:
        arn = send.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", {}).get("!Sub")
        if arn != ["arn:${AWS::Partition}:s3:::" + name["!Sub"][0], name["!Sub"][1]]:
            errors.append("AccessLogQueuePolicy: aws:SourceArn is not the ARN of AccessLogsBucket's BucketName")
        if send.get("Condition", {}).get("StringEquals", {}).get("aws:SourceAccount") != {"!Ref": "AWS::AccountId"}:
            errors.append("AccessLogQueuePolicy: no aws:SourceAccount condition")

    out = t["Outputs"].get("AccessLogDeliverySourceName", {}).get("Value")
    if out != {"!Sub": SOURCE_NAME}:
        errors.append("output AccessLogDeliverySourceName is not the delivery source's name")


def check_delivery_fields(where, props, errors):
    fields = props.get("RecordFields", [])
    missing = sorted(REQUIRED_FIELDS - set(fields))
    if missing:
        errors.append(f"{where}: RecordFields lacks {missing}")
    kept = sorted(FORBIDDEN_FIELDS & set(fields))
    if kept:
        errors.append(f"{where}: RecordFields has {kept}, which doclink does not read")
    if len(set(fields)) != len(fields):
        errors.append(f"{where}: RecordFields repeats a field")
    if props.get("FieldDelimiter") != "\t":
        errors.append(f"{where}: FieldDelimiter is not a tab")


# What the us-east-1 template has in place of the main stack's references.
US_EAST_1_STANDS_IN = {
    ("AccessLogDeliverySource", "Name"): ({"!Sub": SOURCE_NAME}, {"!Ref": "DeliverySourceName"}),
    ("AccessLogDeliverySource", "ResourceArn"): (
        {"!Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${Distribution}"},
        {"!Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${DistributionId}"}),
    ("AccessLogDeliveryDestination", "Name"): (
        {"!Sub": SOURCE_NAME + "-s3"}, {"!Sub": "${DeliverySourceName}-s3"}),
    ("AccessLogDeliveryDestination", "DestinationResourceArn"): (
        {"!Sub": "${AccessLogsBucket.Arn}/" + PREFIX},
        {"!Sub": "arn:${AWS::Partition}:s3:::${AccessLogsBucketName}/" + PREFIX}),
}


def check_us_east_1(main, other, errors):
    res_main, res_other = main["Resources"], other["Resources"]
    if sorted(res_other) != sorted(DELIVERY_NAMES):
        errors.append(f"{US_EAST_1.name}: resources are {sorted(res_other)}, not {sorted(DELIVERY_NAMES)}")
        return
    for name in DELIVERY_NAMES:
        a, b = res_main[name], res_other[name]
        if a["Type"] != b["Type"]:
            errors.append(f"{US_EAST_1.name}: {name} is a {b['Type']}, not a {a['Type']}")
        pa, pb = a["Properties"], b["Properties"]
        for key in sorted(set(pa) | set(pb)):
            if (name, key) in US_EAST_1_STANDS_IN:
                want_a, want_b = US_EAST_1_STANDS_IN[(name, key)]
                if pa.get(key) != want_a or pb.get(key) != want_b:
                    errors.append(f"{US_EAST_1.name}: {name}.{key} is {pb.get(key)!r} where the main "
                                  f"template has {pa.get(key)!r}; expected {want_b!r} for {want_a!r}")
            elif pa.get(key) != pb.get(key):
                errors.append(f"{US_EAST_1.name}: {name}.{key} differs from {TEMPLATE.name}: "
                              f"{pb.get(key)!r} != {pa.get(key)!r}")
    rules = other.get("Rules", {})
    if not any(a.get("Assert") == {"!Equals": [{"!Ref": "AWS::Region"}, "us-east-1"]}
               for r in rules.values() for a in r.get("Assertions", [])):
        errors.append(f"{US_EAST_1.name}: no rule refusing a region other than us-east-1")


def main():
    errors = []
    main_t = load(TEMPLATE)
    check_main(main_t, errors)
    if not errors:
        check_us_east_1(main_t, load(US_EAST_1), errors)
    for e in errors:
        print(f"check-access-logging: {e}")
    if errors:
        return 1
    fields = len(main_t["Resources"]["AccessLogDelivery"]["Properties"]["RecordFields"])
    print(f"check-access-logging: v2 delivery ({fields} fields) to {PREFIX}/, bucket, queue, worker agree; "
          f"{US_EAST_1.name} matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
