"""Demo helper: the distribution's access logs, as CloudFront would deliver them.

  demo_access_logs.py setup OUT_DIR                 a log bucket whose "object created"
                                                    notifications go to a new queue;
                                                    appends ACCESS_LOG_QUEUE_URL and
                                                    ACCESS_LOG_BUCKET to OUT_DIR/aws.env
  demo_access_logs.py write BUCKET OPENED REVOKED   writes one hour's log file in two
                                                    parts (gzip, CloudFront's W3C format)
                                                    and uploads it: the links in OPENED
                                                    (comma-separated ids) read, the first
                                                    in two ranges, the last twice; REVOKED
                                                    refused by the revocation function;
                                                    among them requests doclink must
                                                    leave out (no lid, an unknown lid)

The queries carry a made-up signature: doclink never reads it, and never stores it."""
import datetime, gzip, os, sys, time, uuid
import boto3

FIELDS = ("date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) "
          "cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol "
          "cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type "
          "cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte "
          "x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end")


def setup(out_dir):
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="doclink-demo-access-logs")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = "doclink-demo-access-logs"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    with open(os.path.join(out_dir, "aws.env"), "a") as f:
        f.write(f"ACCESS_LOG_QUEUE_URL={queue}\nACCESS_LOG_BUCKET={bucket}\n")


def line(at, link, status, result, detailed, ip, stem="/decisions/2026/letter.pdf", rng=None, sent=48412):
    query = "-" if link is None else (
        f"lid={link}&Expires=1767225600&Signature=DEMO~not~a~real~signature__&Key-Pair-Id=K2JCJMDEHXQW5F")
    start, end = (str(rng[0]), str(rng[1])) if rng else ("-", "-")
    return "\t".join([
        at.strftime("%Y-%m-%d"), at.strftime("%H:%M:%S"), "FRA56-P7", str(sent), ip, "GET",
        "d111111abcdef8.cloudfront.net", stem, str(status), "-",
        "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2014_6)%20Safari/605.1.15",
        query.replace("%", "%25"), "-", result, uuid.uuid4().hex + "==", "letters.example.net", "https", "512",
        "0.020", "-", "TLSv1.3", "TLS_AES_128_GCM_SHA256", result, "HTTP/2.0", "-", "-", "50123", "0.015",
        detailed, "application/pdf", "48000", start, end])


def write(bucket, opened, revoked):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    opened = [o for o in opened.split(",") if o]
    first, second = [], []
    # The requests happened in the last seconds: after the letters went out, and the
    # refused one after the revocation the demo made just before.
    for i, link in enumerate(opened):
        at = now - datetime.timedelta(seconds=6 - i)
        ip = f"198.51.100.{10 + i}"
        if i == 0:
            first.append(line(at, link, 206, "Miss", "Miss", ip, rng=(0, 23999), sent=24500))
            first.append(line(at + datetime.timedelta(seconds=1), link, 206, "Miss", "Miss", ip,
                              rng=(24000, 47999), sent=24500))
        else:
            first.append(line(at, link, 200, "Miss", "Miss", ip))
        if i == len(opened) - 1:
            second.append(line(now, link, 200, "Hit", "Hit", "2001:db8:4f2a::17"))
    if revoked:
        # The log has whole seconds: the next one is after the revocation for sure.
        # (Waited out, so that no logged time lies ahead of the clock.)
        refused_at = now + datetime.timedelta(seconds=1)
        time.sleep(max(0.0, (refused_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
        second.append(line(refused_at, revoked, 403, "Error",
                           "FunctionGeneratedResponse", "192.0.2.44", sent=620))
    first.append(line(now, None, 404, "Error", "Error", "192.0.2.1", stem="/favicon.ico", sent=400))
    second.append(line(now, str(uuid.uuid4()), 403, "Error", "AccessDenied", "192.0.2.2", sent=600))
    header = f"#Version: 1.0\n#Fields: {FIELDS}\n"
    # CloudFront may deliver one period in several files; this one is two.
    s3 = boto3.client("s3")
    stamp = now.strftime("%Y-%m-%d-%H")
    for part, lines in (("a1b2c3d4", first), ("e5f6a7b8", second)):
        body = gzip.compress((header + "\n".join(lines) + "\n").encode())
        s3.put_object(Bucket=bucket, Key=f"cloudfront/E2DEMO.{stamp}.{part}.gz", Body=body)
    return len(first) + len(second) - 2


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "write":
        print(write(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else ""))
    else:
        sys.exit(__doc__)
