/**
 * The `/ws` socket of docs/API.md: JSON frames `{"type", "payload"}`. The
 * WebSocket class is passed in (the browser's, or `ws` in Node), so this
 * layer runs in both. No reconnection yet: a closed socket is reported.
 */

export interface Frame {
  readonly type: string;
  readonly payload: Record<string, unknown>;
}

/** What this layer needs of a WebSocket. */
export interface SocketLike {
  send(data: string): void;
  close(): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onopen: (() => void) | null;
  onclose: (() => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketFactory = (url: string) => SocketLike;

export class Socket {
  private constructor(private readonly ws: SocketLike) {}

  /** Opens `/ws`, sends `auth`, and resolves on `ready`. */
  static open(
    baseUrl: string,
    token: string,
    factory: SocketFactory,
    onFrame: (f: Frame) => void,
  ): Promise<Socket> {
    const url = baseUrl.replace(/^http/, 'ws') + '/ws';
    const ws = factory(url);
    return new Promise((resolve, reject) => {
      let ready = false;
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: 'auth', payload: { token } }));
      };
      ws.onmessage = (ev) => {
        let frame: Frame;
        try {
          frame = JSON.parse(String(ev.data)) as Frame;
        } catch {
          return;
        }
        if (!ready && frame.type === 'ready') {
          ready = true;
          resolve(new Socket(ws));
          return;
        }
        if (!ready && frame.type === 'error') {
          reject(new Error(`the server refused the login: ${String(frame.payload['message'])}`));
          return;
        }
        onFrame(frame);
      };
      ws.onerror = (e) => {
        if (!ready) reject(new Error(`cannot open ${url}: ${String(e)}`));
      };
      ws.onclose = () => {
        if (!ready) reject(new Error(`${url} closed before ready`));
      };
    });
  }

  send(type: string, payload: Record<string, unknown>): void {
    this.ws.send(JSON.stringify({ type, payload }));
  }

  close(): void {
    this.ws.close();
  }
}
