//! Identity below the HTTP layer: keys derived from the root secret
//! ([`keys`]), compact JWS ([`jwt`]), service-account tokens
//! ([`serviceaccount`]) and the client-certificate CA that signs approved
//! CertificateSigningRequests ([`client_ca`]). The API server
//! (`crate::api`) authenticates requests with these; controllers issue
//! legacy tokens and sign certificates with them.

pub mod client_ca;
pub mod jwt;
pub mod keys;
pub mod serviceaccount;
