//! doclink: mails customers CloudFront-signed links to their private documents.
//!
//! The modules follow the pipeline: an SQS [`queue`] message holds an [`event`]; a
//! link is [`signing`]-signed; the [`mail`] is rendered and sent; the [`audit`] log
//! records it. The [`worker`] composes them; [`startup`] builds it from [`config`].

pub mod audit;
pub mod config;
pub mod duration;
pub mod event;
pub mod http;
pub mod kms;
pub mod mail;
pub mod queue;
pub mod signing;
pub mod startup;
pub mod worker;
