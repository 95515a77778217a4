-- The attempt history and the revocations are append-only in the database, not only
-- by convention. An attempt gets its outcome once, and a row that has one can no longer change (a
-- late worker, a bug or a hand-written UPDATE cannot rewrite what an auditor reads).
-- Rows are still deleted by retention (`doclink links purge`). Like every migration,
-- this only adds.

CREATE FUNCTION link_attempts_keep_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.outcome IS NOT NULL THEN
        RAISE EXCEPTION 'link_attempts is append-only: attempt % of link % already ended (%)',
            OLD.attempt, OLD.link_id, OLD.outcome
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.link_id <> OLD.link_id OR NEW.attempt <> OLD.attempt OR NEW.started_at <> OLD.started_at THEN
        RAISE EXCEPTION 'link_attempts is append-only: an attempt''s link, number and start never change'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER link_attempts_append_only
    BEFORE UPDATE ON link_attempts
    FOR EACH ROW EXECUTE FUNCTION link_attempts_keep_ended();

-- Revocations are append-only too: who revoked what, when and why never changes.
-- The revoking transaction writes its row first and its count of links revoked
-- last (src/audit/revocations.rs); only that transaction, the one whose id is the
-- row's xmin, may change the row, and only that count.
CREATE FUNCTION revocations_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.xmin::text <> (txid_current() % 4294967296)::text
        OR NEW.id <> OLD.id OR NEW.revoked_at <> OLD.revoked_at OR NEW.revoked_by <> OLD.revoked_by
        OR NEW.reason <> OLD.reason OR NEW.selector <> OLD.selector THEN
        RAISE EXCEPTION 'revocations is append-only: revocation % cannot be changed', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER revocations_append_only
    BEFORE UPDATE ON revocations
    FOR EACH ROW EXECUTE FUNCTION revocations_keep();
