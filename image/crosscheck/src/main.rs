//! Rebuilds each given EIF (written by our `image` crate) with AWS's `EifBuilder` from the
//! same kernel, cmdline, ramdisks and metadata, and checks that the two files are byte
//! for byte identical and that AWS's PCRs equal ours. Unsigned images only (ECDSA
//! signatures are randomised). Exits non-zero on any difference.

use std::collections::BTreeMap;
use std::path::Path;

use aws_nitro_enclaves_image_format::defs::EifIdentityInfo;
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use sha2::Digest;

fn check(path: &Path) -> Result<(), String> {
    let ours = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let eif = image::EifImage::from_bytes(&ours).map_err(|e| e.to_string())?;
    if eif.signature.is_some() {
        return Err("signed EIFs cannot be compared byte for byte".into());
    }
    let dir = std::env::temp_dir().join(format!("eif-crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, &eif.kernel).map_err(|e| e.to_string())?;
    let identity: EifIdentityInfo =
        serde_json::from_slice(&eif.metadata).map_err(|e| format!("metadata: {e}"))?;
    let cmdline = String::from_utf8(eif.cmdline.clone()).map_err(|e| e.to_string())?;
    let mut builder = EifBuilder::new(
        &kernel,
        cmdline,
        None,
        sha2::Sha384::new(),
        eif.flags,
        identity,
    );
    for (i, rd) in eif.ramdisks.iter().enumerate() {
        let p = dir.join(format!("ramdisk{i}"));
        std::fs::write(&p, rd).map_err(|e| e.to_string())?;
        builder.add_ramdisk(&p);
    }
    let out = dir.join("aws.eif");
    let mut file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
    let aws_pcrs: BTreeMap<String, String> = builder.write_to(&mut file);
    drop(file);
    let theirs = std::fs::read(&out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);

    let m = eif.measurements(None);
    for (name, value) in [("PCR0", m.pcr0), ("PCR1", m.pcr1), ("PCR2", m.pcr2)] {
        if aws_pcrs.get(name) != Some(&value.to_hex()) {
            return Err(format!(
                "{name}: AWS {:?}, ours {value}",
                aws_pcrs.get(name)
            ));
        }
    }
    if ours != theirs {
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        return Err(format!(
            "bytes differ: ours {} bytes, AWS {} bytes, first difference at {first:?}",
            ours.len(),
            theirs.len()
        ));
    }
    println!(
        "{}: identical to aws-nitro-enclaves-image-format 0.8.1 ({} bytes, PCR0 {})",
        path.display(),
        ours.len(),
        m.pcr0
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut failed = false;
    for arg in std::env::args_os().skip(1) {
        if let Err(e) = check(Path::new(&arg)) {
            eprintln!("{}: {e}", Path::new(&arg).display());
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
