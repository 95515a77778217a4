//! doclink: mails customers CloudFront-signed links to their private documents.
//!
//! The modules follow a letter's path. An SQS [`queue`] message holds an [`event`];
//! the [`letter`] pipeline signs its link ([`signing`]), renders and sends the email
//! ([`mail`]) and records it in the [`audit`] log. The [`runtime`] receives
//! messages, keeps them invisible while they are worked on and settles them on the
//! queue; [`startup`] builds it all from [`config`]. [`stats`] counts what happens
//! and [`http`] serves it.

pub mod access_log;
pub mod anchor;
pub mod audit;
pub mod config;
pub mod delivery;
pub mod doctor;
pub mod duration;
pub mod edge;
pub mod error;
pub mod event;
pub mod hardening;
pub mod http;
pub mod json;
pub mod kms;
pub mod kms_signing;
pub mod letter;
pub mod logging;
pub mod mail;
pub mod queue;
pub mod runtime;
pub mod signing;
pub mod startup;
pub mod stats;
