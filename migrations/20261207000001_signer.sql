-- Which signer made each signature (issue 20): `local` (the private key, decrypted by
-- KMS into doclink's memory at start-up) or `kms:` and the ARN of the KMS key that
-- signed it inside KMS. Like every migration, this only adds: rows written before it
-- keep NULL, which means "not recorded"; until this migration `local` was the only
-- signer doclink had.
--
--   links.signer:          the link's FIRST signature's signer, a fact like its
--                          key_pair_id (never changed);
--   link_attempts.signer:  the signer of the signature that attempt handed to SES,
--                          set once like its key_pair_id.

ALTER TABLE public.links ADD COLUMN signer text;
ALTER TABLE public.link_attempts ADD COLUMN signer text;

-- The rules of 20261206000003 stand; the two new columns join the facts and the
-- set-once columns. The journal's trigger calls audit_rule_broken by name, so this
-- wrapper judges every update from now on.
ALTER FUNCTION public.audit_rule_broken(text, jsonb, jsonb) RENAME TO audit_rule_broken_20261206;
CREATE FUNCTION public.audit_rule_broken(p_table text, o jsonb, n jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    verdict text := public.audit_rule_broken_20261206(p_table, o, n);
BEGIN
    IF verdict IS NOT NULL THEN
        RETURN verdict;
    END IF;
    IF p_table = 'links' AND (o -> 'signer') IS DISTINCT FROM (n -> 'signer') THEN
        RETURN format('signer of link %s changed (a link''s facts never change)', o ->> 'link_id');
    END IF;
    IF p_table = 'link_attempts' AND (o ->> 'signer') IS NOT NULL
        AND (o -> 'signer') IS DISTINCT FROM (n -> 'signer') THEN
        RETURN format('signer of attempt %s/%s changed once set', o ->> 'link_id', o ->> 'attempt');
    END IF;
    RETURN NULL;
END
$$;

-- The writer sets an attempt's signer when a retaken link is signed again, as it
-- sets the attempt's key (links.signer is written only by the INSERT, which the
-- writer may do on the whole table). audit_grant_roles keeps doing everything it
-- did, and grants this too, also for roles made after this migration; and USAGE on
-- schema public to the four roles, which the earlier version took for granted.
ALTER FUNCTION public.audit_grant_roles() RENAME TO audit_grant_roles_20261206;
CREATE FUNCTION public.audit_grant_roles() RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing text := public.audit_grant_roles_20261206();
    p text := (SELECT role_prefix FROM public.audit_settings);
BEGIN
    IF missing IS NOT NULL THEN
        RETURN missing;
    END IF;
    EXECUTE format('GRANT UPDATE (signer) ON public.link_attempts TO %I', p || 'writer');
    -- Every role works in schema public, the owner's trigger functions (SECURITY
    -- DEFINER) included: a schema public made again, or hardened, grants no USAGE to
    -- PUBLIC, and every letter then failed with "permission denied for schema public"
    -- (seen when a benchmark recreated the schema).
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I, %I, %I, %I',
                   p || 'owner', p || 'writer', p || 'auditor', p || 'retention');
    REVOKE ALL ON FUNCTION public.audit_grant_roles_20261206(), public.audit_grant_roles() FROM PUBLIC;
    EXECUTE format('ALTER FUNCTION public.audit_rule_broken_20261206(text, jsonb, jsonb) OWNER TO %I', p || 'owner');
    RETURN NULL;
END
$$;

-- Every row's image now holds the new column: journal them again.
SELECT public.audit_rebaseline('links');
SELECT public.audit_rebaseline('link_attempts');

DO $$
DECLARE
    missing text := public.audit_grant_roles();
BEGIN
    IF missing IS NOT NULL THEN
        RAISE WARNING 'doclink roles not set up: %', missing;
    END IF;
END
$$;
