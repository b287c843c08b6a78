//! kubectl's streaming commands on real pods: `daas dev --workers 1` runs busybox pods in the
//! worker's own containerd, and kubectl reaches them through the enclave and the worker's
//! tunnel (`runtime::CriStreams` on the worker). Checked: `logs` (`--tail`, `--timestamps`,
//! `-f` on a pod that prints and exits, `--previous` refused), `exec` with output and exit
//! codes, `exec -i` with stdin to its end, `exec -it` with the terminal's size, `attach -i`,
//! `port-forward` (two ports, several connections, a closed port), `cp` both ways, `top pod`
//! and `top node`, `logs deploy/X` and `job/X`, a rollout, and the refusals (a missing
//! container, a stopped container). `run` (and its pod's log), exec, `exec -it`,
//! port-forward, cp, owner logs, `rollout status` and top with every kubectl 1.27–1.33 (SPDY
//! exec up to 1.29, WebSocket exec from 1.30, SPDY-in-WebSocket port-forward from 1.31).
//!
//! Skips (loudly) only when containerd is not installed; under CI that fails. Two `daas dev`
//! clusters with workers cannot run on one machine at once (they share the dev bridge and the
//! workers' network namespace names).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::dev::{Dev, containerd_available, free_port, kubectl_version, wait_until, worker_pids};
use common::text;

const BUSYBOX: &str = "docker.io/library/busybox:1.35";
const VERSIONS: [&str; 7] = ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"];

/// One kubectl binary against the dev cluster.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs with `input` on stdin.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {} {args:?} failed: {}",
            self.bin.display(),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let path = format!("jsonpath={path}");
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", &path]);
        String::from_utf8_lossy(&self.run(&all).stdout).into_owned()
    }

    fn apply(&self, dir: &Path, name: &str, object: &serde_json::Value) {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, object.to_string()).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()]);
    }
}

/// A busybox pod of `containers` (name, script), `stdin` on the first.
fn pod(name: &str, containers: &[(&str, &str)], stdin: bool) -> serde_json::Value {
    let containers: Vec<serde_json::Value> = containers
        .iter()
        .enumerate()
        .map(|(i, (c, script))| {
            serde_json::json!({
                "name": c,
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "stdin": stdin && i == 0,
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": containers},
    })
}

/// `kubectl port-forward pod/NAME LOCAL:REMOTE...` until dropped.
struct Forward(Child);

impl Forward {
    fn start(k: &Kubectl, pod: &str, ports: &[(u16, u16)]) -> Forward {
        let mut args = vec!["port-forward".to_string(), format!("pod/{pod}")];
        args.extend(ports.iter().map(|(l, r)| format!("{l}:{r}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = k
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It prints a line per listener once it listens.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < ports.len() {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("port-forward ended: {:?}", child.try_wait()))
                .unwrap();
            if line.starts_with("Forwarding from 127.0.0.1:") {
                seen += 1;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Forward(child)
    }

    /// Stops it; its stderr.
    fn stop(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

/// Sends `message` on a connection to `port` and reads the echo (the pod echoes with
/// `nc -ll -e cat`).
fn echo(port: u16, message: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(message.as_bytes()).unwrap();
    let mut got = vec![0u8; message.len()];
    s.read_exact(&mut got).unwrap();
    String::from_utf8(got).unwrap()
}

/// An HTTP GET of `/` on `port`: the response's body.
fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response)
}

#[test]
fn kubectl_logs_exec_attach_port_forward_cp_and_top_reach_real_pods() {
    if !containerd_available("dev_streams") {
        return;
    }
    common::bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("daas-streams")
        .tempdir_in("/tmp")
        .unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let kubeconfig = dir_path.join("kubeconfig");
    let kubectls: Vec<(&str, Kubectl)> = VERSIONS
        .iter()
        .map(|v| {
            (
                *v,
                Kubectl {
                    bin: kubectl_version(v),
                    kubeconfig: kubeconfig.clone(),
                },
            )
        })
        .collect();
    let (oldest, newest) = (&kubectls[0].1, &kubectls[VERSIONS.len() - 1].1);

    let dev = Dev::start(&dir_path, free_port(), 1, &[]);
    dev.wait_for("dev cluster ready");
    wait_until(Duration::from_secs(180), "a Ready node", || {
        newest
            .jsonpath(
                &["nodes"],
                "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            )
            .trim()
            == "True"
    });

    let pods = [
        pod(
            "talk",
            &[("talk", "echo hello; echo oops >&2; exec sleep 3600")],
            false,
        ),
        pod(
            "web",
            &[(
                "web",
                "mkdir /www && echo hello-web > /www/index.html && httpd -p 8080 -h /www && \
                 exec nc -ll -p 9090 -e cat",
            )],
            false,
        ),
        pod(
            "reader",
            &[(
                "reader",
                "echo started; while read l; do echo got:$l; done; sleep 3600",
            )],
            true,
        ),
        pod(
            "two",
            &[("main", "exec sleep 3600"), ("quick", "echo quick done")],
            false,
        ),
    ];
    for p in &pods {
        newest.apply(&dir_path, p["metadata"]["name"].as_str().unwrap(), p);
    }
    // `kubectl run` with every kubectl, each pod's log read back with the same one.
    let run_name = |version: &str| format!("run-{}", version.replace('.', "-"));
    for (version, k) in &kubectls {
        k.ok(&[
            "run",
            &run_name(version),
            "--image=docker.io/library/busybox:1.35",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            &format!("echo run by {version}; exec sleep 3600"),
        ]);
    }
    for name in ["talk", "web", "reader"] {
        newest.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=180s",
        ]);
    }

    for (version, k) in &kubectls {
        let name = run_name(version);
        k.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=180s",
        ]);
        wait_until(Duration::from_secs(30), "the run pod's log", || {
            k.run(&["logs", &name]).stdout == format!("run by {version}\n").as_bytes()
        });
    }

    // logs: whole, tail, timestamps, previous (none).
    // stdout and stderr are separate pipes: either line may come first.
    let mut whole = String::new();
    wait_until(Duration::from_secs(30), "talk's log", || {
        whole = newest.ok(&["logs", "talk"]);
        let mut lines: Vec<&str> = whole.lines().collect();
        lines.sort_unstable();
        lines == ["hello", "oops"]
    });
    let last = whole.lines().last().unwrap();
    assert_eq!(
        oldest.ok(&["logs", "talk", "--tail=1"]),
        format!("{last}\n")
    );
    let stamped = newest.ok(&["logs", "talk", "--timestamps"]);
    let first = stamped.lines().next().unwrap();
    let (time, line) = first.split_once(' ').unwrap();
    assert_eq!(line, whole.lines().next().unwrap());
    // RFC 3339 in UTC, as the CRI log file has it.
    assert!(
        time.len() > 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{first}"
    );
    let out = newest.run(&["logs", "talk", "--previous"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("previous terminated container"),
        "{}",
        text(&out)
    );

    // logs -f of a pod that prints, then exits: all of it, and kubectl returns.
    newest.apply(
        &dir_path,
        "counter",
        &pod(
            "counter",
            &[(
                "counter",
                "for i in 1 2 3 4; do echo line $i; sleep 2; done",
            )],
            false,
        ),
    );
    // Following starts while it runs (it may already have ended on a slow machine: then the
    // follow ends at once, with the same output).
    wait_until(Duration::from_secs(180), "counter to start", || {
        let phase = newest.jsonpath(&["pod", "counter"], "{.status.phase}");
        phase == "Running" || phase == "Succeeded"
    });
    let followed = newest.run(&["logs", "-f", "counter", "--request-timeout=60s"]);
    assert!(followed.status.success(), "{}", text(&followed));
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "line 1\nline 2\nline 3\nline 4\n"
    );

    // exec and port-forward with every kubectl.
    for (version, k) in &kubectls {
        let out = k.run(&[
            "exec",
            "talk",
            "--",
            "sh",
            "-c",
            "echo hi; echo err >&2; exit 3",
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "kubectl {version}: {}",
            text(&out)
        );
        assert_eq!(out.stdout, b"hi\n", "kubectl {version}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err\n"),
            "kubectl {version}: {}",
            text(&out)
        );
        let out = k.run_with_input(
            &["exec", "-i", "talk", "--", "sh", "-c", "wc -l; exit 0"],
            b"one\ntwo\nthree\n",
        );
        assert!(out.status.success(), "kubectl {version}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "3",
            "kubectl {version}"
        );

        let (http, nc) = (free_port(), free_port());
        let forward = Forward::start(k, "web", &[(http, 8080), (nc, 9090)]);
        assert_eq!(http_get(http), "hello-web\n", "kubectl {version}");
        assert_eq!(echo(nc, "ping\n"), "ping\n", "kubectl {version}");
        assert_eq!(echo(nc, "again\n"), "again\n", "kubectl {version}");
        assert_eq!(http_get(http), "hello-web\n", "kubectl {version}");
        forward.stop();
    }

    // The Python client's `stream` (WebSocket exec as client libraries do it), through the
    // attested kubeconfig `daas dev` wrote: OpenSSL takes its pinned certificate as the trust
    // anchor (issue 20).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/python_exec.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&kubeconfig)
        .arg("talk")
        .output()
        .unwrap();
    let said = text(&out);
    if said.contains("No module named 'kubernetes'") {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python client is missing (scripts/setup installs it): {said}"
        );
        eprintln!("SKIPPED the Python client's exec: PyPI `kubernetes` is not installed");
    } else {
        assert!(out.status.success(), "{said}");
        assert!(said.contains("preloaded exec ok"), "{said}");
    }

    // exec -it: a terminal of the caller's size (kubectl sends it after the process starts,
    // so the command waits for it), exit code kept. `script` gives kubectl a terminal.
    for (_, k) in &kubectls {
        let inner = "for i in $(seq 100); do z=$(stty size); [ \"$z\" = \"30 100\" ] && break; \
                     sleep 0.1; done; echo size=$z; tty; exit 7";
        let line = format!(
            "stty cols 100 rows 30; {} --kubeconfig {} exec -it talk -- sh -c '{inner}'",
            k.bin.display(),
            k.kubeconfig.display()
        );
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("size=30 100\r\n/dev/pts/"), "{}", text(&out));
        assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    }

    // A closed port: the connection ends and kubectl says why.
    let closed = free_port();
    let forward = Forward::start(newest, "web", &[(closed, 8081)]);
    let mut s = TcpStream::connect(("127.0.0.1", closed)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty());
    let err = forward.stop();
    assert!(err.contains("connection refused"), "{err}");

    // A missing container, and a stopped one in a running pod.
    let out = newest.run(&["exec", "talk", "-c", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nope"), "{}", text(&out));
    wait_until(
        Duration::from_secs(60),
        "two's quick container to exit",
        || {
            newest.jsonpath(
                &["pod", "two"],
                "{.status.containerStatuses[?(@.name==\"quick\")].state.terminated.reason}",
            ) == "Completed"
        },
    );
    let out = newest.run(&["exec", "two", "-c", "quick", "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not running"), "{}", text(&out));
    assert_eq!(newest.ok(&["logs", "two", "-c", "quick"]), "quick done\n");

    // attach -i: what goes in reaches the main process; its output comes back.
    for k in [oldest, newest] {
        let out = k.run_with_input(&["attach", "-i", "reader"], b"abc\n");
        assert!(out.status.success(), "{}", text(&out));
    }
    wait_until(Duration::from_secs(30), "reader's log", || {
        newest.run(&["logs", "reader"]).stdout == b"started\ngot:abc\ngot:abc\n"
    });

    // cp both ways (tar over exec).
    let local = dir_path.join("up.txt");
    std::fs::write(&local, "copied up\n").unwrap();
    for (_, k) in &kubectls {
        k.ok(&["cp", local.to_str().unwrap(), "talk:/tmp/up.txt"]);
        assert_eq!(
            k.ok(&["exec", "talk", "--", "cat", "/tmp/up.txt"]),
            "copied up\n"
        );
        let back = dir_path.join("down.txt");
        let _ = std::fs::remove_file(&back);
        k.ok(&["cp", "talk:/tmp/up.txt", back.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied up\n");
    }

    // logs of a Deployment's and a Job's pod, named through their owner.
    newest.ok(&[
        "create",
        "deployment",
        "logger",
        "--image=docker.io/library/busybox:1.35",
        "--",
        "sh",
        "-c",
        "echo from-deploy; exec sleep 3600",
    ]);
    oldest.ok(&[
        "create",
        "job",
        "once",
        "--image=docker.io/library/busybox:1.35",
        "--",
        "sh",
        "-c",
        "echo from-job",
    ]);
    newest.ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=180s",
    ]);
    newest.ok(&["rollout", "status", "deployment/logger", "--timeout=180s"]);
    for (_, k) in &kubectls {
        wait_until(Duration::from_secs(30), "logs deploy/logger", || {
            k.run(&["logs", "deploy/logger"]).stdout == b"from-deploy\n"
        });
        assert_eq!(k.ok(&["logs", "job/once"]), "from-job\n");
    }
    // A rollout started by the oldest kubectl, followed to its end by every one.
    oldest.ok(&["rollout", "restart", "deployment/logger"]);
    for (_, k) in &kubectls {
        k.ok(&["rollout", "status", "deployment/logger", "--timeout=180s"]);
    }

    // top: the running pods, from CRI stats; a finished pod is not listed.
    let mut shown = String::new();
    wait_until(Duration::from_secs(90), "kubectl top pod", || {
        let out = newest.run(&["top", "pod", "--no-headers"]);
        shown = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && shown.lines().any(|l| l.starts_with("talk "))
    });
    assert!(!shown.lines().any(|l| l.starts_with("counter ")), "{shown}");
    for (version, k) in &kubectls {
        let pods = k.ok(&["top", "pod", "talk", "--no-headers"]);
        assert!(pods.starts_with("talk "), "kubectl {version}: {pods}");
        let nodes = k.ok(&["top", "node", "--no-headers"]);
        assert!(nodes.starts_with("worker-1 "), "kubectl {version}: {nodes}");
    }

    // The worker killed mid-stream: the follow ends (no hang), and once daas dev has
    // restarted the worker its tunnel is back, with the pod adopted, not restarted.
    let mut follow = newest
        .command(&["logs", "-f", "talk"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "kubectl logs -f printed nothing");
    let workers = worker_pids(&dir_path);
    assert_eq!(workers.len(), 1, "one daas-worker: {workers:?}");
    let killed = Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until(Duration::from_secs(60), "kubectl logs -f to end", || {
        follow.try_wait().unwrap().is_some()
    });
    wait_until(
        Duration::from_secs(180),
        "the restarted worker's tunnel",
        || newest.run(&["exec", "talk", "--", "true"]).status.success(),
    );
    assert_ne!(
        worker_pids(&dir_path),
        workers,
        "the worker was not restarted"
    );
    assert_eq!(
        newest.jsonpath(
            &["pod", "talk"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    drop(dev);
}
