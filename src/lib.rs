//! doclink: mails customers CloudFront-signed links to their private documents.
//!
//! The modules follow the pipeline: an SQS [`event`] is parsed, a link is
//! [`signing`]-signed, the [`mail`] is rendered and sent, and the [`audit`] log
//! records it; the [`worker`] composes them.

pub mod duration;
pub mod signing;
pub mod kms;
