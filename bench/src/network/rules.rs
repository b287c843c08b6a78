//! Rule programming: full syncs of N Services x M endpoints by the worker's service proxy (one
//! `nft -f` transaction each), against kube-proxy's iptables mode loading the same Services in
//! the same run: the `nat` table kube-proxy writes (`KUBE-SERVICES` -> `KUBE-SVC-*` with random
//! probabilities -> `KUBE-SEP-*` DNAT, masquerade marks, its comments), given as one
//! `iptables-restore -w --noflush` as kube-proxy does (Debian's `iptables-restore` is the nft
//! backend). kube-proxy also writes a smaller `filter` table, which the peer leaves out, so the
//! peer's figure is a lower bound of kube-proxy's.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use worker::network::Backend;
use worker::network::exec::Netns;
use worker::network::model::ObjectKind;

use super::{NetworkBenchArgs, cluster, proxy_for, service, slice};

/// The cluster CIDR kube-proxy masquerades traffic from outside of.
const CLUSTER_CIDR: &str = "10.42.0.0/16";

/// Services at 10.43.16.0 onwards, port 80; endpoints at 10.42.64.0 onwards, port 8080.
fn layout(services: usize, endpoints: usize) -> anyhow::Result<Vec<(Ipv4Addr, Vec<Ipv4Addr>)>> {
    let base_svc = u32::from(Ipv4Addr::new(10, 43, 16, 0));
    let base_ep = u32::from(Ipv4Addr::new(10, 42, 64, 0));
    let per = u32::try_from(endpoints)?.max(1).next_power_of_two();
    (0..services)
        .map(|s| {
            let n = u32::try_from(s)?;
            let eps = (0..u32::try_from(endpoints)?)
                .map(|e| Ipv4Addr::from(base_ep + n * per + e))
                .collect();
            Ok((Ipv4Addr::from(base_svc + n), eps))
        })
        .collect()
}

/// Runs three full syncs each way, interleaved, and prints them.
pub(super) async fn run(args: &NetworkBenchArgs) -> anyhow::Result<()> {
    let c = cluster("benchrules", Backend::HostGw).await?;
    let layout = layout(args.services, args.endpoints)?;
    let (mut services, mut slices) = (Vec::new(), Vec::new());
    for (s, (ip, eps)) in layout.iter().enumerate() {
        services.push(service(&format!("svc-{s}"), *ip, 80));
        slices.push(slice(&format!("svc-{s}"), eps, 8080, "node-2"));
    }
    c.model.replace(ObjectKind::Service, services);
    c.model.replace(ObjectKind::EndpointSlice, slices);
    let state = c.model.snapshot();
    let mut proxy = proxy_for(&c, 0);
    // kube-proxy's peer runs on the other node, so the two rule sets never share a namespace.
    let peer_ns = c.nodes[1].netns.clone();
    peer_hooks(&peer_ns).await?;
    let restore = kube_proxy_nat(&layout);
    println!(
        "\n== rule programming: {} Services x {} endpoints, full syncs; ours (nft) against \
         kube-proxy's iptables mode (iptables-restore of its nat table, {} lines) ==",
        args.services,
        args.endpoints,
        restore.lines().count()
    );
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>12} {:>8}",
        "sync", "ours ms", "render", "nft apply", "iptables ms", "ratio"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut counts = (0, 0);
    for what in ["first (empty table)", "again (over itself)", "again"] {
        let t = Instant::now();
        let stats = proxy.sync(&state).await?;
        let ours = t.elapsed();
        counts = (stats.statements, stats.endpoint_chains);
        let t = Instant::now();
        peer_ns
            .run_with_stdin(
                "iptables-restore",
                &["-w", "--noflush"],
                Some(restore.as_bytes()),
            )
            .await?;
        let theirs = t.elapsed();
        println!(
            "{what:<22} {:>9.0} {:>9.0} {:>10.0} {:>12.0} {:>8.3}",
            ms(ours),
            ms(stats.render),
            ms(stats.apply),
            ms(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64(),
        );
    }
    println!(
        "(ours: {} nft statements, {} endpoint chains; ratio = our time / iptables time)",
        counts.0, counts.1
    );
    Ok(())
}

/// kube-proxy's jumps from the built-in chains, installed once before timing (kube-proxy
/// ensures them outside its restore too).
async fn peer_hooks(netns: &Netns) -> anyhow::Result<()> {
    let hooks = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
                 -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                 -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                 -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
                 COMMIT\n";
    netns
        .run_with_stdin(
            "iptables-restore",
            &["-w", "--noflush"],
            Some(hooks.as_bytes()),
        )
        .await?;
    Ok(())
}

/// The `nat` table kube-proxy's iptables mode writes for `layout` (one TCP port per Service).
fn kube_proxy_nat(layout: &[(Ipv4Addr, Vec<Ipv4Addr>)]) -> String {
    let mut chains = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
         :KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::from(
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" \
         -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n",
    );
    for (s, (ip, eps)) in layout.iter().enumerate() {
        let svc = format!("KUBE-SVC-{s:016X}");
        let name = format!("bench/svc-{s}:p");
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {ip} \
             --dport 80 -j {svc}"
        );
        let _ = writeln!(
            rules,
            "-A {svc} -m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {ip} --dport 80 \
             ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
        );
        for (e, ep) in eps.iter().enumerate() {
            let sep = format!("KUBE-SEP-{s:010X}{e:06X}");
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let left = eps.len() - e;
            let pick = if left > 1 {
                format!(
                    "-m statistic --mode random --probability {:.11} ",
                    1.0 / left as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {svc} -m comment --comment \"{name} -> {ep}:8080\" {pick}-j {sep}"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -m comment --comment {name} -s {ep} -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -m comment --comment {name} -m tcp -p tcp -j DNAT --to-destination {ep}:8080"
            );
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be \
         the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n",
    );
    chains + &rules
}
