//! Human-readable rendering of a cluster's registry state.

use std::fmt::Write as _;

use chain::{ClusterState, Pcrs};

const MIST_PER_SUI: u64 = 1_000_000_000;

fn sui(mist: u64) -> String {
    let whole = mist / MIST_PER_SUI;
    let frac = mist % MIST_PER_SUI;
    if frac == 0 {
        format!("{whole} SUI")
    } else {
        let digits = format!("{frac:09}");
        format!("{whole}.{} SUI", digits.trim_end_matches('0'))
    }
}

fn pcr_lines(out: &mut String, indent: &str, pcrs: &Pcrs) {
    for (i, pcr) in [&pcrs.pcr0, &pcrs.pcr1, &pcrs.pcr2].into_iter().enumerate() {
        let _ = writeln!(out, "{indent}PCR{i} {}", hex::encode(pcr.as_bytes()));
    }
}

/// The text `daas registry show` prints.
pub(super) fn render(state: &ClusterState) -> String {
    let mut out = String::new();
    let s = &state.settings;
    let _ = writeln!(out, "cluster        {:?} ({})", state.name, state.id);
    let _ = writeln!(out, "admin          {}", state.admin);
    let _ = writeln!(
        out,
        "minimum stake  {} ({} MIST)",
        sui(s.min_stake),
        s.min_stake
    );
    let _ = writeln!(out, "unstake wait   {} ms", s.unstake_cooldown_ms);
    let _ = writeln!(out, "document age   at most {} ms", s.max_document_age_ms);
    let _ = writeln!(out, "slashed        {}", sui(state.slashed));

    let _ = writeln!(out, "\nallowed images ({})", state.images.len());
    if state.images.is_empty() {
        let _ = writeln!(out, "  none: no enclave can register");
    }
    for image in &state.images {
        let _ = writeln!(out, "  v{} {:?}", image.version, image.label);
        pcr_lines(&mut out, "    ", &image.pcrs);
    }

    let _ = writeln!(out, "\nlive enclave");
    match &state.live_enclave {
        None => {
            let _ = writeln!(out, "  none");
        }
        Some(live) => {
            let retired = if state.is_image_allowed(live.image_version) {
                ""
            } else {
                " (RETIRED: it can no longer anchor)"
            };
            let _ = writeln!(out, "  anchor key     {}", hex::encode(live.anchor_key));
            let _ = writeln!(out, "  TLS key sha256 {}", hex::encode(live.tls_key_digest));
            let _ = writeln!(out, "  image          v{}{retired}", live.image_version);
            let _ = writeln!(out, "  document time  {} ms", live.document_timestamp_ms);
            let _ = writeln!(
                out,
                "  document hash  {}",
                hex::encode(live.document_digest)
            );
            let _ = writeln!(
                out,
                "  registered     at {} ms by {}",
                live.registered_at_ms, live.registered_by
            );
        }
    }

    let _ = writeln!(out, "\nstakes ({})", state.stakes.len());
    for stake in state.stakes.values() {
        let status = match stake.unstake_requested_at_ms {
            Some(at) => format!(
                "unstaking, withdrawable at {} ms",
                at.saturating_add(s.unstake_cooldown_ms)
            ),
            None if stake.amount < s.min_stake => "below minimum (slashed)".to_owned(),
            None => "active".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<12} owner {}  {status}",
            stake.node_name,
            sui(stake.amount),
            stake.owner
        );
    }

    let _ = writeln!(out, "\nlatest anchor");
    match &state.latest_anchor {
        None => {
            let _ = writeln!(out, "  none");
        }
        Some(a) => {
            let _ = writeln!(
                out,
                "  revision {}  chain hash {}  signed at {} ms",
                a.revision,
                hex::encode(a.chain_hash),
                a.timestamp_ms
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sui;

    #[test]
    fn sui_amounts() {
        assert_eq!(sui(0), "0 SUI");
        assert_eq!(sui(1_000_000_000), "1 SUI");
        assert_eq!(sui(1_500_000_000), "1.5 SUI");
        assert_eq!(sui(1), "0.000000001 SUI");
    }
}
