use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn pod() -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "p".into(),
        uid: "u1".into(),
    }
}

fn fake() -> (FakeContainers, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let f = FakeContainers::new(dir.path());
    f.add_pod("default", "p", "u1", &["c"]);
    (f, dir)
}

async fn read_all(r: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let mut b = Vec::new();
        let _ = r.read_to_end(&mut b).await;
        s = String::from_utf8_lossy(&b).into_owned();
    }
    s
}

fn streams(stdin: bool, tty: bool) -> StdStreams {
    StdStreams {
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    }
}

#[tokio::test]
async fn exec_runs_a_local_process_with_its_streams_and_exit_code() {
    let (f, _d) = fake();
    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let mut p = f
        .exec(
            pod(),
            "c".into(),
            cmd("cat; echo err >&2; exit 3"),
            streams(true, false),
        )
        .await
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    drop(stdin);
    assert_eq!(read_all(p.stdout.take()).await, "hello\n");
    assert_eq!(read_all(p.stderr.take()).await, "err\n");
    assert_eq!(p.done.await, StreamEnd::Exited(3));
    let missing = f
        .exec(
            pod(),
            "c".into(),
            vec!["/no/such/program".into()],
            streams(false, false),
        )
        .await
        .unwrap();
    assert!(matches!(missing.done.await, StreamEnd::Failed(m) if m.contains("/no/such/program")));
    f.stop("default", "p", "c");
    assert!(matches!(
        f.exec(pod(), "c".into(), cmd("true"), streams(false, false))
            .await,
        Err(StreamError::NotRunning(_))
    ));
    let other = PodRef {
        uid: "u2".into(),
        ..pod()
    };
    assert!(matches!(
        f.exec(other, "c".into(), cmd("true"), streams(false, false))
            .await,
        Err(StreamError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_tty_session_has_a_terminal_that_resizes() {
    let (f, _d) = fake();
    let mut p = f
        .exec(
            pod(),
            "c".into(),
            // Waits for the resize to land (it is applied by a task of the fake), then reports.
            vec![
                "sh".into(),
                "-c".into(),
                "read x; while [ \"$(stty size)\" != \"33 101\" ]; do sleep 0.05; done; tty; stty size".into(),
            ],
            streams(true, true),
        )
        .await
        .unwrap();
    p.resize
        .as_ref()
        .unwrap()
        .send(TerminalSize {
            width: 101,
            height: 33,
        })
        .await
        .unwrap();
    p.stdin.as_mut().unwrap().write_all(b"go\n").await.unwrap();
    let out = read_all(p.stdout.take()).await;
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("33 101"), "{out:?}");
    assert_eq!(p.done.await, StreamEnd::Exited(0));
}

#[tokio::test]
async fn logs_previous_instances_and_attach() {
    let (f, _d) = fake();
    f.log("default", "p", "c", "first life");
    f.restart("default", "p", "c");
    f.log("default", "p", "c", "second life");
    let read = |previous| {
        let f = f.clone();
        async move {
            let s = f
                .logs(
                    pod(),
                    "c".into(),
                    LogOptions {
                        previous,
                        ..LogOptions::default()
                    },
                )
                .await
                .unwrap();
            use futures::StreamExt;
            let chunks: Vec<Bytes> = s.map(|c| c.unwrap()).collect().await;
            String::from_utf8(chunks.concat()).unwrap()
        }
    };
    assert_eq!(read(false).await, "second life\n");
    assert_eq!(read(true).await, "first life\n");
    f.run_main(
        "default",
        "p",
        "c",
        &["sh", "-c", "while read l; do echo got $l; done"],
    )
    .unwrap();
    let mut a = f
        .attach(pod(), "c".into(), streams(true, false))
        .await
        .unwrap();
    a.stdin
        .as_mut()
        .unwrap()
        .write_all(b"ping\n")
        .await
        .unwrap();
    let mut out = a.stdout.take().unwrap();
    let mut buf = [0u8; 9];
    out.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"got ping\n");
    f.stop("default", "p", "c");
    assert_eq!(a.done.await, StreamEnd::Exited(0));
    assert!(read(false).await.ends_with("got ping\n"));
}

#[tokio::test]
async fn port_forward_reaches_local_ports_and_reports_closed_ones() {
    let (f, _d) = fake();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hi").await.unwrap();
    });
    let mut conn = f.port_forward(pod(), port).await.unwrap();
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hi");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert!(
        matches!(f.port_forward(pod(), closed).await, Err(StreamError::Runtime(m)) if m.contains("refused"))
    );
}
