//! `runtime::CriStreams` (the node tunnel's container streams) against a real containerd and
//! the pod runtime: logs (whole, tail, limitBytes, follow to the container's end, no previous
//! instance, the previous instance after a new sandbox), exec (output, exit code, stdin to its end, a terminal with its size), attach,
//! port-forward (an echo server, a closed port), usage, and the refusals (a missing pod, a
//! UID of another pod, a stopped container). The same seam through the enclave and real
//! kubectl is `cli/tests/dev_streams.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use protocol::tunnel::channel::{StreamEnd, TerminalSize};
use protocol::tunnel::{LogOptions, PodRef, StdStreams};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use worker::runtime::CriStreams;
use worker::tunnel::{ContainerStreams, Process, StreamError};

const LIMIT: Duration = Duration::from_secs(60);

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: pod.metadata.name.clone().unwrap(),
        uid: pod.metadata.uid.clone().unwrap(),
    }
}

async fn log(s: &CriStreams, pod: &Pod, container: &str, options: LogOptions) -> String {
    let stream = s
        .logs(pod_ref(pod), container.into(), options)
        .await
        .unwrap();
    let chunks: Vec<_> = tokio::time::timeout(LIMIT, stream.collect::<Vec<_>>())
        .await
        .expect("the log ends");
    let bytes: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// The rest of a process's stdout and stderr, and how it ended.
async fn finish(mut p: Process) -> (String, String, StreamEnd) {
    drop(p.stdin.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let reading = async {
        if let Some(mut o) = p.stdout.take() {
            o.read_to_end(&mut out).await.unwrap();
        }
        if let Some(mut e) = p.stderr.take() {
            e.read_to_end(&mut err).await.unwrap();
        }
        p.done.await
    };
    let end = tokio::time::timeout(LIMIT, reading)
        .await
        .expect("the session ends");
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        end,
    )
}

fn output() -> StdStreams {
    StdStreams {
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

fn cmd(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

async fn running(h: &Harness, pod: &Pod) {
    h.pods().upsert(pod.clone());
    h.wait(pod, 120, "Running", |s| {
        phase(s) == "Running" && condition(s, "Ready").as_deref() == Some("True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_streams_serve_logs_exec_attach_port_forward_and_usage() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let s = CriStreams::new(h.cri(), h.node.clone());

    let talk = busybox_pod("talk", "echo hello; echo oops >&2; exec sleep 3600");
    let mut web = busybox_pod("web", "exec nc -ll -p 9090 -e cat");
    web.spec.as_mut().unwrap().containers[0].name = "web".into();
    let mut reader = busybox_pod(
        "reader",
        "echo started; while read l; do echo got:$l; done; sleep 3600",
    );
    reader.spec.as_mut().unwrap().containers[0].stdin = Some(true);
    let mut two = busybox_pod("two", "exec sleep 3600");
    two.spec
        .as_mut()
        .unwrap()
        .containers
        .push(container("quick", "echo quick done"));
    two.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    for p in [&talk, &web, &reader] {
        running(&h, p).await;
    }
    h.pods().upsert(two.clone());

    // Logs.
    let mut whole = String::new();
    for _ in 0..100 {
        whole = log(&s, &talk, "main", LogOptions::default()).await;
        if whole.len() >= 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // stdout and stderr are separate pipes: either line may come first.
    let mut lines: Vec<&str> = whole.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["hello", "oops"], "{whole:?}");
    let tail = LogOptions {
        tail_lines: Some(1),
        ..Default::default()
    };
    let last = whole.lines().last().unwrap();
    assert_eq!(log(&s, &talk, "main", tail).await, format!("{last}\n"));
    let limited = LogOptions {
        limit_bytes: Some(3),
        ..Default::default()
    };
    assert_eq!(log(&s, &talk, "main", limited).await, whole[..3]);
    let previous = LogOptions {
        previous: true,
        ..Default::default()
    };
    let e = s
        .logs(pod_ref(&talk), "main".into(), previous)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::BadRequest(_)), "{e:?}");

    // Refusals: no such pod, another pod's UID.
    let missing = PodRef {
        name: "nope".into(),
        ..pod_ref(&talk)
    };
    let e = s
        .exec(missing.clone(), "main".into(), cmd("true"), output())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::NotFound(_)), "{e:?}");
    let e = s.port_forward(missing, 80).await.err().unwrap();
    assert!(matches!(e, StreamError::NotFound(_)), "{e:?}");
    let other_uid = PodRef {
        uid: "another".into(),
        ..pod_ref(&talk)
    };
    let e = s
        .logs(other_uid, "main".into(), LogOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::NotFound(_)), "{e:?}");

    // exec: output, exit code.
    let p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            cmd("echo hi; echo err >&2; exit 3"),
            output(),
        )
        .await
        .unwrap();
    assert_eq!(
        finish(p).await,
        ("hi\n".into(), "err\n".into(), StreamEnd::Exited(3))
    );
    // stdin to its end.
    let mut p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            vec!["cat".into()],
            StdStreams {
                stdin: true,
                ..output()
            },
        )
        .await
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    assert_eq!(
        finish(p).await,
        ("one\ntwo\n".into(), String::new(), StreamEnd::Exited(0))
    );
    // 8 MiB each way (what `kubectl cp` of a large file does).
    let big = 8 << 20;
    let mut p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            cmd("wc -c"),
            StdStreams {
                stdin: true,
                ..output()
            },
        )
        .await
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let writing = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..(big / chunk.len()) {
            stdin.write_all(&chunk).await.unwrap();
        }
        stdin.shutdown().await.unwrap();
    });
    let (out, _, end) = finish(p).await;
    writing.await.unwrap();
    assert_eq!(
        (out.trim(), end),
        (big.to_string().as_str(), StreamEnd::Exited(0))
    );
    let mut p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            // The pause lets the runtime drain the output before the process exits: once in
            // CI, with the exit right after the last write, the last 220 KiB of the 8 MiB
            // never arrived. Our SPDY client queues every frame it decodes, so the likely
            // place is containerd 1.6 closing an exec's IO on exit (runtimes have had such
            // drain bugs); not confirmed.
            cmd(&format!("head -c {big} /dev/zero; sleep 1")),
            output(),
        )
        .await
        .unwrap();
    let mut stdout = p.stdout.take().unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, stdout.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), big);
    assert_eq!(
        tokio::time::timeout(LIMIT, p.done).await.unwrap(),
        StreamEnd::Exited(0)
    );

    // A command that does not exist: the session ends with an error, not a hang.
    let p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            vec!["no-such-command".into()],
            output(),
        )
        .await
        .unwrap();
    let (_, _, end) = finish(p).await;
    assert_ne!(end, StreamEnd::Exited(0));
    // A terminal, resized (the size arrives after the process starts: it waits for it).
    let p = s
        .exec(
            pod_ref(&talk),
            "main".into(),
            cmd(
                "for i in $(seq 100); do z=$(stty size); [ \"$z\" = '30 100' ] && break; \
                 sleep 0.1; done; echo size=$z; tty",
            ),
            StdStreams {
                stdin: true,
                stdout: true,
                tty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    p.resize
        .as_ref()
        .unwrap()
        .send(TerminalSize {
            width: 100,
            height: 30,
        })
        .await
        .unwrap();
    let mut p = p;
    let stdin = p.stdin.take();
    let (out, err, end) = finish(p).await;
    drop(stdin);
    assert_eq!(end, StreamEnd::Exited(0));
    assert!(out.contains("size=30 100\r\n/dev/pts/"), "{out:?}");
    assert_eq!(err, "");

    // A stopped container of a running pod.
    h.wait(&two, 120, "quick to complete", |st| {
        st.container_statuses.iter().flatten().any(|c| {
            c.name == "quick"
                && c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
        })
    })
    .await;
    let e = s
        .exec(pod_ref(&two), "quick".into(), cmd("true"), output())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::NotRunning(_)), "{e:?}");
    assert_eq!(
        log(&s, &two, "quick", LogOptions::default()).await,
        "quick done\n"
    );

    // attach: stdin reaches the main process, its output comes back.
    let mut p = s
        .attach(
            pod_ref(&reader),
            "main".into(),
            StdStreams {
                stdin: true,
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"abc\n").await.unwrap();
    let mut stdout = p.stdout.take().unwrap();
    let mut got = vec![0u8; 8];
    tokio::time::timeout(LIMIT, stdout.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"got:abc\n");
    drop((stdin, stdout, p));

    // port-forward: an echo server; a closed port.
    let mut conn = s.port_forward(pod_ref(&web), 9090).await.unwrap();
    conn.write_all(b"ping\n").await.unwrap();
    let mut echo = [0u8; 5];
    tokio::time::timeout(LIMIT, conn.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping\n");
    drop(conn);
    let e = s.port_forward(pod_ref(&web), 9091).await.err().unwrap();
    assert!(
        matches!(&e, StreamError::BadRequest(m) if m.contains("connection refused")),
        "{e:?}"
    );

    // follow ends when the container does.
    let mut counter = busybox_pod("counter", "for i in 1 2 3; do echo line $i; sleep 1; done");
    counter.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    h.pods().upsert(counter.clone());
    h.wait(&counter, 120, "counter to start", |st| {
        phase(st) == "Running" || phase(st) == "Succeeded"
    })
    .await;
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    assert_eq!(
        log(&s, &counter, "main", follow).await,
        "line 1\nline 2\nline 3\n"
    );

    // usage: the running containers only.
    h.wait(&counter, 60, "counter to end", |st| {
        phase(st) == "Succeeded"
    })
    .await;
    let sample = s.usage().await.unwrap();
    let names: Vec<&str> = sample.pods.iter().map(|p| p.pod.name.as_str()).collect();
    for name in ["talk", "web", "reader", "two"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(!names.contains(&"counter"), "{names:?}");
    let two_usage = sample.pods.iter().find(|p| p.pod.name == "two").unwrap();
    let containers: Vec<&str> = two_usage
        .containers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(containers, ["main"]);
    let talk_usage = sample.pods.iter().find(|p| p.pod.name == "talk").unwrap();
    assert!(talk_usage.containers[0].1.memory_working_set_bytes > 0);
    assert!(sample.node.cpu_usage_ns > 0);

    h.stop().await;
}

/// Every sandbox of the harness's containerd (each test's harness has its own).
async fn all_sandboxes(h: &Harness) -> Vec<k8s_cri::v1::PodSandbox> {
    h.cri()
        .list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .items
}

/// `previous` after the sandbox itself died: the pod runtime makes a new sandbox and runs
/// the container again in it, and the previous instance's log, in the old sandbox, is still
/// served (the runtime keeps it, as the kubelet does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_logs_survive_a_new_sandbox() {
    use k8s_cri::v1 as cri;
    let Some(h) = Harness::start().await else {
        return;
    };
    let s = CriStreams::new(h.cri(), h.node.clone());
    let pod = busybox_pod(
        "reborn",
        "echo run-$(cat /proc/sys/kernel/random/uuid); exec sleep 3600",
    );
    running(&h, &pod).await;
    let mut first = String::new();
    for _ in 0..100 {
        first = log(&s, &pod, "main", LogOptions::default()).await;
        if first.starts_with("run-") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first.starts_with("run-"), "{first:?}");

    // The sandbox dies (as when its pause process is killed).
    let sandboxes = all_sandboxes(&h).await;
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    h.cri()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandboxes[0].id.clone(),
        })
        .await
        .unwrap();

    // A new instance in a new sandbox writes its own line; the previous one's is kept.
    let deadline = std::time::Instant::now() + LIMIT;
    let mut now = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(stream) = s
            .logs(pod_ref(&pod), "main".into(), LogOptions::default())
            .await
        {
            let chunks: Vec<_> = stream.collect().await;
            now = chunks
                .into_iter()
                .filter_map(Result::ok)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            if now.starts_with("run-") && now != first {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        now.starts_with("run-") && now != first,
        "{first:?} then {now:?}"
    );
    let sandboxes = all_sandboxes(&h).await;
    assert_eq!(sandboxes.len(), 2, "a new sandbox beside the dead one");
    let previous = LogOptions {
        previous: true,
        ..Default::default()
    };
    let previous_log = log(&s, &pod, "main", previous).await;
    if previous_log != first {
        // A start that failed in between (containerd's shim, on a loaded machine) is the
        // previous instance then, as the kubelet's lastState would say: it never ran.
        let mut instances = h
            .cri()
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .containers;
        instances.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        let before = h
            .cri()
            .container_status(cri::ContainerStatusRequest {
                container_id: instances[1].id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .status
            .unwrap();
        assert!(
            previous_log.is_empty() && before.started_at == 0,
            "previous {previous_log:?}, first {first:?}, the instance before the newest: {before:?}"
        );
    }
    h.stop().await;
}
