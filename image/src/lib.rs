//! Reproducible enclave image (EIF) builds and PCR measurement.
