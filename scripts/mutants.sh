#!/usr/bin/env bash
# The mutation drill (`make mutants`, inside scripts/stack.sh): cargo-mutants breaks
# the functions that carry doclink's guarantees one small change at a time, and the
# tests that own each guarantee must notice. Writes MUTANTS.md through
# scripts/mutants_report.py, which exits non-zero when a mutant survived that
# mutants-explained.txt does not explain.
#
# Only the guarantees are mutated, in groups. Each group is one cargo-mutants run
# over its functions (--file, --re), builds only the test binaries that own them
# (--cargo-arg=--lib / --test NAME) and runs only the owning tests, under nextest
# (-E), stopping at the first failure (--max-fail 1:immediate). A group's baseline
# (the same tests, unmutated) runs first and must pass.
#
# The tree is copied to a scratch directory (never mutated in place: others work in
# this tree); the copy builds into target/mutants-cache, kept between runs, so only
# doclink itself is rebuilt. Debug info is off there (faster links).
#
# cargo-mutants is installed on first use into a cache under $CARGO_HOME (like
# cargo-deny in scripts/audit.sh): `cargo install --locked`, from crates.io.
#
# DOCLINK_MUTANTS_GROUPS="breaker poison" runs only those groups (the report then
# says it is partial). DOCLINK_TEST_JOBS sets nextest's parallelism (default 6).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=27.1.0
tools="${CARGO_HOME:-$HOME/.cargo}/doclink-tools/cargo-mutants-$version"
out="$root/mutants.out"
cache="$root/target/mutants-cache"

log() { echo "mutants: $*" >&2; }

installed() { [ -x "$tools/bin/cargo-mutants" ] && "$tools/bin/cargo-mutants" mutants --version 2>/dev/null | grep -qx "cargo-mutants $version"; }

if ! installed; then
    started=$SECONDS
    log "building cargo-mutants $version from crates.io into $tools"
    cargo install --locked --quiet cargo-mutants --version "$version" --root "$tools"
    installed
    log "installed cargo-mutants $version in $((SECONDS - started)) s"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest is missing: installing it from crates.io into $tools"
    cargo install --locked --quiet cargo-nextest --root "$tools"
fi
export PATH="$tools/bin:$PATH"

if [ -z "${DATABASE_URL:-}" ] || [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    log "DATABASE_URL and AWS_ENDPOINT_URL are not set: run through scripts/stack.sh (make mutants)"
    exit 1
fi

# ---------------------------------------------------------------------------------
# The groups. tests: BINARY-ID/TEST-NAME (nextest's names; BINARY-ID `doclink` is the
# library's unit tests, `doclink::NAME` is tests/NAME.rs), or BINARY-ID/PREFIX* for
# every test whose name starts with PREFIX.
# ---------------------------------------------------------------------------------
declare -a groups=()
declare -A label files regex tests

groups+=(heartbeat)
label[heartbeat]="visibility heartbeat"
files[heartbeat]="src/runtime/heartbeat.rs"
regex[heartbeat]='(replace|in) InFlight::[a-z_]+( |$)'
tests[heartbeat]="
    doclink/runtime::heartbeat::*
    doclink::resilience/slow_answers_keep_their_messages_invisible_with_heartbeats
    doclink::resilience/sigterm_finishes_in_flight_letters_releases_the_rest_and_loses_nothing
    doclink::faults/a_failed_visibility_change_only_delays_the_retry
    doclink::faults/a_message_deleted_by_someone_else_while_in_flight_loses_nothing"

groups+=(ses)
label[ses]="SES error classification"
files[ses]="src/mail/ses.rs"
regex[ses]='(replace|in) (SendError::certainly_not_sent|SendError::class|classify|classify_dispatch|classify_service)( |$)'
tests[ses]="
    doclink/mail::ses::*
    doclink::resilience/throttling_is_retried_with_backoff_and_nothing_is_lost
    doclink::resilience/server_errors_are_retried_and_the_retries_flagged_as_possible_duplicates
    doclink::resilience/a_permanent_rejection_marks_the_link_failed_and_the_others_go_out
    doclink::resilience/an_account_that_cannot_send_stops_the_worker_and_keeps_every_message
    doclink::resilience/credential_and_permission_errors_stop_the_worker_and_fail_no_letter
    doclink::resilience/an_unknown_error_code_is_retried_and_never_fails_a_letter"

groups+=(claims)
label[claims]="claim and lease guard"
files[claims]="src/audit/claims.rs"
regex[claims]='(replace|in) (Held::from_rows|AttemptEnd::as_str|seconds|AuditLog::(claim|mark_sent|mark_failed|release))( |$)'
tests[claims]="
    doclink/audit::claims::*
    doclink::resilience/a_worker_whose_lease_lapsed_changes_nothing_and_keeps_its_message
    doclink::resilience/an_event_whose_attempts_keep_dying_is_set_aside_as_poison
    doclink::resilience/a_permanent_rejection_marks_the_link_failed_and_the_others_go_out
    doclink::resilience/sigterm_finishes_in_flight_letters_releases_the_rest_and_loses_nothing
    doclink::pipeline/every_event_becomes_one_email_with_a_verifying_link_and_one_audit_row
    doclink::pipeline/the_same_event_twice_sends_one_email
    doclink::pipeline/a_send_whose_outcome_was_unknown_is_resent_and_flagged
    doclink::audit/an_ended_attempt_cannot_be_rewritten"

groups+=(revocation)
label[revocation]="revocation check"
files[revocation]="src/audit/claims.rs src/audit/revocations.rs src/commands/verify.rs"
regex[revocation]='(replace|in) (AuditLog::(retake|mark_sending|is_revoked)|revoked_in_audit_log)( |$)|match guard revoked_in_audit_log'
tests[revocation]="
    doclink::claims/a_held_claim_is_busy_and_a_revoked_unfinished_link_is_finished
    doclink::claims/marking_sending_tells_a_claim_lost_to_another_worker_from_a_revoked_link
    doclink::review/a_link_revoked_between_the_retake_and_the_send_is_not_sent
    doclink::resilience/a_worker_whose_lease_lapsed_changes_nothing_and_keeps_its_message
    doclink::audit/a_revoked_link_is_refused_at_the_edge_and_by_verify
    doclink::audit/revoking_records_who_when_why_and_is_idempotent
    doclink::pipeline/the_same_event_twice_sends_one_email
    doclink::pipeline/a_send_whose_outcome_was_unknown_is_resent_and_flagged"

groups+=(breaker)
label[breaker]="circuit breaker"
files[breaker]="src/mail/breaker.rs src/mail/mod.rs"
regex[breaker]='(replace|in) (FailureBreaker::[a-z_]+|Outbox::send)( |$)'
tests[breaker]="
    doclink/mail::breaker::tests::trips_on_the_threshold_th_refusal_with_one_code_in_a_row
    doclink::resilience/the_same_refusal_for_letter_after_letter_trips_the_breaker_and_keeps_the_rest
    doclink::resilience/a_permanent_rejection_marks_the_link_failed_and_the_others_go_out"

groups+=(poison)
label[poison]="poison count (DOCLINK_POISON_AFTER)"
files[poison]="src/letter.rs"
regex[poison]='(replace|in) Pipeline::(resume|poison)( |$)'
tests[poison]="
    doclink::resilience/an_event_whose_attempts_keep_dying_is_set_aside_as_poison
    doclink::pipeline/a_send_whose_outcome_was_unknown_is_resent_and_flagged
    doclink::kms_signer/a_retaken_link_keeps_its_possible_duplicate_flag_through_a_kms_fault
    doclink::kms_signer/a_retaken_link_whose_key_kms_refuses_stops_the_daemon_and_stays_on_the_queue"

groups+=(kms)
label[kms]="KMS faults and pacing"
files[kms]="src/kms.rs src/letter.rs src/mail/pacing.rs src/config.rs"
regex[kms]='(replace|in) (KmsError::is_account_fault|Pipeline::draft_failed|quota|SendPacer::until_ready|signer_setting)( |$)'
tests[kms]="
    doclink/kms::*
    doclink/mail::pacing::*
    doclink/config::*
    doclink::kms_signer/transient_kms_faults_delay_letters_and_lose_none
    doclink::kms_signer/a_kms_fault_about_the_key_stops_the_daemon_with_every_letter_on_the_queue
    doclink::kms_signer/a_retaken_link_keeps_its_possible_duplicate_flag_through_a_kms_fault
    doclink::kms_signer/a_retaken_link_whose_key_kms_refuses_stops_the_daemon_and_stays_on_the_queue
    doclink::startup/every_kms_fault_at_start_up_exits_3_or_2_with_one_clear_message_and_consumes_nothing"

groups+=(verify)
label[verify]="verify-after-sign"
files[verify]="src/signing/signer.rs src/signing/verify.rs"
regex[verify]="(replace|in) (UrlSigner::(sign|sign_canned|prepare|prepare_canned|finish|raw_signature)|LinkVerifier::verify|SignedUrlParts<'a>::parse|PolicyTerms::from_json|parse_epoch)( |\$)"
tests[verify]="
    doclink/signing::*
    doclink::signing/*"

groups+=(redaction)
label[redaction]="log redaction"
files[redaction]="src/signing/signer.rs src/config.rs"
regex[redaction]='(replace|in) (<impl fmt::Debug for SignedLink>::fmt|SignedLink::unsigned_url|SignedLink::signature_sha256|<impl std::fmt::Debug for Settings>::fmt)( |$)'
tests[redaction]="
    doclink/config::*
    doclink/signing::*
    doclink::signing/*
    doclink::pipeline/every_event_becomes_one_email_with_a_verifying_link_and_one_audit_row
    doclink::secrets/no_secret_reaches_the_logs_metrics_database_or_error_output"

selected=(${DOCLINK_MUTANTS_GROUPS:-${groups[*]}})
for name in "${selected[@]}"; do
    [ -n "${label[$name]:-}" ] || { log "no group $name (groups: ${groups[*]})"; exit 1; }
done

# nextest's filterset and cargo's target arguments for a group's tests.
filterset() {
    local spec binary name parts=()
    for spec in $1; do
        binary=${spec%%/*} name=${spec#*/}
        if [ "$name" = "*" ]; then
            parts+=("binary_id($binary)")
        elif [ "${name%\*}" != "$name" ]; then
            parts+=("(binary_id($binary) & test(/^${name%\*}/))")
        else
            parts+=("(binary_id($binary) & test(=$name))")
        fi
    done
    local IFS='|'
    echo "${parts[*]}" | sed 's/|/ | /g'
}
target_args() {
    local spec binary
    for spec in $1; do
        binary=${spec%%/*}
        if [ "$binary" = doclink ]; then echo "--cargo-arg=--lib"; else echo "--cargo-arg=--test=${binary#doclink::}"; fi
    done | sort -u
}

rm -rf "$out.old"
[ -e "$out" ] && mv "$out" "$out.old"
mkdir -p "$out"
# The copies stay in the system's temporary directory: a package root inside the
# target directory would have cargo record its sources relative to the target
# directory, so that a later copy is judged by the files of an earlier one.
export CARGO_TARGET_DIR="$cache"
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0

# The tree as cargo-mutants copies it (the working tree, uncommitted changes
# included), at the start of the run and of each group: others may commit meanwhile.
tree_state() {
    echo "commit $(git -C "$root" rev-parse HEAD)"
    git -C "$root" status --porcelain --untracked-files=all -- . ':!mutants.out*' ':!MUTANTS.md' | sed 's/^/changed /'
}
tree_state >"$out/tree.txt"
{
    echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "groups ${selected[*]}"
    echo "all_groups ${groups[*]}"
} >"$out/run.txt"

status=0
started=$SECONDS
for name in "${selected[@]}"; do
    command=(cargo mutants --no-config --dir "$root" --output "$out/$name"
        --gitignore=true --test-tool=nextest --baseline=run
        --timeout-multiplier=2 --minimum-test-timeout=60)
    for f in ${files[$name]}; do command+=(--file="$f"); done
    command+=(--re="${regex[$name]}")
    mapfile -t targets < <(target_args "${tests[$name]}")
    command+=("${targets[@]}")
    command+=(-- --max-fail=1:immediate --no-tests=fail
        -j "${DOCLINK_TEST_JOBS:-6}" -E "$(filterset "${tests[$name]}")")
    log "group $name (${label[$name]}): ${command[*]}"
    tree_before=$(tree_state)
    group_started=$SECONDS
    set +e
    nice -n 10 "${command[@]}"
    code=$?
    set -e
    # 0: every mutant caught; 2: some missed; 3: some timed out. Anything else (4:
    # the baseline failed) means this group tested nothing.
    case $code in 0 | 2 | 3) ;; *) status=1; log "group $name: cargo-mutants exited $code" ;; esac
    mkdir -p "$out/$name"
    {
        echo "label ${label[$name]}"
        echo "$tree_before" | sed 's/^/tree /'
        echo "exit $code"
        echo "seconds $((SECONDS - group_started))"
        for spec in ${tests[$name]}; do echo "test $spec"; done
    } >"$out/$name/group.txt"
    printf '%s\0' "${command[@]}" >"$out/$name/command"
done
echo "seconds $((SECONDS - started))" >>"$out/run.txt"
echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$out/run.txt"

python3 "$root/scripts/mutants_report.py" "$out" "$root/mutants-explained.txt" "$root/MUTANTS.md" || status=1
exit $status
