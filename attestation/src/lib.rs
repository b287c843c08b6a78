//! Nitro attestation: NSM access (hardware and dev simulator), document
//! verification against a pinned root, attested TLS identity and sealing keys.
