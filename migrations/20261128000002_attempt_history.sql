-- Every attempt at a link, so an auditor sees each hand-over to SES (both sends of a
-- possible duplicate) and every error, not only the last state in `links`.
-- Rows are only ever inserted, and each gets its outcome once; nothing is deleted
-- except by retention (`doclink links purge`).

CREATE TABLE link_attempts (
    link_id            uuid NOT NULL REFERENCES links (link_id),
    attempt            integer NOT NULL,           -- links.attempts when it was claimed
    worker             text,                       -- host:pid of the worker
    message_id         text,                       -- the SQS message it came from
    started_at         timestamptz NOT NULL DEFAULT now(),
    sending_at         timestamptz,                -- handed to SES
    finished_at        timestamptz,
    -- NULL while running; stays NULL when the worker died (an abandoned attempt).
    outcome            text CHECK (outcome IN ('sent', 'failed', 'retry', 'released', 'account_blocked')),
    possible_duplicate boolean NOT NULL DEFAULT false,  -- sent again after an unknown outcome
    ses_message_id     text,
    error_class        text,                       -- throttled, outcome_unknown, refused, account, ...
    reason             text,
    PRIMARY KEY (link_id, attempt)
);

-- The links whose attempts were abandoned are found by this index.
CREATE INDEX link_attempts_unfinished_idx ON link_attempts (link_id) WHERE outcome IS NULL;

-- What kind of rejection: an invalid event, a poison message, or a letter SES refused.
ALTER TABLE rejections
    ADD COLUMN kind text NOT NULL DEFAULT 'invalid' CHECK (kind IN ('invalid', 'poison', 'refused')),
    ADD COLUMN link_id uuid;
