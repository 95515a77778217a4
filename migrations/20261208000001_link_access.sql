-- Who opened which document, and when (issue 21): each request the edge logged
-- for a doclink link, read from CloudFront's access logs. One row per edge request
-- and link (`x-edge-request-id` is unique per request, so a log file read twice
-- records nothing twice). Like every migration, this only adds.
--
-- What is never here: the request's query (it holds the Signature, the Policy and
-- the Key-Pair-Id: a bearer token), and the viewer's whole address unless
-- DOCLINK_ACCESS_IP=full asked for it (client_ip's prefix length says how much of
-- it was kept).
--
-- An access is evidence like an SES event: journalled, never changed, removed only
-- by retention, with its link.

CREATE TABLE public.link_access (
    id                   bigserial PRIMARY KEY,
    link_id              uuid NOT NULL REFERENCES public.links (link_id),
    request_id           text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 200),
    accessed_at          timestamptz NOT NULL,    -- when the edge answered (the log's time)
    edge_location        text,
    status               smallint NOT NULL,       -- 0: the viewer went away before the answer
    method               text,                    -- cs-method: GET, HEAD, ...
    content_length       bigint,                  -- sc-content-len (of a 206, the part's)
    result_type          text,                    -- x-edge-result-type
    detailed_result_type text,                    -- x-edge-detailed-result-type
    bytes_sent           bigint,
    range_start          bigint,
    range_end            bigint,
    client_ip            inet,                    -- /24 or /48 by default; NULL when not kept
    user_agent           text CHECK (length(user_agent) <= 512),
    log_object           text NOT NULL,           -- s3://bucket/key of the file it was read from
    log_line             bigint NOT NULL,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_id, link_id)
);

CREATE INDEX link_access_link_idx ON public.link_access (link_id, accessed_at);
CREATE INDEX link_access_at_idx ON public.link_access (accessed_at);

-- `doclink links evidence` reads one link's entries from the journal by row.
CREATE INDEX audit_journal_row_idx ON public.audit_journal (table_name, row_key);

-- recorded_at is the database's own time for every role but the owner (as
-- audit_stamp does for the other tables; that function's triggers are bound to it,
-- so this table gets its own).
CREATE FUNCTION public.audit_stamp_access() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    given record := NEW;
BEGIN
    IF NEW.recorded_at IS DISTINCT FROM now() THEN
        NEW.recorded_at := now();
        IF public.audit_session_owns(TG_RELID) THEN
            RETURN given;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- The journal's event for an access. The trigger calls audit_event by name, so this
-- wrapper names every event from now on.
ALTER FUNCTION public.audit_event(text, text, jsonb, jsonb) RENAME TO audit_event_20261206;
CREATE FUNCTION public.audit_event(p_table text, p_op text, o jsonb, n jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_table = 'link_access' AND p_op = 'INSERT' THEN
        RETURN 'access';
    END IF;
    RETURN public.audit_event_20261206(p_table, p_op, o, n);
END
$$;

-- Retention: an access goes with its link, under the same rules (never before the
-- link may go). audit_refuse_delete and the journal call audit_purge_allows by name.
ALTER FUNCTION public.audit_purge_allows(text, jsonb) RENAME TO audit_purge_allows_20261206;
CREATE FUNCTION public.audit_purge_allows(p_table text, o jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    parent jsonb;
BEGIN
    IF p_table <> 'link_access' THEN
        RETURN public.audit_purge_allows_20261206(p_table, o);
    END IF;
    cutoff := (SELECT r.cutoff FROM public.audit_purge_runs r WHERE r.xid = pg_current_xact_id());
    IF cutoff IS NULL THEN
        RETURN false;
    END IF;
    SELECT to_jsonb(l) INTO parent FROM public.links l WHERE l.link_id = (o ->> 'link_id')::uuid;
    RETURN parent IS NOT NULL AND public.audit_link_purgeable(parent, cutoff);
END
$$;

-- audit_purge_links as before, the accesses of the links it removes first (their
-- foreign key would refuse the link's delete otherwise), counted in a fourth column.
-- The links are locked here, so the inner function removes exactly these.
ALTER FUNCTION public.audit_purge_links(timestamptz, uuid[]) RENAME TO audit_purge_links_20261206;
CREATE FUNCTION public.audit_purge_links(cutoff timestamptz, candidates uuid[])
    RETURNS TABLE (purged_links bigint, purged_attempts bigint, purged_events bigint, purged_accesses bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    doomed uuid[];
    accesses bigint;
BEGIN
    IF cutoff > now() THEN
        RAISE EXCEPTION 'retention: the cutoff % lies in the future', cutoff
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.audit_purge_runs (xid, cutoff, by_role)
    VALUES (pg_current_xact_id(), cutoff, session_user)
    ON CONFLICT (xid) DO NOTHING;
    SELECT coalesce(array_agg(l.link_id), '{}') INTO doomed FROM (
        SELECT l.link_id FROM public.links l
        WHERE l.link_id = ANY (candidates) AND l.created_at < cutoff AND l.status IN ('sent', 'failed')
          AND l.expires_at IS NOT NULL AND l.expires_at <= now()
        FOR UPDATE SKIP LOCKED) l;
    DELETE FROM public.link_access t WHERE t.link_id = ANY (doomed);
    GET DIAGNOSTICS accesses = ROW_COUNT;
    RETURN QUERY SELECT p.purged_links, p.purged_attempts, p.purged_events, accesses
                 FROM public.audit_purge_links_20261206(cutoff, doomed) p;
END
$$;

DO $$
BEGIN
    CREATE TRIGGER link_access_journal AFTER INSERT OR UPDATE OR DELETE ON public.link_access
        FOR EACH ROW EXECUTE FUNCTION public.audit_journal_record();
    CREATE TRIGGER link_access_stamped BEFORE INSERT ON public.link_access
        FOR EACH ROW EXECUTE FUNCTION public.audit_stamp_access();
    CREATE TRIGGER link_access_no_truncate BEFORE TRUNCATE ON public.link_access
        FOR EACH STATEMENT EXECUTE FUNCTION public.audit_refuse_truncate();
    CREATE TRIGGER link_access_no_delete BEFORE DELETE ON public.link_access
        FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_delete();
    -- An access is kept as the edge logged it.
    CREATE TRIGGER link_access_unchanged BEFORE UPDATE ON public.link_access
        FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_change();
END
$$;

-- The writer (the daemon) reads and adds accesses; the auditor and retention read
-- them. audit_grant_roles keeps doing all it did, also for roles made later.
ALTER FUNCTION public.audit_grant_roles() RENAME TO audit_grant_roles_20261207;
CREATE FUNCTION public.audit_grant_roles() RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing text := public.audit_grant_roles_20261207();
    p text := (SELECT role_prefix FROM public.audit_settings);
BEGIN
    IF missing IS NOT NULL THEN
        RETURN missing;
    END IF;
    EXECUTE format('ALTER TABLE public.link_access OWNER TO %I', p || 'owner');
    EXECUTE format('GRANT SELECT ON public.link_access TO %I, %I, %I', p || 'writer', p || 'auditor', p || 'retention');
    EXECUTE format('GRANT INSERT ON public.link_access TO %I', p || 'writer');
    EXECUTE format('GRANT USAGE ON SEQUENCE public.link_access_id_seq TO %I', p || 'writer');
    -- The wrapped functions are reached only through their wrappers.
    REVOKE ALL ON FUNCTION public.audit_grant_roles_20261207(), public.audit_purge_links_20261206(timestamptz, uuid[]),
        public.audit_purge_allows_20261206(text, jsonb) FROM PUBLIC;
    EXECUTE format('REVOKE ALL ON FUNCTION public.audit_purge_links_20261206(timestamptz, uuid[]) FROM %I',
                   p || 'retention');
    REVOKE ALL ON FUNCTION public.audit_grant_roles() FROM PUBLIC;
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
