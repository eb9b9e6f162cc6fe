// The client's one error type, shared by every part of it.

/** An error from the server (its `code` and `detail`) or from the client (`code` below). */
export class WsguardError extends Error {
  constructor(code, detail, cause) {
    super(detail ? `${code}: ${detail}` : code, cause === undefined ? undefined : { cause });
    this.name = 'WsguardError';
    this.code = code;
    this.detail = detail;
  }
}
