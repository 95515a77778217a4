//! The event-id claim, through the library against PostgreSQL: a second claim while
//! the first holds its lease is Busy and names the holder's message, and a claim on
//! an unfinished link that was revoked finds it finished, never to be sent. Marking
//! a retaken link as being sent tells a claim lost to another worker from a link
//! revoked since. (`make mutants` found no test that told these apart.)

mod support;

use chrono::Utc;
use doclink::audit::{
    Actor, AuditLog, Claim, ClaimToken, LinkSelector, NewLink, Sending, SendingRecord, SigningKey,
};
use doclink::signing::KeyKind;
use sqlx::Row;
use std::time::Duration;
use support::TestStack;
use uuid::Uuid;

fn link<'a>(event_id: &'a str, message_id: &'a str) -> NewLink<'a> {
    NewLink {
        link_id: Uuid::new_v4(),
        event_id,
        document_key: "claims/a.pdf",
        recipient_email: "someone@example.org",
        recipient_name: None,
        template: "decision_letter",
        locale: "en",
        key_pair_id: support::KEY_PAIR_ID,
        hash_algorithm: "SHA1",
        signer: "local",
        message_id,
    }
}

#[tokio::test]
async fn a_held_claim_is_busy_and_a_revoked_unfinished_link_is_finished() {
    let stack = TestStack::new("claims", KeyKind::EcdsaP256).await;
    doclink::audit::migrate(&stack.pool, doclink::audit::DEFAULT_ROLE_PREFIX)
        .await
        .unwrap();
    let audit = AuditLog::new(stack.pool.clone(), 2);
    let signature = [7u8; 32];
    let signed = SendingRecord {
        resource_url: "https://letters.example.net/claims/a.pdf",
        not_before: None,
        expires_at: Utc::now() + chrono::Duration::hours(1),
        signature_sha256: &signature,
    };
    let lease = Duration::from_secs(300);

    let first = audit
        .claim(&link("e-1", "m-1"), &signed, lease)
        .await
        .unwrap();
    let Claim::New(token) = first else {
        panic!("the first claim is new: {first:?}")
    };
    // The lease is held: the producer's second message for the event must wait for
    // the holder, not be deleted as finished.
    let second = audit
        .claim(&link("e-1", "m-2"), &signed, lease)
        .await
        .unwrap();
    assert_eq!(
        second,
        Claim::Busy {
            link_id: token.link_id,
            holder_message_id: Some("m-1".into()),
        }
    );

    // Revoked while still unfinished: whoever claims it next finds it finished.
    sqlx::query("UPDATE links SET revoked_at = now() WHERE link_id = $1")
        .bind(token.link_id)
        .execute(&stack.pool)
        .await
        .unwrap();
    let third = audit
        .claim(&link("e-1", "m-3"), &signed, lease)
        .await
        .unwrap();
    assert_eq!(
        third,
        Claim::Finished {
            link_id: token.link_id,
            status: "revoked".into(),
        }
    );
}

/// Ends the lease on `link_id` now, as if its holder had stalled past it.
async fn lapse(stack: &TestStack, link_id: Uuid) {
    sqlx::query("UPDATE links SET lease_until = now() - interval '1 second' WHERE link_id = $1")
        .bind(link_id)
        .execute(&stack.pool)
        .await
        .unwrap();
}

/// What an attempt recorded: its outcome, and whether it was handed to SES.
async fn attempt(stack: &TestStack, link_id: Uuid, attempt: i32) -> (Option<String>, bool) {
    let row = sqlx::query(
        "SELECT outcome, sending_at IS NOT NULL AS sending FROM link_attempts
         WHERE link_id = $1 AND attempt = $2",
    )
    .bind(link_id)
    .bind(attempt)
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    (row.get("outcome"), row.get("sending"))
}

/// The link's possible-duplicate flag, and whether it is revoked.
async fn flags(stack: &TestStack, link_id: Uuid) -> (bool, bool) {
    sqlx::query_as(
        "SELECT possible_duplicate, revoked_at IS NOT NULL FROM links WHERE link_id = $1",
    )
    .bind(link_id)
    .fetch_one(&stack.pool)
    .await
    .unwrap()
}

/// Marking a retaken link as being sent tells three cases apart. A worker whose
/// claim another worker took over in the meantime (its lease lapsed, the event was
/// retaken) finds its claim lost: nothing is recorded, its attempt is not called
/// revoked, and the pipeline leaves its message for a redelivery. The worker that
/// holds the claim keeps it. A worker whose link was revoked after it retook it finds
/// it revoked, and its attempt says so.
#[tokio::test]
async fn marking_sending_tells_a_claim_lost_to_another_worker_from_a_revoked_link() {
    let stack = TestStack::new("claims-lost", KeyKind::EcdsaP256).await;
    doclink::audit::migrate(&stack.pool, doclink::audit::DEFAULT_ROLE_PREFIX)
        .await
        .unwrap();
    let audit = AuditLog::new(stack.pool.clone(), 2);
    let signature = [7u8; 32];
    let signed = SendingRecord {
        resource_url: "https://letters.example.net/claims/a.pdf",
        not_before: None,
        expires_at: Utc::now() + chrono::Duration::hours(1),
        signature_sha256: &signature,
    };
    let key = SigningKey {
        key_pair_id: support::KEY_PAIR_ID,
        hash_algorithm: "SHA1",
        signer: "local",
    };
    let lease = Duration::from_secs(300);

    let first = audit
        .claim(&link("e-1", "m-1"), &signed, lease)
        .await
        .unwrap();
    let Claim::New(first) = first else {
        panic!("the first claim is new: {first:?}")
    };
    let link_id = first.link_id;
    // The first worker dies after handing the letter to SES (the claim records the
    // link as being sent); worker B retakes the event ...
    lapse(&stack, link_id).await;
    let b = audit
        .claim(&link("e-1", "m-2"), &signed, lease)
        .await
        .unwrap();
    let b_token = ClaimToken {
        link_id,
        attempt: 2,
    };
    assert_eq!(
        b,
        Claim::Retaken {
            token: b_token,
            was_sending: true,
            abandoned: 1,
        }
    );
    // ... and stalls past its lease before marking the link sending: worker C
    // retakes it.
    lapse(&stack, link_id).await;
    let c = audit
        .claim(&link("e-1", "m-3"), &signed, lease)
        .await
        .unwrap();
    let c_token = ClaimToken {
        link_id,
        attempt: 3,
    };
    assert_eq!(
        c,
        Claim::Retaken {
            token: c_token,
            was_sending: true,
            abandoned: 2,
        }
    );

    // B's claim is lost, not revoked: nothing recorded on the link or its attempt.
    let sending = audit
        .mark_sending(b_token, &signed, &key, true, lease)
        .await
        .unwrap();
    assert_eq!(sending, Sending::Lost);
    assert_eq!(attempt(&stack, link_id, 2).await, (None, false));
    assert_eq!(flags(&stack, link_id).await, (false, false));

    // C holds the claim: it keeps it, and the link is being sent.
    let sending = audit
        .mark_sending(c_token, &signed, &key, true, lease)
        .await
        .unwrap();
    assert_eq!(sending, Sending::Kept);
    assert_eq!(attempt(&stack, link_id, 3).await, (None, true));
    assert_eq!(flags(&stack, link_id).await, (true, false));

    // C's send has an unknown outcome and C dies; D retakes the link, which is
    // revoked before D marks it sending: D finds it revoked and records so.
    lapse(&stack, link_id).await;
    let d = audit
        .claim(&link("e-1", "m-4"), &signed, lease)
        .await
        .unwrap();
    let d_token = ClaimToken {
        link_id,
        attempt: 4,
    };
    assert_eq!(
        d,
        Claim::Retaken {
            token: d_token,
            was_sending: true,
            abandoned: 3,
        }
    );
    let actor = Actor {
        name: "claims-test".into(),
        host: "test".into(),
    };
    let report = audit
        .revoke(&LinkSelector::link(link_id), "leaked", &actor, false)
        .await
        .unwrap();
    assert_eq!(report.revoked, 1);
    let sending = audit
        .mark_sending(d_token, &signed, &key, true, lease)
        .await
        .unwrap();
    assert_eq!(sending, Sending::Revoked);
    assert_eq!(
        attempt(&stack, link_id, 4).await,
        (Some("revoked".into()), false)
    );
    assert_eq!(flags(&stack, link_id).await, (true, true));
}
