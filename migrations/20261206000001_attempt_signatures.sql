-- Every attempt records the signature it handed to SES, and an attempt can end
-- because its link was revoked before it was sent. Like every migration, this only
-- adds: no existing row is rewritten.
--
-- What each row keeps (src/audit/claims.rs):
--   links.key_pair_id, hash_algorithm, signature_sha256, not_before, resource_url:
--       the link's FIRST signature, written once when the event is claimed and never
--       changed by a retry;
--   links.expires_at: until when the link opens: the latest expiry of any signature
--       issued for it. It only ever moves forward (a retry re-signs with a later
--       expiry); revocation, the edge store, purge and `links list --unexpired` use it;
--   link_attempts.key_pair_id, hash_algorithm, signature_sha256, not_before,
--       expires_at: the signature that attempt handed to SES. NULL on an attempt that
--       handed nothing to SES (it ended before, or was refused because the link had
--       been revoked), and on attempts recorded before this migration, whose
--       signature the link row alone describes.

ALTER TABLE link_attempts
    ADD COLUMN key_pair_id      text,
    ADD COLUMN hash_algorithm   text,
    ADD COLUMN signature_sha256 bytea,
    ADD COLUMN not_before       timestamptz,
    ADD COLUMN expires_at       timestamptz;

-- An attempt that found its link revoked when it was about to send: nothing was sent.
ALTER TABLE link_attempts DROP CONSTRAINT link_attempts_outcome_check;
ALTER TABLE link_attempts ADD CONSTRAINT link_attempts_outcome_check
    CHECK (outcome IN ('sent', 'failed', 'retry', 'released', 'account_blocked', 'revoked'));

-- Every signature issued for a link, one row each: an attempt's own, or, for a link
-- whose first attempt predates this migration, the link row's (its first key, with
-- the link's expiry: what was known then). Rotation (`links list --key-pair-id`,
-- `links revoke --key-pair-id`, doctor's old-key check) reads this view.
CREATE VIEW link_signatures AS
    SELECT a.link_id, a.attempt, a.key_pair_id, a.hash_algorithm, a.signature_sha256, a.expires_at
    FROM link_attempts a
    WHERE a.key_pair_id IS NOT NULL
    UNION ALL
    SELECT l.link_id, NULL::integer, l.key_pair_id, l.hash_algorithm, l.signature_sha256, l.expires_at
    FROM links l
    WHERE NOT EXISTS (SELECT 1 FROM link_attempts a
                      WHERE a.link_id = l.link_id AND a.attempt = 1 AND a.key_pair_id IS NOT NULL);

CREATE INDEX link_attempts_key_pair_idx ON link_attempts (key_pair_id, link_id) WHERE key_pair_id IS NOT NULL;
