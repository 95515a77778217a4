//! The event-id claim, through the library against PostgreSQL: a second claim while
//! the first holds its lease is Busy and names the holder's message, and a claim on
//! an unfinished link that was revoked finds it finished, never to be sent.
//! (`make mutants` found no test that told these apart.)

mod support;

use chrono::Utc;
use doclink::audit::{AuditLog, Claim, NewLink, SendingRecord};
use doclink::signing::KeyKind;
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
