-- Evidence that cannot be quietly changed (issue 22): a tamper-evident journal of
-- every change to the audit tables, and guards that refuse deletes and rewrites.
-- Like every migration, it only adds; the rows already here get a baseline entry.
--
-- The journal (src/audit/journal.rs tells the whole design):
--   * Each INSERT, UPDATE or DELETE of an audit row appends one entry, written by a
--     trigger that runs as the tables' owner, so the daemon's role needs (and gets)
--     no INSERT on the journal and cannot forge an entry. An entry holds the row's
--     key, what happened, and the SHA-256 of the row's canonical image (its jsonb,
--     in UTC); the image itself is not kept (no personal data in the journal).
--   * Entries are chained in batches ("seals"), not one by one: a per-entry chain
--     would serialise every letter on one lock. A seal covers every entry whose
--     transaction id lies in [xid_from, xid_to), where xid_to is the oldest
--     transaction still running in this database when the seal was made, so no
--     later commit can add an entry to a sealed range. Its hash covers the previous seal's hash and the
--     hash of each entry in order. `doclink audit verify` recomputes all of it, and
--     compares each row's current image with its latest entry.

CREATE SEQUENCE audit_journal_seq;

CREATE TABLE audit_journal (
    seq          bigint PRIMARY KEY,
    xid          xid8 NOT NULL,                -- the writing transaction
    at           timestamptz NOT NULL,
    table_name   text NOT NULL,
    row_key      text NOT NULL,                -- link_id, link_id/attempt, or id
    event        text NOT NULL,                -- issued, sent, revoked, attempt:retry, purged, ...
    row_sha256   bytea,                        -- the row's image after the change; NULL once removed
    entry_sha256 bytea NOT NULL                -- SHA-256 of the entry's canonical line
);

CREATE INDEX audit_journal_xid_idx ON audit_journal (xid);

CREATE TABLE audit_seals (
    id           bigint PRIMARY KEY,
    sealed_at    timestamptz NOT NULL DEFAULT now(),
    xid_from     xid8 NOT NULL,
    xid_to       xid8 NOT NULL,
    entries      bigint NOT NULL,
    prev_sha256  bytea,                        -- NULL for the first seal
    seal_sha256  bytea NOT NULL,
    CHECK (xid_to > xid_from)
);

-- The canonical line an entry's hash covers (src/audit/journal.rs computes the same).
CREATE FUNCTION audit_entry_line(seq bigint, xid xid8, at timestamptz, table_name text, row_key text,
                                 event text, row_sha256 bytea) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT concat_ws('|', seq::text, xid::text,
                     (extract(epoch FROM at) * 1000000)::numeric(30, 0)::text,
                     table_name, row_key, event, coalesce(encode(row_sha256, 'hex'), '-'))
$$;

-- A row's canonical image: its jsonb, without what changes too often to be evidence
-- (a link's lease) and without what not every reader may see (a rejection's raw
-- body: its hash, the generated column body_sha256, stands for it).
CREATE FUNCTION audit_row_image(table_name text, r jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE table_name
        WHEN 'links' THEN r - 'lease_until'
        WHEN 'rejections' THEN r - 'body'
        ELSE r
    END
$$;

CREATE FUNCTION audit_row_key(table_name text, r jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE table_name
        WHEN 'links' THEN r ->> 'link_id'
        WHEN 'link_attempts' THEN (r ->> 'link_id') || '/' || (r ->> 'attempt')
        ELSE r ->> 'id'
    END
$$;

CREATE FUNCTION audit_journal_append(p_table text, p_key text, p_event text, p_image jsonb) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
DECLARE
    s bigint := nextval('audit_journal_seq');
    x xid8 := pg_current_xact_id();
    t timestamptz := now();
    digest bytea := CASE WHEN p_image IS NULL THEN NULL
                         ELSE sha256(convert_to(p_image::text, 'UTF8')) END;
BEGIN
    INSERT INTO audit_journal (seq, xid, at, table_name, row_key, event, row_sha256, entry_sha256)
    VALUES (s, x, t, p_table, p_key, p_event, digest,
            sha256(convert_to(audit_entry_line(s, x, t, p_table, p_key, p_event, digest), 'UTF8')));
END
$$;

-- What happened, in a word, from the row before and after.
CREATE FUNCTION audit_event(p_table text, p_op text, o jsonb, n jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_op = 'DELETE' THEN 'purged'
        WHEN p_table = 'links' THEN CASE
            WHEN p_op = 'INSERT' THEN 'issued'
            WHEN o ->> 'revoked_at' IS NULL AND n ->> 'revoked_at' IS NOT NULL THEN 'revoked'
            WHEN (o ->> 'status') IS DISTINCT FROM (n ->> 'status') THEN n ->> 'status'
            WHEN (o ->> 'delivery') IS DISTINCT FROM (n ->> 'delivery') THEN 'delivery:' || (n ->> 'delivery')
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
        ELSE lower(p_op)
    END
$$;

CREATE FUNCTION audit_journal_record() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public SET TimeZone = 'UTC' SET bytea_output = 'hex' AS $$
DECLARE
    o jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN audit_row_image(TG_TABLE_NAME, to_jsonb(OLD)) END;
    n jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN audit_row_image(TG_TABLE_NAME, to_jsonb(NEW)) END;
BEGIN
    -- A change the image does not show (a lease renewed) is not an event.
    IF TG_OP = 'UPDATE' AND o = n THEN
        RETURN NULL;
    END IF;
    PERFORM audit_journal_append(TG_TABLE_NAME, audit_row_key(TG_TABLE_NAME, coalesce(n, o)),
                                 audit_event(TG_TABLE_NAME, TG_OP, o, n), n);
    RETURN NULL;
END
$$;

-- A rejection's raw body stands in the image by its hash, so that a reader who may
-- not see the body (the auditor) can still check the row against the journal.
-- (convert_to is only STABLE, as the encoding could vary; the database's is UTF8.)
CREATE FUNCTION audit_body_sha256(body text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT sha256(convert_to(body, 'UTF8')) $$;
ALTER TABLE rejections
    ADD COLUMN body_sha256 bytea GENERATED ALWAYS AS (audit_body_sha256(body)) STORED;

-- The rows already here: one baseline entry each, in a stable order.
DO $$
DECLARE
    r record;
BEGIN
    SET LOCAL TimeZone = 'UTC';
    SET LOCAL bytea_output = 'hex';
    FOR r IN
        SELECT 'links' AS t, to_jsonb(l) AS j, l.created_at AS o1, l.link_id::text AS o2 FROM links l
        UNION ALL SELECT 'link_attempts', to_jsonb(a), a.started_at, a.link_id::text || '/' || lpad(a.attempt::text, 10, '0') FROM link_attempts a
        UNION ALL SELECT 'revocations', to_jsonb(v), v.revoked_at, lpad(v.id::text, 20, '0') FROM revocations v
        UNION ALL SELECT 'rejections', to_jsonb(j), j.received_at, lpad(j.id::text, 20, '0') FROM rejections j
        UNION ALL SELECT 'rejection_retries', to_jsonb(x), x.retried_at, lpad(x.id::text, 20, '0') FROM rejection_retries x
        UNION ALL SELECT 'delivery_events', to_jsonb(e), e.received_at, lpad(e.id::text, 20, '0') FROM delivery_events e
        ORDER BY 1, 3, 4
    LOOP
        PERFORM audit_journal_append(r.t, audit_row_key(r.t, r.j), 'baseline', audit_row_image(r.t, r.j));
    END LOOP;
END
$$;

CREATE TRIGGER links_journal AFTER INSERT OR UPDATE OR DELETE ON links
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();
CREATE TRIGGER link_attempts_journal AFTER INSERT OR UPDATE OR DELETE ON link_attempts
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();
CREATE TRIGGER revocations_journal AFTER INSERT OR UPDATE OR DELETE ON revocations
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();
CREATE TRIGGER rejections_journal AFTER INSERT OR UPDATE OR DELETE ON rejections
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();
CREATE TRIGGER rejection_retries_journal AFTER INSERT OR UPDATE OR DELETE ON rejection_retries
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();
CREATE TRIGGER delivery_events_journal AFTER INSERT OR UPDATE OR DELETE ON delivery_events
    FOR EACH ROW EXECUTE FUNCTION audit_journal_record();

-- Seals every entry whose transaction has ended since the last seal. One sealer at a
-- time (the others return nothing); returns the new seal, or nothing when there was
-- nothing to seal. src/audit/journal.rs recomputes the same hash independently.
CREATE FUNCTION audit_seal() RETURNS SETOF audit_seals
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public SET TimeZone = 'UTC' AS $$
DECLARE
    last audit_seals;
    snap pg_snapshot := pg_current_snapshot();
    next_xid numeric := pg_snapshot_xmax(snap)::text::numeric;
    oldest_here numeric;
    upto xid8;
    lower_bound xid8;
    n bigint;
    hashes text;
    sealed audit_seals;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7318251003174) THEN
        RETURN;
    END IF;
    -- The oldest transaction still running in THIS database bounds the seal (not the
    -- cluster's oldest: another database's long transaction must not hold it back).
    -- pg_stat_activity gives 32-bit ids; they are widened against the next id. A
    -- transaction that ends between the snapshot and this read has committed or
    -- aborted, so its entries are final either way; one that starts after the
    -- snapshot gets an id at or above its xmax.
    PERFORM pg_stat_clear_snapshot();
    SELECT min(CASE WHEN a.backend_xid::text::numeric <= next_xid % 4294967296
                    THEN next_xid - next_xid % 4294967296 + a.backend_xid::text::numeric
                    ELSE next_xid - next_xid % 4294967296 - 4294967296 + a.backend_xid::text::numeric END)
      INTO oldest_here
      FROM pg_stat_activity a
     WHERE a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND a.backend_xid IS NOT NULL;
    upto := least(next_xid, coalesce(oldest_here, next_xid))::text::xid8;
    SELECT * INTO last FROM audit_seals ORDER BY id DESC LIMIT 1;
    lower_bound := coalesce(last.xid_to, '0'::xid8);
    IF upto <= lower_bound THEN
        RETURN;
    END IF;
    SELECT count(*), string_agg(encode(entry_sha256, 'hex'), E'\n' ORDER BY seq)
      INTO n, hashes
      FROM audit_journal WHERE xid >= lower_bound AND xid < upto;
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
    INSERT INTO audit_seals (id, sealed_at, xid_from, xid_to, entries, prev_sha256, seal_sha256)
    VALUES (sealed.id, sealed.sealed_at, sealed.xid_from, sealed.xid_to, sealed.entries, sealed.prev_sha256,
            sealed.seal_sha256);
    RETURN NEXT sealed;
END
$$;

-- ---------------------------------------------------------------------------------
-- Guards. Nothing here is deleted except by retention (the audit_purge functions in
-- the next migration, which mark their transaction), nothing is truncated, and the
-- journal and its seals never change.
-- ---------------------------------------------------------------------------------

CREATE FUNCTION audit_refuse_delete() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF current_setting('doclink.retention', true) IS DISTINCT FROM pg_current_xact_id()::text THEN
        RAISE EXCEPTION '% is append-only: rows are removed only by retention (doclink links purge)', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;

CREATE FUNCTION audit_refuse_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: it is never truncated', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE FUNCTION audit_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: its rows never change or go', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['links', 'link_attempts', 'revocations', 'rejections', 'rejection_retries', 'delivery_events'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_refuse_delete()',
                       t || '_no_delete', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate()',
                       t || '_no_truncate', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['audit_journal', 'audit_seals'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate()',
                       t || '_no_truncate', t);
    END LOOP;
END
$$;

-- An SES event notification is kept as received: it never changes.
CREATE TRIGGER delivery_events_unchanged BEFORE UPDATE ON delivery_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

-- What a link is never changes: who it went to, which document, which key first
-- signed it, when it was issued; and once set, when it was sent and its revocation.
CREATE FUNCTION links_keep_facts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.link_id <> OLD.link_id OR NEW.event_id <> OLD.event_id
        OR NEW.document_key <> OLD.document_key OR NEW.resource_url <> OLD.resource_url
        OR NEW.recipient_email <> OLD.recipient_email
        OR NEW.recipient_name IS DISTINCT FROM OLD.recipient_name
        OR NEW.key_pair_id <> OLD.key_pair_id OR NEW.created_at <> OLD.created_at
        OR (OLD.sent_at IS NOT NULL AND NEW.sent_at IS DISTINCT FROM OLD.sent_at)
        OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
        OR (OLD.revocation_id IS NOT NULL AND NEW.revocation_id IS DISTINCT FROM OLD.revocation_id)
        OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_reason IS DISTINCT FROM OLD.revoked_reason) THEN
        RAISE EXCEPTION 'links: link %''s recipient, document, key, issue time, send time and revocation never change once set', OLD.link_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER links_facts_unchanged BEFORE UPDATE ON links
    FOR EACH ROW EXECUTE FUNCTION links_keep_facts();
