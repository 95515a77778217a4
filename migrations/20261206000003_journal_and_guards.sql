-- Evidence that cannot be quietly changed (issue 22): a tamper-evident journal of
-- every change to the audit tables, and rules in the database that refuse deletes
-- and rewrites. Like every migration, it only adds; the rows already here get a
-- baseline entry.
--
-- The journal (src/audit/journal.rs tells the whole design):
--   * Each INSERT, UPDATE or DELETE of an audit row appends one entry, written by a
--     trigger that runs as the tables' owner, so the daemon's role needs (and gets)
--     no privilege on the journal and cannot forge an entry. An entry holds the
--     row's key, what happened, and the SHA-256 of the row's canonical image (its
--     jsonb, in UTC); the image itself is not kept (no personal data in the journal).
--   * The same trigger judges each update by the audit rules (one function): a
--     change that breaks one is refused for every role but the tables' owner, and
--     the owner's is journalled as `tampered: ...`; a delete outside a retention run
--     is journalled as `deleted`; `audit verify` names both.
--   * Entries are chained in batches ("seals"), not one by one: a per-entry chain
--     would serialise every letter on one lock. A seal covers every entry whose
--     transaction id lies in [xid_from, xid_to), where xid_to is the oldest
--     transaction still running (or prepared) in this database when the seal was
--     made, so no later commit can add an entry to a sealed range. Its hash covers
--     the previous seal's hash and the hash of each entry in order.
--
-- Every function here fixes its search_path to pg_catalog (pg_temp last) and names
-- doclink's objects with their schema: a caller's temporary table or function can
-- never stand in for them, least of all in the SECURITY DEFINER ones.
--
-- The helpers the triggers call are plpgsql, not sql: an SQL function with a SET
-- clause is never inlined, so it is parsed and planned again in every statement that
-- calls it (measured: 30 to 100 µs a call, most of the journal's cost per letter);
-- plpgsql keeps its plans for the session.
--
-- A later migration that adds a column to an audit table changes every row's
-- image: it must end with `SELECT audit_rebaseline('<table>')`.

CREATE SEQUENCE public.audit_journal_seq;

CREATE TABLE public.audit_journal (
    seq          bigint PRIMARY KEY,
    xid          xid8 NOT NULL,                -- the writing transaction
    at           timestamptz NOT NULL,
    table_name   text NOT NULL,
    row_key      text NOT NULL,                -- link_id, link_id/attempt, or id
    event        text NOT NULL,                -- issued, sent, revoked, attempt:retry, purged, tampered: ...
    row_sha256   bytea,                        -- the row's image after the change; NULL once removed
    entry_sha256 bytea NOT NULL                -- SHA-256 of the entry's canonical line
);

CREATE INDEX audit_journal_xid_idx ON public.audit_journal (xid);

CREATE TABLE public.audit_seals (
    id           bigint PRIMARY KEY,
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    xid_from     xid8 NOT NULL,
    xid_to       xid8 NOT NULL,
    entries      bigint NOT NULL,
    prev_sha256  bytea,                        -- NULL for the first seal
    seal_sha256  bytea NOT NULL,
    CHECK (xid_to > xid_from)
);

-- Each retention run's transaction and cutoff (written by the audit_purge functions of
-- the next migration, as the owner): a delete is allowed, and journalled as `purged`,
-- only in such a transaction and only under the retention rules for its cutoff.
CREATE TABLE public.audit_purge_runs (
    xid      xid8 PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    cutoff   timestamptz NOT NULL,
    by_role  text NOT NULL
);

-- The canonical line an entry's hash covers (src/audit/journal.rs computes the same).
CREATE FUNCTION public.audit_entry_line(seq bigint, xid xid8, at timestamptz, table_name text, row_key text,
                                        event text, row_sha256 bytea) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN concat_ws('|', seq::text, xid::text,
                     (extract(epoch FROM at) * 1000000)::numeric(30, 0)::text,
                     table_name, row_key, event, coalesce(encode(row_sha256, 'hex'), '-'));
END
$$;

-- A row's canonical image: its jsonb, without what changes too often to be evidence
-- (a link's lease) and without what not every reader may see (a rejection's raw
-- body: its hash, the generated column body_sha256, stands for it).
CREATE FUNCTION public.audit_row_image(table_name text, r jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN CASE table_name
        WHEN 'links' THEN r - 'lease_until'
        WHEN 'rejections' THEN r - 'body'
        ELSE r
    END;
END
$$;

CREATE FUNCTION public.audit_row_key(table_name text, r jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN CASE table_name
        WHEN 'links' THEN r ->> 'link_id'
        WHEN 'link_attempts' THEN (r ->> 'link_id') || '/' || (r ->> 'attempt')
        WHEN 'audit_purge_runs' THEN r ->> 'xid'
        ELSE r ->> 'id'
    END;
END
$$;

-- A delivery state's rank (src/delivery.rs, DeliveryState::rank): a link's state only
-- moves to one at least as telling.
CREATE FUNCTION public.audit_delivery_rank(state text) RETURNS int
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN array_position(ARRAY['delivery_delayed', 'soft_bounced', 'delivered', 'rejected', 'rendering_failed',
                                'bounced', 'complained'], state) - 1;
END
$$;

-- The rules an update of an audit row must keep, as one function: the journal's
-- trigger raises its verdict for every role but the owner, and records the owner's
-- break as tampering. NULL when the change is allowed.
CREATE FUNCTION public.audit_rule_broken(p_table text, o jsonb, n jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    col text;
BEGIN
    IF p_table = 'links' THEN
        FOREACH col IN ARRAY ARRAY['link_id', 'event_id', 'document_key', 'resource_url', 'recipient_email',
                                   'recipient_name', 'template', 'locale', 'key_pair_id', 'hash_algorithm',
                                   'not_before', 'signature_sha256', 'created_at'] LOOP
            IF (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of link %s changed (a link''s facts never change)', col, o ->> 'link_id');
            END IF;
        END LOOP;
        FOREACH col IN ARRAY ARRAY['sent_at', 'ses_message_id', 'revoked_at', 'revocation_id', 'revoked_reason'] LOOP
            IF (o ->> col) IS NOT NULL AND (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of link %s changed once set', col, o ->> 'link_id');
            END IF;
        END LOOP;
        IF (o ->> 'expires_at') IS NOT NULL AND ((n ->> 'expires_at') IS NULL
                OR (n ->> 'expires_at')::timestamptz < (o ->> 'expires_at')::timestamptz) THEN
            RETURN format('the expiry of link %s moved earlier (it only moves later)', o ->> 'link_id');
        END IF;
        IF (o ->> 'delivery') IS NOT NULL AND ((n ->> 'delivery') IS NULL
                OR public.audit_delivery_rank(n ->> 'delivery') < public.audit_delivery_rank(o ->> 'delivery')) THEN
            RETURN format('the delivery state of link %s went back from %s to %s', o ->> 'link_id',
                          o ->> 'delivery', coalesce(n ->> 'delivery', 'none'));
        END IF;
        IF (n ->> 'delivery') IS NOT NULL
            AND (n ->> 'delivery_rank')::int IS DISTINCT FROM public.audit_delivery_rank(n ->> 'delivery') THEN
            RETURN format('the delivery rank of link %s does not match its state %s', o ->> 'link_id', n ->> 'delivery');
        END IF;
        -- A revoked link is never made sendable again (a send already handed to SES
        -- may still be recorded: sending -> sent).
        IF (o ->> 'revoked_at') IS NOT NULL AND (n ->> 'status') IN ('pending', 'sending')
            AND (n ->> 'status') IS DISTINCT FROM (o ->> 'status') THEN
            RETURN format('revoked link %s went from %s to %s', o ->> 'link_id', o ->> 'status', n ->> 'status');
        END IF;
        IF (o ->> 'possible_duplicate')::boolean AND NOT (n ->> 'possible_duplicate')::boolean THEN
            RETURN format('link %s lost its possible-duplicate flag', o ->> 'link_id');
        END IF;
        IF (n ->> 'attempts')::int < (o ->> 'attempts')::int THEN
            RETURN format('the attempt count of link %s went down', o ->> 'link_id');
        END IF;
        IF NOT (o ->> 'status' IN ('pending', 'sending')
                OR (o ->> 'status' = 'failed' AND n ->> 'status' IN ('failed', 'pending'))
                OR (o ->> 'status' = 'sent' AND n ->> 'status' = 'sent')) THEN
            RETURN format('link %s went from %s to %s', o ->> 'link_id', o ->> 'status', n ->> 'status');
        END IF;
    ELSIF p_table = 'link_attempts' THEN
        FOREACH col IN ARRAY ARRAY['link_id', 'attempt', 'worker', 'message_id', 'started_at'] LOOP
            IF (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of attempt %s/%s changed', col, o ->> 'link_id', o ->> 'attempt');
            END IF;
        END LOOP;
        IF (o ->> 'outcome') IS NOT NULL AND o IS DISTINCT FROM n THEN
            RETURN format('attempt %s/%s changed after it ended (%s)', o ->> 'link_id', o ->> 'attempt', o ->> 'outcome');
        END IF;
        FOREACH col IN ARRAY ARRAY['sending_at', 'key_pair_id', 'hash_algorithm', 'signature_sha256', 'not_before',
                                   'expires_at', 'finished_at', 'ses_message_id'] LOOP
            IF (o ->> col) IS NOT NULL AND (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of attempt %s/%s changed once set', col, o ->> 'link_id', o ->> 'attempt');
            END IF;
        END LOOP;
    ELSIF p_table = 'rejections' THEN
        FOREACH col IN ARRAY ARRAY['id', 'received_at', 'queue_url', 'message_id', 'event_id', 'field', 'reason',
                                   'kind', 'link_id'] LOOP
            IF (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of rejection %s changed', col, o ->> 'id');
            END IF;
        END LOOP;
        -- The body, by its hash (a generated column, computed before the AFTER trigger
        -- that judges the change sees the row).
        IF (n ->> 'body_sha256') IS NOT NULL AND (o -> 'body_sha256') IS DISTINCT FROM (n -> 'body_sha256') THEN
            RETURN format('the body of rejection %s changed', o ->> 'id');
        END IF;
        IF (n ->> 'receive_count')::int < (o ->> 'receive_count')::int
            OR (n ->> 'retry_count')::int NOT IN ((o ->> 'retry_count')::int, (o ->> 'retry_count')::int + 1)
            OR ((n ->> 'retry_count') = (o ->> 'retry_count')
                AND ((n -> 'retried_at') IS DISTINCT FROM (o -> 'retried_at')
                     OR (n -> 'retried_by') IS DISTINCT FROM (o -> 'retried_by'))) THEN
            RETURN format('the counts of rejection %s went back, or its last retry changed without a retry', o ->> 'id');
        END IF;
    ELSIF p_table = 'revocations' THEN
        FOREACH col IN ARRAY ARRAY['id', 'revoked_at', 'revoked_by', 'revoked_on', 'reason', 'selector'] LOOP
            IF (o -> col) IS DISTINCT FROM (n -> col) THEN
                RETURN format('%s of revocation %s changed', col, o ->> 'id');
            END IF;
        END LOOP;
    ELSIF o IS DISTINCT FROM n THEN
        RETURN format('%s row %s changed (its rows never change)', p_table, coalesce(o ->> 'id', o ->> 'xid'));
    END IF;
    RETURN NULL;
END
$$;

-- What happened, in a word, from the row before and after.
CREATE FUNCTION public.audit_event(p_table text, p_op text, o jsonb, n jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN CASE
        WHEN p_table = 'links' THEN CASE
            WHEN p_op = 'INSERT' THEN 'issued'
            WHEN o ->> 'revoked_at' IS NULL AND n ->> 'revoked_at' IS NOT NULL THEN 'revoked'
            WHEN (o ->> 'status') IS DISTINCT FROM (n ->> 'status') THEN n ->> 'status'
            WHEN (o ->> 'delivery') IS DISTINCT FROM (n ->> 'delivery') THEN 'delivery:' || coalesce(n ->> 'delivery', 'none')
            WHEN (o ->> 'attempts') IS DISTINCT FROM (n ->> 'attempts') THEN 'retaken'
            ELSE 'updated' END
        WHEN p_table = 'link_attempts' THEN CASE
            WHEN p_op = 'INSERT' THEN 'attempt'
            WHEN o ->> 'outcome' IS NULL AND n ->> 'outcome' IS NOT NULL THEN 'attempt:' || (n ->> 'outcome')
            WHEN o ->> 'sending_at' IS NULL AND n ->> 'sending_at' IS NOT NULL THEN 'attempt:sending'
            ELSE 'attempt:updated' END
        WHEN p_table = 'revocations' THEN CASE WHEN p_op = 'INSERT' THEN 'revocation' ELSE 'revocation:counted' END
        WHEN p_table = 'rejections' THEN CASE WHEN p_op = 'INSERT' THEN 'rejected' ELSE 'rejection:updated' END
        WHEN p_table = 'delivery_events' THEN 'delivery_event'
        WHEN p_table = 'rejection_retries' THEN 'rejection_retried'
        WHEN p_table = 'audit_purge_runs' THEN 'purge_run'
        ELSE lower(p_op)
    END;
END
$$;

-- May this row go, here? Only in a retention run's transaction, and only when the
-- retention rules hold for it against the run's cutoff: a link finished, issued
-- before the cutoff and expired; its attempts and SES events with it (or after it);
-- a rejection, an unmatched SES event or a retry received before the cutoff. Never a
-- revocation. SECURITY DEFINER: it reads the owner's tables for whoever deletes.
CREATE FUNCTION public.audit_link_purgeable(link jsonb, cutoff timestamptz) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN link ->> 'status' IN ('sent', 'failed') AND (link ->> 'created_at')::timestamptz < cutoff
           AND (link ->> 'expires_at') IS NOT NULL AND (link ->> 'expires_at')::timestamptz <= now();
END
$$;

CREATE FUNCTION public.audit_purge_allows(p_table text, o jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cutoff timestamptz := (SELECT r.cutoff FROM public.audit_purge_runs r WHERE r.xid = pg_current_xact_id());
    parent jsonb;
BEGIN
    IF cutoff IS NULL OR p_table = 'revocations' THEN
        RETURN false;
    ELSIF p_table = 'links' THEN
        RETURN public.audit_link_purgeable(o, cutoff);
    ELSIF p_table IN ('link_attempts', 'delivery_events') AND (o ->> 'link_id') IS NOT NULL THEN
        SELECT to_jsonb(l) INTO parent FROM public.links l WHERE l.link_id = (o ->> 'link_id')::uuid;
        -- Gone already: removed by this run, under the rules above.
        RETURN parent IS NULL OR public.audit_link_purgeable(parent, cutoff);
    ELSIF p_table IN ('delivery_events', 'rejections') THEN
        RETURN (o ->> 'received_at')::timestamptz < cutoff;
    ELSIF p_table = 'rejection_retries' THEN
        SELECT to_jsonb(j) INTO parent FROM public.rejections j WHERE j.id = (o ->> 'rejection_id')::bigint;
        RETURN parent IS NULL OR (parent ->> 'received_at')::timestamptz < cutoff;
    END IF;
    RETURN false;
END
$$;

CREATE FUNCTION public.audit_journal_append(p_table text, p_key text, p_event text, p_image jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
DECLARE
    s bigint := nextval('public.audit_journal_seq'::regclass);
    x xid8 := pg_current_xact_id();
    t timestamptz := now();
    digest bytea := CASE WHEN p_image IS NULL THEN NULL
                         ELSE sha256(convert_to(p_image::text, 'UTF8')) END;
BEGIN
    INSERT INTO public.audit_journal (seq, xid, at, table_name, row_key, event, row_sha256, entry_sha256)
    VALUES (s, x, t, p_table, p_key, p_event, digest,
            sha256(convert_to(public.audit_entry_line(s, x, t, p_table, p_key, p_event, digest), 'UTF8')));
END
$$;

-- Is this session the tables' owner (or a member of the owner role)? The owner is
-- trusted with what the rules refuse others: it seeds, migrates and repairs by hand,
-- and could disable the triggers anyway; what it breaks is journalled as tampering.
CREATE FUNCTION public.audit_session_owns(relid oid) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN pg_has_role(session_user, (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = relid), 'MEMBER');
END
$$;

-- The journal's trigger, which is also the guard of every update: one AFTER trigger
-- per row computes the row's images once, judges an update by the audit rules, and
-- raises a break for every role but the owner; the owner's goes through and is
-- journalled as `tampered: ...`, which `audit verify` names. (AFTER: it sees the row
-- as stored, generated columns included; raising here still undoes the statement.)
CREATE FUNCTION public.audit_journal_record() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
DECLARE
    o jsonb;
    n jsonb;
    broken text;
    event text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        o := public.audit_row_image(TG_TABLE_NAME, to_jsonb(OLD));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        n := public.audit_row_image(TG_TABLE_NAME, to_jsonb(NEW));
    END IF;
    IF TG_OP = 'DELETE' THEN
        event := CASE WHEN public.audit_purge_allows(TG_TABLE_NAME, o) THEN 'purged' ELSE 'deleted' END;
    ELSIF TG_OP = 'UPDATE' THEN
        -- A change the image does not show (a lease renewed) is not an event.
        IF o = n THEN
            RETURN NULL;
        END IF;
        broken := public.audit_rule_broken(TG_TABLE_NAME, o, n);
        IF broken IS NOT NULL AND NOT public.audit_session_owns(TG_RELID) THEN
            RAISE EXCEPTION '%: %', TG_TABLE_NAME, broken USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        event := coalesce('tampered: ' || broken, public.audit_event(TG_TABLE_NAME, TG_OP, o, n));
    ELSE
        event := public.audit_event(TG_TABLE_NAME, TG_OP, o, n);
    END IF;
    PERFORM public.audit_journal_append(TG_TABLE_NAME, public.audit_row_key(TG_TABLE_NAME, coalesce(n, o)), event, n);
    RETURN NULL;
END
$$;

-- A delete outside a retention run is refused for everyone (BEFORE: nothing is
-- removed); one that gets past a disabled guard is journalled as `deleted`.
CREATE FUNCTION public.audit_refuse_delete() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $$
BEGIN
    IF NOT public.audit_purge_allows(TG_TABLE_NAME, to_jsonb(OLD)) THEN
        RAISE EXCEPTION '% is append-only: rows are removed only by retention (doclink links purge), under its rules', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;

CREATE FUNCTION public.audit_refuse_truncate() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: it is never truncated', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION public.audit_refuse_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: its rows never change or go', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Times a role other than the owner writes are the database's own: an insert's, and
-- a set-once time's when it is set. A writer cannot backdate a revocation, an issue,
-- a send or a retry. (The owner, who seeds and migrates, is trusted with them.)
CREATE FUNCTION public.audit_stamp() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    given record := NEW;
    t timestamptz := now();
    moved boolean := false;  -- a time given was not the database's
BEGIN
    -- (`x <> t` is NULL for a NULL time, which stays NULL.)
    IF TG_TABLE_NAME = 'links' THEN
        IF TG_OP = 'INSERT' THEN
            IF NEW.created_at IS DISTINCT FROM t THEN NEW.created_at := t; moved := true; END IF;
            IF NEW.sending_at <> t THEN NEW.sending_at := t; moved := true; END IF;
            IF NEW.sent_at <> t THEN NEW.sent_at := t; moved := true; END IF;
            IF NEW.revoked_at <> t THEN NEW.revoked_at := t; moved := true; END IF;
        ELSE
            IF NEW.sending_at IS DISTINCT FROM OLD.sending_at AND NEW.sending_at <> t THEN
                NEW.sending_at := t; moved := true;
            END IF;
            IF OLD.sent_at IS NULL AND NEW.sent_at <> t THEN NEW.sent_at := t; moved := true; END IF;
            IF OLD.revoked_at IS NULL AND NEW.revoked_at <> t THEN NEW.revoked_at := t; moved := true; END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'link_attempts' THEN
        IF TG_OP = 'INSERT' THEN
            IF NEW.started_at IS DISTINCT FROM t THEN NEW.started_at := t; moved := true; END IF;
            IF NEW.sending_at <> t THEN NEW.sending_at := t; moved := true; END IF;
            IF NEW.finished_at <> t THEN NEW.finished_at := t; moved := true; END IF;
        ELSE
            IF OLD.sending_at IS NULL AND NEW.sending_at <> t THEN NEW.sending_at := t; moved := true; END IF;
            IF OLD.finished_at IS NULL AND NEW.finished_at <> t THEN NEW.finished_at := t; moved := true; END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'revocations' AND TG_OP = 'INSERT' THEN
        IF NEW.revoked_at IS DISTINCT FROM t THEN NEW.revoked_at := t; moved := true; END IF;
    ELSIF TG_TABLE_NAME = 'rejections' THEN
        IF TG_OP = 'INSERT' THEN
            IF NEW.received_at IS DISTINCT FROM t THEN NEW.received_at := t; moved := true; END IF;
            IF NEW.retried_at <> t THEN NEW.retried_at := t; moved := true; END IF;
        ELSIF NEW.retried_at IS DISTINCT FROM OLD.retried_at AND NEW.retried_at <> t THEN
            NEW.retried_at := t; moved := true;
        END IF;
    ELSIF TG_TABLE_NAME = 'rejection_retries' AND TG_OP = 'INSERT' THEN
        IF NEW.retried_at IS DISTINCT FROM t THEN NEW.retried_at := t; moved := true; END IF;
    ELSIF TG_TABLE_NAME = 'delivery_events' AND TG_OP = 'INSERT' THEN
        IF NEW.received_at IS DISTINCT FROM t THEN NEW.received_at := t; moved := true; END IF;
    END IF;
    -- The role is looked up only when a time given was not the database's (the daemon
    -- writes now() itself, so a letter's statements never need it).
    IF moved AND public.audit_session_owns(TG_RELID) THEN
        RETURN given;
    END IF;
    RETURN NEW;
END
$$;

-- A rejection's raw body stands in the image by its hash, so that a reader who may
-- not see the body (the auditor) can still check the row against the journal.
-- (convert_to is only STABLE, as the encoding could vary; the database's is UTF8.)
CREATE FUNCTION public.audit_body_sha256(body text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT sha256(convert_to(body, 'UTF8'))
$$;
ALTER TABLE public.rejections
    ADD COLUMN body_sha256 bytea GENERATED ALWAYS AS (public.audit_body_sha256(body)) STORED;

-- Journals every row of a table again (`rebaselined`): for a migration that changes
-- the table's columns, and so every row's image.
CREATE FUNCTION public.audit_rebaseline(p_table text) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
DECLARE
    r record;
    n bigint := 0;
BEGIN
    FOR r IN EXECUTE format('SELECT to_jsonb(t) AS j FROM public.%I t', p_table) LOOP
        PERFORM public.audit_journal_append(p_table, public.audit_row_key(p_table, r.j),
                                            'rebaselined', public.audit_row_image(p_table, r.j));
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The rows already here: one baseline entry each, in a stable order.
DO $$
DECLARE
    r record;
BEGIN
    SET LOCAL TimeZone = 'UTC';
    SET LOCAL bytea_output = 'hex';
    FOR r IN
        SELECT 'links' AS t, to_jsonb(l) AS j, l.created_at AS o1, l.link_id::text AS o2 FROM public.links l
        UNION ALL SELECT 'link_attempts', to_jsonb(a), a.started_at, a.link_id::text || '/' || lpad(a.attempt::text, 10, '0') FROM public.link_attempts a
        UNION ALL SELECT 'revocations', to_jsonb(v), v.revoked_at, lpad(v.id::text, 20, '0') FROM public.revocations v
        UNION ALL SELECT 'rejections', to_jsonb(j), j.received_at, lpad(j.id::text, 20, '0') FROM public.rejections j
        UNION ALL SELECT 'rejection_retries', to_jsonb(x), x.retried_at, lpad(x.id::text, 20, '0') FROM public.rejection_retries x
        UNION ALL SELECT 'delivery_events', to_jsonb(e), e.received_at, lpad(e.id::text, 20, '0') FROM public.delivery_events e
        ORDER BY 1, 3, 4
    LOOP
        PERFORM public.audit_journal_append(r.t, public.audit_row_key(r.t, r.j), 'baseline',
                                            public.audit_row_image(r.t, r.j));
    END LOOP;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['links', 'link_attempts', 'revocations', 'rejections', 'rejection_retries',
                             'delivery_events', 'audit_purge_runs'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON public.%I
                        FOR EACH ROW EXECUTE FUNCTION public.audit_journal_record()', t || '_journal', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON public.%I
                        FOR EACH ROW EXECUTE FUNCTION public.audit_stamp()', t || '_stamped', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON public.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION public.audit_refuse_truncate()', t || '_no_truncate', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['links', 'link_attempts', 'revocations', 'rejections', 'rejection_retries',
                             'delivery_events'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON public.%I
                        FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_delete()', t || '_no_delete', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['audit_journal', 'audit_seals', 'audit_purge_runs'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON public.%I
                        FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_change()', t || '_append_only', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['audit_journal', 'audit_seals'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON public.%I
                        FOR EACH STATEMENT EXECUTE FUNCTION public.audit_refuse_truncate()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- An SES notification is kept as received, and a retry of a rejection as recorded.
CREATE TRIGGER delivery_events_unchanged BEFORE UPDATE ON public.delivery_events
    FOR EACH ROW EXECUTE FUNCTION public.audit_refuse_change();

-- Seals every entry whose transaction has ended since the last seal. One sealer at a
-- time (the others return nothing); returns the new seal, or nothing when there was
-- nothing to seal. src/audit/journal.rs recomputes the same hash independently.
CREATE FUNCTION public.audit_seal() RETURNS SETOF public.audit_seals
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    last public.audit_seals;
    snap pg_snapshot;
    upto xid8;
    lower_bound xid8;
    n bigint;
    hashes text;
    sealed public.audit_seals;
BEGIN
    -- Each statement must see what committed before it: under REPEATABLE READ the
    -- entries read below would be those of an older snapshot than the bound.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_seal runs only in a READ COMMITTED transaction (this one is %)',
            current_setting('transaction_isolation') USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF NOT pg_try_advisory_xact_lock(7318251003174) THEN
        RETURN;
    END IF;
    -- The bound: the oldest transaction the snapshot saw running (its xip list: exact,
    -- cluster-wide, prepared transactions included), leaving out only those that
    -- pg_stat_activity or pg_prepared_xacts name as another database's (so that
    -- another database's long transaction does not hold sealing back); else the
    -- snapshot's xmax. A transaction that ends after the snapshot has committed or
    -- aborted before the count below reads the journal, so its entries are final either
    -- way; one that gets its id after the snapshot gets one at or above xmax. Those
    -- lists are read after the snapshot: a transaction they no longer show stays in the
    -- bound, which only leaves its entries to the next seal. (An earlier version widened
    -- pg_stat_activity's 32-bit ids against xmax, which PostgreSQL computes from the
    -- last completed id: an id given out after it came out negative, and the cast to
    -- xid8 wrapped that to a bound above every id, over transactions still writing.)
    snap := pg_current_snapshot();
    PERFORM pg_stat_clear_snapshot();
    SELECT min(x) INTO upto
      FROM pg_catalog.pg_snapshot_xip(snap) AS x
     WHERE (x::text::numeric % 4294967296) NOT IN (
            SELECT a.backend_xid::text::numeric
              FROM pg_catalog.pg_stat_activity a
             WHERE a.datid <> (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
               AND a.backend_xid IS NOT NULL
            UNION ALL
            SELECT p.transaction::text::numeric
              FROM pg_catalog.pg_prepared_xacts p
             WHERE p.database <> current_database());
    upto := coalesce(upto, pg_snapshot_xmax(snap));
    SELECT * INTO last FROM public.audit_seals ORDER BY id DESC LIMIT 1;
    lower_bound := coalesce(last.xid_to, '0'::xid8);
    IF upto <= lower_bound THEN
        RETURN;
    END IF;
    SELECT count(*), string_agg(encode(j.entry_sha256, 'hex'), E'\n' ORDER BY j.seq)
      INTO n, hashes
      FROM public.audit_journal j WHERE j.xid >= lower_bound AND j.xid < upto;
    IF n = 0 THEN
        RETURN;
    END IF;
    sealed.id := coalesce(last.id, 0) + 1;
    sealed.sealed_at := now();
    sealed.xid_from := lower_bound;
    sealed.xid_to := upto;
    sealed.entries := n;
    sealed.prev_sha256 := last.seal_sha256;
    sealed.seal_sha256 := sha256(convert_to(concat_ws(E'\n',
        coalesce(encode(last.seal_sha256, 'hex'), 'genesis'), sealed.id::text, lower_bound::text,
        upto::text, n::text, hashes), 'UTF8'));
    INSERT INTO public.audit_seals (id, sealed_at, xid_from, xid_to, entries, prev_sha256, seal_sha256)
    VALUES (sealed.id, sealed.sealed_at, sealed.xid_from, sealed.xid_to, sealed.entries, sealed.prev_sha256,
            sealed.seal_sha256);
    RETURN NEXT sealed;
END
$$;
