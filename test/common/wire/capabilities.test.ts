// requireCapability: a feature asked of a peer that lacks it fails up front, naming the release needed.
import t from 'tap';
import { RpcError } from '../../../common/wire/errors.js';
import { peerOffers, requireCapability } from '../../../common/wire/capabilities.js';
import { ERROR_CODES } from '../../../common/wire/protocol.js';
import { testAgentInfo } from '../../helpers/agents.js';

const holder = (capabilities: string[] | undefined) => ({
  peerInfo: capabilities ? { ...testAgentInfo('guest', { capabilities, version: '0.1.0' }), nonce: 'n'.repeat(32) } : undefined,
  options: { label: 'guest vm1' },
});

t.test('offered: nothing thrown; missing: peerTooOld naming the peer, the capability and the release', async (t) => {
  t.doesNotThrow(() => requireCapability(holder(['ping', 'streams']), 'streams', '0.2.0'));
  t.ok(peerOffers(holder(['streams']), 'streams'));
  t.notOk(peerOffers(holder(undefined), 'streams'));
  const error = (() => {
    try {
      requireCapability(holder(['ping']), 'streams', '0.2.0');
    } catch (caught) {
      return caught;
    }
    return undefined;
  })();
  t.type(error, RpcError);
  t.equal((error as RpcError).code, ERROR_CODES.peerTooOld);
  t.equal(
    (error as RpcError).message,
    "the guest agent on guest vm1 (negotiator 0.1.0) is too old: it does not offer `streams`, which needs negotiator 0.2.0 or later; upgrade the guest's negotiator to 0.2.0 or later",
  );
  t.same((error as RpcError).data, { capability: 'streams', release: '0.2.0', peerVersion: '0.1.0' });
  t.throws(() => requireCapability(holder(undefined), 'streams', '0.2.0'), { message: /no handshake with it yet/ });
});
