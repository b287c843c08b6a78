//! The same measurement as `daas bench relay`, runnable without building the whole CLI:
//! `cargo run --release -p host --example relay_bench [CLIENTS [REQUESTS [ROUNDS]]]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = host::bench::RelayBenchOptions::default();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if let Some(&c) = args.first() {
        opts.shape.clients = c;
    }
    if let Some(&r) = args.get(1) {
        opts.shape.requests = r;
    }
    if let Some(&r) = args.get(2) {
        opts.rounds = r;
    }
    // Knobs for experiments: DAAS_RELAY_THREADS, DAAS_BUSY_POLL_US.
    if let Ok(v) = std::env::var("DAAS_RELAY_THREADS") {
        opts.relay_threads = v.parse()?;
    }
    if let Ok(v) = std::env::var("DAAS_BUSY_POLL_US") {
        opts.relay_busy_poll = std::time::Duration::from_micros(v.parse()?);
    }
    if std::env::var_os("DAAS_NO_PIN").is_some() {
        opts.pin_cpus = false;
    }
    let report = host::bench::run_relay_bench(&opts)?;
    println!("{report}");
    Ok(())
}
