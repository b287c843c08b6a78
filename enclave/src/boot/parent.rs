//! Where a production enclave finds its parent instance's services: [`protocol::parent`]'s
//! vsock ports, re-exported here for the enclave's own code.

pub use protocol::parent::*;
