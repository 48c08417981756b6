/**
 * The REST API of docs/API.md, as the client needs it: JSON over `fetch`
 * (the browser's, or Node 20's), bearer token, typed errors.
 */

/** A refusal with the server's `{"error": {"code", "message", "reason"}}`, or a network failure (`status` 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface Auth {
  readonly user: { readonly id: string; readonly username: string };
  readonly token: string;
  readonly deviceId?: number;
}

export interface SignedKey {
  readonly keyId: number;
  readonly publicKey: string;
  readonly signature: string;
}

export interface WireBundle {
  readonly userId: string;
  readonly identityKey: string;
  readonly identitySignature: string;
  readonly signedPrekey: SignedKey;
  readonly oneTimePrekey?: { readonly keyId: number; readonly publicKey: string };
  readonly pqPrekey?: SignedKey;
}

export interface DeviceBundle {
  readonly deviceId: number;
  readonly registrationId: number;
  readonly bundle: WireBundle;
}

export class RestClient {
  token: string | undefined;

  /** `fetchImpl`: the global `fetch` unless given (tests pass a lying server's). */
  constructor(
    readonly baseUrl: string,
    private readonly fetchImpl: typeof fetch = (input, init) => fetch(input, init),
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    let resp: Response;
    try {
      resp = await this.fetchImpl(this.baseUrl + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (e) {
      throw new ApiError(0, 'network', `cannot reach the server: ${String(e)}`);
    }
    const text = await resp.text();
    if (!resp.ok) {
      let code = 'status';
      let message = `HTTP ${resp.status}`;
      let reason: string | undefined;
      try {
        const e = (JSON.parse(text) as { error?: { code?: string; message?: string; reason?: string } })
          .error;
        code = e?.code ?? code;
        message = e?.message ?? message;
        reason = e?.reason;
      } catch {
        // Not an error body: the status says it.
      }
      throw new ApiError(resp.status, code, message, reason);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  register(username: string, password: string, registrationId: number): Promise<Auth> {
    return this.call('POST', '/api/auth/register', { username, password, registrationId });
  }

  uploadPrekeys(upload: unknown): Promise<unknown> {
    return this.call('POST', '/api/users/prekeys', upload);
  }

  userByName(username: string): Promise<{ users: { id: string; username: string }[] }> {
    return this.call('GET', `/api/users?username=${encodeURIComponent(username)}`);
  }

  /** A media object's bytes (the ciphertext of an attachment), at most `limit` of them. */
  async media(mediaId: string, limit: number): Promise<Uint8Array> {
    const headers: Record<string, string> = {};
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    const resp = await this.fetchImpl(`${this.baseUrl}/api/media/${encodeURIComponent(mediaId)}`, {
      headers,
    });
    if (!resp.ok) throw new ApiError(resp.status, 'status', `media ${mediaId}: HTTP ${resp.status}`);
    const bytes = new Uint8Array(await resp.arrayBuffer());
    if (bytes.length > limit)
      throw new ApiError(413, 'too_large', `media ${mediaId} is over its stated size`);
    return bytes;
  }

  /** A group's signed change records after epoch `after` (all without it). */
  groupChanges(groupId: string): Promise<{ changes: { epoch: number; record: string }[] }> {
    return this.call('GET', `/api/groups/${groupId}/changes`);
  }

  /** Claims a bundle for every device of the user. */
  deviceBundles(userId: string): Promise<{ bundles: DeviceBundle[] }> {
    return this.call('GET', `/api/users/${userId}/devices/prekeys`);
  }

  /** Claims one device's bundle. */
  deviceBundle(userId: string, deviceId: number): Promise<{ bundles: DeviceBundle[] }> {
    return this.call('GET', `/api/users/${userId}/devices/${deviceId}/prekeys`);
  }
}
