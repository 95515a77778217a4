"""moto's server, with its SQS queue state changed atomically.

moto 5.2 serves requests on several threads and does not lock its SQS state: two
DeleteMessageBatch calls at once can each rebuild a queue's message list without the
other's deletion (a deleted message comes back, invisible, "in flight"), and two
receives at once can hand out one message twice. Real SQS does neither. The tests
assert exactly these properties of doclink (nothing in flight after a shutdown,
each letter sent once by three workers), so the emulator must not invent them.

Every SQS operation that reads or changes messages runs under one lock here; a long
poll releases it while it waits for messages. Usage: like moto_server."""
import sys
import threading

from moto.server import main
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

if __name__ == "__main__":
    sys.exit(main())
