// The Client's options: their defaults, and the checks that refuse a bad one when the Client is
// made rather than at its first reconnect.

const DEFAULTS = {
  tokenTransport: 'frame',
  transports: ['websocket', 'stream'],
  minReconnectDelay: 500,
  maxReconnectDelay: 30000,
  jitter: 'full',
  stableAfter: 5000,
  connectTimeout: 10000,
  pingInterval: 20000,
  pongTimeout: 10000,
  maxMessagesPerSecond: 40,
};

/** `options` over the defaults; a TypeError or RangeError for the first one out of place. */
export function checkedOptions(options) {
  if (!options || options.url === undefined) throw new TypeError('Client needs a url');
  const checked = { ...DEFAULTS, ...options };
  const { tokenTransport, jitter } = checked;
  if (!['frame', 'query', 'subprotocol'].includes(tokenTransport)) {
    throw new TypeError(`tokenTransport must be 'frame', 'query' or 'subprotocol', not ${tokenTransport}`);
  }
  if (!['full', 'equal'].includes(jitter)) throw new TypeError(`jitter must be 'full' or 'equal'`);
  const { transports } = checked;
  const known = ['websocket', 'stream'];
  if (!Array.isArray(transports) || transports.length === 0 || !transports.every((t) => known.includes(t))) {
    throw new TypeError(`transports must list 'websocket', 'stream' or both, not ${JSON.stringify(transports)}`);
  }
  checkNumbers(checked);
  return checked;
}

/** Numeric options: finite where a timer takes them, positive where zero would spin. */
function checkNumbers(options) {
  const rules = {
    minReconnectDelay: (v) => v > 0, // 0 would retry a refusing server in a loop
    maxReconnectDelay: (v) => v >= options.minReconnectDelay,
    stableAfter: (v) => v >= 0,
    connectTimeout: (v) => v > 0,
    pingInterval: (v) => v >= 0,
    pongTimeout: (v) => v > 0,
    maxMessagesPerSecond: (v) => v > 0,
  };
  for (const [name, valid] of Object.entries(rules)) {
    const value = options[name];
    const finite = typeof value === 'number' && (Number.isFinite(value) || name === 'maxMessagesPerSecond');
    if (!finite || !valid(value)) throw new RangeError(`${name} is out of range: ${value}`);
  }
}
