"""Demo helper: creates the demo's AWS resources in moto and feeds a sample batch.

  demo_feed.py setup OUT_DIR          queue + dead-letter queue, KMS key, SES identity; writes OUT_DIR/aws.env
  demo_feed.py feed QUEUE_URL COUNT   enqueues COUNT valid events plus invalid ones, keeping the queue shallow

moto's SQS gets slower the deeper the queue (every call scans it), so the feeder keeps
at most ~100 messages waiting and tops the queue up as doclink drains it."""
import json, os, random, sys, time
import boto3

def setup(out_dir):
    sqs, kms, ses = boto3.client("sqs"), boto3.client("kms"), boto3.client("sesv2")
    dlq = sqs.create_queue(QueueName="doclink-demo-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="doclink-demo", Attributes={
        "VisibilityTimeout": "60",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "20"}),
    })["QueueUrl"]
    key_id = kms.create_key(Description="doclink demo: wraps the CloudFront signing key")["KeyMetadata"]["KeyId"]
    ses.create_email_identity(EmailIdentity="example.com")
    with open(os.path.join(out_dir, "aws.env"), "w") as f:
        f.write(f"QUEUE_URL={queue}\nDLQ_URL={dlq}\nKMS_KEY_ID={key_id}\n")

KEYS = ["decisions/2026/{case}/Décision finale.pdf", "correspondence/{case}/letter of 12 March + annex.pdf",
        "décisions/{case}/Überprüfung & Résumé (v2).pdf", "letters/{case}/日本語の書類.pdf", "plain/{case}.pdf"]
NAMES = ["Jane O'Neil", "José Müller", "Zoë Ångström", "李小龍", "<script>alert('hi')</script>", None]

def events(count):
    rng = random.Random(2026)
    for i in range(count):
        case = f"ABC-{i:05d}"
        event = {"event_id": f"demo-{i:05d}", "document_key": rng.choice(KEYS).format(case=case),
                 "recipient": {"email": f"customer{i}@example.org"},
                 "template": "decision_letter" if i % 3 else "correspondence",
                 "locale": "fr" if i % 4 == 0 else "en", "data": {"case_number": case}}
        name = rng.choice(NAMES)
        if name:
            event["recipient"]["name"] = name
        if i % 50 == 7:
            event["expires_in"] = "14d"
        if i % 100 == 42:   # the same event arriving inside an SNS notification
            yield json.dumps({"Type": "Notification", "MessageId": f"sns-{i}", "Message": json.dumps(event)})
        else:
            yield json.dumps(event)
        if i % 250 == 99:   # a producer retry: the same event again
            yield json.dumps(event)
    invalid = [
        "this is not JSON at all",
        json.dumps(["an", "array"]),
        json.dumps({"event_id": "demo-bad-1", "recipient": {"email": "a@example.org"}, "template": "decision_letter"}),
        json.dumps({"event_id": "demo-bad-2", "document_key": "x.pdf", "recipient": {"email": "not-an-address"}, "template": "decision_letter"}),
        json.dumps({"event_id": "demo-bad-3", "document_key": "x.pdf", "recipient": {"email": "b@example.org", "name": "Eve\r\nBcc: all@example.org"}, "template": "decision_letter"}),
        json.dumps({"event_id": "demo-bad-4", "document_key": "x.pdf", "recipient": {"email": "c@example.org"}, "template": "ransom_note"}),
        json.dumps({"event_id": "demo-bad-5", "document_key": "x.pdf", "recipient": {"email": "d@example.org"}, "template": "decision_letter", "locale": "de"}),
        json.dumps({"event_id": "demo-bad-6", "document_key": "x.pdf", "recipient": {"email": "e@example.org"}, "template": "decision_letter", "expires_in": "365d"}),
        json.dumps({"event_id": "demo-bad-7", "document_key": "../secrets/x.pdf", "recipient": {"email": "f@example.org"}, "template": "decision_letter"}),
        json.dumps({"event_id": "demo-bad-8", "document_key": "x.pdf", "recipient": {"email": "g@example.org"}, "template": "decision_letter", "data": {"case_number": 42}}),
    ]
    yield from invalid

def feed(queue, count):
    sqs = boto3.client("sqs")
    batch = []
    def depth():
        a = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"])
    sent = 0
    for body in events(count):
        batch.append(body)
        if len(batch) == 10:
            while depth() > 100:
                time.sleep(0.2)
            sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)])
            sent += len(batch)
            batch = []
    if batch:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)])
        sent += len(batch)
    print(f"feeder: enqueued {sent} messages", file=sys.stderr)

if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    else:
        feed(sys.argv[2], int(sys.argv[3]))
