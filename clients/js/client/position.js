// The pure parts: how long to wait before reconnecting or renewing a token, and where a stream
// stands (its Cursor). No sockets, no timers: each is tested on its own.

/**
 * The delay before reconnect attempt `attempt` (0 for the first): exponential from `min`, capped
 * at `max`; "full" jitter draws it from [min, cap], "equal" jitter from [cap/2, cap].
 */
export function backoffDelay(attempt, { minReconnectDelay: min, maxReconnectDelay: max, jitter }, random = Math.random) {
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const low = jitter === 'equal' ? Math.max(min, cap / 2) : min;
  return Math.round(low + random() * (cap - low));
}

/**
 * When to renew a token that the server says expires in `inSeconds`: with a margin of half its
 * life, at most 10 to 20 s (jitter spreads a user's tabs), so that a short-lived token is not
 * renewed in a loop and a long one is renewed well before its end.
 */
export function refreshDelay(inSeconds, random = Math.random) {
  const left = Math.max(0, Number(inSeconds) || 0) * 1000;
  const margin = Math.min(left / 2, 10000 + random() * 10000);
  return Math.round(left - margin);
}

/**
 * Where a stream stands: the last offset delivered, in which epoch. `accept(offset)` says whether
 * a numbered item is new (and then advances), `settle(...)` applies a position from the server.
 */
export class Cursor {
  constructor() {
    this.offset = null; // null: no position yet (never subscribed)
    this.epoch = '';
  }

  /**
   * 'new', 'duplicate' (at the last one delivered) or 'behind' (below it, or of another epoch:
   * the numbering started over). A stream followed before its first publication has no epoch
   * yet: it takes the first one a frame names.
   */
  accept(offset, epoch) {
    if (typeof offset !== 'number' || this.offset === null) return 'new';
    if (typeof epoch === 'string' && epoch !== '' && epoch !== this.epoch) {
      if (this.epoch !== '') return 'behind';
      this.epoch = epoch;
    }
    if (offset > this.offset) {
      this.offset = offset;
      return 'new';
    }
    return offset === this.offset ? 'duplicate' : 'behind';
  }

  /** A position from `subscribed` or a join's `history`. Returns the position before it. */
  settle(offset, epoch, recovered) {
    const previous = { offset: this.offset, epoch: this.epoch };
    if (typeof offset !== 'number') return previous;
    const same = recovered === true && epoch === this.epoch && this.offset !== null;
    this.offset = same ? Math.max(this.offset, offset) : offset;
    this.epoch = typeof epoch === 'string' ? epoch : '';
    return previous;
  }

  /**
   * `since` for a resubscription, or undefined before the first position. Without an epoch (no
   * publication yet, or a server whose frames do not name it) it asks for everything kept
   * (offset 0), and what was delivered already is dropped.
   */
  since() {
    if (this.offset === null) return undefined;
    return this.epoch === '' ? { offset: 0, epoch: '' } : { offset: this.offset, epoch: this.epoch };
  }
}
