use super::*;
use crate::boot;
use std::os::unix::net::UnixStream;

#[test]
fn heartbeat_address_defaults_to_the_nitro_parent() {
    assert_eq!(
        heartbeat_from_cmdline("console=ttyS0 quiet"),
        Ok(Heartbeat::To { cid: 3, port: 9000 })
    );
    assert_eq!(
        heartbeat_from_cmdline("a daas.heartbeat=1:9000 b"),
        Ok(Heartbeat::To { cid: 1, port: 9000 })
    );
    assert_eq!(
        heartbeat_from_cmdline("daas.heartbeat=1:9 daas.heartbeat=off"),
        Ok(Heartbeat::Off)
    );
    for bad in ["x", "1:", ":9000", "1:9000:2", "-1:9000", "1:99999999999"] {
        assert_eq!(
            heartbeat_from_cmdline(&format!("daas.heartbeat={bad}")),
            Err(bad.to_owned())
        );
    }
}

#[test]
fn heartbeat_sends_b7_and_accepts_its_echo() {
    let (mut ours, mut parent) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        parent.read_exact(&mut b).unwrap();
        parent.write_all(&b).unwrap();
        b[0]
    });
    heartbeat_exchange(&mut ours).unwrap();
    assert_eq!(echo.join().unwrap(), 0xB7);
}

#[test]
fn heartbeat_rejects_a_wrong_echo_and_a_closed_peer() {
    let (mut ours, mut parent) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        parent.read_exact(&mut b).unwrap();
        parent.write_all(&[0x00]).unwrap();
    });
    let err = heartbeat_exchange(&mut ours).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("0x00"), "{err}");
    t.join().unwrap();

    let (mut ours, parent) = UnixStream::pair().unwrap();
    drop(parent);
    assert!(heartbeat_exchange(&mut ours).is_err());
}

#[test]
fn retry_stops_at_first_success_and_reports_attempts() {
    let mut n = 0;
    let r: Result<((), u32), (&str, u32)> =
        retry_until(Duration::from_secs(60), Duration::ZERO, || {
            n += 1;
            if n < 3 { Err("not yet") } else { Ok(()) }
        });
    assert_eq!(r, Ok(((), 3)));
    let r: Result<((), u32), (&str, u32)> =
        retry_until(Duration::ZERO, Duration::ZERO, || Err("never"));
    assert_eq!(r, Err(("never", 1)));
}

#[test]
fn command_and_environment_files_parse() {
    assert_eq!(
        parse_cmd("/bin/daas-enclave\n--dev\n\n").unwrap(),
        ["/bin/daas-enclave", "--dev", ""]
    );
    assert!(parse_cmd("").is_err());
    assert!(parse_cmd("\n--dev\n").is_err());
    assert_eq!(
        parse_env("A=1\n\nB=x=y\n").unwrap(),
        [("A".into(), "1".into()), ("B".into(), "x=y".into())]
    );
    assert!(parse_env("NOVALUE\n").unwrap_err().contains("NOVALUE"));
    assert!(parse_env("=1\n").is_err());
}

#[test]
fn modules_are_listed_in_name_order_and_a_missing_dir_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["02-vsock_loopback.ko", "00-vsock.ko", "01-common.ko"] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    std::fs::create_dir(dir.path().join("subdir")).unwrap();
    let names: Vec<String> = module_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["00-vsock.ko", "01-common.ko", "02-vsock_loopback.ko"]
    );
    assert!(module_files(&dir.path().join("absent")).unwrap().is_empty());
}

#[test]
fn boot_refuses_to_run_outside_pid_1() {
    let err = boot().unwrap_err();
    assert!(err.contains("PID 1"), "{err}");
}
