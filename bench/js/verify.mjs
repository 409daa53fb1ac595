// Independent check: verify microcred credentials with @digitalbazaar/vc (the library the
// DCC verifier builds on; JSON-LD in safe mode) from a local document loader.
// Input: JSON file {contexts: {url: doc}, didDocuments: {did: doc}, credentials: [...]}.
// Output: JSON [{id, verified, error?}] per credential.
import {readFileSync} from 'node:fs';
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const documentLoader = async url => {
  if(input.contexts[url]) {
    return {contextUrl: null, documentUrl: url, document: input.contexts[url]};
  }
  const [did, fragment] = url.split('#');
  const didDoc = input.didDocuments[did];
  if(didDoc) {
    if(!fragment) {
      return {contextUrl: null, documentUrl: url, document: didDoc};
    }
    const vm = didDoc.verificationMethod.find(m => m.id === url);
    if(vm) {
      return {contextUrl: null, documentUrl: url,
        document: {'@context': 'https://w3id.org/security/multikey/v1', ...vm}};
    }
  }
  throw new Error(`not available offline: ${url}`);
};
const results = [];
for(const credential of input.credentials) {
  const result = await vc.verifyCredential({
    credential,
    suite: new DataIntegrityProof({cryptosuite}),
    documentLoader,
    // Status is checked by microcred's own verifier; here only the proof and key binding.
    checkStatus: async () => ({verified: true})
  });
  const error = result.error ? String(result.error.errors?.[0]?.message ?? result.error.message ?? result.error) : undefined;
  results.push({id: credential.id, verified: result.verified, error});
}
console.log(JSON.stringify(results));
