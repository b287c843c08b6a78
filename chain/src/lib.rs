//! The on-chain registry client: Sui and a local file-backed registry with the same rules.
