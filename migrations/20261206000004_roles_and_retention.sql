-- Least-privilege roles (issue 22). Four NOLOGIN group roles, named with a prefix
-- that `doclink migrate` takes from DOCLINK_DB_ROLE_PREFIX (default doclink_):
--
--   <prefix>owner      owns every table, view, sequence and function here; only the
--                      role that runs `doclink migrate` is a member.
--   <prefix>writer     the daemon (and `links revoke`, `rejections retry`): reads,
--                      inserts, and updates only the columns a letter moves forward
--                      (status, lease, SES id, attempt outcome, delivery state,
--                      revocation). No DELETE, no TRUNCATE, owns nothing.
--   <prefix>auditor    reads everything except raw rejected bodies.
--   <prefix>retention  reads like the auditor, and purges through the functions
--                      below, which enforce the retention rules themselves.
--
-- Login roles are made members of one of these (docs/audit.md, "Database roles"). When the
-- migrating role may not create roles, nothing fails: audit_grant_roles() says what
-- is missing, and docs/audit.md gives the SQL for an administrator.

CREATE TABLE public.audit_settings (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    role_prefix text NOT NULL CHECK (role_prefix ~ '^[a-z_][a-z0-9_]{0,40}$')
);

INSERT INTO public.audit_settings (role_prefix)
VALUES (coalesce(nullif(current_setting('doclink.role_prefix', true), ''), 'doclink_'));

CREATE TRIGGER audit_settings_unchanged BEFORE UPDATE OR DELETE ON public.audit_settings
    FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_change();

-- A rejection as every reader may see it: all but the raw body (body_sha256 stands
-- for it). `doclink audit verify` compares these rows with the journal.
DO $$
BEGIN
    EXECUTE format('CREATE VIEW public.rejections_audited AS SELECT %s FROM public.rejections',
                   (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = 'rejections'::regclass AND attnum > 0 AND NOT attisdropped
                      AND attname <> 'body'));
END
$$;

-- Retention: the only way rows leave the audit tables. A link goes only when it is
-- finished (sent or failed), older than the cutoff and expired (every signature it
-- was ever sent with has expired), so a live bearer link stays findable and
-- revocable. The cutoff may not lie in the future. Each run records its transaction
-- in audit_purge_runs, which is what lets its deletes through (and journals them as
-- `purged`); no caller can mark a transaction so any other way.
CREATE FUNCTION public.audit_purge_links(cutoff timestamptz, candidates uuid[])
    RETURNS TABLE (purged_links bigint, purged_attempts bigint, purged_events bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF cutoff > now() THEN
        RAISE EXCEPTION 'retention: the cutoff % lies in the future', cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.audit_purge_runs (xid, cutoff, by_role)
    VALUES (pg_current_xact_id(), cutoff, session_user)
    ON CONFLICT (xid) DO NOTHING;
    RETURN QUERY
    WITH doomed AS (
        SELECT l.link_id FROM public.links l
        WHERE l.link_id = ANY (candidates) AND l.created_at < cutoff AND l.status IN ('sent', 'failed')
          AND l.expires_at IS NOT NULL AND l.expires_at <= now()
        FOR UPDATE SKIP LOCKED
    ), a AS (
        DELETE FROM public.link_attempts t WHERE t.link_id IN (SELECT d.link_id FROM doomed d) RETURNING 1
    ), e AS (
        DELETE FROM public.delivery_events t WHERE t.link_id IN (SELECT d.link_id FROM doomed d) RETURNING 1
    ), g AS (
        DELETE FROM public.links t WHERE t.link_id IN (SELECT d.link_id FROM doomed d) RETURNING 1
    )
    SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM a), (SELECT count(*) FROM e);
END
$$;

-- SES notifications that matched no link, and rejections, older than the cutoff.
CREATE FUNCTION public.audit_purge_unlinked(cutoff timestamptz)
    RETURNS TABLE (purged_events bigint, purged_rejections bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    events bigint;
    rejected bigint;
BEGIN
    IF cutoff > now() THEN
        RAISE EXCEPTION 'retention: the cutoff % lies in the future', cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.audit_purge_runs (xid, cutoff, by_role)
    VALUES (pg_current_xact_id(), cutoff, session_user)
    ON CONFLICT (xid) DO NOTHING;
    DELETE FROM public.delivery_events t WHERE t.link_id IS NULL AND t.received_at < cutoff;
    GET DIAGNOSTICS events = ROW_COUNT;
    DELETE FROM public.rejections t WHERE t.received_at < cutoff;
    GET DIAGNOSTICS rejected = ROW_COUNT;
    RETURN QUERY SELECT events, rejected;
END
$$;

-- (Re)applies ownership and privileges; every later migration that adds an object
-- ends by calling it. Returns what it could not do, or NULL.
CREATE FUNCTION public.audit_grant_roles() RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p text := (SELECT role_prefix FROM public.audit_settings);
    owner_role text := p || 'owner';
    writer text := p || 'writer';
    auditor text := p || 'auditor';
    retention text := p || 'retention';
    may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user);
    audit_tables text[] := ARRAY['links', 'link_attempts', 'revocations', 'rejections', 'rejection_retries',
                                 'delivery_events'];
    readable text[] := ARRAY['links', 'link_attempts', 'revocations', 'rejection_retries', 'delivery_events',
                             'audit_journal', 'audit_seals', 'audit_purge_runs', 'audit_settings', '_sqlx_migrations',
                             'link_signatures', 'rejections_audited'];
    r text;
    f regprocedure;
    rejection_columns text;
BEGIN
    FOREACH r IN ARRAY ARRAY[owner_role, writer, auditor, retention] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            IF NOT may_create THEN
                RETURN format('role %s does not exist, and %s may not create roles: an administrator creates them (docs/audit.md, "Database roles") and runs doclink migrate again', r, current_user);
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database's migration made it first
            END;
        END IF;
    END LOOP;
    IF NOT pg_has_role(current_user, owner_role, 'MEMBER') THEN
        IF NOT may_create THEN
            RETURN format('%s is not a member of %s, so it cannot hand the tables to it: GRANT %s TO %s, and run doclink migrate again',
                          current_user, owner_role, owner_role, current_user);
        END IF;
        EXECUTE format('GRANT %I TO %I', owner_role, current_user);
    END IF;

    -- Ownership: tables (with their serial sequences), the view, the journal's
    -- sequence, and every function the migrations made.
    FOREACH r IN ARRAY audit_tables || ARRAY['audit_journal', 'audit_seals', 'audit_purge_runs', 'audit_settings',
                                             '_sqlx_migrations'] LOOP
        EXECUTE format('ALTER TABLE public.%I OWNER TO %I', r, owner_role);
    END LOOP;
    EXECUTE format('ALTER VIEW public.link_signatures OWNER TO %I', owner_role);
    EXECUTE format('ALTER VIEW public.rejections_audited OWNER TO %I', owner_role);
    EXECUTE format('ALTER SEQUENCE public.audit_journal_seq OWNER TO %I', owner_role);
    FOR f IN SELECT oid::regprocedure FROM pg_proc
             WHERE pronamespace = 'public'::regnamespace
               AND (proname LIKE 'audit\_%' OR proname IN ('links_keep_facts', 'link_attempts_keep_ended',
                                                          'revocations_keep', 'rejection_retries_keep'))
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner_role);
    END LOOP;
    -- The pure helpers (images, keys, lines) stay callable by all; what writes or
    -- removes is not.
    REVOKE ALL ON FUNCTION public.audit_journal_append(text, text, text, jsonb), public.audit_journal_record(),
        public.audit_seal(), public.audit_purge_links(timestamptz, uuid[]), public.audit_purge_unlinked(timestamptz),
        public.audit_grant_roles(), public.audit_rebaseline(text)
        FROM PUBLIC;

    -- Readers: everything but a rejection's raw body.
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO rejection_columns
    FROM pg_attribute WHERE attrelid = 'public.rejections'::regclass AND attnum > 0 AND NOT attisdropped
      AND attname <> 'body';
    FOREACH r IN ARRAY ARRAY[writer, auditor, retention] LOOP
        EXECUTE format('GRANT SELECT ON %s TO %I',
                       (SELECT string_agg('public.' || quote_ident(t), ', ') FROM unnest(readable) t), r);
        EXECUTE format('GRANT SELECT (%s) ON public.rejections TO %I', rejection_columns, r);
    END LOOP;

    -- The writer: reads bodies too (`rejections retry` re-queues them), inserts, and
    -- moves letters forward.
    EXECUTE format('GRANT SELECT ON public.rejections TO %I', writer);
    EXECUTE format('GRANT INSERT ON %s TO %I',
                   (SELECT string_agg('public.' || quote_ident(t), ', ') FROM unnest(audit_tables) t), writer);
    EXECUTE format('GRANT USAGE ON SEQUENCE public.revocations_id_seq, public.rejections_id_seq,
                    public.delivery_events_id_seq, public.rejection_retries_id_seq TO %I', writer);
    EXECUTE format('GRANT UPDATE (status, lease_until, attempts, sending_at, sent_at, expires_at, possible_duplicate,
                    ses_message_id, failure_reason, delivery, delivery_rank, delivery_at, revoked_at,
                    revoked_reason, revocation_id) ON public.links TO %I', writer);
    EXECUTE format('GRANT UPDATE (sending_at, possible_duplicate, key_pair_id, hash_algorithm, signature_sha256,
                    not_before, expires_at, finished_at, outcome, ses_message_id, error_class, reason)
                    ON public.link_attempts TO %I', writer);
    EXECUTE format('GRANT UPDATE (receive_count, retried_at, retried_by, retry_count) ON public.rejections TO %I', writer);
    EXECUTE format('GRANT UPDATE (links_revoked) ON public.revocations TO %I', writer);
    EXECUTE format('GRANT EXECUTE ON FUNCTION public.audit_seal() TO %I', writer);

    -- Retention purges through its functions only.
    EXECUTE format('GRANT EXECUTE ON FUNCTION public.audit_purge_links(timestamptz, uuid[]), public.audit_purge_unlinked(timestamptz) TO %I',
                   retention);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    missing text := public.audit_grant_roles();
BEGIN
    IF missing IS NOT NULL THEN
        RAISE WARNING 'doclink roles not set up: %', missing;
    END IF;
END
$$;
