// What an application follows: a channel (Subscription) or a chat room (Room). Each keeps its
// Cursor and turns the server's frames into events; the Client sends its commands and routes the
// frames to it. The Emitter (on/off) is theirs and the Client's.

import { Cursor } from './position.js';

/** on/off/emit; a listener that throws is reported, never breaks the emitter. */
export class Emitter {
  constructor(report) {
    this._listeners = new Map();
    this._report = report;
  }

  on(name, fn) {
    if (typeof fn !== 'function') throw new TypeError('a listener must be a function');
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  off(name, fn) {
    const set = this._listeners.get(name);
    if (set) set.delete(fn);
  }

  _emit(name, ...args) {
    const set = this._listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        this._report(name, err);
      }
    }
  }
}

/** What a channel or room shares: the cursor, readiness, failure. */
class Stream extends Emitter {
  constructor(client, name) {
    super((event, err) => client._listenerFailed(event, err));
    this._client = client;
    this.cursor = new Cursor();
    this.state = 'pending'; // pending | active | failed | ended
    this._ready = deferred();
    this.ready = this._ready.promise;
    this._name = name;
  }

  /** The last offset delivered, and its epoch (null before the first position). */
  get offset() {
    return this.cursor.offset;
  }

  get epoch() {
    return this.cursor.epoch;
  }

  /** The answer to its join or subscribe: 'done', 'more' (the history follows the members). */
  _reply(frame) {
    if (this.state === 'ended') return frame.type === 'members' ? 'more' : 'done';
    const done = this._position(frame);
    if (done) {
      this.state = 'active';
      this._resyncing = false;
      this._answering = false;
      this._ready.resolve(this);
      this._announce(done);
      return 'done';
    }
    return frame.type === 'members' ? 'more' : 'unexpected';
  }

  _refused(err) {
    this.state = 'failed';
    this._ready.reject(err);
    this._emit('error', err);
  }

  /**
   * A numbered frame: false when it is one already delivered. Behind the cursor on a live stream
   * (not while a join or subscribe with `since` is answered, which may resend what was
   * delivered): the numbering started over, follow again to find out what was missed.
   */
  _admit(offset, epoch) {
    const verdict = this.cursor.accept(offset, epoch);
    if (verdict === 'behind' && !this._answering) this._client._resync(this);
    return verdict === 'new';
  }
}

/** A channel followed with `subscribe`: its publications, from the last one delivered. */
export class Subscription extends Stream {
  constructor(client, channel) {
    super(client, channel);
    this.channel = channel;
  }

  unsubscribe() {
    this._client._drop(this);
  }

  _command(token) {
    const command = { type: 'subscribe', channel: this.channel, since: this.cursor.since() };
    if (token) command.token = token;
    return command;
  }

  _leaveCommand() {
    return { type: 'unsubscribe', channel: this.channel };
  }

  _position(frame) {
    if (frame.type !== 'subscribed') return null;
    const previous = this.cursor.settle(frame.offset, frame.epoch, frame.recovered);
    if (typeof frame.expires_at === 'number') this._client._scheduleRenewal(this, frame.expires_at);
    return { offset: frame.offset, epoch: frame.epoch, recovered: frame.recovered, previous };
  }

  _announce({ previous, ...position }) {
    if (position.recovered === false) this._emit('unrecovered', { ...position, previous });
    this._emit('subscribed', position);
  }

  _frame(frame) {
    if (frame.type === 'publication') {
      if (!this._admit(frame.offset, frame.epoch)) return;
      const { channel, offset, data, from, ts, epoch } = frame;
      this._emit('publication', { channel, offset, data, from, ts, epoch });
    } else if (frame.type === 'presence') {
      this._emit('presence', { user: frame.user, event: frame.event });
    }
  }
}

/** A chat room, joined: its members, its messages, its history. */
export class Room extends Stream {
  constructor(client, room) {
    super(client, room);
    this.room = room;
    /** The users in the room, sorted; kept up to date by presence. */
    this.members = [];
  }

  /** Sends a message; resolves with the ack `{id, ref}` once the server stored it. */
  send(text) {
    const ref = this._client._nextRef();
    return this._client._request({ type: 'send', room: this.room, text, ref }, 'ack');
  }

  /** Older messages: up to `limit` (1-100, 50 by default) with ids below `before`, oldest first. */
  history({ before, limit } = {}) {
    const frame = { type: 'history', room: this.room, before, limit };
    return this._client._request(frame, 'history').then((reply) => reply.messages);
  }

  leave() {
    this._client._drop(this);
  }

  _command() {
    return { type: 'join', room: this.room, since: this.cursor.since() };
  }

  _leaveCommand() {
    return { type: 'leave', room: this.room };
  }

  _position(frame) {
    if (frame.type === 'members') {
      this.members = [...frame.users].sort();
      this._emit('members', this.members.slice());
      return null;
    }
    if (frame.type !== 'history') return null;
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    let offset = frame.offset;
    // A server without join `since` sends no position: the newest id stands for it.
    if (typeof offset !== 'number') offset = messages.reduce((m, x) => Math.max(m, x.id ?? x.offset ?? 0), 0);
    const previous = this.cursor.settle(offset, frame.epoch, frame.recovered);
    return { messages, offset, epoch: frame.epoch ?? '', recovered: frame.recovered, previous };
  }

  _announce({ previous, messages, ...position }) {
    if (position.recovered === false) this._emit('unrecovered', { ...position, previous });
    this._emit('history', { messages, ...position });
  }

  _frame(frame) {
    if (frame.type === 'message') {
      if (this._admit(frame.id, frame.epoch)) this._emit('message', frame);
    } else if (frame.type === 'publication') {
      if (this._admit(frame.offset, frame.epoch)) this._emit('publication', frame);
    } else if (frame.type === 'presence') {
      const others = this.members.filter((user) => user !== frame.user);
      this.members = frame.event === 'join' ? [...others, frame.user].sort() : others;
      this._emit('presence', { user: frame.user, event: frame.event });
    }
  }
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
