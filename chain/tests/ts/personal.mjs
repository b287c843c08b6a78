// Signs and verifies Sui personal messages with @mysten/sui, for the cross-check in
// chain/tests/personal_message.rs: prints the TypeScript SDK's address and signature for a key
// and a message, and the signer it recovers from the Rust signature.
// Usage: node personal.mjs SPEC.json   (written by chain/tests/personal_message.rs)
import { readFileSync } from 'node:fs';
import { Ed25519Keypair } from '@mysten/sui/keypairs/ed25519';
import { verifyPersonalMessageSignature } from '@mysten/sui/verify';
import { fromHex } from '@mysten/sui/utils';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const keypair = Ed25519Keypair.fromSecretKey(fromHex(spec.secret));
const message = fromHex(spec.message);
const { signature } = await keypair.signPersonalMessage(message);
const signer = await verifyPersonalMessageSignature(message, spec.rust_signature);
let forgedAccepted = true;
try {
  await verifyPersonalMessageSignature(fromHex(spec.other_message), spec.rust_signature);
} catch {
  forgedAccepted = false;
}
console.log(JSON.stringify({
  address: keypair.getPublicKey().toSuiAddress(),
  signature,
  rust_signer: signer.toSuiAddress(),
  forged_accepted: forgedAccepted,
}));
