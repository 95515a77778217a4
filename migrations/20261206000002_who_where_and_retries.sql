-- Who acted by hand, from which host, and every retry of a rejected event. Like every
-- migration, it only adds (and keeps the revocations' append-only rule covering the
-- new column).

-- The host a revocation was made on (`doclink links revoke`); revoked_by is `--by`
-- or the operating system's user name.
ALTER TABLE revocations ADD COLUMN revoked_on text;

CREATE OR REPLACE FUNCTION revocations_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.xmin::text <> (txid_current() % 4294967296)::text
        OR NEW.id <> OLD.id OR NEW.revoked_at <> OLD.revoked_at OR NEW.revoked_by <> OLD.revoked_by
        OR NEW.reason <> OLD.reason OR NEW.selector <> OLD.selector
        OR NEW.revoked_on IS DISTINCT FROM OLD.revoked_on THEN
        RAISE EXCEPTION 'revocations is append-only: revocation % cannot be changed', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

-- Each `doclink rejections retry`: which rejection, which link (when the event had
-- one), who asked, from which host, and whether the link was reopened. Append-only;
-- the rows go with their rejection when retention removes it.
CREATE TABLE rejection_retries (
    id            bigserial PRIMARY KEY,
    rejection_id  bigint NOT NULL REFERENCES rejections (id) ON DELETE CASCADE,
    link_id       uuid,
    retried_at    timestamptz NOT NULL DEFAULT now(),
    retried_by    text NOT NULL,
    retried_on    text NOT NULL,
    reopened      boolean NOT NULL
);

CREATE INDEX rejection_retries_link_idx ON rejection_retries (link_id, retried_at);
CREATE INDEX rejection_retries_rejection_idx ON rejection_retries (rejection_id);

CREATE FUNCTION rejection_retries_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rejection_retries is append-only: retry % cannot be changed', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER rejection_retries_append_only
    BEFORE UPDATE ON rejection_retries
    FOR EACH ROW EXECUTE FUNCTION rejection_retries_keep();
