//! The dev NSM: documents in the exact Nitro format, signed under a dev root.
//!
//! Format, as real NSMs emit it: an untagged COSE_Sign1 with protected header
//! `{1: -35}`, an empty unprotected header, the payload as an indefinite-length
//! map (as 2026 hardware does) with all nine fields in hardware order, absent
//! optional fields as CBOR null (as the real documents in `tests/data` do),
//! 16 PCRs of 48 bytes, and an ES384 raw r||s signature over the COSE
//! Sig_structure. The chain mirrors AWS's: root, "regional" (20 days,
//! pathLen 2), "zonal" (6 days, pathLen 1), "instance" (1 day, pathLen 0,
//! keyCertSign only) and a 3-hour leaf. The intermediates and the leaf are
//! issued afresh for every document, so they are always inside their window.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ciborium::value::Value;
use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, iana};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

use super::{AttestationRequest, MAX_RANDOM_LEN, Nsm, PcrDescription};
use crate::document::{Pcr, PcrSet};
use crate::error::{Error, Result};

/// Label measured as the simulator's "kernel and bootstrap" (PCR1).
const SIM_KERNEL_LABEL: &[u8] = b"k3s-daas simulated NSM: no kernel, the binary runs directly";
/// Instance id the simulator reports (PCR4 is its measurement, as on hardware).
const SIM_INSTANCE_ID: &str = "i-0000000000000000d";

/// Where a dev-mode data directory keeps its dev root certificate (PEM), relative to that directory: the enclave
/// creates it there on first start, `daas dev` and `daas verify --dev-root` read it.
pub const DEV_ROOT_CERT: &str = "attestation/dev-root.crt";
/// Where a dev-mode data directory keeps its dev root's private key (PEM, 0600), relative to that directory.
pub const DEV_ROOT_KEY: &str = "attestation/dev-root.key";

/// The dev root certificate authority: a P-384 self-signed CA that the
/// production verifier never trusts. Persist it with [`DevRoot::to_pem`] so
/// clients can pin it across restarts.
pub struct DevRoot {
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl std::fmt::Debug for DevRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevRoot")
            .field("cert_sha256", &hex::encode(self.sha256()))
            .finish_non_exhaustive()
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "K3s-DaaS dev (NOT AWS)");
    dn.push(DnType::OrganizationalUnitName, "simulated NSM");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn root_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn("k3s-daas.dev-root");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

impl DevRoot {
    /// A new root, valid for 30 years from an hour ago.
    ///
    /// # Errors
    ///
    /// [`Error::DevCa`] if key generation or signing fails.
    pub fn generate() -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let now = time::OffsetDateTime::now_utc();
        let mut params = root_params()?;
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30 * 365);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// Loads a root saved by [`DevRoot::to_pem`].
    ///
    /// # Errors
    ///
    /// [`Error::Pem`], [`Error::Certificate`] or [`Error::DevCa`] when either
    /// PEM is malformed; [`Error::DevRootKeyMismatch`] when the key does not
    /// belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(Error::Pem)?;
        let key = KeyPair::from_pem(key_pem)?;
        let parsed = webpki::EndEntityCert::try_from(&cert).map_err(Error::Certificate)?;
        // An EC SubjectPublicKeyInfo ends with the raw public point.
        if !parsed
            .subject_public_key_info()
            .as_ref()
            .ends_with(key.public_key_raw())
        {
            return Err(Error::DevRootKeyMismatch);
        }
        Ok(Self {
            cert_der: cert.to_vec(),
            key,
        })
    }

    /// The certificate and its PKCS#8 key as PEM (the key is a dev secret:
    /// store it 0600).
    #[must_use]
    pub fn to_pem(&self) -> (String, String) {
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", self.cert_der.clone()));
        (cert, self.key.serialize_pem())
    }

    /// The root certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// SHA-256 of the root's DER (what a verifier pins).
    #[must_use]
    pub fn sha256(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &self.cert_der).as_ref());
        out
    }
}

/// The simulated NSM. Cheap to clone; all clones share one root.
#[derive(Debug, Clone)]
pub struct SimNsm {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: DevRoot,
    pcrs: [Pcr; 16],
    module_id: String,
    rng: SystemRandom,
}

/// The simulator's image measurements (PCR0, PCR1, PCR2) of a binary, by
/// the EIF formulas with the binary's loaded bytes as the application ramdisk
/// and a fixed label as kernel and bootstrap:
/// PCR0 = measure(label || loaded), PCR1 = measure(label), PCR2 = measure(loaded).
///
/// "Loaded" is what the program loader maps of an ELF executable: the file
/// bytes of its `PT_LOAD` segments, in program-header order (the first one
/// holds the ELF and program headers). Symbols and debug information, which
/// cannot change what runs, are left out; with them a dev binary is some
/// 450 MB and hashing it twice took two seconds of CPU on every start. A file
/// that is not an ELF executable is measured whole.
#[must_use]
pub fn measure_binary(binary: &[u8]) -> [Pcr; 3] {
    let mut image = ImageDigests::new();
    match loaded_ranges(binary) {
        Some(ranges) => {
            for (offset, size) in ranges {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
                // `loaded_ranges` checked that every range lies inside the file.
                image.update(binary.get(start..end).unwrap_or_default());
            }
        }
        None => image.update(binary),
    }
    image.finish()
}

/// [`measure_binary`] of a file, reading only the bytes it measures.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read.
pub fn measure_binary_file(path: &Path) -> Result<[Pcr; 3]> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let ranges = match loaded_ranges(&object::ReadCache::new(&file)) {
        Some(ranges) => ranges,
        None => vec![(0, file.metadata().map_err(io)?.len())],
    };
    let mut image = ImageDigests::new();
    for (offset, size) in ranges {
        (&file).seek(SeekFrom::Start(offset)).map_err(io)?;
        let read = std::io::copy(&mut (&file).take(size), &mut image).map_err(io)?;
        if read < size {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(image.finish())
}

/// The file ranges (offset, size) of an ELF executable's loaded segments, all
/// inside the file; `None` if `data` is not a well-formed 64-bit ELF file with
/// at least one.
fn loaded_ranges<'data, R: object::ReadRef<'data>>(data: R) -> Option<Vec<(u64, u64)>> {
    use object::read::elf::{FileHeader as _, ProgramHeader as _};
    let header = object::elf::FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let len = data.len().ok()?;
    let ranges: Vec<(u64, u64)> = header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .map(|p| p.file_range(endian))
        .collect();
    let inside = |&(offset, size): &(u64, u64)| offset.checked_add(size).is_some_and(|e| e <= len);
    (!ranges.is_empty() && ranges.iter().all(inside)).then_some(ranges)
}

/// The two running digests of an image: with the kernel label (PCR0) and
/// without (PCR2).
struct ImageDigests {
    whole: ring::digest::Context,
    app: ring::digest::Context,
}

impl std::io::Write for ImageDigests {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ImageDigests {
    fn new() -> Self {
        let mut whole = ring::digest::Context::new(&ring::digest::SHA384);
        whole.update(SIM_KERNEL_LABEL);
        Self {
            whole,
            app: ring::digest::Context::new(&ring::digest::SHA384),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.whole.update(bytes);
        self.app.update(bytes);
    }

    fn finish(self) -> [Pcr; 3] {
        [
            Pcr::ZERO.extend(self.whole.finish().as_ref()),
            Pcr::measure(SIM_KERNEL_LABEL),
            Pcr::ZERO.extend(self.app.finish().as_ref()),
        ]
    }
}

fn measure_running_binary() -> Result<[Pcr; 3]> {
    let path = std::env::current_exe().map_err(|source| Error::Io {
        path: "/proc/self/exe".into(),
        source,
    })?;
    measure_binary_file(&path)
}

impl SimNsm {
    /// A simulator whose PCR0..2 measure the running executable (see
    /// [`measure_binary`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the executable cannot be read.
    pub fn new(root: DevRoot) -> Result<Self> {
        let [pcr0, pcr1, pcr2] = measure_running_binary()?;
        Ok(Self::with_image_pcrs(root, pcr0, pcr1, pcr2))
    }

    /// A simulator reporting the given PCR0..2 (all zero simulates a
    /// debug-mode enclave). PCR4 measures the simulated instance id, as on
    /// hardware; the other registers are zero.
    pub fn with_image_pcrs(root: DevRoot, pcr0: Pcr, pcr1: Pcr, pcr2: Pcr) -> Self {
        let mut pcrs = [Pcr::ZERO; 16];
        pcrs[0] = pcr0;
        pcrs[1] = pcr1;
        pcrs[2] = pcr2;
        pcrs[4] = Pcr::ZERO.extend(SIM_INSTANCE_ID.as_bytes());
        let rng = SystemRandom::new();
        let mut enclave = [0u8; 8];
        // A fixed enclave id if the RNG fails: the id is informational.
        let _ = rng.fill(&mut enclave);
        Self {
            inner: Arc::new(Inner {
                root,
                pcrs,
                module_id: format!("{SIM_INSTANCE_ID}-enc{}", hex::encode(enclave)),
                rng,
            }),
        }
    }

    /// The dev root documents chain to; give its DER to
    /// [`crate::Verifier::dangerous_trust_root_der`].
    #[must_use]
    pub fn root(&self) -> &DevRoot {
        &self.inner.root
    }

    /// The registers this simulator reports (PCR0..15).
    #[must_use]
    pub fn pcrs(&self) -> PcrSet {
        PcrSet::from_map((0u8..).zip(self.inner.pcrs).collect())
    }

    /// Synchronously issues a document stamped `at` (the simulator's clock is
    /// a parameter so tests can make documents of any age).
    ///
    /// # Errors
    ///
    /// [`Error::NsmRequestTooLarge`], or [`Error::DevCa`]/[`Error::Sign`] when
    /// certificate issuing or signing fails.
    pub fn document_at(&self, request: AttestationRequest, at: SystemTime) -> Result<Vec<u8>> {
        request.validate()?;
        let inner = &self.inner;
        let timestamp_ms = at
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .ok_or(Error::Nsm {
                request: "Attestation",
                reason: "clock is before the UNIX epoch".to_owned(),
            })?;
        let (cabundle, leaf_der, leaf_key) = issue_chain(&inner.root, at)?;
        let AttestationRequest {
            user_data,
            nonce,
            public_key,
        } = request;
        let opt = |v: Option<Vec<u8>>| v.map_or(Value::Null, Value::Bytes);
        let fields = [
            ("module_id", Value::Text(inner.module_id.clone())),
            ("digest", Value::Text("SHA384".to_owned())),
            ("timestamp", Value::Integer(timestamp_ms.into())),
            (
                "pcrs",
                Value::Map(
                    (0u8..)
                        .zip(inner.pcrs)
                        .map(|(i, p)| {
                            (
                                Value::Integer(i.into()),
                                Value::Bytes(p.as_bytes().to_vec()),
                            )
                        })
                        .collect(),
                ),
            ),
            ("certificate", Value::Bytes(leaf_der)),
            (
                "cabundle",
                Value::Array(cabundle.into_iter().map(Value::Bytes).collect()),
            ),
            ("public_key", opt(public_key)),
            ("user_data", opt(user_data)),
            ("nonce", opt(nonce)),
        ];
        // Indefinite-length map, as current hardware emits.
        let mut payload = vec![0xbf];
        for (key, value) in fields {
            ciborium::ser::into_writer(&Value::Text(key.to_owned()), &mut payload)
                .map_err(|_| Error::Encode)?;
            ciborium::ser::into_writer(&value, &mut payload).map_err(|_| Error::Encode)?;
        }
        payload.push(0xff);

        let signer = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            leaf_key.serialized_der(),
            &inner.rng,
        )
        .map_err(|_| Error::Sign)?;
        let sign1 = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload)
            .try_create_signature(b"", |tbs| {
                signer
                    .sign(&inner.rng, tbs)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| Error::Sign)
            })?
            .build();
        sign1.to_vec().map_err(|_| Error::Encode)
    }
}

/// Issues regional, zonal, instance and leaf certificates valid at `at`.
/// Returns (cabundle root first, leaf DER, leaf key).
fn issue_chain(root: &DevRoot, at: SystemTime) -> Result<(Vec<Vec<u8>>, Vec<u8>, KeyPair)> {
    let now = time::OffsetDateTime::from(at);
    let skew = time::Duration::minutes(5);
    let root_key = KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(root.key.serialized_der()),
        &PKCS_ECDSA_P384_SHA384,
    )?;
    let mut issuer = Issuer::new(root_params()?, root_key);
    let mut cabundle = vec![root.cert_der.clone()];
    let levels = [
        ("k3s-daas.dev-regional", time::Duration::days(20), Some(2)),
        ("k3s-daas.dev-zonal", time::Duration::days(6), Some(1)),
        ("k3s-daas.dev-instance", time::Duration::days(1), Some(0)),
        ("k3s-daas.dev-leaf", time::Duration::hours(3), None),
    ];
    for (name, lifetime, path_len) in levels {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        params.not_before = now - skew;
        params.not_after = now - skew + lifetime;
        match path_len {
            Some(0) => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            }
            Some(n) => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(n));
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                ];
            }
            None => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            }
        }
        let cert = params.signed_by(&key, &issuer)?;
        if path_len.is_none() {
            return Ok((cabundle, cert.der().to_vec(), key));
        }
        cabundle.push(cert.der().to_vec());
        issuer = Issuer::new(params, key);
    }
    Err(Error::Encode)
}

impl Nsm for SimNsm {
    async fn attestation(&self, request: AttestationRequest) -> Result<Vec<u8>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.document_at(request, SystemTime::now())).await?
    }

    async fn random(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; MAX_RANDOM_LEN];
        self.inner.rng.fill(&mut out).map_err(|_| Error::Random)?;
        Ok(out)
    }

    async fn describe_pcr(&self, index: u16) -> Result<PcrDescription> {
        let value = match usize::from(index) {
            i if i < self.inner.pcrs.len() => self.inner.pcrs.get(i).copied(),
            i if i < PcrSet::MAX_PCRS => Some(Pcr::ZERO),
            _ => None,
        }
        .ok_or(Error::Nsm {
            request: "DescribePCR",
            reason: "InvalidIndex".to_owned(),
        })?;
        Ok(PcrDescription {
            index,
            locked: index < 16,
            value: value.as_bytes().to_vec(),
        })
    }
}
