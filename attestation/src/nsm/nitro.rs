//! The hardware NSM: `/dev/nsm` through `aws-nitro-enclaves-nsm-api`.
//!
//! Every request is a blocking ioctl (the kernel driver serialises them and
//! waits up to two minutes), so each one runs on `spawn_blocking`.

use std::sync::Arc;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use serde_bytes::ByteBuf;

use super::{AttestationRequest, Nsm, PcrDescription};
use crate::error::{Error, Result};

/// An open `/dev/nsm`, closed when the last clone is dropped.
#[derive(Debug)]
struct Device {
    fd: i32,
}

impl Drop for Device {
    fn drop(&mut self) {
        driver::nsm_exit(self.fd);
    }
}

/// The Nitro Secure Module of the enclave this process runs in.
#[derive(Debug, Clone)]
pub struct NitroNsm {
    device: Arc<Device>,
}

impl NitroNsm {
    /// Opens `/dev/nsm`.
    ///
    /// # Errors
    ///
    /// [`Error::Nsm`] when the device cannot be opened (not inside a Nitro
    /// Enclave, or the `nsm` driver is not loaded).
    pub fn open() -> Result<Self> {
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(Error::Nsm {
                request: "open",
                reason: "cannot open /dev/nsm (not inside a Nitro Enclave?)".to_owned(),
            });
        }
        Ok(Self {
            device: Arc::new(Device { fd }),
        })
    }

    async fn process(&self, name: &'static str, request: Request) -> Result<Response> {
        let device = Arc::clone(&self.device);
        let response =
            tokio::task::spawn_blocking(move || driver::nsm_process_request(device.fd, request))
                .await?;
        match response {
            Response::Error(code) => Err(Error::Nsm {
                request: name,
                reason: format!("{code:?}"),
            }),
            other => Ok(other),
        }
    }
}

fn unexpected(request: &'static str, response: &Response) -> Error {
    Error::Nsm {
        request,
        reason: format!("unexpected response {response:?}"),
    }
}

impl Nsm for NitroNsm {
    async fn attestation(&self, request: AttestationRequest) -> Result<Vec<u8>> {
        request.validate()?;
        let AttestationRequest {
            user_data,
            nonce,
            public_key,
        } = request;
        let request = Request::Attestation {
            user_data: user_data.map(ByteBuf::from),
            nonce: nonce.map(ByteBuf::from),
            public_key: public_key.map(ByteBuf::from),
        };
        match self.process("Attestation", request).await? {
            Response::Attestation { document } => Ok(document),
            other => Err(unexpected("Attestation", &other)),
        }
    }

    async fn random(&self) -> Result<Vec<u8>> {
        match self.process("GetRandom", Request::GetRandom).await? {
            Response::GetRandom { random } => Ok(random),
            other => Err(unexpected("GetRandom", &other)),
        }
    }

    async fn describe_pcr(&self, index: u16) -> Result<PcrDescription> {
        match self
            .process("DescribePCR", Request::DescribePCR { index })
            .await?
        {
            Response::DescribePCR { lock, data } => Ok(PcrDescription {
                index,
                locked: lock,
                value: data,
            }),
            other => Err(unexpected("DescribePCR", &other)),
        }
    }
}
