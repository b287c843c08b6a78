//! The stake rules of admission, on the registry's [`ClusterState`]: a node name is admitted
//! by the active stake that holds it (`stake::is_active` in the Move package: not unstaking, at
//! least the cluster's minimum), owned by the account that signed the join.

use chain::{Address, ClusterState, StakeInfo};

use super::book::Binding;

/// The stake that admits `node` for `signer`, or why there is none.
pub(super) fn admitting_stake<'a>(
    state: &'a ClusterState,
    node: &str,
    signer: Address,
) -> Result<&'a StakeInfo, String> {
    let Some(stake) = state.stakes.get(node) else {
        let own: Vec<&str> = state
            .stakes
            .values()
            .filter(|s| s.owner == signer)
            .map(|s| s.node_name.as_str())
            .collect();
        return Err(if own.is_empty() {
            format!(
                "no stake holds node name {node:?} on the registry (stake for it first: daas \
                 registry stake --node {node})"
            )
        } else {
            format!(
                "the signer {signer} stakes node name {}, not {node:?}: a stake admits only the \
                 node name it holds",
                own.join(", ")
            )
        });
    };
    if stake.owner != signer {
        return Err(format!(
            "the stake for {node:?} is owned by another account ({}), not by the signer {signer}",
            stake.owner
        ));
    }
    inactive(state, stake).map_or(Ok(stake), Err)
}

/// Why `stake` does not admit its node right now, if it does not.
fn inactive(state: &ClusterState, stake: &StakeInfo) -> Option<String> {
    if let Some(at) = stake.unstake_requested_at_ms {
        return Some(format!(
            "the stake for {:?} is unstaking (requested at {at} ms): it no longer admits a node",
            stake.node_name
        ));
    }
    if stake.amount < state.settings.min_stake {
        return Some(format!(
            "the stake for {:?} holds {} MIST, below the cluster minimum of {} MIST (slashed)",
            stake.node_name, stake.amount, state.settings.min_stake
        ));
    }
    None
}

/// Why the registry no longer admits the joined node of `binding`, if it does not: its stake
/// was withdrawn, replaced, is unstaking or was slashed below the minimum.
pub(super) fn revocation_reason(state: &ClusterState, binding: &Binding) -> Option<String> {
    let node = &binding.node_name;
    let Some(stake) = state.stakes.get(node) else {
        return Some(format!(
            "withdrawn: no stake holds node name {node:?} any more"
        ));
    };
    if stake.id != binding.stake_id || stake.owner != binding.owner {
        return Some(format!(
            "the stake for {node:?} is no longer the one the node joined with (stake {} owned \
             by {})",
            stake.id, stake.owner
        ));
    }
    inactive(state, stake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chain::ClusterSettings;

    fn addr(n: u8) -> Address {
        Address([n; 32])
    }

    fn state() -> ClusterState {
        let mut stakes = std::collections::BTreeMap::new();
        for (node, owner) in [("a", 1), ("b", 2)] {
            stakes.insert(
                node.to_owned(),
                StakeInfo {
                    id: addr(10 + owner),
                    node_name: node.to_owned(),
                    owner: addr(owner),
                    amount: 100,
                    staked_at_ms: 0,
                    unstake_requested_at_ms: None,
                },
            );
        }
        ClusterState {
            id: addr(0xc1),
            name: "c".into(),
            admin: addr(0xad),
            settings: ClusterSettings {
                min_stake: 100,
                unstake_cooldown_ms: 0,
                max_document_age_ms: 1,
            },
            images: vec![],
            live_enclave: None,
            latest_anchor: None,
            stakes,
            slashed: 0,
        }
    }

    fn binding(node: &str, owner: u8) -> Binding {
        Binding {
            node_name: node.into(),
            public_key: vec![],
            key_sha256: [0; 32],
            stake_id: addr(10 + owner),
            owner: addr(owner),
            joined_at_ms: 0,
            not_after_ms: 0,
            revoked: None,
        }
    }

    #[test]
    fn admission_rules_name_the_problem() {
        let mut s = state();
        assert_eq!(admitting_stake(&s, "a", addr(1)).unwrap().node_name, "a");
        let err = admitting_stake(&s, "c", addr(9)).unwrap_err();
        assert!(err.contains("no stake holds node name \"c\""), "{err}");
        let err = admitting_stake(&s, "c", addr(1)).unwrap_err();
        assert!(err.contains("stakes node name a, not \"c\""), "{err}");
        let err = admitting_stake(&s, "b", addr(1)).unwrap_err();
        assert!(err.contains("owned by another account"), "{err}");
        s.stakes.get_mut("a").unwrap().unstake_requested_at_ms = Some(5);
        let err = admitting_stake(&s, "a", addr(1)).unwrap_err();
        assert!(err.contains("unstaking"), "{err}");
        s.stakes.get_mut("b").unwrap().amount = 99;
        let err = admitting_stake(&s, "b", addr(2)).unwrap_err();
        assert!(err.contains("slashed"), "{err}");
    }

    #[test]
    fn revocation_follows_the_registry() {
        let mut s = state();
        assert_eq!(revocation_reason(&s, &binding("a", 1)), None);
        assert!(revocation_reason(&s, &binding("b", 1)).is_some());
        s.stakes.remove("a");
        let why = revocation_reason(&s, &binding("a", 1)).unwrap();
        assert!(why.starts_with("withdrawn"), "{why}");
    }
}
