//! [`FakeContainers`]: the container-streams seam served by local processes, for tests.
//!
//! - a pod is a name, a UID and containers; each container has a CRI-format log file per
//!   instance under the fake's directory, a running flag and, optionally, a main process
//!   ([`FakeContainers::run_main`]) whose output lands in its log and in attached sessions;
//! - `exec` runs the command as a local process (with a pseudo-terminal for TTY sessions, so
//!   `tty` and `stty size` answer as in a container), `port-forward` connects to the port on
//!   127.0.0.1, `usage` reports what the test set.

mod main_process;
mod terminal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use protocol::tunnel::channel::{StreamEnd, TerminalSize};
use protocol::tunnel::{LogOptions, PodRef, StdStreams};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::{
    BoxFuture, ByteStream, ContainerStreams, CumulativeUsage, Duplex, PodUsage, Process,
    StreamError, UsageSample, boxed_duplex, cri_log,
};
use main_process::MainProcess;

#[derive(Debug)]
struct FakeContainer {
    running: Arc<AtomicBool>,
    /// The current instance (the restart count).
    instance: u32,
    main: Option<MainProcess>,
    usage: CumulativeUsage,
}

#[derive(Debug)]
struct FakePod {
    uid: String,
    containers: BTreeMap<String, FakeContainer>,
}

#[derive(Debug, Default)]
struct State {
    pods: BTreeMap<(String, String), FakePod>,
    node: CumulativeUsage,
}

/// Local processes standing in for a node's containers. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct FakeContainers {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    tasks: TaskTracker,
}

fn not_found(pod: &PodRef) -> StreamError {
    StreamError::NotFound(format!(
        "pod \"{}\" in namespace \"{}\" is not on this node",
        pod.name, pod.namespace
    ))
}

impl FakeContainers {
    /// A fake keeping its log files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FakeContainers {
            state: Arc::default(),
            dir: dir.into(),
            tasks: TaskTracker::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The log file of `container`'s instance `instance`.
    fn log_file(&self, ns: &str, name: &str, uid: &str, container: &str, instance: u32) -> PathBuf {
        self.dir
            .join(format!("{ns}_{name}_{uid}"))
            .join(container)
            .join(format!("{instance}.log"))
    }

    /// The current log file of a container (`None` for an unknown one).
    pub fn log_path(&self, ns: &str, name: &str, container: &str) -> Option<PathBuf> {
        let state = self.state();
        let pod = state.pods.get(&(ns.to_string(), name.to_string()))?;
        let c = pod.containers.get(container)?;
        Some(self.log_file(ns, name, &pod.uid, container, c.instance))
    }

    /// Adds a pod whose `containers` run (empty logs, no main process).
    ///
    /// # Panics
    ///
    /// If the log directory cannot be created (a test's temporary directory).
    pub fn add_pod(&self, ns: &str, name: &str, uid: &str, containers: &[&str]) {
        let mut map = BTreeMap::new();
        for c in containers {
            let log = self.log_file(ns, name, uid, c, 0);
            #[allow(clippy::expect_used)]
            {
                std::fs::create_dir_all(
                    log.parent()
                        .expect("invariant: a file under the fake's directory"),
                )
                .expect("creating the fake's log directory");
                std::fs::File::create(&log).expect("creating a fake log file");
            }
            map.insert(
                (*c).to_string(),
                FakeContainer {
                    running: Arc::new(AtomicBool::new(true)),
                    instance: 0,
                    main: None,
                    usage: CumulativeUsage::default(),
                },
            );
        }
        self.state().pods.insert(
            (ns.to_string(), name.to_string()),
            FakePod {
                uid: uid.to_string(),
                containers: map,
            },
        );
    }

    /// Appends a whole line on `stream` (`stdout` or `stderr`) to a container's log, stamped
    /// `time`.
    ///
    /// # Panics
    ///
    /// For an unknown container, or a log file that cannot be written.
    pub fn log_at(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        time: jiff::Timestamp,
        stream: &str,
        text: &str,
    ) {
        use std::io::Write;
        #[allow(clippy::expect_used)]
        let path = self
            .log_path(ns, name, container)
            .expect("a container of the fake");
        #[allow(clippy::expect_used)]
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(cri_log::entry(time, stream, false, text).as_bytes()))
            .expect("writing a fake log");
    }

    /// Appends a whole stdout line to a container's log, stamped now.
    pub fn log(&self, ns: &str, name: &str, container: &str, text: &str) {
        self.log_at(ns, name, container, jiff::Timestamp::now(), "stdout", text);
    }

    fn with_container<T>(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        f: impl FnOnce(&mut FakeContainer, &str) -> T,
    ) -> Option<T> {
        let mut state = self.state();
        let pod = state.pods.get_mut(&(ns.to_string(), name.to_string()))?;
        let uid = pod.uid.clone();
        pod.containers.get_mut(container).map(|c| f(c, &uid))
    }

    /// Stops a container (its main process is killed; followed logs end).
    pub fn stop(&self, ns: &str, name: &str, container: &str) {
        self.with_container(ns, name, container, |c, _| {
            c.running.store(false, Ordering::SeqCst);
            if let Some(m) = c.main.take() {
                m.kill.cancel();
            }
        });
    }

    /// Restarts a container: the current log becomes the previous instance's, a new empty one
    /// starts, and it runs again.
    ///
    /// # Panics
    ///
    /// If the new log file cannot be created.
    pub fn restart(&self, ns: &str, name: &str, container: &str) {
        self.stop(ns, name, container);
        let path = self.with_container(ns, name, container, |c, uid| {
            c.instance += 1;
            c.running = Arc::new(AtomicBool::new(true));
            (uid.to_string(), c.instance)
        });
        if let Some((uid, instance)) = path {
            #[allow(clippy::expect_used)]
            std::fs::File::create(self.log_file(ns, name, &uid, container, instance))
                .expect("a new fake log");
        }
    }

    /// Starts `command` as the container's main process (attachable; its output is logged).
    ///
    /// # Errors
    ///
    /// When the command cannot be started or the container is unknown.
    pub fn run_main(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        command: &[&str],
    ) -> std::io::Result<()> {
        let log = self.log_path(ns, name, container).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such container")
        })?;
        let command: Vec<String> = command.iter().map(|s| (*s).to_string()).collect();
        let main = main_process::start(&command, log, &self.tasks)?;
        self.with_container(ns, name, container, |c, _| c.main = Some(main));
        Ok(())
    }

    /// Sets what `usage` reports for a container.
    pub fn set_usage(&self, ns: &str, name: &str, container: &str, usage: CumulativeUsage) {
        self.with_container(ns, name, container, |c, _| c.usage = usage);
    }

    /// Sets what `usage` reports for the node.
    pub fn set_node_usage(&self, usage: CumulativeUsage) {
        self.state().node = usage;
    }

    /// Checks `pod` and `container`; returns (running flag, instance, uid, main process).
    fn find(
        &self,
        pod: &PodRef,
        container: &str,
    ) -> Result<(Arc<AtomicBool>, u32, String, Option<MainProcess>), StreamError> {
        let state = self.state();
        let p = state
            .pods
            .get(&(pod.namespace.clone(), pod.name.clone()))
            .filter(|p| pod.uid.is_empty() || p.uid == pod.uid)
            .ok_or_else(|| not_found(pod))?;
        let c = p.containers.get(container).ok_or_else(|| {
            StreamError::NotFound(format!(
                "container \"{container}\" in pod \"{}\" not found",
                pod.name
            ))
        })?;
        Ok((c.running.clone(), c.instance, p.uid.clone(), c.main.clone()))
    }

    fn running(&self, pod: &PodRef, container: &str) -> Result<Option<MainProcess>, StreamError> {
        let (running, _, _, main) = self.find(pod, container)?;
        if !running.load(Ordering::SeqCst) {
            return Err(StreamError::NotRunning(format!(
                "container \"{container}\" in pod \"{}\" is not running",
                pod.name
            )));
        }
        Ok(main)
    }

    fn spawn_exec(&self, command: &[String], streams: StdStreams) -> std::io::Result<Process> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command"))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).kill_on_drop(true);
        let mut process = Process {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            done: Box::pin(std::future::ready(StreamEnd::Exited(0))),
        };
        if streams.tty {
            let term = terminal::Terminal::open()?;
            let (i, o, e) = term.stdio()?;
            cmd.stdin(i).stdout(o).stderr(e);
            let child = cmd.spawn()?;
            // Our copies of the terminal side go, so reads see the end when the process does.
            drop(cmd);
            let terminal::Terminal {
                controller,
                terminal,
            } = term;
            drop(terminal);
            let reader = tokio::fs::File::from_std(std::fs::File::from(controller.try_clone()?));
            let writer = tokio::fs::File::from_std(std::fs::File::from(controller.try_clone()?));
            let (tx, mut rx) = mpsc::channel::<TerminalSize>(8);
            self.tasks.spawn(async move {
                while let Some(size) = rx.recv().await {
                    if let Err(e) = terminal::resize(&controller, size) {
                        tracing::debug!(error = %e, "resizing the fake's terminal");
                    }
                }
            });
            process.stdout = streams.stdout.then(|| Box::pin(reader) as _);
            process.stdin = streams.stdin.then(|| Box::pin(writer) as _);
            process.resize = Some(tx);
            process.done = Box::pin(wait(child));
            return Ok(process);
        }
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(pipe(streams.stdin))
            .stdout(pipe(streams.stdout))
            .stderr(pipe(streams.stderr));
        let mut child = cmd.spawn()?;
        process.stdin = child.stdin.take().map(|s| Box::pin(s) as _);
        process.stdout = child.stdout.take().map(|s| Box::pin(s) as _);
        process.stderr = child.stderr.take().map(|s| Box::pin(s) as _);
        process.done = Box::pin(wait(child));
        Ok(process)
    }
}

async fn wait(mut child: tokio::process::Child) -> StreamEnd {
    use std::os::unix::process::ExitStatusExt;
    match child.wait().await {
        Ok(s) => StreamEnd::Exited(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))),
        Err(e) => StreamEnd::Failed(format!("waiting for the process: {e}")),
    }
}

/// An attached session on `main`: its output from now on, and its stdin.
fn attach(main: MainProcess, streams: StdStreams, tasks: &TaskTracker) -> Process {
    let (out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, err_r) = tokio::io::duplex(64 * 1024);
    let mut output = main.output.subscribe();
    let (want_out, want_err) = (streams.stdout, streams.stderr && !streams.tty);
    let mut ended = main.exited.clone();
    tasks.spawn(async move {
        let (mut out_w, mut err_w) = (out_w, err_w);
        // The output ends when the process does (its output is all sent by then; the
        // container keeps the sender, so the channel itself never closes).
        loop {
            let next = tokio::select! {
                biased;
                r = output.recv() => r.ok(),
                _ = ended.wait_for(Option::is_some) => output.try_recv().ok(),
            };
            let Some((ch, bytes)) = next else { return };
            let w = match ch {
                1 if want_out => &mut out_w,
                2 if want_err => &mut err_w,
                2 if want_out && streams.tty => &mut out_w,
                _ => continue,
            };
            if w.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut process = Process {
        stdin: None,
        stdout: want_out.then(|| Box::pin(out_r) as _),
        stderr: want_err.then(|| Box::pin(err_r) as _),
        resize: None,
        done: Box::pin({
            let mut exited = main.exited.clone();
            async move {
                let _ = exited.wait_for(Option::is_some).await;
                StreamEnd::Exited(0)
            }
        }),
    };
    if streams.stdin {
        let (in_w, mut in_r) = tokio::io::duplex(64 * 1024);
        let to_main = main.stdin.clone();
        tasks.spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = in_r.read(&mut buf).await {
                if n == 0
                    || to_main
                        .send(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
        process.stdin = Some(Box::pin(in_w));
    }
    process
}

impl ContainerStreams for FakeContainers {
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'_, Result<ByteStream, StreamError>> {
        Box::pin(async move {
            let (running, instance, uid, _) = self.find(&pod, &container)?;
            let (instance, running): (u32, cri_log::StillRunning) = if options.previous {
                let Some(previous) = instance.checked_sub(1) else {
                    return Err(StreamError::BadRequest(format!(
                        "previous terminated container \"{container}\" in pod \"{}\" not found",
                        pod.name
                    )));
                };
                (previous, Box::new(|| false))
            } else {
                (instance, Box::new(move || running.load(Ordering::SeqCst)))
            };
            let path = self.log_file(&pod.namespace, &pod.name, &uid, &container, instance);
            Ok(cri_log::read(
                path,
                options,
                running,
                jiff::Timestamp::now(),
            ))
        })
    }

    fn exec(
        &self,
        pod: PodRef,
        container: String,
        command: Vec<String>,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>> {
        Box::pin(async move {
            self.running(&pod, &container)?;
            match self.spawn_exec(&command, streams) {
                Ok(p) => Ok(p),
                // As containerd reports a command it cannot start: the session fails.
                Err(e) => Ok(Process {
                    stdin: None,
                    stdout: None,
                    stderr: None,
                    resize: None,
                    done: Box::pin(std::future::ready(StreamEnd::Failed(format!(
                        "failed to exec in container: exec: {:?}: {e}",
                        command.first().map(String::as_str).unwrap_or_default()
                    )))),
                }),
            }
        })
    }

    fn attach(
        &self,
        pod: PodRef,
        container: String,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>> {
        Box::pin(async move {
            let main = self.running(&pod, &container)?.ok_or_else(|| {
                StreamError::BadRequest(format!(
                    "container \"{container}\" has no process to attach to"
                ))
            })?;
            Ok(attach(main, streams, &self.tasks))
        })
    }

    fn port_forward(&self, pod: PodRef, port: u16) -> BoxFuture<'_, Result<Duplex, StreamError>> {
        Box::pin(async move {
            {
                let state = self.state();
                state
                    .pods
                    .get(&(pod.namespace.clone(), pod.name.clone()))
                    .filter(|p| pod.uid.is_empty() || p.uid == pod.uid)
                    .ok_or_else(|| not_found(&pod))?;
            }
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(c) => Ok(boxed_duplex(c)),
                Err(e) => Err(StreamError::Runtime(format!(
                    "failed to connect to localhost:{port} inside the pod's network namespace: {e}"
                ))),
            }
        })
    }

    fn usage(&self) -> BoxFuture<'_, Result<UsageSample, StreamError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(UsageSample {
                timestamp: SystemTime::now(),
                node: state.node,
                pods: state
                    .pods
                    .iter()
                    .map(|((ns, name), p)| PodUsage {
                        pod: PodRef {
                            namespace: ns.clone(),
                            name: name.clone(),
                            uid: p.uid.clone(),
                        },
                        containers: p
                            .containers
                            .iter()
                            .map(|(n, c)| (n.clone(), c.usage))
                            .collect(),
                    })
                    .collect(),
            })
        })
    }
}

#[cfg(test)]
mod tests;
