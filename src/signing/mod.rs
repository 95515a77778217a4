//! CloudFront URL signing: a pure function of key, policy and URL. It knows no
//! database, queue or mail, which keeps it easy to test and to benchmark.

pub mod encoding;
pub mod keys;
pub mod policy;
pub mod signer;
pub mod url;
pub mod verify;

pub use keys::{HashAlgorithm, KeyError, KeyKind, PrivateKey, PublicKey};
pub use policy::{IpRange, LinkTerms, Policy, PolicyError, ResourcePattern};
pub use signer::{KeyPairId, PolicyToSign, SignedLink, SigningError, UrlSigner};
pub use url::{BaseUrl, DocumentKey, SignableUrl, UrlError};
pub use verify::{LinkVerifier, VerifiedLink, VerifyFailure};
