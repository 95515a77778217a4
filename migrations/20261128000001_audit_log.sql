-- The audit log: one row per issued link, and one per rejected event.
-- A signed URL is a bearer token, so it is never stored: the row keeps what is
-- needed to answer "who got which link, when, until when" and to revoke it.

CREATE TABLE links (
    link_id          uuid PRIMARY KEY,
    event_id         text NOT NULL UNIQUE,          -- the producer's idempotency key
    document_key     text NOT NULL,
    resource_url     text NOT NULL,                 -- the unsigned URL, with ?lid=
    recipient_email  text NOT NULL,
    recipient_name   text,
    template         text NOT NULL,
    locale           text NOT NULL,
    key_pair_id      text NOT NULL,
    hash_algorithm   text NOT NULL,
    not_before       timestamptz,
    expires_at       timestamptz,                   -- set when the link is signed
    created_at       timestamptz NOT NULL DEFAULT now(),
    sending_at       timestamptz,
    sent_at          timestamptz,
    ses_message_id   text,
    -- pending: claimed, not handed to SES; sending: handed to SES, outcome unknown;
    -- sent: SES accepted it; failed: SES refused it for good.
    status           text NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    -- Set when a send was retried after an attempt whose outcome was unknown:
    -- the customer may have received the letter twice.
    possible_duplicate boolean NOT NULL DEFAULT false,
    attempts         integer NOT NULL DEFAULT 0,
    failure_reason   text,
    signature_sha256 bytea,                         -- SHA-256 of the raw signature bytes
    lease_until      timestamptz,                   -- a worker is on it until then
    revoked_at       timestamptz,
    revoked_reason   text
);

CREATE INDEX links_recipient_idx ON links (recipient_email, created_at);
CREATE INDEX links_document_idx ON links (document_key);
CREATE INDEX links_status_idx ON links (status) WHERE status <> 'sent';

CREATE TABLE rejections (
    id             bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    queue_url      text NOT NULL,
    message_id     text NOT NULL,                   -- the SQS message id
    event_id       text,                            -- when the body had a readable one
    receive_count  integer NOT NULL,
    field          text NOT NULL,                   -- what was wrong ...
    reason         text NOT NULL,                   -- ... and why
    body           text NOT NULL,                   -- the raw message body, as received
    UNIQUE (queue_url, message_id)
);

CREATE INDEX rejections_received_idx ON rejections (received_at);
