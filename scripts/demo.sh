#!/usr/bin/env bash
# The demo, run inside scripts/stack.sh: real pipeline, local stack, sample batch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# `make demo` builds with the demo profile (Cargo.toml: unoptimised, no debug info).
doclink="${CARGO_TARGET_DIR:-$root/target}/demo/doclink"
py="$DOCLINK_STACK_PYTHON"
demo=$(mktemp -d /tmp/doclink-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT
count=${DEMO_EVENTS:-1000}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "AWS resources in moto: queue with dead-letter queue, KMS key, verified SES identity"
"$py" "$root/scripts/demo_feed.py" setup "$demo"
# shellcheck disable=SC1091
source "$demo/aws.env"
echo "queue $QUEUE_URL"

step "A CloudFront key pair, the private half encrypted with KMS"
"$doclink" keys generate --type rsa --out-private "$demo/private.pem" --out-public "$demo/public.pem"
"$doclink" keys encrypt --kms-key-id "$KMS_KEY_ID" --in "$demo/private.pem" --out "$demo/private.ct" --context purpose=doclink-demo
rm "$demo/private.pem"   # from here on only KMS can open it

export DOCLINK_QUEUE_URL="$QUEUE_URL"
export DOCLINK_DEAD_LETTER_QUEUE_URL="$DLQ_URL"
export DOCLINK_KEY_PAIR_ID=K2JCJMDEHXQW5F
export DOCLINK_PRIVATE_KEY_CIPHERTEXT="$demo/private.ct"
export DOCLINK_KMS_ENCRYPTION_CONTEXT=purpose=doclink-demo
export DOCLINK_LINK_BASE_URL=https://letters.example.net
export DOCLINK_FROM="Decisions Office <decisions@example.com>"
export DOCLINK_REPLY_TO="help@example.com"
export DOCLINK_SEND_RATE=${DOCLINK_SEND_RATE:-500}
export DOCLINK_CONCURRENCY=16
export DOCLINK_LOG_FORMAT=json
export DOCLINK_LOG=warn

step "Enqueueing $count events (unicode and spaces in keys, SNS-wrapped ones, producer retries, 10 invalid)"
"$py" "$root/scripts/demo_feed.py" feed "$QUEUE_URL" "$count" &
feeder=$!
while [ "$("$py" -c 'import boto3,sys; print(boto3.client("sqs").get_queue_attributes(QueueUrl=sys.argv[1], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])' "$QUEUE_URL")" = 0 ]; do sleep 0.2; done

step "The audit database: migrated by its owner; the daemon runs as a writer, which may not delete or rewrite"
"$doclink" migrate
admin_url="$DATABASE_URL"
psql -X -q "$admin_url" -c "DO \$\$ BEGIN CREATE ROLE demo_daemon LOGIN IN ROLE doclink_writer; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"
export DATABASE_URL="${admin_url/\/\/doclink@/\/\/demo_daemon@}"
echo "the daemon connects as demo_daemon (member of doclink_writer)"

step "doclink run --drain"
start=$(date +%s%N)
"$doclink" run --drain 2>"$demo/doclink.log"
# The feeder tops the queue up as it drains; if it was still going, drain the rest.
wait "$feeder"
"$doclink" run --drain 2>>"$demo/doclink.log" | sed 's/^/after the feeder finished: /'
end=$(date +%s%N)
echo "took $(( (end - start) / 1000000 )) ms; log lines: $(wc -l <"$demo/doclink.log") (warnings and errors only)"

step "The audit log"
if command -v psql >/dev/null; then
    psql -X -q "$admin_url" <<'SQL'
\pset footer off
SELECT status, possible_duplicate, count(*) AS links FROM links GROUP BY 1, 2 ORDER BY 1;
SELECT field, left(reason, 70) AS reason, left(body, 40) AS raw_body FROM rejections ORDER BY id;
SELECT recipient_email AS who, document_key AS which, to_char(sent_at, 'YYYY-MM-DD HH24:MI:SS') AS sent,
       to_char(expires_at, 'YYYY-MM-DD HH24:MI') AS valid_until, status, left(ses_message_id, 12) AS ses_id
FROM links WHERE recipient_email = 'customer1@example.org';
SQL
else
    echo "(psql is not installed: skipping the audit queries)"
fi

step "One email as its reader sees it: the text part SES received (the link's signature shortened)"
"$py" "$root/scripts/demo_letter.py" "$AWS_ENDPOINT_URL" customer4@ "$demo/link.txt"

step "That emailed link, checked by doclink verify"
"$doclink" verify --public-key "$demo/public.pem" --key-pair-id K2JCJMDEHXQW5F "$(cat "$demo/link.txt")"

step "Who opened their letter: the distribution's access logs, read from S3 as the edge delivers them"
"$py" "$root/scripts/demo_access_logs.py" setup "$demo"
source "$demo/aws.env"
link_of() { psql -X -q -t -A "$admin_url" -c "SELECT link_id FROM links WHERE recipient_email = '$1'"; }
opened="$(link_of customer1@example.org),$(link_of customer2@example.org),$(link_of customer3@example.org)"
revoked=$(link_of customer5@example.org)
"$doclink" links revoke "$revoked" --reason "sent to the wrong case file" --by demo 2>/dev/null
expected=$("$py" "$root/scripts/demo_access_logs.py" write "$ACCESS_LOG_BUCKET" "$opened" "$revoked")
echo "two log files uploaded: $expected requests for doclink links, and others doclink leaves out"
DOCLINK_ACCESS_LOG_QUEUE_URL="$ACCESS_LOG_QUEUE_URL" "$doclink" run 2>>"$demo/doclink.log" &
daemon=$!
for _ in $(seq 1 600); do
    [ "$(psql -X -q -t -A "$admin_url" -c 'SELECT count(*) FROM link_access')" = "$expected" ] && break
    sleep 0.1
done
kill -TERM "$daemon"; wait "$daemon" || true
echo "link_access holds $(psql -X -q -t -A "$admin_url" -c 'SELECT count(*) FROM link_access') requests"
echo
echo "doclink links show $(link_of customer1@example.org | cut -c1-8)...:"
"$doclink" links show "$(link_of customer1@example.org)" | sed 's/^/  /'
echo
echo "doclink links list --tried-after-revoke:"
"$doclink" links list --tried-after-revoke | sed 's/^/  /'
echo
echo "who has not opened their letter (doclink links list --not-opened --limit 3):"
"$doclink" links list --not-opened --limit 3 | sed 's/^/  /'

step "The audit journal: sealed, then every row checked against it by doclink audit verify"
"$doclink" audit seal
"$doclink" audit verify
echo "as the daemon's role, rewriting history is refused:"
psql -X -q "$DATABASE_URL" -c "DELETE FROM links" 2>&1 | sed 's/^/  /' || true
psql -X -q "$DATABASE_URL" -c "UPDATE links SET recipient_email = 'someone-else@example.org'" 2>&1 | sed 's/^/  /' || true

echo
echo "demo finished: everything it started is stopped on exit"
