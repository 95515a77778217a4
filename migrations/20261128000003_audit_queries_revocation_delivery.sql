-- Delivery state from SES events, revocation, rejection retries, and the indexes the
-- audit queries (`doclink links list`) need. Like every migration, it only adds.

-- The most telling delivery state SES reported for the letter (see src/delivery.rs).
ALTER TABLE links
    ADD COLUMN delivery text CHECK (delivery IN ('delivery_delayed', 'soft_bounced', 'delivered',
                                                 'rejected', 'rendering_failed', 'bounced', 'complained')),
    ADD COLUMN delivery_rank smallint,
    ADD COLUMN delivery_at timestamptz;

-- Who revoked what, when and why. Append-only: a revocation is never undone here.
CREATE TABLE revocations (
    id             bigserial PRIMARY KEY,
    revoked_at     timestamptz NOT NULL DEFAULT now(),
    revoked_by     text NOT NULL,
    reason         text NOT NULL,
    selector       text NOT NULL,      -- what was asked: "link <id>", "recipient <email>", ...
    links_revoked  integer NOT NULL    -- links this revocation revoked (not those revoked before)
);

ALTER TABLE links ADD COLUMN revocation_id bigint REFERENCES revocations (id);

-- Every SES event notification, kept whole; matched to its link when possible.
CREATE TABLE delivery_events (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    event_type      text NOT NULL,     -- send, delivery, bounce, complaint, reject, delivery_delay, ...
    occurred_at     timestamptz,
    ses_message_id  text NOT NULL,
    link_id         uuid,              -- NULL when no link matches: kept all the same
    bounce_type     text,
    bounce_subtype  text,
    recipients      text,
    body_sha256     bytea NOT NULL UNIQUE,  -- a redelivered notification is stored once
    body            text NOT NULL
);

CREATE INDEX delivery_events_link_idx ON delivery_events (link_id, occurred_at);
CREATE INDEX delivery_events_ses_idx ON delivery_events (ses_message_id);
CREATE INDEX links_ses_message_idx ON links (ses_message_id);

-- A rejected event put back on the queue (`doclink rejections retry`).
ALTER TABLE rejections
    ADD COLUMN retried_at timestamptz,
    ADD COLUMN retried_by text,
    ADD COLUMN retry_count integer NOT NULL DEFAULT 0;

-- `doclink links list` pages in (created_at, link_id) order; each filter has an index
-- that serves that order.
CREATE INDEX links_created_idx ON links (created_at, link_id);
CREATE INDEX links_recipient_ci_idx ON links (lower(recipient_email), created_at, link_id);
CREATE INDEX links_document_c_idx ON links ((document_key COLLATE "C"), created_at, link_id);
CREATE INDEX links_key_pair_idx ON links (key_pair_id, created_at, link_id);
CREATE INDEX links_unsent_status_idx ON links (status, created_at, link_id) WHERE status <> 'sent';
CREATE INDEX links_delivery_idx ON links (delivery, created_at, link_id) WHERE delivery IS NOT NULL;
CREATE INDEX links_revoked_idx ON links (created_at, link_id) WHERE revoked_at IS NOT NULL;
CREATE INDEX links_possible_duplicate_idx ON links (created_at, link_id) WHERE possible_duplicate;
-- The revocations the edge must know: revoked, not yet expired.
CREATE INDEX links_revoked_expiry_idx ON links (expires_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX rejections_kind_idx ON rejections (kind, received_at);
