// Type declarations of wsguard-client (wsguard.js), written by hand.

/** The client's connection states. */
export type State = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** Why getToken is asked for a token. */
export type TokenReason =
  /** Before connecting or reconnecting. */
  | 'connect'
  /** The server warned that the socket's token expires soon: the token is sent in band. */
  | 'expiring'
  /** The token expired (close 4001) or was refused (close 1008): renew it before reconnecting. */
  | 'expired';

export interface TokenRequest {
  reason: TokenReason;
  /** With reason 'expiring': the seconds left, as the server said. */
  inSeconds?: number;
}

/**
 * An access token, or null to connect without one (a browser on wsguard's own origin, whose
 * cookies authenticate: the URL then carries `?csrf_token=`). Throwing (or rejecting) reports an
 * 'error' event and retries with backoff; call `close()` from it to give up.
 */
export type GetToken = (request: TokenRequest) => string | null | undefined | Promise<string | null | undefined>;

/** A constructor like the browser's WebSocket (in Node 20: `import WebSocket from 'ws'`). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

export interface ClientOptions {
  /** `ws://host/connect`; several (one after another on each reconnect); or a function giving one,
   *  called before each connect after getToken (it sees the cookies a renewal just set). */
  url: string | string[] | (() => string | Promise<string>);
  /** Asked for a token before every connect and reconnect, and when the server warns of expiry. */
  getToken?: GetToken;
  /** The WebSocket constructor; the global one by default. */
  WebSocket?: WebSocketConstructor;
  /**
   * What the client may connect with, in order: a WebSocket, and an HTTP stream (`POST
   * <url path>/stream`, its frames sent by `POST /emulation`) for networks that refuse WebSocket
   * upgrades. With both (the default), a WebSocket that cannot open is tried as a stream at once,
   * and the stream is kept from then on.
   */
  transports?: Array<'websocket' | 'stream'>;
  /** The fetch the stream uses; the global one by default. */
  fetch?: typeof fetch;
  /**
   * How the token travels: in the first frame `{"type":"auth"}` (default), as `?token=` (it then
   * shows in access logs), or as the subprotocol `bearer, <token>`.
   */
  tokenTransport?: 'frame' | 'query' | 'subprotocol';
  /** The first reconnect delay, in ms (500). */
  minReconnectDelay?: number;
  /** The longest reconnect delay, in ms (30000). */
  maxReconnectDelay?: number;
  /** 'full': a delay in [min, cap]; 'equal': in [cap/2, cap] ('full'). */
  jitter?: 'full' | 'equal';
  /** A connection that lasts this long (ms) resets the backoff (5000). */
  stableAfter?: number;
  /** From opening the socket to the server's welcome, at most (ms, 10000). */
  connectTimeout?: number;
  /** A `{"type":"ping"}` every this many ms (20000; 0: none). */
  pingInterval?: number;
  /** Nothing received within this many ms of a ping: the connection is dead (10000). */
  pongTimeout?: number;
  /** Frames sent per second at most (40; Infinity: no limit): the server closes a socket over its rate (4029). */
  maxMessagesPerSecond?: number;
  /**
   * In a browser, follow the window's 'offline' and 'online' events: drop the socket at once when
   * the browser goes offline, reconnect at once when it is back (true).
   */
  watchNetwork?: boolean;
}

/** What came with a state change. */
export interface StateDetail {
  previous: State;
  /** The close code that led here (4000: the client found the connection dead). */
  code?: number;
  reason?: string;
  /** 'disconnected': the reconnect comes in this many ms. */
  retryIn?: number;
  /** 'connecting': reconnect attempts since the last stable connection. */
  attempt?: number;
  /** 'connected': the user. */
  user?: string;
  /** 'connected': what the connection runs on. */
  transport?: 'websocket' | 'stream';
}

/**
 * Server codes: 'bad_request', 'forbidden', 'too_big', 'rate_limited', 'unavailable'. Client
 * codes: 'disconnected' (not connected, or the socket closed before the answer), 'closed' (the
 * client was closed), 'token' (getToken failed), 'connect' (the url function threw, or the
 * socket could not be created), 'protocol' (an answer out of place), 'listener' (a listener
 * threw).
 */
export class WsguardError extends Error {
  readonly code: string;
  readonly detail?: string;
  constructor(code: string, detail?: string, cause?: unknown);
}

export interface ClientEvents {
  state: (state: State, detail: StateDetail) => void;
  welcome: (user: string, exp: number) => void;
  error: (error: WsguardError) => void;
  /** The token expires in this many seconds; the client renews it in band. */
  expiring: (inSeconds: number) => void;
  /** The socket is now bound to the new token, which expires at `exp` (Unix seconds). */
  refreshed: (exp: number) => void;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface Publication {
  channel: string;
  /** null in a namespace without history. */
  offset: number | null;
  data: unknown;
  /** The publishing user; null for the server API. */
  from: string | null;
  /** RFC 3339, UTC. */
  ts: string;
  /** The channel's epoch, for a numbered publication. */
  epoch?: string;
}

export interface PresenceEvent {
  user: string;
  event: 'join' | 'leave';
}

export interface SubscribedEvent extends Position {
  /** With `since` (on a resubscription): whether every publication after it was delivered. */
  recovered?: boolean;
}

export interface UnrecoveredEvent extends Position {
  /** Where the stream stood before (offset null: nowhere). */
  previous: { offset: number | null; epoch: string };
}

export interface SubscriptionEvents {
  publication: (publication: Publication) => void;
  subscribed: (event: SubscribedEvent) => void;
  /** Publications were missed and cannot be sent: reload the state; the stream goes on. */
  unrecovered: (event: UnrecoveredEvent) => void;
  presence: (event: PresenceEvent) => void;
  /** The subscription was refused (it then ends), or an unsubscribe was. */
  error: (error: WsguardError) => void;
  /** The server ended it (`forbidden`: the renewed token no longer allows the channel). */
  unsubscribed: (error: WsguardError) => void;
}

export interface Message {
  type: 'message';
  room: string;
  id: number;
  from: string;
  text: string;
  ts: string;
  /** The room's epoch (absent on pages of older history). */
  epoch?: string;
}

/** A room's history holds messages, and publications whose data is not `{"text": …}`. */
export type HistoryItem = Message | (Publication & { type: 'publication' });

export interface HistoryEvent extends Position {
  /** Oldest first: the newest 50 on a first join or an unrecovered one; [] when recovered. */
  messages: HistoryItem[];
  recovered?: boolean;
}

export interface Ack {
  type: 'ack';
  ref: string;
  /** The message's id. */
  id: number;
}

export interface RoomEvents {
  message: (message: Message) => void;
  /** A publication to the room whose data is not a chat message. */
  publication: (publication: Publication & { type: 'publication' }) => void;
  /** After every join and re-join. */
  history: (event: HistoryEvent) => void;
  /** The users in the room, sorted, on every join and re-join. */
  members: (users: string[]) => void;
  presence: (event: PresenceEvent) => void;
  /** Messages were missed and cannot be sent: the 'history' that follows has the newest. */
  unrecovered: (event: UnrecoveredEvent) => void;
  error: (error: WsguardError) => void;
  /** The server ended the membership (`forbidden`: the renewed token no longer allows it). */
  unsubscribed: (error: WsguardError) => void;
}

declare class Emitter<Events> {
  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Events[K]): () => void;
  off<K extends keyof Events>(name: K, listener: Events[K]): void;
}

declare class Stream<Events> extends Emitter<Events> {
  /** 'pending' until the server answered, 'active', 'failed' (refused), 'ended' (left, or ended by the server). */
  readonly state: 'pending' | 'active' | 'failed' | 'ended';
  /** Resolves at the first answer; rejects when refused or left before. */
  readonly ready: Promise<this>;
  /** The last offset delivered (null before the first position). */
  readonly offset: number | null;
  readonly epoch: string;
}

export class Subscription extends Stream<SubscriptionEvents> {
  readonly channel: string;
  unsubscribe(): void;
}

export class Room extends Stream<RoomEvents> {
  readonly room: string;
  /** The users in the room, sorted; kept up to date by presence. */
  readonly members: string[];
  /** Resolves with the ack once the server stored the message. */
  send(text: string): Promise<Ack>;
  /** Up to `limit` (1-100, 50) messages with ids below `before`, oldest first; [] at the start. */
  history(options?: { before?: number; limit?: number }): Promise<HistoryItem[]>;
  leave(): void;
}

export class Client extends Emitter<ClientEvents> {
  constructor(options: ClientOptions);
  readonly state: State;
  /** From the last welcome. */
  readonly user: string | null;
  /** What the current (or next) connection runs on. */
  readonly transport: 'websocket' | 'stream';
  /** The socket's token's expiry (Unix seconds). */
  readonly exp: number | null;
  /** Starts (or restarts) connecting; while waiting to reconnect, connects at once. */
  connect(): void;
  /** Stops: closes the socket, no reconnect; pending requests reject with code 'closed'. */
  close(): void;
  /** Resolves once connected; rejects if the client is or becomes closed first. */
  ready(): Promise<void>;
  /**
   * `getToken`: for channels that need a subscription token (`subscribe = "token"`), asked before
   * each subscribe and ahead of each token's expiry.
   */
  subscribe(channel: string, options?: { getToken?: (ctx: { channel: string }) => string | Promise<string> }): Subscription;
  join(room: string): Room;
  /** Resolves with the publication's offset (null without history) once stored. */
  publish(channel: string, data: unknown): Promise<{ offset: number | null }>;
  subscription(channel: string): Subscription | undefined;
  room(name: string): Room | undefined;
}

/** The delay (ms) before reconnect attempt `attempt` (0 first). */
export function backoffDelay(
  attempt: number,
  options: { minReconnectDelay: number; maxReconnectDelay: number; jitter: 'full' | 'equal' },
  random?: () => number,
): number;

/** When (ms from now) to renew a token that expires in `inSeconds`. */
export function refreshDelay(inSeconds: number, random?: () => number): number;

/** Where a stream stands; exported for tests and for applications that keep their own. */
export class Cursor {
  offset: number | null;
  epoch: string;
  accept(offset: number | null | undefined, epoch?: string): 'new' | 'duplicate' | 'behind';
  settle(offset: number, epoch: string, recovered?: boolean): { offset: number | null; epoch: string };
  since(): Position | undefined;
}
