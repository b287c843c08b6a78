//! The untrusted host: relays bytes to the enclave, keeps sealed data it cannot read, launches the enclave.
