use super::*;
use std::process::Command;

fn sample() -> CpioArchive {
    let mut a = CpioArchive::new();
    a.add_file("init", 0o755, b"\x7fELF pretend".to_vec())
        .unwrap();
    a.add_file(
        "etc/daas/cmd",
        0o644,
        b"/bin/daas-enclave\n--dev\n".to_vec(),
    )
    .unwrap();
    a.add_file("bin/daas-enclave", 0o755, vec![0xAB; 1001])
        .unwrap();
    a.add_dir("tmp", 0o1777).unwrap();
    a.add_char_device("dev/console", 0o600, 5, 1).unwrap();
    a.add_symlink("sbin", "bin").unwrap();
    a.add_file("empty", 0o600, Vec::new()).unwrap();
    a
}

/// Runs GNU cpio (an independent implementation) with `args`, feeding `input`.
fn gnu_cpio(args: &[&str], dir: &std::path::Path, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("GNU cpio must be installed for this test (scripts/setup installs it)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gnu_cpio_lists_entries_sorted_with_parents_first() {
    let bytes = sample().to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listing = gnu_cpio(&["-t", "--quiet"], dir.path(), &bytes);
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(
        names,
        [
            "bin",
            "bin/daas-enclave",
            "dev",
            "dev/console",
            "empty",
            "etc",
            "etc/daas",
            "etc/daas/cmd",
            "init",
            "sbin",
            "tmp"
        ]
    );
}

#[test]
fn gnu_cpio_sees_root_owner_epoch_mtime_and_our_modes() {
    let bytes = sample().to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listing = gnu_cpio(
        &["-t", "-v", "--quiet", "--numeric-uid-gid"],
        dir.path(),
        &bytes,
    );
    let mut seen = 0;
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // mode links uid gid size-or-dev... month day year name [-> target]
        assert_eq!(cols[2], "0", "uid in {line}");
        assert_eq!(cols[3], "0", "gid in {line}");
        assert!(line.contains("1970"), "mtime must be the epoch: {line}");
        let name_col = if line.contains(" -> ") {
            cols.len() - 3
        } else {
            cols.len() - 1
        };
        let expected_mode = match cols[name_col] {
            "init" | "bin/daas-enclave" => "-rwxr-xr-x",
            "etc/daas/cmd" => "-rw-r--r--",
            "empty" => "-rw-------",
            "bin" | "etc" | "etc/daas" | "dev" => "drwxr-xr-x",
            "tmp" => "drwxrwxrwt",
            "dev/console" => "crw-------",
            "sbin" => "lrwxrwxrwx",
            other => panic!("unexpected entry {other}"),
        };
        assert_eq!(cols[0], expected_mode, "mode in {line}");
        seen += 1;
    }
    assert_eq!(seen, 11);
}

#[test]
fn gnu_cpio_extracts_the_same_contents() {
    let mut a = CpioArchive::new();
    a.add_file("init", 0o755, b"init bytes".to_vec()).unwrap();
    a.add_file("bin/daas-enclave", 0o750, (0..=255).collect())
        .unwrap();
    a.add_file("etc/odd-length", 0o644, b"abc".to_vec())
        .unwrap();
    a.add_symlink("sbin", "bin").unwrap();
    let bytes = a.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    gnu_cpio(
        &["-i", "-d", "--quiet", "--no-absolute-filenames"],
        dir.path(),
        &bytes,
    );
    use std::os::unix::fs::PermissionsExt;
    let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    let mode = |p: &str| {
        std::fs::symlink_metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(read("init"), b"init bytes");
    assert_eq!(read("bin/daas-enclave"), (0..=255).collect::<Vec<u8>>());
    assert_eq!(read("etc/odd-length"), b"abc");
    assert_eq!(mode("init") & 0o7777, 0o755);
    assert_eq!(mode("bin/daas-enclave") & 0o7777, 0o750);
    assert_eq!(
        std::fs::read_link(dir.path().join("sbin")).unwrap(),
        std::path::Path::new("bin")
    );
}

#[test]
fn insertion_order_does_not_change_the_bytes() {
    let mut b = CpioArchive::new();
    b.add_file("empty", 0o600, Vec::new()).unwrap();
    b.add_symlink("sbin", "bin").unwrap();
    b.add_char_device("dev/console", 0o600, 5, 1).unwrap();
    b.add_dir("tmp", 0o1777).unwrap();
    b.add_file("bin/daas-enclave", 0o755, vec![0xAB; 1001])
        .unwrap();
    b.add_file(
        "etc/daas/cmd",
        0o644,
        b"/bin/daas-enclave\n--dev\n".to_vec(),
    )
    .unwrap();
    b.add_file("init", 0o755, b"\x7fELF pretend".to_vec())
        .unwrap();
    assert_eq!(sample().to_bytes().unwrap(), b.to_bytes().unwrap());
    assert_eq!(sample().to_bytes().unwrap(), sample().to_bytes().unwrap());
}

#[test]
fn header_layout_is_newc_with_padding() {
    let mut a = CpioArchive::new();
    a.add_file("ab", 0o644, b"xyz".to_vec()).unwrap();
    let bytes = a.to_bytes().unwrap();
    let header = std::str::from_utf8(&bytes[..110]).unwrap();
    assert_eq!(
        header,
        concat!(
            "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000003", "00000000"
        )
    );
    // 110 + "ab\0" = 113 -> padded to 116; data 3 -> padded to 4.
    assert_eq!(&bytes[110..116], b"ab\0\0\0\0");
    assert_eq!(&bytes[116..120], b"xyz\0");
    assert_eq!(&bytes[120..126], b"070701");
    assert_eq!(bytes.len() % 4, 0);
}

#[test]
fn bad_paths_and_modes_are_refused() {
    let mut a = CpioArchive::new();
    for bad in [
        "",
        "/init",
        "a//b",
        "a/./b",
        "../x",
        "a/..",
        "x\0y",
        "TRAILER!!!",
    ] {
        let err = a.add_file(bad, 0o644, Vec::new()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArchivePath { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = a.add_file("x", 0o100_644, Vec::new()).unwrap_err();
    assert!(matches!(err, Error::InvalidMode { .. }), "{err}");
    a.add_file("f", 0o644, Vec::new()).unwrap();
    let err = a.add_file("f/g", 0o644, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("non-directory"), "{err}");
    let err = a.add_symlink("l", "").unwrap_err();
    assert!(matches!(err, Error::InvalidArchivePath { .. }), "{err}");
}
