//! `kubectl exec` (with and without `-it`), `port-forward` and `top` through the enclave and a
//! worker's tunnel, with the oldest and newest installed kubectl (1.27 speaks SPDY; 1.33
//! WebSocket, and SPDY when told to), against [`FakeContainers`](worker::tunnel::fake).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod streams_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use serde_json::json;
use streams_support::{Cluster, Kubectl, eventually, kubectl::wait_bounded, versions};
use worker::tunnel::CumulativeUsage;

/// kubectl 1.27 and the newest, and the newest with SPDY forced: (label, kubectl).
fn clients(c: &Cluster) -> Vec<(String, Kubectl)> {
    let all = versions();
    let (first, last) = (all.first().unwrap().clone(), all.last().unwrap().clone());
    let config = c.enclave.kubeconfig();
    vec![
        (first.0.clone(), Kubectl::new(&first.0, &first.1, &config)),
        (last.0.clone(), Kubectl::new(&last.0, &last.1, &config)),
        (
            format!("{} (SPDY)", last.0),
            Kubectl::new(&last.0, &last.1, &config)
                .with_env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
                .with_env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
        ),
    ]
}

#[test]
fn exec_with_and_without_a_terminal() {
    let c = Cluster::start();
    c.pod("one", &["app"], json!({}));
    for (label, k) in clients(&c) {
        let out = k.run(&[
            "exec",
            "one",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n", "{label}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err"),
            "{label}"
        );
        assert_eq!(out.status.code(), Some(3), "{label}");

        let out = k.run_stdin(&["exec", "-i", "one", "--", "cat"], Some(b"hello\nworld\n"));
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello\nworld\n",
            "{label}"
        );

        // -it from a terminal: `script` gives kubectl one; the command sees its own, sized as
        // kubectl's once kubectl's first resize arrived (it races the command's start, as
        // upstream's does, hence the poll).
        let probe = "tty; for i in $(seq 100); do s=$(stty size); [ \"$s\" != \"0 0\" ] && break; sleep 0.1; done; echo \"size $s\"";
        let cmd = k.command(&["exec", "-it", "one", "--", "sh", "-c", probe]);
        let mut line = shell_quote(&cmd.get_program().to_string_lossy());
        for a in cmd.get_args() {
            line.push(' ');
            line.push_str(&shell_quote(&a.to_string_lossy()));
        }
        let mut script = Command::new("script");
        script.args([
            "-qec",
            &format!("stty rows 33 cols 77; {line}"),
            "/dev/null",
        ]);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => script.env(key, v),
                None => script.env_remove(key),
            };
        }
        let child = script
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_bounded(
            child,
            std::time::Duration::from_secs(60),
            "kubectl exec -it",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("/dev/pts/"), "{label}: {text}");
        assert!(text.contains("size 33 77"), "{label}: {text}");

        // A command that cannot start fails the session with the runtime's message.
        let out = k.run(&["exec", "one", "--", "/no/such/binary"]);
        assert!(!out.status.success(), "{label}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/no/such/binary"),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn port_forward_relays_connections() {
    let c = Cluster::start();
    c.pod("web", &["app"], json!({}));
    // The pod's "port": an echo server the fake connects to on 127.0.0.1.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    for (label, k) in clients(&c) {
        let mut child = k.spawn(&["port-forward", "pod/web", &format!(":{port}")]);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let local = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{label}: kubectl port-forward printed nothing"));
        // "Forwarding from 127.0.0.1:NNNN -> PORT"
        let local = local
            .strip_prefix("Forwarding from ")
            .and_then(|l| l.split(" -> ").next())
            .unwrap_or_else(|| panic!("{label}: {local}"))
            .to_string();
        for round in 0..3 {
            let mut conn = TcpStream::connect(&local).unwrap();
            conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let message = format!("ping {round} through {label}");
            conn.write_all(message.as_bytes()).unwrap();
            let mut back = vec![0u8; message.len()];
            conn.read_exact(&mut back).unwrap();
            assert_eq!(String::from_utf8_lossy(&back), message, "{label}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn top_reads_the_workers_usage() {
    let c = Cluster::start();
    c.pod("busy", &["app"], json!({}));
    let mib = 1024 * 1024;
    c.worker.containers.set_usage(
        "default",
        "busy",
        "app",
        CumulativeUsage {
            cpu_usage_ns: 1_000_000_000,
            memory_working_set_bytes: 64 * mib,
        },
    );
    c.worker.containers.set_node_usage(CumulativeUsage {
        cpu_usage_ns: 5_000_000_000,
        memory_working_set_bytes: 512 * mib,
    });
    for (label, k) in clients(&c).into_iter().take(2) {
        let pods = eventually("pod metrics", || {
            let out = k.run(&["top", "pod", "busy", "--no-headers"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).to_string())
        });
        let fields: Vec<&str> = pods.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"busy"), "{label}: {pods}");
        assert_eq!(fields.last(), Some(&"64Mi"), "{label}: {pods}");
        let nodes = eventually("node metrics", || {
            let out = k.run(&["top", "node", "w1", "--no-headers"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).to_string())
        });
        assert!(nodes.starts_with("w1"), "{label}: {nodes}");
        assert!(nodes.contains("512Mi"), "{label}: {nodes}");
    }
}

#[test]
fn attach_reaches_the_main_process() {
    let c = Cluster::start();
    for (i, (label, k)) in clients(&c).into_iter().enumerate() {
        let name = format!("attached-{i}");
        c.pod(&name, &["app"], json!({}));
        // The main process answers one line and exits: the session ends with it.
        let _runtime = streams_support::runtime().enter();
        c.worker
            .containers
            .run_main(
                "default",
                &name,
                "app",
                &["sh", "-c", "read x; echo got $x"],
            )
            .unwrap();
        let out = k.run_stdin(&["attach", "-i", &name], Some(b"hello\n"));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("got hello"),
            "{label}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
