// Builds the k3s_daas registry transactions with @mysten/sui, offline (`tx.build()` without a
// client: every object reference, gas coin, price and budget is given), and prints for each
// one its BCS bytes (hex), digest and the sender's signature, as JSON.
// Usage: node build.mjs SPEC.json   (written by chain/tests/sui_crosscheck.rs)
import { readFileSync } from 'node:fs';
import { Transaction } from '@mysten/sui/transactions';
import { Ed25519Keypair } from '@mysten/sui/keypairs/ed25519';
import { fromHex, toHex } from '@mysten/sui/utils';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const keypair = Ed25519Keypair.fromSecretKey(fromHex(spec.sender_secret));
const sender = keypair.getPublicKey().toSuiAddress();
const pkg = spec.package;

const shared = (tx, ref, mutable) =>
  tx.sharedObjectRef({ objectId: ref.id, initialSharedVersion: ref.initial_shared_version, mutable });
const owned = (tx, ref) => tx.objectRef({ objectId: ref.id, version: ref.version, digest: ref.digest });
const clock = (tx) => shared(tx, { id: '0x6', initial_shared_version: 1 }, false);
const bytes = (tx, hex) => tx.pure.vector('u8', Array.from(fromHex(hex)));

const builders = {
  create_cluster(tx, c) {
    const cap = tx.moveCall({
      target: `${pkg}::cluster::create`,
      arguments: [tx.pure.string(c.name), tx.pure.u64(c.min_stake), tx.pure.u64(c.unstake_cooldown_ms), tx.pure.u64(c.max_document_age_ms)],
    });
    tx.transferObjects([cap], tx.pure.address(sender));
  },
  allow_image(tx, c) {
    tx.moveCall({
      target: `${pkg}::cluster::allow_image`,
      arguments: [shared(tx, c.cluster, true), owned(tx, c.cap), bytes(tx, c.pcr0), bytes(tx, c.pcr1), bytes(tx, c.pcr2), tx.pure.string(c.label), tx.pure.u64(c.version)],
    });
  },
  retire_image(tx, c) {
    tx.moveCall({
      target: `${pkg}::cluster::retire_image`,
      arguments: [shared(tx, c.cluster, true), owned(tx, c.cap), tx.pure.u64(c.version)],
    });
  },
  register_enclave(tx, c) {
    const doc = tx.moveCall({
      target: '0x2::nitro_attestation::load_nitro_attestation',
      arguments: [bytes(tx, c.document), clock(tx)],
    });
    tx.moveCall({
      target: `${pkg}::enclave::register_enclave`,
      arguments: [shared(tx, c.cluster, true), doc, clock(tx)],
    });
  },
  stake(tx, c) {
    const [coin] = tx.splitCoins(tx.gas, [tx.pure.u64(c.amount)]);
    tx.moveCall({
      target: `${pkg}::stake::stake`,
      arguments: [shared(tx, c.cluster, true), tx.pure.string(c.node_name), coin, clock(tx)],
    });
  },
  request_unstake(tx, c) {
    tx.moveCall({
      target: `${pkg}::stake::request_unstake`,
      arguments: [shared(tx, c.stake, true), shared(tx, c.cluster, false), clock(tx)],
    });
  },
  withdraw(tx, c) {
    const coin = tx.moveCall({
      target: `${pkg}::stake::withdraw`,
      arguments: [shared(tx, c.stake, true), shared(tx, c.cluster, true), clock(tx)],
    });
    tx.transferObjects([coin], tx.pure.address(sender));
  },
  slash(tx, c) {
    tx.moveCall({
      target: `${pkg}::stake::slash`,
      arguments: [shared(tx, c.cluster, true), owned(tx, c.cap), shared(tx, c.stake, true), tx.pure.u64(c.amount)],
    });
  },
  record_anchor(tx, c) {
    tx.moveCall({
      target: `${pkg}::anchor::record_anchor`,
      arguments: [shared(tx, c.cluster, true), tx.pure.u64(c.revision), bytes(tx, c.chain_hash), tx.pure.u64(c.timestamp_ms), bytes(tx, c.signature), clock(tx)],
    });
  },
};

const out = [];
for (const call of spec.calls) {
  const build = builders[call.kind];
  if (!build) throw new Error(`unknown call kind ${call.kind}`);
  const tx = new Transaction();
  build(tx, call);
  tx.setSender(sender);
  tx.setGasBudget(spec.gas.budget);
  tx.setGasPrice(spec.gas.price);
  tx.setGasPayment(spec.gas.coins.map((c) => ({ objectId: c.id, version: c.version, digest: c.digest })));
  const txBytes = await tx.build();
  const { signature } = await keypair.signTransaction(txBytes);
  out.push({ kind: call.kind, bytes: toHex(txBytes), digest: await tx.getDigest(), signature });
}
console.log(JSON.stringify({ sender, transactions: out }));
