// JS reference for bench/sign.py: @digitalbazaar/vc + eddsa-rdfc-2022 signing the same
// credentials with the same contexts through a local (offline) document loader.
// Input: a JSON file {contexts: {url: doc}, credentials: [...], seedHex, verificationMethod,
// created, warmup}. Output (stdout): JSON {n, seconds, perSecond, proofValues}.
import {readFileSync} from 'node:fs';
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const documentLoader = async url => {
  const document = input.contexts[url];
  if(!document) {
    throw new Error(`not bundled: ${url}`);
  }
  return {contextUrl: null, documentUrl: url, document};
};
const [controller] = input.verificationMethod.split('#');
const keyPair = await Ed25519Multikey.generate({
  seed: Uint8Array.from(Buffer.from(input.seedHex, 'hex')),
  controller
});
keyPair.id = input.verificationMethod;
const suite = () => new DataIntegrityProof({
  signer: keyPair.signer(), cryptosuite, date: input.created
});

async function signAll(credentials) {
  const out = [];
  for(const credential of credentials) {
    out.push(await vc.issue({credential, suite: suite(), documentLoader}));
  }
  return out;
}

await signAll(input.credentials.slice(0, input.warmup));
const cpu0 = process.cpuUsage();
const start = process.hrtime.bigint();
const signed = await signAll(input.credentials);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpu0);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
const proofValues = signed.slice(0, 3).map(c => (Array.isArray(c.proof) ? c.proof[0] : c.proof).proofValue);
console.log(JSON.stringify({
  n: signed.length, seconds, cpuSeconds, perSecond: signed.length / seconds, proofValues,
  publicKeyMultibase: keyPair.publicKeyMultibase
}));
