"""moto's server, with its SQS queue state changed atomically.

moto 5.2 serves requests on several threads and does not lock its SQS state: two
DeleteMessageBatch calls at once can each rebuild a queue's message list without the
other's deletion (a deleted message comes back, invisible, "in flight"), and two
receives at once can hand out one message twice. Real SQS does neither. The tests
assert exactly these properties of doclink (nothing in flight after a shutdown,
each letter sent once by three workers), so the emulator must not invent them.

moto's SES v2 also keeps only the HTML part of an email that has both; here each
message keeps its text part too, as `text` in /moto-api/data.json (the demo shows
the letter as its reader sees it).

Every SQS operation that reads or changes messages runs under one lock here; a long
poll releases it while it waits for messages. Usage: like moto_server."""
import json
import sys
import threading

from moto.server import main
from moto.sesv2 import responses as sesv2_responses
from moto.sqs import models

LOCK = threading.RLock()


def locked(function):
    def run(*args, **kwargs):
        with LOCK:
            return function(*args, **kwargs)

    run.__name__ = function.__name__
    return run


for name in (
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
    "send_message",
    "send_message_batch",
):
    setattr(models.SQSBackend, name, locked(getattr(models.SQSBackend, name)))

waiting = models.Queue.wait_for_messages


def wait_for_messages(self, timeout):
    # A long poll waits without the lock, as Condition.wait releases its own.
    state = LOCK._release_save()
    try:
        waiting(self, timeout)
    finally:
        LOCK._acquire_restore(state)


models.Queue.wait_for_messages = wait_for_messages

sending = sesv2_responses.SESV2Response.send_email


def send_email_keeping_text(self):
    result = sending(self)
    body = json.loads(self.body).get("Content", {}).get("Simple", {}).get("Body", {})
    if "Text" in body and "Html" in body:
        message_id = json.loads(result)["MessageId"]
        for message in reversed(self.sesv2_backend.core_backend.sent_messages):
            if message.id == message_id:
                message.text = body["Text"]["Data"]
                break
    return result


sesv2_responses.SESV2Response.send_email = send_email_keeping_text

if __name__ == "__main__":
    sys.exit(main())
